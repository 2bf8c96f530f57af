"""dateutil's rrule on the RRULEs wecom.ical exported: the same rules as
bench/occurrences.lua, expanded over the same window by Debian's
python3-dateutil. Prints "occurrences seconds" for PASSES passes; the rules
are built before the clock starts (dateutil's advantage: occurrences() checks
and compiles WeCom's fields on every call).
    /usr/bin/python3 rrule_dateutil.py ICS FROM TO PASSES OFFSETS
OFFSETS: lines "UID HOURS", the timezone of each whole-day schedule, whose
DATE values start at that offset's midnight (as occurrences() counts them)."""
import datetime
import sys
import time

import icalendar
from dateutil import rrule


def as_datetime(v, tz):
    if isinstance(v, datetime.datetime):
        return v
    return datetime.datetime(v.year, v.month, v.day, tzinfo=tz)


def rules(path, offsets):
    with open(path, "rb") as f:
        cal = icalendar.Calendar.from_ical(f.read())
    out = []
    for ev in cal.walk("VEVENT"):
        if str(ev.get("STATUS", "")) == "CANCELLED":
            continue
        hours = offsets.get(str(ev["UID"]), 0)
        tz = datetime.timezone(datetime.timedelta(hours=hours))
        start = as_datetime(ev["DTSTART"].dt, tz)
        rs = rrule.rruleset()
        if "RRULE" in ev:
            text = ev["RRULE"].to_ical().decode()
            if not isinstance(ev["DTSTART"].dt, datetime.datetime):
                # a DATE rule: UNTIL as the end of that day at the schedule's offset
                parts = []
                for p in text.split(";"):
                    if p.startswith("UNTIL="):
                        d = datetime.datetime.strptime(p[6:], "%Y%m%d").replace(tzinfo=tz)
                        end = (d + datetime.timedelta(days=1, seconds=-1)).astimezone(datetime.timezone.utc)
                        p = "UNTIL=" + end.strftime("%Y%m%dT%H%M%SZ")
                    parts.append(p)
                text = ";".join(parts)
            rs.rrule(rrule.rrulestr(text, dtstart=start))
        else:
            rs.rdate(start)
        exdates = ev.get("EXDATE")
        if exdates is not None:
            for group in exdates if isinstance(exdates, list) else [exdates]:
                for d in group.dts:
                    rs.exdate(as_datetime(d.dt, tz))
        out.append(rs)
    return out


def main():
    path, start, end, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    offsets = {}
    with open(sys.argv[5]) as f:
        for line in f:
            uid, hours = line.split()
            offsets[uid] = int(hours)
    utc = datetime.timezone.utc
    a = datetime.datetime.fromtimestamp(start, utc)
    b = datetime.datetime.fromtimestamp(end - 1, utc)  # between(inc=True) is [a, b]: to is excluded
    sets = rules(path, offsets)
    n = 0
    t0 = time.perf_counter()
    for _ in range(passes):
        for rs in sets:
            n += len(rs.between(a, b, inc=True))
    print(n, "%.4f" % (time.perf_counter() - t0))


main()
