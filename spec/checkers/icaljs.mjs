// ical.js (npm, Mozilla's parser, test-only) reads what wecom.ical wrote:
//   node icaljs.mjs FILE [FROM TO]
// Parses FILE (any error exits 1 with the message), checks every VEVENT's
// properties decode, and with FROM/TO (Unix seconds) expands each event with
// ical.js's own recurrence iterator. Prints one JSON object:
//   {"events": N, "calendar": {"name": ...},
//    "decoded": {"<UID>": {"summary", "location", "description", "attendees":
//      [{"cn", "partstat", "role"}], "triggers": ["-PT15M", ...]}},
//    "expanded": {"<UID>": {"status": "CANCELLED"|null,
//      "starts": [unix seconds, or "YYYYMMDD" for DATE values, ...]}}}
// with the starts in [FROM - 2 days, TO + 2 days): the spec narrows them.
import { readFileSync } from "node:fs";
import ICAL from "ical.js";

const [file, fromArg, toArg] = process.argv.slice(2);
const MARGIN = 2 * 86400;
const LIMIT = 500000; // occurrences per event: a runaway rule is an error, not a hang

function fail(message) {
  process.stdout.write(JSON.stringify({ error: String(message) }) + "\n");
  process.exit(1);
}

let root;
try {
  root = new ICAL.Component(ICAL.parse(readFileSync(file, "utf8")));
} catch (e) {
  fail(`ical.js could not parse ${file}: ${e.message}`);
}
if (root.name !== "vcalendar") fail(`not a VCALENDAR: ${root.name}`);
if (root.getFirstPropertyValue("method")) fail("a published calendar has no METHOD");

// Each VTIMEZONE must come before the first event that uses it.
const seen = new Set();
for (const c of root.getAllSubcomponents()) {
  if (c.name === "vtimezone") {
    const tz = new ICAL.Timezone(c);
    ICAL.TimezoneService.register(tz, tz.tzid);
    seen.add(tz.tzid);
  } else if (c.name === "vevent") {
    for (const name of ["dtstart", "dtend", "exdate"]) {
      for (const p of c.getAllProperties(name)) {
        const tzid = p.getParameter("tzid");
        if (tzid && !seen.has(tzid)) fail(`${c.getFirstPropertyValue("uid")}: TZID ${tzid} used before its VTIMEZONE`);
      }
    }
  }
}

const out = {
  events: 0,
  calendar: { name: root.getFirstPropertyValue("name"), description: root.getFirstPropertyValue("description") },
  decoded: {},
  expanded: {},
};
const from = fromArg === undefined ? null : Number(fromArg) - MARGIN;
const to = toArg === undefined ? null : Number(toArg) + MARGIN;

function key(t) {
  if (t.isDate) return `${String(t.year).padStart(4, "0")}${String(t.month).padStart(2, "0")}${String(t.day).padStart(2, "0")}`;
  return t.toUnixTime();
}

for (const c of root.getAllSubcomponents("vevent")) {
  out.events++;
  const uid = c.getFirstPropertyValue("uid");
  if (!uid) fail("a VEVENT without UID");
  // decoding every property's value throws on what ical.js can't read
  for (const p of c.getAllProperties()) p.getValues();
  for (const a of c.getAllSubcomponents("valarm")) {
    for (const p of a.getAllProperties()) p.getValues();
    if (!a.getFirstPropertyValue("trigger")) fail(`${uid}: VALARM without TRIGGER`);
  }
  out.decoded[uid] = {
    summary: c.getFirstPropertyValue("summary"),
    location: c.getFirstPropertyValue("location"),
    description: c.getFirstPropertyValue("description"),
    organizer: c.getFirstProperty("organizer")?.getParameter("cn") ?? null,
    attendees: c.getAllProperties("attendee").map((p) => ({
      cn: p.getParameter("cn"), partstat: p.getParameter("partstat"), role: p.getParameter("role"), address: p.getFirstValue(),
    })),
    triggers: c.getAllSubcomponents("valarm").map((a) => a.getFirstPropertyValue("trigger").toString()),
  };
  if (from === null) continue;
  const event = new ICAL.Event(c);
  const starts = [];
  const it = event.iterator();
  let n = 0;
  for (let t = it.next(); t; t = it.next()) {
    if (++n > LIMIT) fail(`${uid}: over ${LIMIT} occurrences`);
    const u = t.isDate ? Date.UTC(t.year, t.month - 1, t.day) / 1000 : t.toUnixTime();
    if (u >= to) break;
    if (u >= from) starts.push(key(t));
  }
  out.expanded[uid] = { status: c.getFirstPropertyValue("status") || null, starts };
}
process.stdout.write(JSON.stringify(out) + "\n");
