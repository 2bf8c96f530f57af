-- The default token cache (wecom.cache.memory): a table in this Lua state with per-key expiry.
-- Any object with get(key) and set(key, value, ttl) can replace it (an
-- ngx.shared.DICT, a Redis wrapper); delete(key) is used when present, and
-- add(key, value, ttl) (set only if absent) lets one fetch run at a time.
local core = require("wecom.core")

local Cache = {}
Cache.__index = Cache

local M = {}

function M.new()
  return setmetatable({ entries = {} }, Cache)
end

function Cache:get(key)
  local e = self.entries[key]
  if not e then return nil end
  if e.expires and core.monotime() >= e.expires then
    self.entries[key] = nil
    return nil
  end
  return e.value
end

-- ttl in seconds; nil or 0 keeps the value until it is replaced.
function Cache:set(key, value, ttl)
  if value == nil then
    self.entries[key] = nil
  else
    self.entries[key] = { value = value, expires = (ttl and ttl > 0) and core.monotime() + ttl or nil }
  end
  return true
end

-- Sets only if the key is absent (or expired): the lock of one fetch at a
-- time, as ngx.shared.DICT:add. Returns true, or false, "exists".
function Cache:add(key, value, ttl)
  if self:get(key) ~= nil then return false, "exists" end
  return self:set(key, value, ttl)
end

function Cache:delete(key)
  self.entries[key] = nil
  return true
end

return M
