-- oa/schedule/*: add, update (overwrite unless skip_attendees; op_mode 0/1/2
-- on recurring schedules), get, del (cancels: status 1), add_attendees,
-- del_attendees and get_by_calendar (the seed's paging), plus the control
-- endpoint that seeds many schedules at once.
local calendar = require("wecom.emulator.calendar")
local check = require("wecom.emulator.check")
local json = require("wecom.emulator.json")
local recurrence = require("wecom.recurrence") -- the library's engine: one set of rules
local state = require("wecom.emulator.state")

local absent = check.absent

local M = {}

local INVALID = 40058
local MAX_ATTENDEES = 1000
local READ_ATTENDEES = 300 -- reads return at most this many attendees

local REGULAR_DIFFS = { 0, -300, -900, -3600, -86400 }
local WHOLE_DAY_DIFFS = { 32400, -172800, -604800 }

---------------------------------------------------------------------------
-- checks

local function check_reminders(r, whole_day)
  if type(r) ~= "table" then return INVALID, "reminders: an object" end
  for _, k in ipairs{ "is_remind", "is_repeat", "is_custom_repeat" } do
    if not check.flag(r[k]) then return INVALID, "reminders." .. k .. ": 0 or 1" end
  end
  if not absent(r.remind_before_event_secs) and
    not check.one_of(r.remind_before_event_secs, { 0, 300, 900, 3600, 86400 }) then
    return 90471, "invalid remind_before_event_secs"
  end
  if not absent(r.remind_time_diffs) then
    if not check.list(r.remind_time_diffs, 8) then return 90471, "invalid remind_time_diffs" end
    for _, d in ipairs(r.remind_time_diffs) do
      if not check.one_of(d, REGULAR_DIFFS) and not (whole_day and check.one_of(d, WHOLE_DAY_DIFFS)) then
        return 90471, "invalid remind_time_diffs"
      end
    end
  end
  if not absent(r.repeat_type) and not check.one_of(r.repeat_type, { 0, 1, 2, 5, 7 }) then
    return 90465, "invalid repeat_type"
  end
  if not absent(r.repeat_until) and not check.int(r.repeat_until, 0, 2 ^ 32 - 1) then
    return INVALID, "invalid repeat_until"
  end
  if not absent(r.repeat_interval) and not check.int(r.repeat_interval, 1, 1000) then
    return INVALID, "invalid repeat_interval"
  end
  if not absent(r.repeat_day_of_week) then
    if not check.list(r.repeat_day_of_week, 7) then return 90467, "invalid repeat_day_of_week" end
    for _, d in ipairs(r.repeat_day_of_week) do
      if not check.int(d, 1, 7) then return 90467, "invalid repeat_day_of_week" end
    end
  end
  if not absent(r.repeat_day_of_month) then
    if not check.list(r.repeat_day_of_month, 31) then return INVALID, "invalid repeat_day_of_month" end
    for _, d in ipairs(r.repeat_day_of_month) do
      if not check.int(d, 1, 31) then return INVALID, "invalid repeat_day_of_month" end
    end
  end
  if not absent(r.timezone) and not check.int(r.timezone, -12, 12) then return 90480, "invalid timezone" end
  return nil
end

local function check_attendees(list, max)
  if not check.list(list, math.huge) then return INVALID, "attendees: a list" end
  if #list > max then return 90464, "too many attendees" end
  for _, a in ipairs(list) do
    if type(a) ~= "table" or not check.id(a.userid) then return 40003, "invalid userid in attendees" end
  end
  return nil
end

-- skip_attendees: WeCom keeps its own attendees, so admins are not checked
-- against the request's.
local function validate(s, skip_attendees)
  if type(s) ~= "table" then return INVALID, "schedule: required" end
  if not check.int(s.start_time, 0, 2 ^ 32 - 1) or not check.int(s.end_time, 0, 2 ^ 32 - 1) then
    return INVALID, "start_time and end_time: required"
  end
  if s.end_time <= s.start_time then return INVALID, "end_time must be after start_time" end
  if not absent(s.summary) and not check.text(s.summary, 0, 128) then return INVALID, "summary: at most 128 characters" end
  if not absent(s.description) and not check.text(s.description, 0, 1000) then
    return INVALID, "description: at most 1000 characters"
  end
  if not absent(s.location) and not check.text(s.location, 0, 128) then return INVALID, "location: at most 128 characters" end
  if not check.flag(s.is_whole_day) then return INVALID, "is_whole_day: 0 or 1" end
  if not absent(s.attendees) then
    local code, msg = check_attendees(s.attendees, MAX_ATTENDEES)
    if code then return code, msg end
  end
  if not absent(s.admins) then
    if not check.list(s.admins, 3) then return INVALID, "admins: at most 3" end
    if not (skip_attendees and absent(s.attendees)) then
      for _, a in ipairs(s.admins) do
        local found = false
        for _, x in ipairs(absent(s.attendees) and {} or s.attendees) do
          if x.userid == a then found = true end
        end
        if not found then return INVALID, "admins: each admin must be an attendee" end
      end
    end
  end
  if not absent(s.reminders) then
    local code, msg = check_reminders(s.reminders, s.is_whole_day == 1)
    if code then return code, msg end
  end
  return nil
end

---------------------------------------------------------------------------
-- stored form

local copy_list = check.copy_list

local function copy_attendees(list)
  local out = json.array()
  for i, a in ipairs(absent(list) and {} or list) do
    out[i] = { userid = a.userid, response_status = absent(a.response_status) and 0 or a.response_status }
  end
  return out
end

local function get_or(v, default)
  if absent(v) then return default end
  return v
end

local function build_reminders(r)
  r = absent(r) and {} or r
  return {
    is_remind = get_or(r.is_remind, 0),
    remind_before_event_secs = get_or(r.remind_before_event_secs, 0),
    remind_time_diffs = copy_list(r.remind_time_diffs),
    is_repeat = get_or(r.is_repeat, 0),
    repeat_type = get_or(r.repeat_type, 0),
    repeat_until = get_or(r.repeat_until, 0),
    is_custom_repeat = get_or(r.is_custom_repeat, 0),
    repeat_interval = get_or(r.repeat_interval, 1),
    repeat_day_of_week = copy_list(r.repeat_day_of_week),
    repeat_day_of_month = copy_list(r.repeat_day_of_month),
    timezone = get_or(r.timezone, 8),
    exclude_time_list = json.array(),
  }
end

-- A stored schedule from a request's `schedule` (update overwrites: what is
-- left out takes its default).
local function build(s, cal_id)
  return {
    cal_id = cal_id,
    admins = copy_list(s.admins),
    attendees = copy_attendees(s.attendees),
    summary = get_or(s.summary, ""),
    description = get_or(s.description, ""),
    location = get_or(s.location, ""),
    start_time = s.start_time,
    end_time = s.end_time,
    is_whole_day = get_or(s.is_whole_day, 0),
    reminders = build_reminders(s.reminders),
  }
end

-- Stores a new schedule on its calendar and returns it.
function M.store(s)
  s.schedule_id = s.schedule_id or state.random_id("", 32)
  s.status = s.status or 0
  s.sequence = state.next_sequence()
  state.schedules[s.schedule_id] = s
  local list = state.calendar_schedules[s.cal_id]
  list[#list + 1] = s.schedule_id
  return s
end

local function touch(s) s.sequence = state.next_sequence() end

-- What a read returns: at most 300 attendees.
local function view(s)
  if #s.attendees <= READ_ATTENDEES then return s end
  local v = {}
  for k, x in pairs(s) do v[k] = x end
  v.attendees = json.array()
  for i = 1, READ_ATTENDEES do v.attendees[i] = s.attendees[i] end
  return v
end

local function find(schedule_id, allow_cancelled)
  if not check.id(schedule_id) then return nil, INVALID, "invalid schedule_id" end
  local s = state.schedules[schedule_id]
  if not s then return nil, INVALID, "invalid schedule_id" end
  if s.status == 1 and not allow_cancelled then return nil, 90460, "schedule has been cancelled" end
  return s
end

-- The app's default calendar, for schedules added without cal_id.
local function default_calendar()
  if not state.default_cal_id then
    state.default_cal_id = calendar.create{ summary = "default calendar", color = "#3F7FBF" }.cal_id
  end
  return state.default_cal_id
end

---------------------------------------------------------------------------
-- endpoints

local function add(body)
  local s = body.schedule
  local code, msg = validate(s, false)
  if code then return nil, code, msg end
  local cal_id = s.cal_id
  if absent(cal_id) then
    cal_id = default_calendar()
  else
    local cal
    cal, code, msg = calendar.find(cal_id)
    if not cal then return nil, code, msg end
  end
  local stored = build(s, cal_id)
  if not absent(s.organizer) then stored.organizer = s.organizer end
  return { schedule_id = M.store(stored).schedule_id }
end

-- Checks op_mode/op_start_time against a stored schedule.
local function check_op(s, mode, at)
  if not check.int(mode, 0, 2) then return INVALID, "invalid op_mode" end
  if mode == 0 then return nil end
  if not recurrence.is_recurring(s) then return 90485, "op_mode 1 and 2 are for recurring schedules" end
  if not check.int(at, 0, 2 ^ 32 - 1) or not recurrence.is_occurrence(s, at) then
    return 90482, "op_start_time is not the start of an occurrence"
  end
  return nil
end

local function exclude(s, at)
  local list = s.reminders.exclude_time_list
  list[#list + 1] = { start_time = at }
  touch(s)
end

local function cut_before(s, at)
  s.reminders.repeat_until = at - 1
  touch(s)
end

local function update(body)
  local s = body.schedule
  if type(s) ~= "table" then return nil, INVALID, "schedule: required" end
  local old, code, msg = find(s.schedule_id)
  if not old then return nil, code, msg end
  if not absent(s.cal_id) and s.cal_id ~= old.cal_id then return nil, INVALID, "cal_id can't be updated" end
  if not absent(s.organizer) and s.organizer ~= old.organizer then
    return nil, INVALID, "organizer can't be updated"
  end
  local skip = body.skip_attendees == 1
  code, msg = validate(s, skip)
  if code then return nil, code, msg end
  local mode = get_or(body.op_mode, 0)
  code, msg = check_op(old, mode, body.op_start_time)
  if code then return nil, code, msg end
  if mode == 2 and body.op_start_time == old.start_time then mode = 0 end

  local new = build(s, old.cal_id)
  if skip then new.attendees = copy_attendees(old.attendees) end
  if mode == 0 then
    new.reminders.exclude_time_list = old.reminders.exclude_time_list
    for k, v in pairs(new) do old[k] = v end
    touch(old)
    return { schedule_id = old.schedule_id }
  end
  if mode == 1 then
    if not absent(s.reminders) and s.reminders.is_repeat == 1 then
      return nil, 90484, "op_mode 1 makes a single schedule: it can't repeat"
    end
    new.reminders = build_reminders{ is_remind = new.reminders.is_remind,
      remind_before_event_secs = new.reminders.remind_before_event_secs,
      remind_time_diffs = new.reminders.remind_time_diffs, timezone = new.reminders.timezone }
    exclude(old, body.op_start_time)
  else
    cut_before(old, body.op_start_time)
  end
  new.organizer = old.organizer
  return { schedule_id = M.store(new).schedule_id }
end

local function get(body)
  local ids = body.schedule_id_list
  if not check.list(ids, 1000) or #ids == 0 then return nil, INVALID, "schedule_id_list: 1..1000 ids" end
  local list, code, msg = check.lookup(ids, function(id) return find(id, true) end, view)
  if not list then return nil, code, msg end
  return { schedule_list = list }
end

local function del(body)
  local s, code, msg = find(body.schedule_id)
  if not s then return nil, code, msg end
  local mode = get_or(body.op_mode, 0)
  code, msg = check_op(s, mode, body.op_start_time)
  if code then return nil, code, msg end
  if mode == 2 and body.op_start_time == s.start_time then mode = 0 end
  if mode == 0 then
    s.status = 1
    touch(s)
  elseif mode == 1 then
    exclude(s, body.op_start_time)
  else
    cut_before(s, body.op_start_time)
  end
  return {}
end

local function add_attendees(body)
  local s, code, msg = find(body.schedule_id)
  if not s then return nil, code, msg end
  if absent(body.attendees) or #body.attendees == 0 then return nil, INVALID, "attendees: required" end
  code, msg = check_attendees(body.attendees, MAX_ATTENDEES)
  if code then return nil, code, msg end
  local have, added = {}, {}
  for _, a in ipairs(s.attendees) do have[a.userid] = true end
  for _, a in ipairs(body.attendees) do
    if not have[a.userid] then
      have[a.userid] = true
      added[#added + 1] = { userid = a.userid, response_status = 0 }
    end
  end
  if #s.attendees + #added > MAX_ATTENDEES then return nil, 90464, "too many attendees" end
  for _, a in ipairs(added) do s.attendees[#s.attendees + 1] = a end
  touch(s)
  return {}
end

local function del_attendees(body)
  local s, code, msg = find(body.schedule_id)
  if not s then return nil, code, msg end
  if absent(body.attendees) or #body.attendees == 0 then return nil, INVALID, "attendees: required" end
  code, msg = check_attendees(body.attendees, 300)
  if code == 90464 then return nil, INVALID, "at most 300 attendees per call" end
  if code then return nil, code, msg end
  local gone = {}
  for _, a in ipairs(body.attendees) do gone[a.userid] = true end
  local kept = json.array()
  for _, a in ipairs(s.attendees) do
    if not gone[a.userid] then kept[#kept + 1] = a end
  end
  s.attendees = kept
  touch(s)
  return {}
end

local function get_by_calendar(body)
  local cal, code, msg = calendar.find(body.cal_id)
  if not cal then return nil, code, msg end
  local offset = get_or(body.offset, 0)
  local limit = get_or(body.limit, 500)
  if not check.int(offset, 0, 2 ^ 31 - 1) then return nil, INVALID, "invalid offset" end
  if not check.int(limit, 1, 2 ^ 31 - 1) then return nil, INVALID, "invalid limit" end
  if limit > 1000 then return nil, 90469, "page size over limit" end
  local ids = state.calendar_schedules[cal.cal_id]
  local list = json.array()
  for i = offset + 1, math.min(#ids, offset + limit) do
    list[#list + 1] = view(state.schedules[ids[i]])
  end
  return { schedule_list = list }
end

-- Control: {cal_id, count, start_time?, step?, duration?, cancelled_every?,
-- summary?, attendees?} -> {count, first_id, last_id}
function M.seed(body)
  local cal = calendar.find(body.cal_id)
  if not cal then return nil, "seed_schedules: no such calendar" end
  local count = body.count
  if not check.int(count, 1, 10000000) then return nil, "seed_schedules: count must be 1..10000000" end
  local start = body.start_time or 1700000000
  local step = body.step or 3600
  local duration = body.duration or 1800
  local every = body.cancelled_every or 0
  local prefix = body.summary or "seeded schedule"
  local attendees = {}
  for j, userid in ipairs(body.attendees or {}) do attendees[j] = { userid = userid } end
  local first, last
  for i = 1, count do
    local at = start + (i - 1) * step
    local s = build({ summary = ("%s %d"):format(prefix, i), start_time = at, end_time = at + duration,
      attendees = attendees }, cal.cal_id)
    s.status = (every > 0 and i % every == 0) and 1 or 0
    M.store(s)
    first = first or s.schedule_id
    last = s.schedule_id
  end
  return { count = count, first_id = first, last_id = last }
end

function M.register(route)
  route("oa/schedule/add", add)
  route("oa/schedule/update", update)
  route("oa/schedule/get", get)
  route("oa/schedule/del", del)
  route("oa/schedule/add_attendees", add_attendees)
  route("oa/schedule/del_attendees", del_attendees)
  route("oa/schedule/get_by_calendar", get_by_calendar)
end

return M
