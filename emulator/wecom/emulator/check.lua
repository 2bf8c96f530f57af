-- Server-side checks of the emulator: small predicates over decoded JSON,
-- so handlers can answer with WeCom's error codes.
local cjson = require("cjson")
local json = require("wecom.emulator.json")

local M = {}

local null = cjson.null

-- nil and JSON null both mean "absent".
function M.absent(v) return v == nil or v == null end

function M.chars(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

function M.text(v, min, max)
  return type(v) == "string" and M.chars(v) >= min and M.chars(v) <= max
end

function M.id(v)
  return type(v) == "string" and #v >= 1 and #v <= 64
end

function M.int(v, min, max)
  return type(v) == "number" and v == math.floor(v) and v >= min and v <= max
end

function M.flag(v)
  return M.absent(v) or v == 0 or v == 1
end

function M.color(v)
  return type(v) == "string" and v:match("^#%x%x%x%x%x%x$") ~= nil
end

-- A JSON array (decoded as a table whose keys are 1..n) of at most max items.
function M.list(v, max)
  if type(v) ~= "table" then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  return n == #v and n <= max
end

function M.one_of(v, set)
  for _, x in ipairs(set) do
    if v == x then return true end
  end
  return false
end

-- A stored copy of a request's list (absent: empty), sent back as [].
function M.copy_list(v)
  local out = json.array()
  for i, x in ipairs(M.absent(v) and {} or v) do out[i] = x end
  return out
end

-- The items of a get request's ids, each once, in request order:
-- find(id) -> item | nil, errcode, errmsg (the first failure fails all).
function M.lookup(ids, find, view)
  local list, seen = json.array(), {}
  for _, id in ipairs(ids) do
    local item, code, msg = find(id)
    if not item then return nil, code, msg end
    if not seen[id] then
      seen[id] = true
      list[#list + 1] = view and view(item) or item
    end
  end
  return list
end

return M
