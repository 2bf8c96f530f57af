-- Bulk reads: any number of ids, fetched in batches of the API's maximum,
-- answered in input order.
local args = require("wecom.args")
local core = require("wecom.core")

local M = {}

M.BATCH = 1000

local OPTIONS = { concurrency = true }

-- The list without repeats, in first-seen order.
local function unique(list)
  local out, seen = {}, {}
  for _, v in ipairs(list) do
    if not seen[v] then
      seen[v] = true
      out[#out + 1] = v
    end
  end
  return out
end

-- Checks opts = {concurrency = N}; returns N (default 1), or nil, err.
function M.concurrency(helper, opts)
  local err = args.options(helper, opts, OPTIONS)
  if err then return nil, err end
  local n = opts and opts.concurrency or 1
  err = args.integer(helper, "opts.concurrency", n, 1, core.MAX_CONCURRENCY)
  if err then return nil, err end
  return n
end

-- Any number of ids (duplicates allowed) read with a get endpoint in
-- batches of 1000, up to `concurrency` batches at once. Returns one entry
-- per input id (false when the API did not return that id), or nil, err
-- when a batch fails.
local function by_id(client, helper, field, ids, opts, kind)
  local err = args.id_list(helper, field, ids)
  if err then return nil, err end
  local concurrency
  concurrency, err = M.concurrency(helper, opts)
  if not concurrency then return nil, err end
  local wanted = unique(ids)
  local bodies = {}
  for first = 1, #wanted, M.BATCH do
    local batch = {}
    for i = first, math.min(#wanted, first + M.BATCH - 1) do batch[#batch + 1] = wanted[i] end
    bodies[#bodies + 1] = { [kind.list] = batch }
  end
  local found = {}
  for _, r in ipairs(client:call_many(kind.get, bodies, { concurrency = concurrency })) do
    if not r.ok then return nil, r.err end
    for _, item in ipairs(r.result[kind.reply] or {}) do found[item[kind.id]] = item end
  end
  local out = {}
  for i, id in ipairs(ids) do out[i] = found[id] or false end
  return out
end

-- How calendars and schedules are read by id.
M.KINDS = {
  calendar = { get = "calendar_get", list = "cal_id_list", reply = "calendar_list", id = "cal_id",
    path = "oa/calendar/get" },
  schedule = { get = "schedule_get", list = "schedule_id_list", reply = "schedule_list", id = "schedule_id",
    path = "oa/schedule/get" },
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

M.DEL_ATTENDEES_BATCH = 300

-- client:remove_attendees(schedule_id, userids) -> {userids = n, requests = k}
-- Any number of userids, in calls of 300. If a call fails, err.removed
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
