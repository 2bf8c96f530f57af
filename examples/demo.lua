-- The wecom demo: the seed documents' calendar, from creation to deletion.
--
--   make demo                 starts the local emulator, runs this, stops it
--   lua examples/demo.lua     the same, with LUA_PATH/LUA_CPATH set for wecom
--
-- With WECOM_BASE_URL, WECOM_CORPID and WECOM_CORPSECRET in the environment
-- it talks to that server instead (an emulator you started, or a real corp:
-- it then creates and deletes one calendar there).
local wecom = require("wecom")

local function say(fmt, ...) io.write(fmt:format(...), "\n") end

local base_url = os.getenv("WECOM_BASE_URL")
local own_emulator
if not base_url or base_url == "" then
  own_emulator = assert(require("wecom.emulator.launcher").start{ port = 0 })
  base_url = own_emulator.base_url
end
local on_emulator = own_emulator ~= nil or os.getenv("WECOM_EMULATOR_DIR") ~= nil

-- The emulator's control API stands in for schedules made in the WeCom app.
local function seed_schedules(json)
  local http = require("wecom.transport.curl").new(assert(require("wecom.options").transport()))
  local status = http:request("POST", base_url .. "/emulator/seed_schedules", json)
  http:close()
  return status == 200
end

local function finish(code)
  if own_emulator then own_emulator:stop() end
  os.exit(code)
end

local client, err = wecom.new{
  corpid = os.getenv("WECOM_CORPID") or "wwemulator",
  corpsecret = os.getenv("WECOM_CORPSECRET") or "emulator-secret",
  base_url = base_url,
}
if not client then
  say("can't make a client: %s", tostring(err))
  finish(1)
end

-- Stops the demo on an unexpected failure, showing the error as a user sees it.
local function check(res, e)
  if res then return res end
  say("   unexpected failure: %s", tostring(e))
  finish(1)
end

say("wecom %s demo against %s%s", wecom._VERSION, base_url, on_emulator and " (the local emulator)" or "")
say("")

say("1. Create a calendar: the seed document's example body")
local created = check(client:calendar_add{
  calendar = {
    organizer = "userid1", readonly = 1, set_as_default = 1,
    summary = "test_summary", color = "#FF3030", description = "test_describe",
    shares = { { userid = "userid2" }, { userid = "userid3", readonly = 1 } },
  },
  agentid = 1000014,
})
local cal_id = created.cal_id
say("   cal_id = %s", cal_id)

local function show(cal)
  local shares = {}
  for _, s in ipairs(cal.shares or {}) do
    shares[#shares + 1] = ("%s (readonly %s)"):format(s.userid, tostring(s.readonly))
  end
  say("   summary %q, color %s, readonly %s, description %q", cal.summary, tostring(cal.color),
    tostring(cal.readonly), cal.description or "")
  say("   shares: %s", #shares > 0 and table.concat(shares, ", ") or "none")
end

say("2. Read it back (calendar_get)")
show(check(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1])

say("3. Update it: update overwrites, so every field is sent again")
check(client:calendar_update{
  calendar = {
    cal_id = cal_id, readonly = 1, summary = "test_summary", color = "#FF3030",
    description = "test_describe_1",
    shares = { { userid = "userid1" }, { userid = "userid2", readonly = 1 } },
  },
})
show(check(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1])

say("4. Change one field without losing the others (calendar_patch), then share it")
check(client:calendar_patch(cal_id, { description = "patched: only this field changed" }))
local shared = check(client:share_calendar(cal_id, { "userid4", { userid = "userid2", readonly = 0 },
  "unknown-intern" }))
for _, f in ipairs(shared.fail_result and shared.fail_result.shares or {}) do
  say("   WeCom refused to share with %s (errcode %d)", f.userid, f.errcode)
end
show(check(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1])

say("5. A weekly schedule: create it, move one occurrence (op_mode 1), list the result")
local MONDAY = 1795399200 -- 2026-11-23 10:00 +08:00
local function when(t) return os.date("!%a %Y-%m-%d %H:%M", t + 8 * 3600) .. " +08:00" end
local weekly = check(client:schedule_add{ schedule = {
  cal_id = cal_id, summary = "weekly sync", start_time = MONDAY, end_time = MONDAY + 3600,
  attendees = { { userid = "userid1" }, { userid = "userid2" } }, admins = { "userid1" },
  reminders = { is_remind = 1, remind_before_event_secs = 900, is_repeat = 1, repeat_type = 1, timezone = 8 },
} })
say("   created %s: every week from %s", weekly.schedule_id, when(MONDAY))
local second = MONDAY + 7 * 86400
local moved = check(client:schedule_patch(weekly.schedule_id,
  { summary = "weekly sync (moved to the afternoon)", start_time = second + 5 * 3600, end_time = second + 6 * 3600 },
  { op_mode = 1, op_start_time = second }))
say("   moved the occurrence of %s: it is now schedule %s", when(second), moved.schedule_id)
for _, s in ipairs(check(client:schedules{ weekly.schedule_id, moved.schedule_id })) do
  local r = s.reminders
  local skipped = {}
  for _, x in ipairs(r.exclude_time_list or {}) do skipped[#skipped + 1] = when(x.start_time) end
  say("   - %q %s, %s%s, %d attendees", s.summary, when(s.start_time),
    r.is_repeat == 1 and "weekly" or "once",
    #skipped > 0 and (" except " .. table.concat(skipped, ", ")) or "", #s.attendees)
end

say("6. Its next occurrences (wecom.recurrence), and the calendar as iCalendar (export_ical)")
local recurrence = require("wecom.recurrence")
local series = check(client:schedules{ weekly.schedule_id })[1]
local next_ones = {}
for _, o in ipairs(check(recurrence.occurrences(series, MONDAY, MONDAY + 5 * 7 * 86400))) do
  next_ones[#next_ones + 1] = when(o.start_time)
end
say("   %q, the next five weeks: %s", series.summary, table.concat(next_ones, ", "))
local ics_path = os.getenv("WECOM_DEMO_ICS") or ((os.getenv("TMPDIR") or "/tmp") .. "/wecom-demo.ics")
local ics = assert(io.open(ics_path, "wb"))
local exported = check(client:export_ical(cal_id, function(chunk) return ics:write(chunk) end))
ics:close()
say("   wrote %s: %d events, for any calendar application (RFC 5545)", ics_path, exported.schedules)

say("7. Page through the calendar's schedules (each_schedule, schedule_cursor)")
if on_emulator then
  local ok = seed_schedules(('{"cal_id":"%s","count":2345,"cancelled_every":7}'):format(cal_id))
  say("   (the emulator seeded 2345 schedules, every 7th cancelled: %s)", ok and "ok" or "failed")
end
local total, cancelled, first, last = 0, 0, nil, nil
local iter, cursor = client:each_schedule(cal_id)
for s, e in iter, cursor do
  check(s, e)
  total = total + 1
  if s.status == 1 then cancelled = cancelled + 1 end
  first = first or s.summary
  last = s.summary
end
say("   %d schedules (%q .. %q), %d cancelled (status 1), in %d pages of up to 1000",
  total, tostring(first), tostring(last), cancelled, math.ceil(total / 1000))
say("   saved offset %d: a later sync resumes there with schedule_cursor(cal_id, {offset = %d})",
  cursor.offset, cursor.offset)
if on_emulator then
  seed_schedules(('{"cal_id":"%s","count":3,"summary":"added later"}'):format(cal_id))
  local later = check(client:schedule_cursor(cal_id, { offset = cursor.offset }))
  local page = check(later:next_page())
  local names = {}
  for i, s in ipairs(page) do names[i] = s.summary end
  say("   later: %d new (%s); offset now %d", #page, table.concat(names, ", "), later.offset)
end

say("8. A validation error: refused before anything is sent")
local _, verr = client:calendar_add{ calendar = { summary = "bad colour", color = "red" } }
say("   %s", tostring(verr))
say("   kind %s, field %s", verr.kind, verr.field)

say("9. An API error: WeCom's answer, as an error object")
local _, aerr = client:calendar_get{ cal_id_list = { "wcNoSuchCalendar" } }
say("   %s", tostring(aerr))
say("   kind %s, errcode %s, retryable %s", aerr.kind, tostring(aerr.errcode), tostring(aerr.retryable))

say("10. The same from the command line: bin/wecom, for operators and scripts")
do
  -- each command is a process of its own, with the credentials in its environment
  local script = arg and arg[0] or "examples/demo.lua"
  local bin = (script:match("^(.*)/[^/]*$") or ".") .. "/../bin/wecom"
  local interpreter = arg and arg[-1] or "lua"
  local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
  local env = ("WECOM_BASE_URL=%s WECOM_CORPID=%s WECOM_CORPSECRET=%s"):format(q(base_url),
    q(os.getenv("WECOM_CORPID") or "wwemulator"), q(os.getenv("WECOM_CORPSECRET") or "emulator-secret"))
  local function wecom_cli(args)
    say("   $ wecom %s", args)
    local p = assert(io.popen(("env %s %s %s %s 2>&1; echo \"exit status $?\""):format(env, q(interpreter), q(bin), args)))
    for line in p:lines() do say("     %s", line) end
    p:close()
  end
  wecom_cli("calendar get " .. cal_id)
  wecom_cli("calendar share " .. cal_id .. " userid5:rw")
  wecom_cli(("schedule list %s --offset %d"):format(cal_id, total))
  wecom_cli(("occurrences %s --from 2026-11-23 --to 2026-12-13"):format(weekly.schedule_id))
  wecom_cli(("export %s -o %s"):format(cal_id, q(ics_path)))
  wecom_cli("--json calendar get wcNoSuchCalendar")
end

say("11. Delete the calendar")
check(client:calendar_del{ cal_id = cal_id })
local _, gone = client:calendar_get{ cal_id_list = { cal_id } }
say("   deleted; reading it now gives: %s", tostring(gone))

client:close()
say("")
say("done")
finish(0)
