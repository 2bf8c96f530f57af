"""Debian's python3-recurring-ical-events (on icalendar and dateutil), run
with /usr/bin/python3, expands what wecom.ical wrote:
    /usr/bin/python3 expand.py FILE FROM TO
Prints one JSON object like icaljs.mjs does:
    {"events": N, "expanded": {"<UID>": {"status": ..., "starts": [...]}}}
with unix seconds for DATE-TIME starts and "YYYYMMDD" for DATE ones, in
[FROM - 2 days, TO + 2 days): the spec narrows them."""
import datetime
import json
import sys

import icalendar
import recurring_ical_events

MARGIN = 2 * 86400


def main():
    path, start, end = sys.argv[1], int(sys.argv[2]) - MARGIN, int(sys.argv[3]) + MARGIN
    with open(path, "rb") as f:
        cal = icalendar.Calendar.from_ical(f.read())
    utc = datetime.timezone.utc
    window = (datetime.datetime.fromtimestamp(start, utc), datetime.datetime.fromtimestamp(end, utc))
    out = {"events": 0, "expanded": {}}
    for event in cal.walk("VEVENT"):
        out["events"] += 1
        out["expanded"][str(event["UID"])] = {
            "status": str(event["STATUS"]) if "STATUS" in event else None, "starts": []}
    for occurrence in recurring_ical_events.of(cal).between(*window):
        dt = occurrence["DTSTART"].dt
        if isinstance(dt, datetime.datetime):
            if dt.tzinfo is None:
                raise SystemExit("a floating DATE-TIME: the timezone was lost")
            t = int(dt.timestamp())
            if not start <= t < end:
                continue
            value = t
        else:
            t = int(datetime.datetime(dt.year, dt.month, dt.day, tzinfo=utc).timestamp())
            if not start <= t < end:
                continue
            value = dt.strftime("%Y%m%d")
        out["expanded"][str(occurrence["UID"])]["starts"].append(value)
    for e in out["expanded"].values():
        e["starts"].sort(key=lambda v: (str(type(v)), v))
    print(json.dumps(out))


main()
