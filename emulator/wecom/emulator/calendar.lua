-- oa/calendar/{add,update,get,del} as the seed documents describe them,
-- with the newer fields (admins, permission, is_public, public_range,
-- is_corp_calendar) stored and returned.
local check = require("wecom.emulator.check")
local json = require("wecom.emulator.json")
local state = require("wecom.emulator.state")

local absent = check.absent

local M = {}

local INVALID = 40058

-- Userids the emulator's "directory" does not know: refused per member in
-- fail_result, as WeCom does for people outside the app's visible range.
local function unknown_user(userid) return userid:match("^unknown") ~= nil end

local function validate(c, on_update)
  if type(c) ~= "table" then return INVALID, "calendar: required" end
  if not check.text(c.summary, 1, 128) then return INVALID, "calendar.summary: 1..128 characters required" end
  local corp = c.is_corp_calendar == 1
  if not absent(c.color) or not (corp or on_update) then
    if not check.color(c.color) then return 90473, "invalid color" end
  end
  if not absent(c.description) and not check.text(c.description, 0, 512) then
    return INVALID, "calendar.description: at most 512 characters"
  end
  for _, k in ipairs{ "readonly", "set_as_default", "is_public", "is_corp_calendar" } do
    if not check.flag(c[k]) then return INVALID, "calendar." .. k .. ": 0 or 1" end
  end
  if not absent(c.organizer) and not check.id(c.organizer) then return 40003, "invalid organizer" end
  if not absent(c.shares) then
    if not check.list(c.shares, 2000) then return INVALID, "calendar.shares: at most 2000" end
    for _, s in ipairs(c.shares) do
      if type(s) ~= "table" or not check.id(s.userid) then return 40003, "invalid userid in shares" end
      if not check.flag(s.readonly) then return INVALID, "shares.readonly: 0 or 1" end
      if not absent(s.permission) and not check.one_of(s.permission, { 1, 3 }) then
        return INVALID, "shares.permission: 1 or 3"
      end
    end
  end
  if not absent(c.admins) then
    if not check.list(c.admins, 3) then return INVALID, "calendar.admins: at most 3" end
    for _, a in ipairs(c.admins) do
      local found = false
      for _, s in ipairs(type(c.shares) == "table" and c.shares or {}) do
        if s.userid == a then found = true end
      end
      if not found then return INVALID, "calendar.admins: each admin must be in shares" end
    end
  end
  if not absent(c.public_range) then
    local r = c.public_range
    if type(r) ~= "table" then return INVALID, "calendar.public_range: an object" end
    if not absent(r.userids) and not check.list(r.userids, 1000) then
      return INVALID, "public_range.userids: at most 1000"
    end
    if not absent(r.partyids) and not check.list(r.partyids, 100) then
      return INVALID, "public_range.partyids: at most 100"
    end
  elseif corp then
    return INVALID, "an all-staff calendar needs public_range"
  end
  return nil
end

-- Stored shares with the seed's default (readonly 1), and the refused ones.
local function accept_shares(shares)
  local kept, failed = json.array(), json.array()
  for _, s in ipairs(absent(shares) and {} or shares) do
    if unknown_user(s.userid) then
      failed[#failed + 1] = { userid = s.userid, errcode = 40001, errmsg = "not found" }
    else
      local entry = { userid = s.userid }
      if not absent(s.permission) then entry.permission = s.permission end
      if not absent(s.readonly) then
        entry.readonly = s.readonly
      elseif absent(s.permission) then
        entry.readonly = 1
      end
      kept[#kept + 1] = entry
    end
  end
  return kept, failed
end

local copy_list = check.copy_list

local function copy_range(r)
  if absent(r) then return nil end
  return { userids = copy_list(r.userids), partyids = copy_list(r.partyids) }
end

-- Applies an add or an update (an overwrite) to `cal`.
local function write_fields(cal, c, skip_public_range)
  cal.readonly = absent(c.readonly) and 1 or c.readonly
  cal.summary = c.summary
  cal.color = not absent(c.color) and c.color or nil
  cal.description = absent(c.description) and "" or c.description
  local failed
  cal.shares, failed = accept_shares(c.shares)
  cal.admins = copy_list(c.admins)
  if not skip_public_range then cal.public_range = copy_range(c.public_range) end
  if #failed > 0 then return { shares = failed } end
  return nil
end

local function find(cal_id)
  if not check.id(cal_id) then return nil, INVALID, "invalid cal_id" end
  local cal = state.calendars[cal_id]
  if not cal then return nil, 90457, "invalid cal_id" end
  if cal.deleted then return nil, 90459, "calendar has been deleted" end
  return cal
end
M.find = find

-- Stores a new calendar from valid fields; returns it and its fail_result.
local function create(c)
  local cal = { cal_id = state.random_id("wc", 30) }
  if not absent(c.organizer) then cal.organizer = c.organizer end
  for _, k in ipairs{ "is_public", "is_corp_calendar" } do
    if not absent(c[k]) then cal[k] = c[k] end
  end
  local fail_result = write_fields(cal, c, false)
  state.calendars[cal.cal_id] = cal
  state.calendar_schedules[cal.cal_id] = {}
  return cal, fail_result
end
M.create = create

local function add(body)
  local c = body.calendar
  local code, msg = validate(c, false)
  if code then return nil, code, msg end
  local cal, fail_result = create(c)
  return { cal_id = cal.cal_id, fail_result = fail_result }
end

local function update(body)
  local c = body.calendar
  if type(c) ~= "table" then return nil, INVALID, "calendar: required" end
  local cal, code, msg = find(c.cal_id)
  if not cal then return nil, code, msg end
  if not absent(c.organizer) and c.organizer ~= cal.organizer then
    return nil, INVALID, "organizer can't be updated"
  end
  for _, k in ipairs{ "is_public", "is_corp_calendar" } do
    if not absent(c[k]) and c[k] ~= (cal[k] or 0) then return nil, INVALID, k .. " can't be updated" end
  end
  local probe = {}
  for k, v in pairs(c) do probe[k] = v end
  probe.is_corp_calendar = cal.is_corp_calendar
  if probe.public_range == nil and body.skip_public_range == 1 then probe.public_range = cal.public_range end
  code, msg = validate(probe, true)
  if code then return nil, code, msg end
  if cal.is_corp_calendar ~= 1 and absent(c.color) then return nil, 90473, "invalid color" end
  local fail_result = write_fields(cal, c, body.skip_public_range == 1)
  return { fail_result = fail_result }
end

local function get(body)
  local ids = body.cal_id_list
  if not check.list(ids, 1000) or #ids == 0 then return nil, INVALID, "cal_id_list: 1..1000 ids" end
  local list, code, msg = check.lookup(ids, find)
  if not list then return nil, code, msg end
  return { calendar_list = list }
end

local function del(body)
  local cal, code, msg = find(body.cal_id)
  if not cal then return nil, code, msg end
  cal.deleted = true
  return {}
end

-- Control: {count, summary?} -> {cal_ids = {...}}: many calendars at once.
function M.seed(body)
  local count = body.count
  if not check.int(count, 1, 100000) then return nil, "seed_calendars: count must be 1..100000" end
  local ids = json.array()
  for i = 1, count do
    ids[i] = create{ summary = ("%s %d"):format(body.summary or "seeded calendar", i), color = "#336699" }.cal_id
  end
  return { cal_ids = ids }
end

function M.register(route)
  route("oa/calendar/add", add)
  route("oa/calendar/update", update)
  route("oa/calendar/get", get)
  route("oa/calendar/del", del)
end

return M
