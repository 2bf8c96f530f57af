-- Argument checks of the Lua helpers: each returns nil when the value is
-- fine, or a validation error naming the helper and the argument.
--
-- The caller's tables are read raw (next, rawget, rawlen), as the C encoder
-- reads them: their __index, __pairs and __len never run, so a proxy table
-- is refused the same way by a helper and by an endpoint method, and a
-- metamethod that raises can't raise out of the library.
local core = require("wecom.core")
local errors = require("wecom.errors")
local schema = require("wecom.schema")

local M = {}

local ID_MIN, ID_MAX = schema.ID.min, schema.ID.max

local function fail(helper, field, text)
  return errors.validation(helper, field, text)
end

-- The length of a table without __len.
M.rawlen = rawget(_G, "rawlen") or function(t) return #t end
local rawlen = M.rawlen

-- A value for a message, without calling its __tostring.
local function describe(v)
  local t = type(v)
  if t == "number" or t == "boolean" then return tostring(v) end
  if t == "string" then return ("%q"):format(#v > 40 and v:sub(1, 40) .. "..." or v) end
  return t
end
M.describe = describe

-- Whether t is a list (keys 1..n only, read raw): its length, or nil.
function M.list_length(t)
  if type(t) ~= "table" then return nil end
  local n = 0
  for _ in next, t do n = n + 1 end
  if n ~= rawlen(t) then return nil end
  return n
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

-- Whether v (a table or userdata) has a function under each of `names`,
-- looked up as a method call would (an ngx.shared.DICT keeps its methods in
-- a metatable); an __index that raises counts as a no.
function M.methods(v, names)
  local t = type(v)
  if t ~= "table" and t ~= "userdata" then return false end
  for _, name in ipairs(names) do
    local ok, f = pcall(function() return v[name] end)
    if not ok or type(f) ~= "function" then return false end
  end
  return true
end

-- A list (a table with keys 1..n only) of ids.
function M.id_list(helper, field, v)
  if type(v) ~= "table" then return fail(helper, field, "expected a list of ids") end
  local n = M.list_length(v)
  if not n then return fail(helper, field, "expected a list of ids, got a table with other keys") end
  for i = 1, n do
    local err = M.id(helper, ("%s[%d]"):format(field, i), rawget(v, i))
    if err then return err end
  end
  return nil
end

function M.integer(helper, field, v, min, max)
  if type(v) ~= "number" or v ~= math.floor(v) or v < min or v > max then
    return fail(helper, field, ("expected an integer in %d..%d, got %s"):format(min, max, describe(v)))
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
  for k in next, v do
    if not allowed[k] then return fail(helper, "opts." .. (type(k) == "string" and k or describe(k)), "unknown option") end
  end
  return nil
end

-- A raw copy of an options table (nil: an empty one), once args.options
-- has checked it.
function M.copy(opts)
  local o = {}
  if opts ~= nil then
    for k, v in next, opts do o[k] = v end
  end
  return o
end

-- opts = {concurrency = N, ...} with keys in `allowed`: N (default 1,
-- at most core.MAX_CONCURRENCY), or nil, err.
function M.concurrency(helper, opts, allowed)
  local err = M.options(helper, opts, allowed)
  if err then return nil, err end
  local n = opts and rawget(opts, "concurrency") or 1
  err = M.integer(helper, "opts.concurrency", n, 1, core.MAX_CONCURRENCY)
  if err then return nil, err end
  return n
end

return M
