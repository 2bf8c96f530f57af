-- Occurrences of WeCom schedules: WeCom's repeat fields (reminders.is_repeat,
-- repeat_type, is_custom_repeat, repeat_interval, repeat_day_of_week,
-- repeat_day_of_month, repeat_until, timezone, exclude_time_list) turned into
-- the start and end of each occurrence.
--
-- The rules are those of RFC 5545 for the RRULE that wecom.ical exports, so
-- the two always agree: weekly series count weeks from Monday (WKST=MO), a
-- monthly repeat on the 31st skips shorter months, a yearly one on 29
-- February skips common years, and repeat_until includes an occurrence
-- that starts exactly at it. Days are counted in the schedule's own fixed
-- offset (`timezone`, hours from UTC), which has no daylight saving, so every
-- occurrence starts at the same local time of day and a whole day is 86400 s.
--
-- A start_time that is not on its rule (a Monday schedule repeating on
-- Tuesdays) is not an occurrence itself: the series begins at the first day
-- the rule gives, which is also the exported DTSTART, since RFC 5545 leaves a
-- DTSTART off its own rule undefined.
local errors = require("wecom.errors")

local M = {}

local DAY = 86400
local floor = math.floor
local toint = math.tointeger or function(x) return x end

-- Times the module accepts: year 1 to year 9999, what iCalendar can write.
local MIN_TIME, MAX_TIME = -62135596800, 253402300799
-- The longest window occurrences() expands: bounds the work of one call.
M.MAX_WINDOW = 100 * 366 * DAY
-- How far a rule may look for its first day (a monthly repeat on the 31st
-- every 12 months from February never finds one).
local FIRST_SEARCH_DAYS = 400 * 366

-- repeat_type -> RRULE FREQ; workdays (7) are WEEKLY on Monday to Friday
M.REPEAT_TYPES = { [0] = "DAILY", [1] = "WEEKLY", [2] = "MONTHLY", [5] = "YEARLY", [7] = "WEEKLY" }

---------------------------------------------------------------------------
-- civil dates on day numbers (days since 1970-01-01), proleptic Gregorian
-- (H. Hinnant's algorithms: pure arithmetic, any sign, no os.date)

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function days_in_month(y, m)
  if m == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then return 29 end
  return MONTH_DAYS[m]
end

-- Monday = 1 .. Sunday = 7, as repeat_day_of_week counts; day 0 was a Thursday.
local function weekday(day) return (day + 3) % 7 + 1 end

M.days_from_civil = days_from_civil
M.civil_from_days = civil_from_days
M.weekday = weekday

---------------------------------------------------------------------------
-- checks

local function absent(v) return v == nil or type(v) == "userdata" end -- JSON null too

local function is_int(v, min, max)
  return type(v) == "number" and v == floor(v) and v >= min and v <= max
end

local function bad(helper, field, text) return nil, errors.validation(helper, field, text) end

local function describe(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

local function flag(helper, name, r, key)
  local v = r[key]
  if absent(v) then return 0 end
  if v ~= 0 and v ~= 1 then return bad(helper, name .. ".reminders." .. key, "expected 0 or 1, got " .. describe(v)) end
  return v
end

-- field .. (suffix or ""): the name is only built for an error.
local function time_field(helper, field, v, suffix)
  if not is_int(v, MIN_TIME, MAX_TIME) then
    return bad(helper, field .. (suffix or ""), "expected Unix seconds (an integer), got " .. describe(v))
  end
  return toint(v)
end

-- A list of integers in min..max, sorted, without repeats.
local function int_set(helper, field, v, min, max)
  if absent(v) then return {} end
  if type(v) ~= "table" then return bad(helper, field, "expected a list, got " .. type(v)) end
  local seen, out = {}, {}
  for i = 1, #v do
    local x = v[i]
    if not is_int(x, min, max) then
      return bad(helper, ("%s[%d]"):format(field, i), ("expected an integer in %d..%d, got %s"):format(min, max, describe(x)))
    end
    x = toint(x)
    if not seen[x] then
      seen[x] = true
      out[#out + 1] = x
    end
  end
  table.sort(out)
  return out
end

---------------------------------------------------------------------------
-- the rule of a schedule

-- Calls emit(day) for each day of the rule in lo..hi (day numbers), in
-- order, until emit returns false. Exclusions and until are not applied.
local function each_day(rule, lo, hi, emit)
  local day0, n = rule.day0, rule.interval
  if lo < day0 then lo = day0 end
  if lo > hi then return end
  local freq = rule.freq
  if freq == "DAILY" then
    local d = day0 + floor((lo - day0 + n - 1) / n) * n
    while d <= hi do
      if emit(d) == false then return end
      d = d + n
    end
  elseif freq == "WEEKLY" then
    local days = rule.weekdays
    local monday0 = day0 - weekday(day0) + 1
    local week = floor((lo - monday0) / 7)
    week = floor((week + n - 1) / n) * n
    local monday = monday0 + week * 7
    while monday <= hi do
      for i = 1, #days do
        local d = monday + days[i] - 1
        if d > hi then return end
        if d >= lo and emit(d) == false then return end
      end
      monday = monday + 7 * n
    end
  elseif freq == "MONTHLY" then
    local days = rule.monthdays
    local y0, m0 = civil_from_days(day0)
    local ly, lm = civil_from_days(lo)
    local month0 = y0 * 12 + m0 - 1
    local month = month0 + floor((ly * 12 + lm - 1 - month0 + n - 1) / n) * n
    while true do
      local y, m = floor(month / 12), month % 12 + 1
      local first = days_from_civil(y, m, 1)
      if first > hi then return end
      local dim = days_in_month(y, m)
      for i = 1, #days do
        local md = days[i]
        if md > dim then break end
        local d = first + md - 1
        if d > hi then return end
        if d >= lo and emit(d) == false then return end
      end
      month = month + n
    end
  else -- YEARLY: the month and day of the start
    local y0, m0, md0 = civil_from_days(day0)
    local ly = civil_from_days(lo)
    local y = y0 + floor((ly - y0 + n - 1) / n) * n
    while true do
      if days_from_civil(y, m0, 1) > hi then return end
      if md0 <= days_in_month(y, m0) then
        local d = days_from_civil(y, m0, md0)
        if d > hi then return end
        if d >= lo and emit(d) == false then return end
      end
      y = y + n
    end
  end
end

local function parse_repeat(helper, name, rule, r, day0)
  local err
  local kind = r.repeat_type
  if absent(kind) then kind = 0 end
  if not M.REPEAT_TYPES[kind] then
    return bad(helper, name .. ".reminders.repeat_type", "expected 0, 1, 2, 5 or 7, got " .. describe(kind))
  end
  local custom
  custom, err = flag(helper, name, r, "is_custom_repeat")
  if not custom then return nil, err end
  local interval, weekdays, monthdays = 1, {}, {}
  if custom == 1 and kind ~= 7 then
    interval = r.repeat_interval
    if absent(interval) or interval == 0 then interval = 1 end -- WeCom's "unset"
    if not is_int(interval, 1, 10000) then
      return bad(helper, name .. ".reminders.repeat_interval", "expected an integer in 1..10000, got " .. describe(interval))
    end
    interval = toint(interval)
    weekdays, err = int_set(helper, name .. ".reminders.repeat_day_of_week", r.repeat_day_of_week, 1, 7)
    if not weekdays then return nil, err end
    monthdays, err = int_set(helper, name .. ".reminders.repeat_day_of_month", r.repeat_day_of_month, 1, 31)
    if not monthdays then return nil, err end
  end
  rule.interval = interval
  rule.freq = M.REPEAT_TYPES[kind]
  if kind == 7 then rule.workdays, weekdays = true, { 1, 2, 3, 4, 5 } end
  -- the lists apply to their own frequency only; empty: the start's day
  if rule.freq == "WEEKLY" then
    rule.byday = #weekdays > 0 and weekdays or nil
    rule.weekdays = rule.byday or { weekday(day0) }
  elseif rule.freq == "MONTHLY" then
    rule.bymonthday = #monthdays > 0 and monthdays or nil
    rule.monthdays = rule.bymonthday or { select(3, civil_from_days(day0)) }
  end
  local first
  each_day(rule, day0, day0 + FIRST_SEARCH_DAYS, function(d)
    first = d
    return false
  end)
  if not first then
    return bad(helper, name .. ".reminders.repeat_day_of_month",
      "no month of this series has any of these days for 400 years (the series would never occur)")
  end
  rule.first_day = first
  return rule
end

-- The rule of a schedule, checked: a table the exporter and occurrences()
-- share, or nil, err naming the field. Fields:
--   start, duration, tz (hours), offset (seconds), sod (local seconds of
--   day), whole_day, cancelled, recurring;
--   when recurring: freq ("DAILY", "WEEKLY", "MONTHLY", "YEARLY"),
--   interval, workdays (repeat_type 7), byday / bymonthday (custom lists,
--   sorted, or nil), first_day (the day of the first occurrence),
--   repeat_until (Unix seconds or nil), last_day (the last day it allows, or
--   nil), excluded (set of excluded days), exdays (the excluded days that
--   are occurrences, sorted).
-- helper and name: how errors name the function and the schedule.
function M.rule(schedule, helper, name)
  helper, name = helper or "recurrence.rule", name or "schedule"
  if type(schedule) ~= "table" then return bad(helper, name, "expected a table, got " .. type(schedule)) end
  local start, finish, err
  start, err = time_field(helper, name, schedule.start_time, ".start_time")
  if not start then return nil, err end
  finish, err = time_field(helper, name, schedule.end_time, ".end_time")
  if not finish then return nil, err end
  if finish < start then return bad(helper, name .. ".end_time", "before start_time") end
  local whole_day = schedule.is_whole_day
  if absent(whole_day) then whole_day = 0 end
  if whole_day ~= 0 and whole_day ~= 1 then
    return bad(helper, name .. ".is_whole_day", "expected 0 or 1, got " .. describe(whole_day))
  end
  local status = schedule.status
  if not absent(status) and not is_int(status, 0, 1) then
    return bad(helper, name .. ".status", "expected 0 or 1, got " .. describe(status))
  end
  local r = schedule.reminders
  if absent(r) then r = {} end
  if type(r) ~= "table" then return bad(helper, name .. ".reminders", "expected a table, got " .. type(r)) end
  local tz = r.timezone
  if absent(tz) then tz = 8 end -- WeCom's default: China
  if not is_int(tz, -12, 12) then
    return bad(helper, name .. ".reminders.timezone", "expected hours from UTC, an integer in -12..12, got " .. describe(tz))
  end
  tz = toint(tz)
  local offset = tz * 3600
  local day0 = floor((start + offset) / DAY)
  local rule = {
    start = start, duration = finish - start, tz = tz, offset = offset, sod = start + offset - day0 * DAY,
    day0 = day0, whole_day = whole_day == 1, cancelled = status == 1,
  }
  local is_repeat
  is_repeat, err = flag(helper, name, r, "is_repeat")
  if not is_repeat then return nil, err end
  rule.recurring = is_repeat == 1
  if not rule.recurring then return rule end

  local ok
  ok, err = parse_repeat(helper, name, rule, r, day0)
  if not ok then return nil, err end
  local last = r.repeat_until
  if not absent(last) and last ~= 0 then
    last, err = time_field(helper, name, last, ".reminders.repeat_until")
    if not last then return nil, err end
    rule.repeat_until = last
    rule.last_day = floor((last - rule.sod + offset) / DAY)
  end
  local list = r.exclude_time_list
  local excluded, exdays = {}, {}
  if not absent(list) then
    if type(list) ~= "table" then
      return bad(helper, name .. ".reminders.exclude_time_list", "expected a list, got " .. type(list))
    end
    for i = 1, #list do
      local field = (name .. ".reminders.exclude_time_list[%d]"):format(i)
      local x = list[i]
      if type(x) ~= "table" then return bad(helper, field, "expected {start_time = ...}, got " .. type(x)) end
      local t
      t, err = time_field(helper, field .. ".start_time", x.start_time)
      if not t then return nil, err end
      -- a timed occurrence is removed by its exact start; a whole-day one by its date
      local d = floor((t + offset) / DAY)
      if (rule.whole_day or d * DAY + rule.sod - offset == t) and not excluded[d] then
        excluded[d] = true
        if M.is_rule_day(rule, d) then exdays[#exdays + 1] = d end
      end
    end
  end
  table.sort(exdays)
  rule.excluded, rule.exdays = excluded, exdays
  return rule
end

-- Whether the rule (exclusions and until aside) gives day d.
function M.is_rule_day(rule, d)
  local found = false
  each_day(rule, d, d, function() found = true end)
  return found
end

M.each_day = each_day

---------------------------------------------------------------------------
-- occurrences

-- The occurrences of a checked rule whose start is in [from, to).
local function expand(rule, from, to)
  local out = {}
  if rule.cancelled then return out end
  local sod, offset, duration = rule.sod, rule.offset, rule.duration
  if not rule.recurring then
    if rule.start >= from and rule.start < to then out[1] = { start_time = rule.start, end_time = rule.start + duration } end
    return out
  end
  -- day d starts at d * DAY + sod - offset
  local lo = -floor(-(from - sod + offset) / DAY)
  local hi = -floor(-(to - sod + offset) / DAY) - 1
  if rule.last_day and rule.last_day < hi then hi = rule.last_day end
  local excluded, n = rule.excluded, 0
  local base = sod - offset
  each_day(rule, lo, hi, function(d)
    if not excluded[d] then
      local s = d * DAY + base
      n = n + 1
      out[n] = { start_time = s, end_time = s + duration }
    end
  end)
  return out
end

local function window(helper, from, to)
  local err
  from, err = time_field(helper, "from", from)
  if not from then return nil, err end
  to, err = time_field(helper, "to", to)
  if not to then return nil, err end
  if to < from then return bad(helper, "to", "before from") end
  if to - from > M.MAX_WINDOW then
    return bad(helper, "to", ("the window is over 100 years (%d days); ask for less at a time"):format(floor((to - from) / DAY)))
  end
  return from, to
end

-- recurrence.occurrences(schedule, from, to) -> { {start_time =, end_time =}, ... }
-- (those starting in [from, to), in order) | nil, err
function M.occurrences(schedule, from, to)
  local helper = "recurrence.occurrences"
  local f, t = window(helper, from, to)
  if not f then return nil, t end
  local rule, err = M.rule(schedule, helper)
  if not rule then return nil, err end
  return expand(rule, f, t)
end

function M.is_recurring(schedule)
  local r = type(schedule) == "table" and schedule.reminders
  return type(r) == "table" and r.is_repeat == 1
end

-- Whether t is the start of an occurrence (not removed, not past until):
-- true | false | nil, err.
function M.is_occurrence(schedule, t)
  local helper = "recurrence.is_occurrence"
  local rule, err = M.rule(schedule, helper)
  if not rule then return nil, err end
  local at
  at, err = time_field(helper, "t", t)
  if not at then return nil, err end
  return #expand(rule, at, at + 1) == 1
end

return M
