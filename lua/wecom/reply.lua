-- The reply fields the helpers read, checked before they are used: a reply
-- is data from the network, and a broken or hostile one ("schedule_list":
-- null, a string where a list belongs, an id that is a number) must give
-- nil, err of kind "decode" naming the field, never a raise or a wrong
-- answer such as a page of six schedules made of the letters of "abcdef".
local errors = require("wecom.errors")

local M = {}

local function kind_of(v)
  if v == nil then return "nothing" end
  if type(v) == "userdata" then return "null" end -- cjson.null
  return type(v)
end

-- A decode error naming the field of the reply.
function M.bad(endpoint, field, text)
  local err = errors.decode(endpoint, ("%s: %s"):format(field, text), 200, true)
  err.field = field
  return err
end
local bad = M.bad

-- The number of entries of a table that is a list (keys 1..n), or nil.
local function list_length(t)
  local n = 0
  for _ in next, t do n = n + 1 end
  if n ~= #t then return nil end
  return n
end

-- obj[key]: a list of objects (an absent one is empty): the list, or nil,
-- err. `at`, when given, is where obj is in the reply (for the error).
function M.objects(endpoint, obj, key, at)
  local v = rawget(obj, key)
  local field = at and at .. "." .. key or key
  if v == nil then return {} end
  if type(v) ~= "table" or not list_length(v) then
    return nil, bad(endpoint, field, "expected a list of objects, got " .. kind_of(v))
  end
  for i = 1, #v do
    if type(v[i]) ~= "table" then
      return nil, bad(endpoint, ("%s[%d]"):format(field, i), "expected an object, got " .. kind_of(v[i]))
    end
  end
  return v
end

-- obj[key] must be of type `want` (or absent when `optional`): nil when it
-- is, else the error naming `path`.
function M.field(endpoint, obj, path, key, want, optional)
  local v = rawget(obj, key)
  if type(v) == want or (optional and v == nil) then return nil end
  return bad(endpoint, path .. "." .. key, ("expected a %s, got %s"):format(want, kind_of(v)))
end

-- obj[key]: a list of values of type `want` (an absent one is fine): nil,
-- or the error naming `path`.
function M.list_of(endpoint, obj, path, key, want)
  local v = rawget(obj, key)
  if v == nil then return nil end
  local field = path .. "." .. key
  if type(v) ~= "table" or not list_length(v) then
    return bad(endpoint, field, "expected a list, got " .. kind_of(v))
  end
  for i = 1, #v do
    if type(v[i]) ~= want then
      return bad(endpoint, ("%s[%d]"):format(field, i), ("expected a %s, got %s"):format(want, kind_of(v[i])))
    end
  end
  return nil
end

return M
