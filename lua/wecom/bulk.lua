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

M.methods = {
  calendars = M.calendars,
}

return M
