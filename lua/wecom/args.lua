-- Argument checks of the Lua helpers: each returns nil when the value is
-- fine, or a validation error naming the helper and the argument.
local core = require("wecom.core")
local errors = require("wecom.errors")
local schema = require("wecom.schema")

local M = {}

local ID_MIN, ID_MAX = schema.ID.min, schema.ID.max

local function fail(helper, field, text)
  return errors.validation(helper, field, text)
end

-- An id (cal_id, schedule_id, userid): a string of as many bytes as the
-- endpoint schemas allow.
function M.id(helper, field, v)
  if type(v) ~= "string" then
    return fail(helper, field, ("expected a string, got %s"):format(v == nil and "nil" or type(v)))
  end
  if #v < ID_MIN or #v > ID_MAX then
    return fail(helper, field, ("expected %d..%d bytes, got %d"):format(ID_MIN, ID_MAX, #v))
  end
  return nil
end

-- A list (a table with keys 1..n only) of ids.
function M.id_list(helper, field, v)
  if type(v) ~= "table" then return fail(helper, field, "expected a list of ids") end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if n ~= #v then return fail(helper, field, "expected a list of ids, got a table with other keys") end
  for i = 1, n do
    local err = M.id(helper, ("%s[%d]"):format(field, i), v[i])
    if err then return err end
  end
  return nil
end

function M.integer(helper, field, v, min, max)
  if type(v) ~= "number" or v ~= math.floor(v) or v < min or v > max then
    return fail(helper, field, ("expected an integer in %d..%d, got %s"):format(min, max, tostring(v)))
  end
  return nil
end

function M.boolean(helper, field, v)
  if type(v) ~= "boolean" then return fail(helper, field, "expected a boolean, got " .. type(v)) end
  return nil
end

-- An options table whose keys are all in `allowed` (a set).
function M.options(helper, v, allowed)
  if v == nil then return nil end
  if type(v) ~= "table" then return fail(helper, "opts", "expected a table") end
  for k in pairs(v) do
    if not allowed[k] then return fail(helper, "opts." .. tostring(k), "unknown option") end
  end
  return nil
end

-- opts = {concurrency = N, ...} with keys in `allowed`: N (default 1,
-- at most core.MAX_CONCURRENCY), or nil, err.
function M.concurrency(helper, opts, allowed)
  local err = M.options(helper, opts, allowed)
  if err then return nil, err end
  local n = opts and opts.concurrency or 1
  err = M.integer(helper, "opts.concurrency", n, 1, core.MAX_CONCURRENCY)
  if err then return nil, err end
  return n
end

return M
