-- Bulk reads: any number of ids, fetched in batches of the API's maximum,
-- answered in input order.
local args = require("wecom.args")
local reply = require("wecom.reply")
local schema = require("wecom.schema")

local M = {}

local OPTIONS = { concurrency = true }

-- The list (checked by args.id_list) without repeats, in first-seen order.
local function unique(list)
  local out, seen = {}, {}
  for i = 1, args.rawlen(list) do
    local v = rawget(list, i)
    if not seen[v] then
      seen[v] = true
      out[#out + 1] = v
    end
  end
  return out
end

-- Checks opts = {concurrency = N}; returns N (default 1), or nil, err.
function M.concurrency(helper, opts)
  return args.concurrency(helper, opts, OPTIONS)
end

-- Any number of ids (duplicates allowed) read with a get endpoint in
-- batches of as many as it takes, up to `concurrency` batches at once. Returns one entry
-- per input id (false when the API did not return that id), or nil, err
-- when a batch fails.
local function by_id(client, helper, field, ids, opts, kind)
  local err = args.id_list(helper, field, ids)
  if err then return nil, err end
  local concurrency
  concurrency, err = M.concurrency(helper, opts)
  if not concurrency then return nil, err end
  local wanted = unique(ids)
  local bodies, size = {}, kind.batch
  for first = 1, #wanted, size do
    local batch = {}
    for i = first, math.min(#wanted, first + size - 1) do batch[#batch + 1] = wanted[i] end
    bodies[#bodies + 1] = { [kind.list] = batch }
  end
  local found = {}
  for _, r in ipairs(client:call_many(kind.get, bodies, { concurrency = concurrency })) do
    if not r.ok then return nil, r.err end
    local items, rerr = reply.objects(kind.path, r.result, kind.reply)
    if not items then return nil, rerr end
    for i, item in ipairs(items) do
      rerr = reply.field(kind.path, item, ("%s[%d]"):format(kind.reply, i), kind.id, "string")
      if rerr then return nil, rerr end
      found[item[kind.id]] = item
    end
  end
  local out = {}
  for i = 1, args.rawlen(ids) do out[i] = found[rawget(ids, i)] or false end
  return out
end

-- How calendars and schedules are read by id: the get method, its list of
-- ids (and how many it takes), the reply's list, the id field.
local function kind(get, list, reply_list, id)
  return { get = get, list = list, reply = reply_list, id = id, path = schema.by_name[get].path,
    batch = schema.field(get, list).max }
end
M.KINDS = {
  calendar = kind("calendar_get", "cal_id_list", "calendar_list", "cal_id"),
  schedule = kind("schedule_get", "schedule_id_list", "schedule_list", "schedule_id"),
}
local CALENDARS, SCHEDULES = M.KINDS.calendar, M.KINDS.schedule

-- client:calendars(cal_ids [, {concurrency = N}]) -> { calendar, ... } in the order of cal_ids
function M.calendars(client, cal_ids, opts)
  return by_id(client, "calendars", "cal_ids", cal_ids, opts, CALENDARS)
end

-- client:schedules(schedule_ids [, {concurrency = N}]) -> { schedule, ... } in input order
function M.schedules(client, schedule_ids, opts)
  return by_id(client, "schedules", "schedule_ids", schedule_ids, opts, SCHEDULES)
end

M.DEL_ATTENDEES_BATCH = schema.field("schedule_del_attendees", "attendees").max

-- client:remove_attendees(schedule_id, userids) -> {userids = n, requests = k}
-- Any number of userids, in calls of as many as del_attendees takes. If a call fails, err.removed
-- says how many userids the calls before it had already removed.
function M.remove_attendees(client, schedule_id, userids)
  local helper = "remove_attendees"
  local err = args.id(helper, "schedule_id", schedule_id) or args.id_list(helper, "userids", userids)
  if err then return nil, err end
  local gone = unique(userids)
  local requests = 0
  for first = 1, #gone, M.DEL_ATTENDEES_BATCH do
    local attendees = {}
    for i = first, math.min(#gone, first + M.DEL_ATTENDEES_BATCH - 1) do
      attendees[#attendees + 1] = { userid = gone[i] }
    end
    local res, derr = client:schedule_del_attendees{ schedule_id = schedule_id, attendees = attendees }
    if not res then
      derr.removed = first - 1
      return nil, derr
    end
    requests = requests + 1
  end
  return { userids = #gone, requests = requests }
end

M.methods = {
  calendars = M.calendars,
  schedules = M.schedules,
  remove_attendees = M.remove_attendees,
}

return M
