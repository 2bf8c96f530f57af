-- The default token cache (wecom.cache.memory): a table in this Lua state with per-key expiry.
-- Any object with get(key) and set(key, value, ttl) can replace it (an
-- ngx.shared.DICT, wecom.cache.redis); delete(key) is used when present, and
-- add(key, value, ttl) (set only if absent) lets one fetch run at a time
-- (token.lua lists what else a cache may offer).
local core = require("wecom.core")

local Cache = {}
Cache.__index = Cache

local M = {}

function M.new()
  return setmetatable({ entries = {}, count = 0, sweep_at = 1024 }, Cache)
end

-- Drops expired entries, so keys that are never read again (a callback's
-- seen messages) don't pile up; runs when the count doubles.
function Cache:sweep()
  local now, count = core.monotime(), 0
  for key, e in pairs(self.entries) do
    if e.expires and now >= e.expires then self.entries[key] = nil else count = count + 1 end
  end
  self.count = count
  self.sweep_at = math.max(1024, 2 * count)
end

function Cache:get(key)
  local e = self.entries[key]
  if not e then return nil end
  if e.expires and core.monotime() >= e.expires then
    self:delete(key)
    return nil
  end
  return e.value
end

-- ttl in seconds; nil or 0 keeps the value until it is replaced.
function Cache:set(key, value, ttl)
  if value == nil then return self:delete(key) end
  if self.entries[key] == nil then
    if self.count >= self.sweep_at then self:sweep() end
    self.count = self.count + 1
  end
  self.entries[key] = { value = value, expires = (ttl and ttl > 0) and core.monotime() + ttl or nil }
  return true
end

-- Sets only if the key is absent (or expired): the lock of one fetch at a
-- time, as ngx.shared.DICT:add. Returns true, or false, "exists".
function Cache:add(key, value, ttl)
  if self:get(key) ~= nil then return false, "exists" end
  return self:set(key, value, ttl)
end

function Cache:delete(key)
  if self.entries[key] ~= nil then
    self.entries[key] = nil
    self.count = self.count - 1
  end
  return true
end

return M
