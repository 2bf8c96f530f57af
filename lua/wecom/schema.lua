-- The C endpoint table as Lua sees it: every endpoint's name, path,
-- idempotence and request schema. The Lua helpers read their limits here
-- (ids per get, attendees per call, shares per calendar, paging ranges, id
-- lengths, fields an update refuses) instead of writing them again.
local core = require("wecom.core")

local M = {}

-- { {id =, name =, path =, idempotent =, body = field}, ... } in table order;
-- a field is {type =, required =, bytes =, refused =, min =, max =, one_of =,
-- fields =, elem =} (csrc/core.c, push_field).
M.endpoints = core.endpoints()

M.by_name = {}
for _, ep in ipairs(M.endpoints) do M.by_name[ep.name] = ep end

-- The schema of a field of an endpoint's body: field("calendar_update",
-- "calendar.shares[].permission"). "[]" steps into a list's element. A path
-- that names nothing is a mistake in the library and raises.
function M.field(endpoint, path)
  local ep = M.by_name[endpoint]
  local f = ep and ep.body
  for step, list in path:gmatch("([^.%[]+)(%[?%]?)") do
    f = f and f.fields and f.fields[step]
    if list == "[]" then f = f and f.elem end
  end
  if not f then error(("wecom.schema: %s has no field %s"):format(tostring(endpoint), path), 2) end
  return f
end

-- The names of the fields of an object that the API refuses to take, as a set.
function M.refused(endpoint, path)
  local set = {}
  for name, f in pairs(M.field(endpoint, path).fields) do
    if f.refused then set[name] = true end
  end
  return set
end

-- An id's byte lengths (cal_id, schedule_id, userid): every id field has them.
M.ID = M.field("calendar_get", "cal_id_list[]")

return M
