-- wecom.ical and client:export_ical. Every calendar written here is read
-- back by parsers nobody here wrote (libical, ical.js), and the corpus of
-- spec/support/ical_corpus.lua is expanded by two independent recurrence
-- engines (ical.js's iterator; Python's recurring-ical-events on dateutil),
-- which must give exactly what recurrence.occurrences gives.
local check = require("support.ical_check")
local cjson = require("cjson")
local corpus = require("support.ical_corpus")
local emulator = require("support.emulator")
local ical = require("wecom.ical")
local recurrence = require("wecom.recurrence")

local DAY, HOUR = 86400, 3600
local at = corpus.at
local MON = at(2026, 11, 23, 10, 0)

-- Both parsers accept the text; returns ical.js's reading of it.
local function parsed(text, from, to)
  assert.is_true(check.lines_ok(text))
  local path = check.file(text)
  local ok, out = check.libical(path)
  assert.is_true(ok, out)
  local js, err = check.icaljs(path, from, to)
  os.remove(path)
  assert.is_table(js, err)
  return js
end

local function lines_of(text)
  local set = {}
  for _, l in ipairs(check.unfold(text)) do set[#set + 1] = l end
  return set
end

local function has_line(text, line)
  for _, l in ipairs(lines_of(text)) do
    if l == line then return true end
  end
  return false
end

local function vcal(list, opts)
  local text, err = ical.vcalendar(list, opts or { dtstamp = MON })
  assert.is_nil(err)
  return text
end

local function one(s, opts)
  s.schedule_id = s.schedule_id or "s1"
  s.end_time = s.end_time or s.start_time + HOUR
  return vcal({ s }, opts)
end

describe("ical.vcalendar", function()
  describe("the corpus", function()
    local schedules, path, text
    local FROM, TO = corpus.FROM, corpus.TO

    setup(function()
      schedules = corpus.schedules()
      text = vcal(schedules, { name = "corpus", dtstamp = MON })
      path = check.file(text)
    end)
    teardown(function() os.remove(path) end)

    it("has at least 40 schedules covering every case", function()
      assert.is_true(#schedules >= 40)
      local seen = {}
      for _, s in ipairs(schedules) do
        local r = s.reminders
        if r.is_repeat == 1 then seen["type " .. r.repeat_type] = true end
        if r.is_custom_repeat == 1 then seen.custom = true end
        if r.repeat_day_of_week and #r.repeat_day_of_week > 1 then seen.weekdays = true end
        if r.repeat_day_of_month and #r.repeat_day_of_month > 1 then seen.monthdays = true end
        if r.repeat_until then seen["until"] = true end
        if r.exclude_time_list then seen.excluded = true end
        if s.is_whole_day == 1 then seen.whole_day = true end
        if s.status == 1 then seen.cancelled = true end
        if r.timezone < 0 then seen.west = true end
        if r.timezone > 8 then seen.east = true end
        if os.date("!%m-%d", s.start_time + r.timezone * HOUR) == "02-29" then seen.leap = true end
      end
      for _, case in ipairs{ "type 0", "type 1", "type 2", "type 5", "type 7", "custom", "weekdays", "monthdays", "until",
        "excluded", "whole_day", "cancelled", "west", "east", "leap" } do
        assert.is_true(seen[case] or false, case)
      end
    end)

    it("passes libical: parsed, restriction-checked, no X-LIC-ERROR", function()
      local ok, out = check.libical(path)
      assert.is_true(ok, out)
      assert.truthy(out:find(("ok, %d events"):format(#schedules), 1, true), out)
      assert.is_true(check.lines_ok(text))
    end)

    -- theirs: {starts} of an engine; unix seconds, or YYYYMMDD for DATE values
    local function agree(engine, result)
      local total, wrong = 0, {}
      for _, s in ipairs(schedules) do
        local id = s.schedule_id
        local got = result.expanded[id]
        assert.is_table(got, engine .. " has no event " .. id)
        local mine = assert(recurrence.occurrences(s, FROM, TO))
        local want = {}
        for i, o in ipairs(mine) do want[i] = o.start_time end
        local rule = assert(recurrence.rule(s))
        local theirs = {}
        if s.status == 1 then
          assert.equal("CANCELLED", got.status, id)
        else
          for _, v in ipairs(got.starts) do
            local t = v
            if type(v) == "string" then -- a DATE: that day's start in the schedule's time
              local day = (at(tonumber(v:sub(1, 4)), tonumber(v:sub(5, 6)), tonumber(v:sub(7, 8)), 0, 0, 0)) / DAY
              t = day * DAY + rule.sod - rule.offset
            end
            if t >= FROM and t < TO then theirs[#theirs + 1] = math.floor(t) end
          end
          table.sort(theirs)
        end
        if table.concat(want, ",") ~= table.concat(theirs, ",") then
          wrong[#wrong + 1] = ("%s: %d occurrences here, %d there; first here %s, there %s"):format(id, #want, #theirs,
            tostring(want[1]), tostring(theirs[1]))
        end
        total = total + #want
      end
      assert.equal("", table.concat(wrong, "\n"), engine .. " disagrees")
      return total
    end

    it("expands with ical.js's iterator to exactly recurrence.occurrences", function()
      local result, err = check.icaljs(path, FROM, TO)
      assert.is_table(result, err)
      assert.equal(#schedules, result.events)
      assert.is_true(agree("ical.js", result) > 10000)
    end)

    it("expands with recurring-ical-events (dateutil) to exactly recurrence.occurrences", function()
      local result, err = check.python(path, FROM, TO)
      assert.is_table(result, err)
      assert.equal(#schedules, result.events)
      assert.is_true(agree("recurring-ical-events", result) > 10000)
    end)
  end)

  describe("maps WeCom's fields", function()
    it("repeat rules to RRULE", function()
      local function rrule(r)
        r.is_repeat = r.is_repeat or 1
        local text = one{ start_time = MON, reminders = r }
        for _, l in ipairs(lines_of(text)) do
          if l:find("^RRULE:") then return l end
        end
      end
      assert.equal("RRULE:FREQ=DAILY", rrule{ repeat_type = 0 })
      assert.equal("RRULE:FREQ=DAILY;INTERVAL=3", rrule{ repeat_type = 0, is_custom_repeat = 1, repeat_interval = 3 })
      assert.equal("RRULE:FREQ=WEEKLY;WKST=MO", rrule{ repeat_type = 1 })
      assert.equal("RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH,SU;WKST=MO",
        rrule{ repeat_type = 1, is_custom_repeat = 1, repeat_interval = 2, repeat_day_of_week = { 7, 4, 2 } })
      assert.equal("RRULE:FREQ=MONTHLY", rrule{ repeat_type = 2 })
      assert.equal("RRULE:FREQ=MONTHLY;BYMONTHDAY=1,15,31",
        rrule{ repeat_type = 2, is_custom_repeat = 1, repeat_day_of_month = { 31, 1, 15 } })
      assert.equal("RRULE:FREQ=YEARLY", rrule{ repeat_type = 5 })
      -- 29 February spelled out: ical.js would move it to 1 March in common years
      local leap = one{ start_time = at(2028, 2, 29, 9, 0), reminders = { is_repeat = 1, repeat_type = 5 } }
      assert.is_true(has_line(leap, "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"))
      assert.equal("RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;WKST=MO", rrule{ repeat_type = 7 })
      -- UNTIL in UTC for a timed schedule
      assert.equal("RRULE:FREQ=DAILY;UNTIL=20261130T020000Z", rrule{ repeat_type = 0, repeat_until = MON + 7 * DAY })
      assert.is_nil(rrule{ repeat_type = 0, is_repeat = 0 })
    end)

    it("the start to DTSTART/DTEND in a fixed-offset VTIMEZONE written before its first use", function()
      local text = vcal({
        { schedule_id = "a", start_time = MON, end_time = MON + HOUR, reminders = { timezone = 8 } },
        { schedule_id = "b", start_time = MON, end_time = MON + 2 * HOUR, reminders = { timezone = -5 } },
        { schedule_id = "c", start_time = MON, end_time = MON + HOUR, reminders = { timezone = 8 } },
      })
      local lines = lines_of(text)
      local pos = {}
      for i, l in ipairs(lines) do
        pos[l] = pos[l] or i
      end
      assert.truthy(pos["DTSTART;TZID=Etc/GMT-8:20261123T100000"])
      assert.truthy(pos["DTEND;TZID=Etc/GMT+5:20261122T230000"])
      assert.truthy(pos["TZID:Etc/GMT-8"] < pos["DTSTART;TZID=Etc/GMT-8:20261123T100000"])
      assert.truthy(pos["TZID:Etc/GMT+5"] < pos["DTSTART;TZID=Etc/GMT+5:20261122T210000"])
      assert.truthy(pos["TZOFFSETTO:-0500"])
      assert.falsy(one{ start_time = MON, end_time = MON }:find("DTEND", 1, true)) -- a moment: no DTEND
      local _, zones = text:gsub("BEGIN:VTIMEZONE", "")
      assert.equal(2, zones) -- one per offset used
      parsed(text)
    end)

    it("a series whose start is off its rule to a DTSTART on its first occurrence", function()
      local text = one{ start_time = MON, reminders = { is_repeat = 1, repeat_type = 1, is_custom_repeat = 1,
        repeat_day_of_week = { 3 } } }
      assert.is_true(has_line(text, "DTSTART;TZID=Etc/GMT-8:20261125T100000"))
    end)

    it("whole-day schedules to DATE values, with no VTIMEZONE", function()
      local midnight = at(2026, 12, 24, 0, 0, -5)
      local text = one{ start_time = midnight, end_time = midnight + 2 * DAY, is_whole_day = 1, reminders = {
        timezone = -5, is_repeat = 1, repeat_type = 5, repeat_until = at(2030, 1, 1, 0, 0, -5),
        exclude_time_list = { { start_time = at(2027, 12, 24, 0, 0, -5) } } } }
      assert.is_true(has_line(text, "DTSTART;VALUE=DATE:20261224"))
      assert.is_true(has_line(text, "DTEND;VALUE=DATE:20261226"))
      assert.is_true(has_line(text, "RRULE:FREQ=YEARLY;UNTIL=20300101"))
      assert.is_true(has_line(text, "EXDATE;VALUE=DATE:20271224"))
      assert.falsy(text:find("VTIMEZONE", 1, true))
      parsed(text)
    end)

    it("removed occurrences to EXDATE in the schedule's time", function()
      local text = one{ start_time = MON, reminders = { is_repeat = 1, repeat_type = 1, exclude_time_list = {
        { start_time = MON + 14 * DAY }, { start_time = MON + 7 * DAY }, { start_time = MON + 3 * DAY } } } }
      -- sorted; a time that starts no occurrence is left out
      assert.is_true(has_line(text, "EXDATE;TZID=Etc/GMT-8:20261130T100000,20261207T100000"))
    end)

    it("status 1 to STATUS:CANCELLED", function()
      assert.is_true(has_line(one{ start_time = MON, status = 1 }, "STATUS:CANCELLED"))
      assert.falsy(one{ start_time = MON, status = 0 }:find("STATUS", 1, true))
    end)

    it("reminders to VALARMs: remind_time_diffs when given, else remind_before_event_secs", function()
      local function with(id, reminders, extra)
        local s = { schedule_id = id, start_time = MON, end_time = MON + 1, reminders = reminders }
        for k, v in pairs(extra or {}) do s[k] = v end
        return s
      end
      local js = parsed(vcal({
        with("diffs", { is_remind = 1, remind_before_event_secs = 3600, remind_time_diffs = { -300, 0, -86400, -300 } }),
        with("before", { is_remind = 1, remind_before_event_secs = 900 }),
        with("whole-day", { is_remind = 1, remind_time_diffs = { 32400, -172800, -604800 } },
          { start_time = at(2026, 11, 23), end_time = at(2026, 11, 24), is_whole_day = 1 }),
        with("odd", { is_remind = 1, remind_time_diffs = { -90061 } }),
        with("off", { is_remind = 0, remind_before_event_secs = 900 }),
      }))
      assert.same({ "-PT5M", "PT0S", "-P1D" }, js.decoded.diffs.triggers)
      assert.same({ "-PT15M" }, js.decoded.before.triggers)
      assert.same({ "PT9H", "-P2D", "-P7D" }, js.decoded["whole-day"].triggers)
      assert.same({ "-P1DT1H1M1S" }, js.decoded.odd.triggers)
      assert.same({}, js.decoded.off.triggers)
    end)

    it("attendees to ATTENDEE with PARTSTAT and CN; organizer or the first admin to ORGANIZER", function()
      local js = parsed(vcal({
        { schedule_id = "a", start_time = MON, end_time = MON + 1, organizer = "boss", admins = { "lisi" }, attendees = {
          { userid = "u0", response_status = 0 }, { userid = "u1", response_status = 1 },
          { userid = "lisi", response_status = 2 }, { userid = "u3", response_status = 3 },
          { userid = "we:ird,name", response_status = 4 }, { userid = "u5" } } },
        { schedule_id = "b", start_time = MON, end_time = MON + 1, admins = { "lisi" }, attendees = { { userid = "lisi" } } },
        { schedule_id = "c", start_time = MON, end_time = MON + 1 },
      }))
      local a = js.decoded.a
      assert.equal("boss", a.organizer)
      local got = {}
      for i, p in ipairs(a.attendees) do got[i] = p.cn .. " " .. p.partstat .. " " .. p.role end
      assert.same({ "u0 NEEDS-ACTION REQ-PARTICIPANT", "u1 TENTATIVE REQ-PARTICIPANT", "lisi ACCEPTED CHAIR",
        "u3 ACCEPTED REQ-PARTICIPANT", "we:ird,name DECLINED REQ-PARTICIPANT", "u5 NEEDS-ACTION REQ-PARTICIPANT" }, got)
      assert.equal("urn:x-wecom:userid:we%3Aird%2Cname", a.attendees[5].address)
      assert.equal("lisi", js.decoded.b.organizer)
      assert.equal(cjson.null, js.decoded.c.organizer)
      -- a caller who knows the addresses passes them
      local text = one({ start_time = MON, attendees = { { userid = "zhangsan" } } },
        { address = function(userid) return "mailto:" .. userid .. "@example.com" end })
      assert.is_true(has_line(text,
        "ATTENDEE;CN=zhangsan;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION:mailto:zhangsan@example.com"))
    end)

    it("UID, DTSTAMP, SEQUENCE (within RFC 5545's INTEGER), SUMMARY, LOCATION, DESCRIPTION", function()
      local text = vcal({
        { schedule_id = "big", start_time = MON, end_time = MON + 1, sequence = 2 ^ 60, summary = "s", location = "l",
          description = "d" },
        { schedule_id = "negative", start_time = MON, end_time = MON + 1, sequence = -4 },
      }, { dtstamp = MON })
      for _, line in ipairs{ "UID:big", "DTSTAMP:20261123T020000Z", "SEQUENCE:2147483647", "SUMMARY:s", "LOCATION:l",
        "DESCRIPTION:d", "SEQUENCE:0" } do
        assert.is_true(has_line(text, line), line)
      end
    end)

    it("a published calendar: VERSION, PRODID, the name, no METHOD, CRLF line ends", function()
      local text = vcal({}, { name = "Team; calendar", description = "sprints", refresh_interval = 3600 })
      local lines = lines_of(text)
      assert.same({ "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:" .. ical.PRODID, "CALSCALE:GREGORIAN",
        "NAME:Team\\; calendar", "X-WR-CALNAME:Team\\; calendar", "DESCRIPTION:sprints", "X-WR-CALDESC:sprints",
        "REFRESH-INTERVAL;VALUE=DURATION:PT1H", "X-PUBLISHED-TTL:PT1H", "END:VCALENDAR" }, lines)
      assert.falsy(text:find("METHOD", 1, true))
      assert.falsy(text:gsub("\r\n", ""):find("[\r\n]"))
      parsed(text)
    end)
  end)

  describe("text", function()
    local nasty = "back\\slash, comma; semicolon\nnewline\r\nCRLF\rCR\ttab\1\0\127 end"
    local long = ("日程，会议；😀 "):rep(40)

    it("is escaped and folded so that both parsers read back exactly what was given", function()
      local js = parsed(vcal({ { schedule_id = "t", start_time = MON, end_time = MON + 1, summary = nasty,
        location = long, description = ("x"):rep(74) .. "é" .. ("y"):rep(200) } }))
      local d = js.decoded.t
      assert.equal("back\\slash, comma; semicolon\nnewline\nCRLF\nCR\ttab end", d.summary)
      assert.equal(long, d.location)
      assert.equal(("x"):rep(74) .. "é" .. ("y"):rep(200), d.description)
    end)

    it("folds at 75 octets, never inside a UTF-8 character", function()
      for n = 60, 80 do
        local text = one{ start_time = MON, summary = ("a"):rep(n) .. ("中"):rep(30) }
        assert.is_true(check.lines_ok(text))
      end
      assert.equal(ical.fold(("ab"):rep(100)), ("ab"):rep(37) .. "a\r\n " .. ("ba"):rep(37) .. "\r\n " .. ("ba"):rep(25) .. "b")
    end)

    it("turns bytes that are not UTF-8 into U+FFFD", function()
      local js = parsed(one{ start_time = MON, summary = "ok \255\254 then \228\184" })
      assert.equal("ok \239\191\189\239\191\189 then \239\191\189\239\191\189", js.decoded.s1.summary)
    end)
  end)

  describe("refuses bad input with an error naming the field, writing nothing", function()
    local function refused(field, list, opts)
      local text, err = ical.vcalendar(list, opts)
      assert.is_nil(text)
      assert.equal("validation", err.kind)
      assert.equal(field, err.field)
    end

    it("schedules and options", function()
      local good = { schedule_id = "g", start_time = MON, end_time = MON + 1 }
      refused("schedules", "all of them")
      refused("schedules[2].reminders.timezone", { good, { schedule_id = "x", start_time = MON, end_time = MON,
        reminders = { timezone = 14 } } })
      refused("schedules[1].schedule_id", { { start_time = MON, end_time = MON } })
      refused("schedules[1].summary", { { schedule_id = "x", start_time = MON, end_time = MON, summary = 5 } })
      refused("schedules[1].attendees[1].userid", { { schedule_id = "x", start_time = MON, end_time = MON, attendees = { {} } } })
      refused("schedules[1].reminders.remind_time_diffs[1]", { { schedule_id = "x", start_time = MON, end_time = MON,
        reminders = { is_remind = 1, remind_time_diffs = { "soon" } } } })
      refused("opts.bogus", { good }, { bogus = true })
      refused("opts.address", { good }, { address = "mailto:" })
      refused("opts.refresh_interval", { good }, { refresh_interval = 1 })
    end)
  end)
end)

describe("ical.writer", function()
  it("writes a VTIMEZONE in the chunk of the first event that needs it", function()
    local chunks = {}
    local w = assert(ical.writer(function(c) chunks[#chunks + 1] = c end, { dtstamp = MON }))
    assert(w:add{ schedule_id = "a", start_time = MON, end_time = MON + 1, is_whole_day = 1 })
    assert(w:flush())
    assert(w:add{ schedule_id = "b", start_time = MON, end_time = MON + 1, reminders = { timezone = 3 } })
    assert(w:flush())
    assert(w:add{ schedule_id = "c", start_time = MON, end_time = MON + 1, reminders = { timezone = 3 } })
    assert(w:finish())
    assert.equal(3, #chunks)
    assert.falsy(chunks[1]:find("VTIMEZONE", 1, true))
    local _, n = chunks[2]:gsub("BEGIN:VTIMEZONE", "")
    assert.equal(1, n)
    assert.falsy(chunks[3]:find("VTIMEZONE", 1, true))
    assert.truthy(chunks[3]:find("END:VCALENDAR\r\n$"))
    parsed(table.concat(chunks))
    assert.is_nil((w:add{ schedule_id = "d", start_time = MON, end_time = MON + 1 }))
  end)

  it("reports a failed write: false, nil plus an error, or a raise", function()
    for _, write in ipairs{
      function() return false end,
      function() return nil, "disk full" end,
      function() error("no space left") end,
    } do
      local w = assert(ical.writer(write))
      local ok, err = w:finish()
      assert.is_nil(ok)
      assert.equal("write", err.kind)
    end
  end)
end)

describe("client:export_ical", function()
  local emu, client, cal_id
  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function()
    client, cal_id = emu:fresh{ summary = "Team, releases", color = "#FF3030", description = "every release" }
  end)

  local function export(opts)
    local chunks = {}
    local res, err = client:export_ical(cal_id, function(chunk) chunks[#chunks + 1] = chunk end, opts)
    return res, err, chunks
  end

  it("writes every schedule of the calendar, page by page", function()
    local weekly = assert(client:schedule_add{ schedule = { cal_id = cal_id, summary = "weekly sync",
      start_time = MON, end_time = MON + HOUR, attendees = { { userid = "zhangsan" }, { userid = "lisi" } },
      admins = { "zhangsan" }, reminders = { is_remind = 1, remind_before_event_secs = 900, is_repeat = 1,
      repeat_type = 1, is_custom_repeat = 1, repeat_day_of_week = { 1, 3 }, timezone = 8 } } }).schedule_id
    -- move one occurrence: the series gets an EXDATE, the moved one its own event
    local moved = assert(client:schedule_update{ schedule = { schedule_id = weekly, summary = "moved",
      start_time = MON + 7 * DAY + 5 * HOUR, end_time = MON + 7 * DAY + 6 * HOUR }, op_mode = 1,
      op_start_time = MON + 7 * DAY }).schedule_id
    emu:seed(cal_id, 2345, { cancelled_every = 7 })

    local res, err, chunks = export{ limit = 1000, dtstamp = MON }
    assert.is_nil(err)
    assert.equal(2347, res.schedules)
    assert.equal(335, res.cancelled)
    assert.same({}, res.skipped)
    assert.equal(3, res.pages)
    assert.equal(2347, res.offset)
    local text = table.concat(chunks)
    assert.equal(#text, res.bytes)
    assert.equal(4, #chunks) -- one per page, then the end
    for i = 1, 3 do
      local _, events = chunks[i]:gsub("BEGIN:VEVENT", "")
      assert.is_true(events <= 1000)
    end
    local _, cancelled = text:gsub("STATUS:CANCELLED", "")
    assert.equal(335, cancelled)
    assert.is_true(has_line(text, "NAME:Team\\, releases"))
    assert.is_true(has_line(text, "EXDATE;TZID=Etc/GMT-8:20261130T100000"))
    local js = parsed(text, MON, MON + 15 * DAY)
    assert.equal(2347, js.events)
    local function within(list) -- the checker adds two days on each side
      local out = {}
      for _, t in ipairs(list) do
        if t >= MON and t < MON + 15 * DAY then out[#out + 1] = t end
      end
      return out
    end
    assert.same({ MON, MON + 2 * DAY, MON + 9 * DAY, MON + 14 * DAY }, within(js.expanded[weekly].starts))
    assert.same({ MON + 7 * DAY + 5 * HOUR }, within(js.expanded[moved].starts))
    assert.equal("zhangsan", js.decoded[weekly].organizer)
    assert.same({ "-PT15M" }, js.decoded[weekly].triggers)
  end)

  it("leaves cancelled schedules out with include_cancelled = false", function()
    emu:seed(cal_id, 70, { cancelled_every = 7 })
    local res, _, chunks = export{ include_cancelled = false, name = "mine" }
    assert.equal(60, res.schedules)
    assert.equal(0, res.cancelled)
    local text = table.concat(chunks)
    assert.falsy(text:find("CANCELLED", 1, true))
    assert.is_true(has_line(text, "NAME:mine"))
  end)

  it("keeps about one page in memory: each chunk holds one page", function()
    emu:seed(cal_id, 1000)
    local res, _, chunks = export{ limit = 100 }
    assert.equal(10, res.pages)
    assert.equal(11, #chunks)
    for i = 1, 10 do
      local _, events = chunks[i]:gsub("BEGIN:VEVENT", "")
      assert.equal(100, events)
    end
  end)

  it("an empty calendar is a valid empty VCALENDAR", function()
    local res, _, chunks = export()
    assert.equal(0, res.schedules)
    local js = parsed(table.concat(chunks))
    assert.equal(0, js.events)
  end)

  it("skips, and reports, a schedule whose rule never occurs", function()
    local id = assert(client:schedule_add{ schedule = { cal_id = cal_id, start_time = at(2027, 2, 3, 9, 0),
      end_time = at(2027, 2, 3, 10, 0), reminders = { is_repeat = 1, repeat_type = 2, is_custom_repeat = 1,
      repeat_interval = 12, repeat_day_of_month = { 31 } } } }).schedule_id
    emu:seed(cal_id, 3)
    local res, _, chunks = export()
    assert.equal(3, res.schedules)
    assert.equal(1, #res.skipped)
    assert.equal(id, res.skipped[1].schedule_id)
    assert.equal("schedule.reminders.repeat_day_of_month", res.skipped[1].err.field)
    parsed(table.concat(chunks))
  end)

  it("stops at a failed write, asking for no more pages", function()
    emu:seed(cal_id, 300)
    local before = emu:calls("oa/schedule/get_by_calendar")
    local res, err = client:export_ical(cal_id, function() return nil, "disk full" end, { limit = 100 })
    assert.is_nil(res)
    assert.equal("write", err.kind)
    assert.truthy(tostring(err):find("disk full", 1, true))
    assert.equal(1, emu:calls("oa/schedule/get_by_calendar") - before)
  end)

  it("returns WeCom's errors and refuses bad arguments before any call", function()
    local res, err = client:export_ical("no-such-calendar", function() end)
    assert.is_nil(res)
    assert.equal(90457, err.errcode)
    emu:seed(cal_id, 5)
    emu:fault{ path = "oa/schedule/get_by_calendar", errcode = 48002, times = 1 }
    res, err = client:export_ical(cal_id, function() end)
    assert.is_nil(res)
    assert.equal(48002, err.errcode)
    local before = emu:stats().calls
    for _, case in ipairs{
      { "cal_id", nil, function() end },
      { "write", cal_id, "file.ics" },
      { "opts.limit", cal_id, function() end, { limit = 5000 } },
      { "opts.include_cancelled", cal_id, function() end, { include_cancelled = "no" } },
      { "opts.name", cal_id, function() end, { name = 7 } },
    } do
      res, err = client:export_ical(case[2], case[3], case[4])
      assert.is_nil(res)
      assert.equal("validation", err.kind)
      assert.equal(case[1], err.field)
    end
    assert.same(before, emu:stats().calls)
  end)
end)
