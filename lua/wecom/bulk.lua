-- Bulk reads: any number of ids, fetched in batches of the API's maximum,
-- answered in input order.
local args = require("wecom.args")

local M = {}

M.BATCH = 1000

-- ids: the caller's list (duplicates allowed); fetch(batch) -> records |
-- nil, err; key(record) -> its id. Returns one entry per input id (false
-- when the API did not return that id), or nil, err when a batch fails.
function M.by_id(helper, field, ids, fetch, key)
  local err = args.id_list(helper, field, ids)
  if err then return nil, err end
  local unique, seen = {}, {}
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      unique[#unique + 1] = id
    end
  end
  local found = {}
  for first = 1, #unique, M.BATCH do
    local batch = {}
    for i = first, math.min(#unique, first + M.BATCH - 1) do batch[#batch + 1] = unique[i] end
    local records, ferr = fetch(batch)
    if not records then return nil, ferr end
    for _, r in ipairs(records) do found[key(r)] = r end
  end
  local out = {}
  for i, id in ipairs(ids) do out[i] = found[id] or false end
  return out
end

-- client:calendars(cal_ids) -> { calendar, ... } in the order of cal_ids
function M.calendars(client, cal_ids)
  return M.by_id("calendars", "cal_ids", cal_ids, function(batch)
    local res, err = client:calendar_get{ cal_id_list = batch }
    if not res then return nil, err end
    return res.calendar_list or {}
  end, function(c) return c.cal_id end)
end

-- client:schedules(schedule_ids) -> { schedule, ... } in the order of schedule_ids
function M.schedules(client, schedule_ids)
  return M.by_id("schedules", "schedule_ids", schedule_ids, function(batch)
    local res, err = client:schedule_get{ schedule_id_list = batch }
    if not res then return nil, err end
    return res.schedule_list or {}
  end, function(s) return s.schedule_id end)
end

M.DEL_ATTENDEES_BATCH = 300

-- client:remove_attendees(schedule_id, userids) -> {userids = n, requests = k}
-- Any number of userids, in calls of 300. If a call fails, err.removed
-- says how many userids the calls before it had already removed.
function M.remove_attendees(client, schedule_id, userids)
  local helper = "remove_attendees"
  local err = args.id(helper, "schedule_id", schedule_id) or args.id_list(helper, "userids", userids)
  if err then return nil, err end
  local unique, seen = {}, {}
  for _, u in ipairs(userids) do
    if not seen[u] then
      seen[u] = true
      unique[#unique + 1] = u
    end
  end
  local requests = 0
  for first = 1, #unique, M.DEL_ATTENDEES_BATCH do
    local attendees = {}
    for i = first, math.min(#unique, first + M.DEL_ATTENDEES_BATCH - 1) do
      attendees[#attendees + 1] = { userid = unique[i] }
    end
    local res, derr = client:schedule_del_attendees{ schedule_id = schedule_id, attendees = attendees }
    if not res then
      derr.removed = first - 1
      return nil, derr
    end
    requests = requests + 1
  end
  return { userids = #unique, requests = requests }
end

M.methods = {
  calendars = M.calendars,
  schedules = M.schedules,
  remove_attendees = M.remove_attendees,
}

return M
