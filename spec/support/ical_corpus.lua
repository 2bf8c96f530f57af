-- Schedules, as the API returns them, covering every repeat case: the corpus
-- the iCalendar specs export and have independent engines expand, and that
-- bench/run.lua expands against dateutil. M.schedules() gives a fresh copy;
-- M.FROM and M.TO are the window the expansions are compared in.
local M = {}

local DAY, HOUR = 86400, 3600

-- Unix seconds of a local time at a fixed offset (hours).
local function at(y, m, d, hh, mm, tz)
  local function leap(x) return x % 4 == 0 and (x % 100 ~= 0 or x % 400 == 0) end
  local days = 0
  for yy = 1970, y - 1 do days = days + (leap(yy) and 366 or 365) end
  local lengths = { 31, leap(y) and 29 or 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
  for mo = 1, m - 1 do days = days + lengths[mo] end
  return (days + d - 1) * DAY + (hh or 0) * HOUR + (mm or 0) * 60 - (tz or 8) * HOUR
end
M.at = at

M.FROM = at(2026, 1, 1, 0, 0, 0)
M.TO = at(2031, 1, 1, 0, 0, 0)

local function schedule(id, start, duration, reminders, extra)
  local s = {
    schedule_id = id, summary = id, start_time = start, end_time = start + duration, is_whole_day = 0,
    status = 0, sequence = 1, attendees = {}, admins = {},
    reminders = reminders or {},
  }
  s.reminders.timezone = s.reminders.timezone or 8
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local function rep(t)
  t.is_repeat = 1
  return t
end

local function custom(t)
  t.is_repeat, t.is_custom_repeat = 1, 1
  return t
end

local MON = at(2026, 11, 23, 10, 0)
local function whole_day(y, m, d, tz, days)
  return at(y, m, d, 0, 0, tz), (days or 1) * DAY
end

local function fixed()
  local list = {
    schedule("once", MON, HOUR),
    schedule("once-outside-window", at(2035, 5, 1, 9, 0), HOUR),
    schedule("daily", MON, HOUR, rep{ repeat_type = 0 }),
    schedule("daily-every-3-since-2001", at(2001, 3, 7, 9, 30), HOUR, custom{ repeat_type = 0, repeat_interval = 3 }),
    schedule("daily-until-exact", MON, HOUR, rep{ repeat_type = 0, repeat_until = MON + 20 * DAY }),
    schedule("daily-until-between", MON, HOUR, rep{ repeat_type = 0, repeat_until = MON + 20 * DAY - 1 }),
    schedule("daily-excluded-first-and-more", MON, HOUR, rep{ repeat_type = 0, exclude_time_list = {
      { start_time = MON }, { start_time = MON + 2 * DAY }, { start_time = MON + 400 * DAY } } }),
    schedule("weekly", MON, HOUR, rep{ repeat_type = 1 }),
    schedule("weekly-every-2-tue-thu-from-monday", MON, HOUR,
      custom{ repeat_type = 1, repeat_interval = 2, repeat_day_of_week = { 2, 4 } }),
    schedule("weekly-every-3-mon-sun-from-sunday", at(2026, 11, 29, 7, 45), 2 * HOUR,
      custom{ repeat_type = 1, repeat_interval = 3, repeat_day_of_week = { 7, 1 } }),
    schedule("weekly-every-day", MON, HOUR, custom{ repeat_type = 1, repeat_day_of_week = { 1, 2, 3, 4, 5, 6, 7 } }),
    schedule("weekly-weekends-every-2-at-minus-12", at(2026, 3, 7, 23, 0, -12), HOUR,
      custom{ repeat_type = 1, repeat_interval = 2, repeat_day_of_week = { 6, 7 }, timezone = -12 }),
    schedule("weekly-monday-1am-at-plus-12", at(2026, 2, 2, 1, 0, 12), HOUR,
      custom{ repeat_type = 1, repeat_day_of_week = { 1 }, timezone = 12 }),
    schedule("weekly-every-4-tue-fri-since-2001", at(2001, 1, 2, 18, 0), HOUR,
      custom{ repeat_type = 1, repeat_interval = 4, repeat_day_of_week = { 2, 5 } }),
    schedule("weekly-until-exact-custom", MON, HOUR,
      custom{ repeat_type = 1, repeat_day_of_week = { 1, 3 }, repeat_until = MON + 16 * DAY }),
    schedule("monthly-31st", at(2027, 1, 31, 8, 0), HOUR, rep{ repeat_type = 2 }),
    schedule("monthly-29th", at(2027, 1, 29, 8, 0), HOUR, rep{ repeat_type = 2 }),
    schedule("monthly-29-30-31", at(2027, 1, 29, 8, 0), HOUR, custom{ repeat_type = 2, repeat_day_of_month = { 29, 30, 31 } }),
    schedule("monthly-every-2-1st-15th-31st", at(2027, 1, 10, 8, 0), HOUR,
      custom{ repeat_type = 2, repeat_interval = 2, repeat_day_of_month = { 31, 1, 15 } }),
    schedule("monthly-every-12-31st-from-january", at(2026, 1, 31, 8, 0), HOUR,
      custom{ repeat_type = 2, repeat_interval = 12, repeat_day_of_month = { 31 } }),
    schedule("monthly-every-5-30th", at(2026, 1, 30, 20, 0), HOUR,
      custom{ repeat_type = 2, repeat_interval = 5, repeat_day_of_month = { 30 } }),
    schedule("monthly-1st-31st-at-minus-5", at(2026, 1, 1, 21, 0, -5), HOUR,
      custom{ repeat_type = 2, repeat_day_of_month = { 1, 31 }, timezone = -5 }),
    schedule("monthly-31st-23h-at-minus-12", at(2027, 1, 31, 23, 0, -12), HOUR, rep{ repeat_type = 2, timezone = -12 }),
    schedule("yearly", MON, HOUR, rep{ repeat_type = 5 }),
    schedule("yearly-29-february", at(2024, 2, 29, 9, 0), HOUR, rep{ repeat_type = 5 }),
    schedule("yearly-every-2", at(2026, 6, 15, 9, 0), HOUR, custom{ repeat_type = 5, repeat_interval = 2 }),
    schedule("yearly-29-february-every-3", at(2024, 2, 29, 9, 0), HOUR, custom{ repeat_type = 5, repeat_interval = 3 }),
    schedule("workdays", MON, HOUR, rep{ repeat_type = 7 }),
    schedule("workdays-from-saturday", at(2026, 11, 28, 9, 0), HOUR, rep{ repeat_type = 7 }),
    schedule("workdays-until-with-removed", MON, HOUR, rep{ repeat_type = 7, repeat_until = MON + 30 * DAY,
      exclude_time_list = { { start_time = MON + DAY }, { start_time = MON + 9 * DAY } } }),
    schedule("workdays-ignoring-custom-fields", MON, HOUR,
      custom{ repeat_type = 7, repeat_interval = 3, repeat_day_of_week = { 6 } }),
    schedule("timezone-0", at(2026, 4, 1, 0, 0, 0), 30 * 60, rep{ repeat_type = 1, timezone = 0 }),
    schedule("daily-every-7-at-23-59-59", at(2026, 5, 5, 23, 59) + 59, 1, custom{ repeat_type = 0, repeat_interval = 7 }),
    schedule("weekly-midnight-at-minus-12", at(2026, 5, 4, 0, 0, -12), HOUR, rep{ repeat_type = 1, timezone = -12 }),
    schedule("weekly-spanning-two-days", at(2026, 5, 8, 20, 0), 30 * HOUR, rep{ repeat_type = 1 }),
    schedule("weekly-a-moment", MON + 30 * 60, 0, rep{ repeat_type = 1 }),
    schedule("excluded-not-an-occurrence", MON, HOUR, rep{ repeat_type = 1, exclude_time_list = { { start_time = MON + 60 } } }),
    schedule("not-custom-with-custom-fields", MON, HOUR,
      rep{ repeat_type = 1, repeat_interval = 5, repeat_day_of_week = { 3 } }),
    schedule("until-before-first", MON, HOUR,
      custom{ repeat_type = 1, repeat_day_of_week = { 3 }, repeat_until = MON + 100 }),
    schedule("all-removed", MON, HOUR, rep{ repeat_type = 0, repeat_until = MON + 2 * DAY,
      exclude_time_list = { { start_time = MON }, { start_time = MON + DAY }, { start_time = MON + 2 * DAY } } }),
    schedule("cancelled-daily", MON, HOUR, rep{ repeat_type = 0 }, { status = 1 }),
    schedule("cancelled-once", MON, HOUR, {}, { status = 1 }),
  }
  local function day_schedule(id, y, m, d, tz, days, reminders)
    local start, duration = whole_day(y, m, d, tz, days)
    reminders.timezone = tz
    list[#list + 1] = schedule(id, start, duration, reminders, { is_whole_day = 1 })
  end
  day_schedule("whole-day-once", 2026, 12, 24, 8, 1, {})
  day_schedule("whole-day-daily-at-minus-12", 2026, 3, 1, -12, 1, rep{ repeat_type = 0,
    exclude_time_list = { { start_time = at(2026, 3, 3, 15, 0, -12) } } })
  day_schedule("whole-day-weekly-wed-fri-at-plus-12", 2026, 3, 2, 12, 1,
    custom{ repeat_type = 1, repeat_day_of_week = { 3, 5 } })
  day_schedule("whole-day-monthly-31st", 2026, 1, 31, 8, 1, rep{ repeat_type = 2 })
  day_schedule("whole-day-yearly-29-february", 2028, 2, 29, 8, 1, rep{ repeat_type = 5 })
  day_schedule("whole-day-three-days-weekly", 2026, 6, 5, 8, 3, rep{ repeat_type = 1 })
  day_schedule("whole-day-until", 2026, 6, 1, 8, 1, rep{ repeat_type = 0, repeat_until = at(2026, 6, 10, 0, 0, 8) })
  day_schedule("whole-day-workdays-at-minus-5", 2026, 6, 6, -5, 1, rep{ repeat_type = 7 })
  return list
end

-- Varied rules from a fixed seed, for breadth beyond the cases above.
local function generated(n)
  local recurrence = require("wecom.recurrence")
  local seed = 20261123
  local function rnd(k)
    seed = seed * 16807 % 2147483647 -- exact in doubles: the same on every Lua
    return seed % k
  end
  local list = {}
  for i = 1, n do
    local tz = rnd(25) - 12
    local day = rnd(5) == 0 and 28 + rnd(4) or 1 + rnd(28) -- month ends often
    local start = at(2024 + rnd(4), 1 + rnd(12), day, rnd(24), rnd(4) * 15, tz)
    local kind = ({ 0, 1, 2, 5, 7 })[rnd(5) + 1]
    local r = { repeat_type = kind, timezone = tz }
    if rnd(2) == 0 then
      custom(r)
      r.repeat_interval = 1 + rnd(4)
      if kind == 1 then
        r.repeat_day_of_week = {}
        for d = 1, 7 do
          if rnd(3) == 0 then r.repeat_day_of_week[#r.repeat_day_of_week + 1] = d end
        end
      elseif kind == 2 then
        r.repeat_day_of_month = { 1 + rnd(31), 1 + rnd(31) }
        if rnd(2) == 0 then r.repeat_day_of_month[3] = 1 + rnd(20) end
      end
    else
      rep(r)
    end
    if rnd(3) == 0 then r.repeat_until = start + rnd(3 * 365) * DAY + rnd(2) * HOUR end
    local s = schedule(("generated-%02d"):format(i), start, (1 + rnd(8)) * 15 * 60, r)
    if rnd(6) == 0 then
      s.is_whole_day = 1
      s.start_time = start - (start + tz * HOUR) % DAY
      s.end_time = s.start_time + DAY
    end
    if rnd(3) == 0 then -- remove the 2nd and 5th occurrences
      local occ = recurrence.occurrences(s, s.start_time, s.start_time + 3 * 366 * DAY) or {}
      s.reminders.exclude_time_list = {}
      for _, k in ipairs{ 2, 5 } do
        if occ[k] then table.insert(s.reminders.exclude_time_list, { start_time = occ[k].start_time }) end
      end
    end
    list[#list + 1] = s
  end
  return list
end

function M.schedules(n_generated)
  local list = fixed()
  for _, s in ipairs(generated(n_generated or 100)) do list[#list + 1] = s end
  return list
end

return M
