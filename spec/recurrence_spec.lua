-- wecom.recurrence: WeCom's repeat fields to occurrences. Expected dates are
-- written out by hand (a calendar at hand) and printed with os.date, not
-- with the module's own date arithmetic.
local cjson = require("cjson")
local emulator = require("support.emulator")
local recurrence = require("wecom.recurrence")

local DAY, HOUR = 86400, 3600

-- Unix seconds of a local time at a fixed offset, by counting days (an
-- independent route: no shared code with the module).
local function at(y, m, d, hh, mm, tz)
  local days = 0
  local function leap(x) return x % 4 == 0 and (x % 100 ~= 0 or x % 400 == 0) end
  for yy = 1970, y - 1 do days = days + (leap(yy) and 366 or 365) end
  local lengths = { 31, leap(y) and 29 or 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
  for mo = 1, m - 1 do days = days + lengths[mo] end
  days = days + d - 1
  return days * DAY + (hh or 0) * HOUR + (mm or 0) * 60 - (tz or 8) * HOUR
end

-- The occurrences as local "Mon 2026-11-23 10:00" strings.
local function local_times(list, tz)
  local out = {}
  for i, o in ipairs(list) do out[i] = os.date("!%a %Y-%m-%d %H:%M", o.start_time + (tz or 8) * HOUR) end
  return out
end

local function repeating(start, reminders, extra)
  reminders.is_repeat = 1
  local s = { start_time = start, end_time = start + HOUR, reminders = reminders }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local function expand(s, from, to, tz)
  local list, err = recurrence.occurrences(s, from, to)
  assert.is_nil(err)
  return local_times(list, tz or (s.reminders and s.reminders.timezone))
end

describe("recurrence.occurrences", function()
  local MON = at(2026, 11, 23, 10, 0) -- Mon 2026-11-23 10:00 +08:00

  it("gives a single schedule once, when it starts in [from, to)", function()
    local s = { start_time = MON, end_time = MON + HOUR }
    assert.same({ { start_time = MON, end_time = MON + HOUR } }, recurrence.occurrences(s, MON, MON + 1))
    assert.same({}, recurrence.occurrences(s, MON + 1, MON + DAY))
    assert.same({}, recurrence.occurrences(s, MON - DAY, MON)) -- `to` is not included
    s.reminders = { is_repeat = 0, repeat_type = 3 } -- repeat fields of a single schedule don't matter
    assert.equal(1, #recurrence.occurrences(s, MON, MON + 1))
  end)

  it("repeats daily, keeping the duration, in order", function()
    local s = repeating(MON, { repeat_type = 0 })
    s.end_time = MON + 90 * 60
    local list = recurrence.occurrences(s, MON, MON + 3 * DAY)
    assert.same({ "Mon 2026-11-23 10:00", "Tue 2026-11-24 10:00", "Wed 2026-11-25 10:00" }, local_times(list))
    for _, o in ipairs(list) do assert.equal(90 * 60, o.end_time - o.start_time) end
    if math.type then assert.equal("integer", math.type(list[3].start_time)) end
  end)

  it("counts a custom interval from the start, however far away the window is", function()
    local start = at(2001, 3, 7, 9, 30)
    local s = repeating(start, { repeat_type = 0, is_custom_repeat = 1, repeat_interval = 3 })
    local from, to = at(2030, 1, 1), at(2030, 1, 11)
    local expected = {}
    for t = start, to, 3 * DAY do
      if t >= from and t < to then expected[#expected + 1] = os.date("!%a %Y-%m-%d %H:%M", t + 8 * HOUR) end
    end
    assert.is_true(#expected >= 3)
    assert.same(expected, expand(s, from, to))
  end)

  it("repeats weekly on the start's weekday, or on several weekdays every N weeks", function()
    assert.same({ "Mon 2026-11-23 10:00", "Mon 2026-11-30 10:00", "Mon 2026-12-07 10:00" },
      expand(repeating(MON, { repeat_type = 1 }), MON, MON + 15 * DAY))
    -- starting on a Monday that is not on its own rule: the series begins on the Tuesday
    assert.same({ "Tue 2026-11-24 10:00", "Thu 2026-11-26 10:00", "Tue 2026-12-08 10:00", "Thu 2026-12-10 10:00" },
      expand(repeating(MON, { repeat_type = 1, is_custom_repeat = 1, repeat_interval = 2, repeat_day_of_week = { 4, 2 } }),
        MON, MON + 18 * DAY))
  end)

  it("counts weeks from Monday: a Sunday start belongs to the week before", function()
    local sun = at(2026, 11, 29, 10, 0)
    assert.same({ "Sun 2026-11-29 10:00", "Mon 2026-12-07 10:00", "Sun 2026-12-13 10:00", "Mon 2026-12-21 10:00",
      "Sun 2026-12-27 10:00" },
      expand(repeating(sun, { repeat_type = 1, is_custom_repeat = 1, repeat_interval = 2, repeat_day_of_week = { 7, 1 } }),
        sun, at(2027, 1, 1)))
  end)

  it("skips months without the day: monthly on the 31st", function()
    local s = repeating(at(2027, 1, 31, 8, 0), { repeat_type = 2 })
    assert.same({ "Sun 2027-01-31 08:00", "Wed 2027-03-31 08:00", "Mon 2027-05-31 08:00", "Sat 2027-07-31 08:00",
      "Tue 2027-08-31 08:00", "Sun 2027-10-31 08:00", "Fri 2027-12-31 08:00" },
      expand(s, at(2027, 1, 1), at(2028, 1, 1)))
  end)

  it("repeats on several days of the month every N months", function()
    local s = repeating(at(2027, 1, 10, 8, 0),
      { repeat_type = 2, is_custom_repeat = 1, repeat_interval = 2, repeat_day_of_month = { 31, 1, 15 } })
    assert.same({ "Fri 2027-01-15 08:00", "Sun 2027-01-31 08:00", "Mon 2027-03-01 08:00", "Mon 2027-03-15 08:00",
      "Wed 2027-03-31 08:00", "Sat 2027-05-01 08:00", "Sat 2027-05-15 08:00", "Mon 2027-05-31 08:00" },
      expand(s, at(2027, 1, 1), at(2027, 6, 1)))
    -- 29, 30 and 31: February has none of them in a common year, one in a leap year
    s = repeating(at(2027, 1, 29, 8, 0), { repeat_type = 2, is_custom_repeat = 1, repeat_day_of_month = { 29, 30, 31 } })
    assert.same({ "Fri 2027-01-29 08:00", "Sat 2027-01-30 08:00", "Sun 2027-01-31 08:00", "Mon 2027-03-29 08:00" },
      expand(s, at(2027, 1, 1), at(2027, 3, 30)))
    assert.same({ "Tue 2028-02-29 08:00" }, expand(s, at(2028, 2, 1), at(2028, 3, 1)))
  end)

  it("repeats yearly; on 29 February only in leap years (2100 is not one)", function()
    assert.same({ "Mon 2026-11-23 10:00", "Tue 2027-11-23 10:00" },
      expand(repeating(MON, { repeat_type = 5 }), MON, at(2028, 1, 1)))
    local s = repeating(at(2024, 2, 29, 9, 0), { repeat_type = 5 })
    assert.same({ "Thu 2024-02-29 09:00", "Tue 2028-02-29 09:00", "Sun 2032-02-29 09:00" },
      expand(s, at(2024, 1, 1), at(2035, 1, 1)))
    s = repeating(at(2096, 2, 29, 9, 0), { repeat_type = 5 })
    assert.same({ "Wed 2096-02-29 09:00", "Fri 2104-02-29 09:00" }, expand(s, at(2096, 1, 1), at(2105, 1, 1)))
    -- every 3 years: 2027, 2030 and 2033 have no 29 February
    s = repeating(at(2024, 2, 29, 9, 0), { repeat_type = 5, is_custom_repeat = 1, repeat_interval = 3 })
    assert.same({ "Thu 2024-02-29 09:00", "Fri 2036-02-29 09:00" }, expand(s, at(2024, 1, 1), at(2037, 1, 1)))
  end)

  it("repeats on workdays, from the first workday on or after the start", function()
    local sat = at(2026, 11, 28, 9, 0)
    assert.same({ "Mon 2026-11-30 09:00", "Tue 2026-12-01 09:00", "Wed 2026-12-02 09:00", "Thu 2026-12-03 09:00",
      "Fri 2026-12-04 09:00", "Mon 2026-12-07 09:00" },
      expand(repeating(sat, { repeat_type = 7 }), sat, at(2026, 12, 8)))
  end)

  it("includes an occurrence starting exactly at repeat_until", function()
    local s = repeating(MON, { repeat_type = 0, repeat_until = MON + 2 * DAY })
    assert.equal(3, #recurrence.occurrences(s, MON, MON + 30 * DAY))
    s.reminders.repeat_until = MON + 2 * DAY - 1
    assert.equal(2, #recurrence.occurrences(s, MON, MON + 30 * DAY))
    s.reminders.repeat_until = 0 -- 0: forever
    assert.equal(30, #recurrence.occurrences(s, MON, MON + 30 * DAY))
  end)

  it("counts weekdays and month days in the schedule's own timezone", function()
    -- Monday 22:00 at -05:00 is Tuesday 03:00 UTC
    local start = at(2026, 11, 23, 22, 0, -5)
    assert.equal("Tue", os.date("!%a", start))
    local s = repeating(start, { timezone = -5, repeat_type = 1, is_custom_repeat = 1, repeat_day_of_week = { 1, 3 } })
    assert.same({ "Mon 2026-11-23 22:00", "Wed 2026-11-25 22:00", "Mon 2026-11-30 22:00" },
      expand(s, start, start + 8 * DAY))
    -- the 1st at 00:30 at +12:00 is the last day of the month before in UTC
    start = at(2027, 1, 1, 0, 30, 12)
    assert.equal("2026-12-31", os.date("!%Y-%m-%d", start))
    s = repeating(start, { timezone = 12, repeat_type = 2 })
    assert.same({ "Fri 2027-01-01 00:30", "Mon 2027-02-01 00:30", "Mon 2027-03-01 00:30" },
      expand(s, start, start + 60 * DAY))
    -- the 31st at 23:00 at -12:00 is the 1st of the next month in UTC, and still skips 30-day months
    start = at(2027, 1, 31, 23, 0, -12)
    assert.equal("2027-02-01", os.date("!%Y-%m-%d", start))
    s = repeating(start, { timezone = -12, repeat_type = 2 })
    assert.same({ "Sun 2027-01-31 23:00", "Wed 2027-03-31 23:00", "Mon 2027-05-31 23:00" },
      expand(s, start, at(2027, 7, 1, 0, 0, -12)))
  end)

  it("leaves out removed occurrences (exclude_time_list)", function()
    local s = repeating(MON, { repeat_type = 1, exclude_time_list = {
      { start_time = MON + 7 * DAY }, { start_time = MON + 14 * DAY + 60 }, -- not the start of one: no effect
    } })
    assert.same({ "Mon 2026-11-23 10:00", "Mon 2026-12-07 10:00", "Mon 2026-12-14 10:00" },
      expand(s, MON, MON + 22 * DAY))
  end)

  it("removes a whole-day occurrence by its date", function()
    local midnight = at(2026, 11, 23, 0, 0)
    local s = repeating(midnight, { repeat_type = 0, exclude_time_list = { { start_time = midnight + DAY + 10 * HOUR } } },
      { is_whole_day = 1, end_time = midnight + DAY })
    assert.same({ "Mon 2026-11-23 00:00", "Wed 2026-11-25 00:00" }, expand(s, midnight, midnight + 3 * DAY))
  end)

  it("gives nothing for a cancelled schedule (status 1)", function()
    assert.same({}, recurrence.occurrences(repeating(MON, { repeat_type = 0 }, { status = 1 }), MON, MON + 9 * DAY))
    assert.same({}, recurrence.occurrences({ start_time = MON, end_time = MON + 1, status = 1 }, MON, MON + 9))
  end)

  it("takes JSON nulls as absent fields", function()
    local s = repeating(MON, { repeat_type = 1, repeat_until = cjson.null, timezone = cjson.null,
      exclude_time_list = cjson.null, repeat_day_of_week = cjson.null }, { status = cjson.null })
    assert.equal(2, #recurrence.occurrences(s, MON, MON + 8 * DAY))
  end)

  it("goes straight to the window: a window 5000 years on costs what a near one does", function()
    local s = repeating(at(1971, 1, 4, 9, 0), { repeat_type = 1, is_custom_repeat = 1, repeat_day_of_week = { 1, 5 } })
    local far_from = at(7000, 1, 1)
    local list = recurrence.occurrences(s, far_from, far_from + 14 * DAY)
    assert.equal(4, #list)
    for _, o in ipairs(list) do assert.truthy(({ Mon = true, Fri = true })[os.date("!%a", o.start_time + 8 * HOUR)]) end
    local clock = os.clock
    local function time(from)
      local t0 = clock()
      for _ = 1, 300 do recurrence.occurrences(s, from, from + 14 * DAY) end
      return clock() - t0
    end
    local near, far = time(at(1971, 2, 1)), time(far_from)
    -- walking from 1971 would make the far window thousands of times slower
    assert.is_true(far < near * 5 + 0.05, ("near %.3f s, far %.3f s"):format(near, far))
  end)

  it("expands the longest window it accepts (100 years, daily) at once", function()
    local s = repeating(at(2000, 1, 1, 9, 0), { repeat_type = 0 })
    local list = recurrence.occurrences(s, at(2000, 1, 1), at(2100, 1, 1))
    assert.equal(36525, #list)
  end)

  describe("refuses bad input with an error naming the field, never a raise", function()
    local function refused(field, s, from, to)
      local list, err = recurrence.occurrences(s, from or MON, to or MON + DAY)
      assert.is_nil(list)
      assert.equal("validation", err.kind)
      assert.equal(field, err.field)
      assert.truthy(tostring(err):find("recurrence.occurrences: " .. field, 1, true), tostring(err))
      return err
    end
    local function with(reminders) return repeating(MON, reminders) end

    it("the schedule and its times", function()
      refused("schedule", "weekly")
      refused("schedule.start_time", { end_time = MON })
      refused("schedule.end_time", { start_time = MON, end_time = MON - 1 })
      refused("schedule.is_whole_day", { start_time = MON, end_time = MON, is_whole_day = 2 })
      refused("schedule.reminders", { start_time = MON, end_time = MON, reminders = "daily" })
    end)

    it("nonsense rules", function()
      refused("schedule.reminders.is_repeat", { start_time = MON, end_time = MON, reminders = { is_repeat = true } })
      refused("schedule.reminders.repeat_type", with{ repeat_type = 3 })
      refused("schedule.reminders.repeat_interval", with{ repeat_type = 0, is_custom_repeat = 1, repeat_interval = -2 })
      refused("schedule.reminders.repeat_interval", with{ repeat_type = 0, is_custom_repeat = 1, repeat_interval = 1.5 })
      refused("schedule.reminders.repeat_day_of_week[2]",
        with{ repeat_type = 1, is_custom_repeat = 1, repeat_day_of_week = { 1, 8 } })
      refused("schedule.reminders.repeat_day_of_month[1]",
        with{ repeat_type = 2, is_custom_repeat = 1, repeat_day_of_month = { 0 } })
      refused("schedule.reminders.timezone", with{ repeat_type = 0, timezone = 13 })
      refused("schedule.reminders.timezone", with{ repeat_type = 0, timezone = 5.5 })
      refused("schedule.reminders.repeat_until", with{ repeat_type = 0, repeat_until = "soon" })
      refused("schedule.reminders.exclude_time_list[1]", with{ repeat_type = 0, exclude_time_list = { 5 } })
      -- every 12 months on the 30th and 31st, from February: never
      local err = refused("schedule.reminders.repeat_day_of_month", repeating(at(2027, 2, 3, 9, 0),
        { repeat_type = 2, is_custom_repeat = 1, repeat_interval = 12, repeat_day_of_month = { 30, 31 } }))
      assert.truthy(tostring(err):find("never", 1, true))
    end)

    it("the window", function()
      local s = with{ repeat_type = 0 }
      refused("from", s, "today", MON)
      refused("from", s, MON + 0.5, MON + DAY)
      refused("to", s, MON, "tomorrow")
      refused("to", s, MON, MON - 1)
      refused("to", s, MON, MON + 101 * 366 * DAY)
      assert.same({}, recurrence.occurrences(s, MON, MON)) -- an empty window is fine
    end)

    it("any table at all: a list or an error, at once", function()
      local values = { 0, 1, 2, 5, 7, -1, 31, 8, 1e300, -1e300, 0 / 0, 1.5, "1", true, {}, { 1, 2 }, { 40 }, cjson.null }
      local keys = { "start_time", "end_time", "is_whole_day", "status" }
      local rkeys = { "is_repeat", "repeat_type", "is_custom_repeat", "repeat_interval", "repeat_day_of_week",
        "repeat_day_of_month", "repeat_until", "timezone", "exclude_time_list" }
      local seed = 12345
      local function pick(list)
        seed = seed * 16807 % 2147483647 -- exact in doubles: the same on every Lua
        return list[seed % #list + 1]
      end
      local t0 = os.clock()
      for _ = 1, 3000 do
        local s = { start_time = MON, end_time = MON + HOUR, reminders = { is_repeat = 1 } }
        for _ = 1, 3 do s[pick(keys)] = pick(values) end
        for _ = 1, 4 do s.reminders[pick(rkeys)] = pick(values) end
        local ok, list, err = pcall(recurrence.occurrences, s, MON, MON + 400 * DAY)
        assert.is_true(ok, list)
        assert.is_true(type(list) == "table" or err.kind == "validation")
      end
      assert.is_true(os.clock() - t0 < 30)
    end)
  end)
end)

describe("recurrence.is_occurrence", function()
  local MON = at(2026, 11, 23, 10, 0)

  it("says whether a time starts an occurrence", function()
    local s = repeating(MON, { repeat_type = 1, is_custom_repeat = 1, repeat_day_of_week = { 2 },
      exclude_time_list = { { start_time = MON + 8 * DAY } } })
    assert.is_false(recurrence.is_occurrence(s, MON)) -- the start is off its rule
    assert.is_true(recurrence.is_occurrence(s, MON + DAY))
    assert.is_false(recurrence.is_occurrence(s, MON + DAY + 1))
    assert.is_false(recurrence.is_occurrence(s, MON + 8 * DAY)) -- removed
    assert.is_true(recurrence.is_occurrence(s, MON + 15 * DAY))
    local ok, err = recurrence.is_occurrence(s, "Tuesday")
    assert.is_nil(ok)
    assert.equal("t", err.field)
  end)
end)

-- The emulator's op_mode 1 and 2 ask wecom.recurrence which times start an
-- occurrence: the rules above hold there too.
describe("the emulator's op_mode checks", function()
  local emu, client, cal_id
  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() client, cal_id = emu:fresh{ summary = "recurring", color = "#000000" } end)

  local function add(start, reminders)
    reminders.is_repeat = 1
    return assert(client:schedule_add{ schedule = { cal_id = cal_id, summary = "r", start_time = start,
      end_time = start + HOUR, reminders = reminders } }).schedule_id
  end

  local function delete_one(id, t)
    return client:schedule_del{ schedule_id = id, op_mode = 1, op_start_time = t }
  end

  it("accepts only the occurrences of a monthly repeat on the 31st, in the schedule's timezone", function()
    local start = at(2027, 1, 31, 23, 0, -5)
    local id = add(start, { repeat_type = 2, timezone = -5 })
    local _, err = delete_one(id, at(2027, 2, 28, 23, 0, -5))
    assert.equal(90482, err.errcode)
    assert.truthy(delete_one(id, at(2027, 3, 31, 23, 0, -5)))
    local s = assert(client:schedules{ id })[1]
    assert.same({ "Sun 2027-01-31 23:00", "Mon 2027-05-31 23:00" },
      local_times(recurrence.occurrences(s, start, at(2027, 6, 1, 0, 0, -5)), -5))
  end)

  it("refuses a start that is off its own rule, like occurrences() does", function()
    local mon = at(2026, 11, 23, 10, 0)
    local id = add(mon, { repeat_type = 1, is_custom_repeat = 1, repeat_day_of_week = { 2, 4 } })
    local _, err = delete_one(id, mon)
    assert.equal(90482, err.errcode)
    assert.truthy(delete_one(id, mon + 3 * DAY))
    local s = assert(client:schedules{ id })[1]
    assert.same({ "Tue 2026-11-24 10:00", "Tue 2026-12-01 10:00" }, local_times(recurrence.occurrences(s, mon, mon + 9 * DAY)))
  end)
end)
