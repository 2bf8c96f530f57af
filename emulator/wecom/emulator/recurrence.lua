-- Occurrences of recurring schedules, for op_mode 1 and 2: whether a time is
-- the start of one. Time zones are fixed offsets in hours, as in WeCom.
local M = {}

local DAY = 86400

local function local_date(t, tz) return os.date("!*t", t + tz * 3600) end

-- Monday = 1 .. Sunday = 7, as in repeat_day_of_week
local function weekday(d) return (d.wday + 5) % 7 + 1 end

local function contains(list, v)
  for _, x in ipairs(list or {}) do
    if x == v then return true end
  end
  return false
end

function M.is_recurring(s)
  return s.reminders ~= nil and s.reminders.is_repeat == 1
end

-- Whether `t` is the start of an occurrence of schedule `s` that has not
-- been removed (exclude_time_list) or cut off (repeat_until).
function M.is_occurrence(s, t)
  local r = s.reminders or {}
  if r.is_repeat ~= 1 then return t == s.start_time end
  local start = s.start_time
  if t < start or (t - start) % DAY ~= 0 then return false end
  if (r.repeat_until or 0) > 0 and t > r.repeat_until then return false end
  for _, ex in ipairs(r.exclude_time_list or {}) do
    if ex.start_time == t then return false end
  end
  local tz = r.timezone or 8
  local d0, d = local_date(start, tz), local_date(t, tz)
  local days = (t - start) / DAY
  local custom = r.is_custom_repeat == 1
  local interval = custom and (r.repeat_interval or 1) or 1
  local kind = r.repeat_type or 0
  if kind == 0 then
    return days % interval == 0
  elseif kind == 1 then
    if custom and #(r.repeat_day_of_week or {}) > 0 then
      if not contains(r.repeat_day_of_week, weekday(d)) then return false end
      return math.floor((days + weekday(d0) - 1) / 7) % interval == 0
    end
    return days % (7 * interval) == 0
  elseif kind == 2 then
    local months = (d.year - d0.year) * 12 + (d.month - d0.month)
    if months % interval ~= 0 then return false end
    if custom and #(r.repeat_day_of_month or {}) > 0 then return contains(r.repeat_day_of_month, d.day) end
    return d.day == d0.day
  elseif kind == 5 then
    return d.month == d0.month and d.day == d0.day and (d.year - d0.year) % interval == 0
  elseif kind == 7 then
    return weekday(d) <= 5
  end
  return false
end

return M
