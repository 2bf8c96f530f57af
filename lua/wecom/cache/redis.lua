-- wecom.cache.redis: the token cache (and the callbacks' seen store) in
-- Redis, shared by every host, worker and process of an app (DESIGN.md,
-- "Many hosts: Redis").
--
--   local cache = require("wecom.cache.redis").new{ host = "127.0.0.1", port = 6379 }
--   wecom.new{ corpid = ..., corpsecret = ..., token_cache = cache }
--   callback.new{ ..., seen = cache }
--
-- The interface of wecom.cache.memory, in Redis (keys under `prefix`, TTLs
-- in seconds sent as milliseconds):
--   get(key) -> value | nil                    GET
--   set(key, value, ttl) -> true               SET [PX]
--   add(key, value, ttl) -> true | false, "exists"   SET NX [PX]
--   delete(key) -> true                        DEL
-- and what token.lua uses where a cache has it (each one EVAL, so no other
-- client can slip in between the read and the write):
--   get_ttl(key) -> value, seconds left (nil: no expiry) | nil
--   compare_and_delete(key, value) -> true if it deleted, false if the key
--       held something else (the fetch lock of a successor, a fresh token)
--   compare_and_expire(key, value, ttl) -> true if it renewed, false if not
-- Every one of them answers nil, err when Redis failed: down, slow (no
-- reply within `timeout`), or refusing (a wrong password). After a failure
-- the cache stops trying Redis for `cooldown` seconds and answers at once
-- (a circuit breaker): a caller does its own work meanwhile, and the next
-- try after the cooldown finds out whether Redis is back. status() says
-- what happened; in nginx each change is also logged.
--
-- Clients: in nginx's cosocket phases, lua-resty-redis (`resty.redis`, or
-- `nginx.redis` as Debian's lua-nginx-redis names it), its connections
-- pooled by nginx; elsewhere redis-lua over luasocket, one connection per
-- cache object, kept until it fails. `connect` hands in any other client.
local core = require("wecom.core")
local errors = require("wecom.errors")
local ypcall = require("wecom.compat").pcall -- cosocket calls yield through it on Lua 5.1

local M = {}

M.DEFAULT_TIMEOUT = 0.2   -- seconds per connect, send or read
M.DEFAULT_COOLDOWN = 5    -- seconds without trying Redis after a failure
M.KEEPALIVE_MS = 60000    -- idle time of a pooled cosocket connection
M.POOL_SIZE = 32          -- pooled cosocket connections per worker

-- The scripts of the compound operations.
local GET_TTL = "local v = redis.call('get', KEYS[1]) if not v then return false end "
  .. "return { v, redis.call('pttl', KEYS[1]) }"
local COMPARE_AND_DELETE = "if redis.call('get', KEYS[1]) == ARGV[1] then "
  .. "return redis.call('del', KEYS[1]) end return 0"
local COMPARE_AND_EXPIRE = "if redis.call('get', KEYS[1]) == ARGV[1] then "
  .. "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"

local Cache = {}
Cache.__index = Cache
Cache.__name = "wecom.cache.redis"

-- The password, out of reach of whoever prints or serializes the cache.
local private = setmetatable({}, { __mode = "k" })

local function invalid(field, text) return nil, errors.validation("wecom.cache.redis", field, text) end

local function ngx_global() return rawget(_G, "ngx") end

-- The nginx phase this code runs in, or nil outside nginx.
local function nginx_phase()
  local ngx = ngx_global()
  if type(ngx) == "table" and type(ngx.get_phase) == "function" then return ngx.get_phase() end
  return nil
end

-- Whether this code runs in an nginx phase with cosockets (the same test
-- as the HTTP transport's).
local function in_cosocket_phase()
  return require("wecom.transport").in_cosocket_phase()
end

---------------------------------------------------------------------------
-- finding the client libraries

-- lua-resty-redis under its OpenResty name or Debian's.
local function resty_redis()
  local why = {}
  for _, name in ipairs{ "resty.redis", "nginx.redis" } do
    local ok, mod = pcall(require, name)
    if ok and type(mod) == "table" and type(mod.new) == "function" then return mod end
    why[#why + 1] = ok and (name .. " is not lua-resty-redis") or tostring(mod):match("^[^\n]*")
  end
  return nil, table.concat(why, "; ")
end

-- redis-lua. Debian's lua-redis installs it for Lua 5.1 to 5.3 only; the
-- 5.3 file runs unchanged on 5.4.
local function redis_lua()
  local ok, mod = pcall(require, "redis")
  if ok and type(mod) == "table" and type(mod.connect) == "function" then return mod end
  local why = ok and "the module redis is not redis-lua" or tostring(mod):match("^[^\n]*")
  if _VERSION == "Lua 5.4" and package.searchpath then
    local path = package.searchpath("redis", "/usr/local/share/lua/5.3/?.lua;/usr/share/lua/5.3/?.lua")
    if path then
      local chunk, err = loadfile(path)
      if not chunk then return nil, err end
      local loaded
      ok, loaded = pcall(chunk, "redis", path)
      if ok and type(loaded) == "table" and type(loaded.connect) == "function" then
        package.loaded.redis = loaded
        return loaded
      end
      why = tostring(loaded)
    end
  end
  return nil, why
end

-- redis-lua as this module finds it, for a connect function of your own:
-- the module, or nil, why.
M.redis_lua = redis_lua

---------------------------------------------------------------------------
-- new

local function port_number(v)
  return type(v) == "number" and v == math.floor(v) and v >= 1 and v <= 65535
end

local function seconds(v, max)
  return type(v) == "number" and v == v and v > 0 and v <= max
end

local OPTIONS = {
  host = true, port = true, password = true, username = true, db = true, prefix = true,
  connect = true, timeout = true, cooldown = true,
}

-- opts: host ("127.0.0.1"), port (6379), password, username (Redis 6
-- ACLs), db (0), prefix ("wecom:"), timeout (0.2 s for each connect, send
-- and read), cooldown (5 s without trying Redis after a failure), connect
-- (a function returning a connected client, authenticated and with its db
-- selected, or nil, err; instead of host/port/password/username/db).
-- Returns the cache, or nil, err (kind "validation", naming the option).
function M.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then return invalid(nil, "expected a table of options") end
  for name in pairs(opts) do
    if not OPTIONS[name] then return invalid(tostring(name), "unknown option") end
  end
  local connect = opts.connect
  if connect ~= nil then
    if type(connect) ~= "function" then return invalid("connect", "expected a function returning a connected client") end
    for _, name in ipairs{ "host", "port", "password", "username", "db" } do
      if opts[name] ~= nil then return invalid(name, "not with connect: your function connects") end
    end
  end
  local host, port, db = opts.host or "127.0.0.1", opts.port or 6379, opts.db or 0
  if type(host) ~= "string" or host == "" or host:find("[%s%c]") then
    return invalid("host", "expected a host name or address")
  end
  if not port_number(port) then return invalid("port", "expected an integer in 1..65535") end
  if type(db) ~= "number" or db ~= math.floor(db) or db < 0 or db > 1e6 then
    return invalid("db", "expected a database number (0, 1, ...)")
  end
  for _, name in ipairs{ "password", "username" } do
    local v = opts[name]
    if v ~= nil and (type(v) ~= "string" or v == "") then return invalid(name, "expected a non-empty string") end
  end
  if opts.username ~= nil and opts.password == nil then return invalid("password", "required with username") end
  local prefix = opts.prefix
  if prefix == nil then prefix = "wecom:" end
  if type(prefix) ~= "string" then return invalid("prefix", "expected a string") end
  local timeout, cooldown = opts.timeout or M.DEFAULT_TIMEOUT, opts.cooldown or M.DEFAULT_COOLDOWN
  if not seconds(timeout, 60) then return invalid("timeout", "expected a number of seconds in (0, 60]") end
  if not seconds(cooldown, 3600) then return invalid("cooldown", "expected a number of seconds in (0, 3600]") end
  local self = setmetatable({
    prefix = prefix,
    timeout = timeout,
    cooldown = cooldown,
    where = connect and "your connect function" or ("%s:%d db %d"):format(host, port, db),
    counters = { commands = 0, failures = 0, outages = 0, skipped = 0 },
  }, Cache)
  -- whole numbers as integers: Lua 5.4 would send 6379.0
  if math.tointeger then port, db = math.tointeger(port), math.tointeger(db) end
  local p = { connect = connect, host = host, port = port, db = db, password = opts.password,
    username = opts.username }
  if not connect then
    -- the client library of where this runs, found now: a missing one is
    -- a setup error to show at once, not a failure on every call
    if nginx_phase() then
      local mod, why = resty_redis()
      if not mod then
        return invalid("connect", "in nginx this needs lua-resty-redis (resty.redis, or Debian's lua-nginx-redis "
          .. "as nginx.redis) on lua_package_path: " .. why)
      end
      p.resty = mod
      -- connections differ by server, db and credentials: a pool each
      p.pool = ("wecom.cache.redis:%s:%d:%d:%s"):format(host, port, db,
        core.sha256((opts.username or "") .. "\n" .. (opts.password or "")):sub(1, 16))
    else
      local mod, why = redis_lua()
      if not mod then
        return invalid("connect", "outside nginx this needs redis-lua (Debian: lua-redis; LuaRocks: redis-lua) "
          .. "and luasocket: " .. why)
      end
      p.redis_lua = mod
    end
  end
  private[self] = p
  return self
end

Cache.__tostring = function(self)
  return ("wecom.cache.redis (%s, prefix %q)"):format(self.where, self.prefix)
end

---------------------------------------------------------------------------
-- talking to Redis

local function null() local ngx = ngx_global() return ngx and ngx.null end

-- A raised error's text without the "file.lua:123: " of where it was raised.
local function raised(e)
  return (tostring(e):gsub("^[^\n]-%.lua:%d+: ", ""))
end

-- One command on a client: its reply (nil for Redis's nil), or nil, err,
-- true when it failed. lua-resty-redis answers nil, err for a broken
-- connection and false, err for an error reply; redis-lua raises both.
local function command(self, client, name, ...)
  local found, fn = pcall(function() return client[name] end)
  if not found or type(fn) ~= "function" then return nil, "the client has no " .. name .. " method", true end
  self.counters.commands = self.counters.commands + 1
  local ok, res, err = ypcall(fn, client, ...)
  if not ok then return nil, raised(res), true end
  if res == nil or res == false then
    if err ~= nil then return nil, tostring(err), true end
    return nil
  end
  if res == null() then return nil end
  return res
end

-- An "OK" status: true from redis-lua, "OK" from lua-resty-redis.
local function is_ok(res) return res == true or res == "OK" end

-- AUTH and SELECT on a new connection of ours.
local function prepare(self, p, client)
  if p.password then
    local res, err, failed
    if p.username then
      res, err, failed = command(self, client, "auth", p.username, p.password)
    else
      res, err, failed = command(self, client, "auth", p.password)
    end
    if failed or not is_ok(res) then return nil, "AUTH: " .. tostring(err or res) end
  end
  if p.db ~= 0 then
    local res, err, failed = command(self, client, "select", p.db)
    if failed or not is_ok(res) then return nil, "SELECT: " .. tostring(err or res) end
  end
  return true
end

local function close(client)
  pcall(function() client:close() end)
end

local function connect_cosocket(self, p)
  local red, err = p.resty.new(p.resty)
  if not red then return nil, "cosocket: " .. tostring(err) end
  red:set_timeout(math.floor(self.timeout * 1000 + 0.5))
  local ok
  ok, err = red:connect(p.host, p.port, { pool = p.pool })
  if not ok then return nil, "connect: " .. tostring(err) end
  if (red:get_reused_times() or 0) == 0 then
    ok, err = prepare(self, p, red)
    if not ok then
      red:close()
      return nil, err
    end
  end
  return red
end

local function connect_socket(self, p)
  local ok, client = pcall(p.redis_lua.connect, { host = p.host, port = p.port, timeout = self.timeout })
  if not ok then return nil, raised(client) end
  -- redis-lua has no close; its socket does
  client.close = function(c) c.network.socket:close() end
  local ready, err = prepare(self, p, client)
  if not ready then
    client:close()
    return nil, err
  end
  return client
end

-- A connected client for one operation: client, pooled (it goes back to
-- nginx's pool afterwards), or nil, err, skipped (true: nothing was tried).
local function acquire(self, p)
  local cosockets = in_cosocket_phase()
  if not cosockets and nginx_phase() then
    -- init_by_lua, init_worker, set_by_lua, log...: nothing can talk to
    -- Redis there without blocking the worker
    return nil, "no cosockets in nginx's " .. tostring(nginx_phase()) .. " phase", true
  end
  if not cosockets and p.kept then return p.kept, false end
  local client, err
  if p.connect then
    local ok
    ok, client, err = ypcall(p.connect)
    if not ok then return nil, "the connect function raised: " .. raised(client) end
    if type(client) ~= "table" and type(client) ~= "userdata" then
      return nil, "the connect function gave no client: " .. tostring(err)
    end
  elseif cosockets then
    client, err = connect_cosocket(self, p)
  else
    client, err = connect_socket(self, p)
  end
  if not client then return nil, err end
  return client, cosockets
end

-- After a good operation: back to nginx's pool (a cosocket can't outlive
-- its request), or kept for the next one.
local function release(p, client, pooled)
  if pooled then
    local ok, kept = pcall(function() return client:set_keepalive(M.KEEPALIVE_MS, M.POOL_SIZE) end)
    if not (ok and kept) then close(client) end
  else
    p.kept = client
  end
end

local function log(level, ...)
  local ngx = ngx_global()
  if type(ngx) == "table" and type(ngx.log) == "function" then ngx.log(ngx[level], ...) end
end

-- Opens the breaker: the next `cooldown` seconds go without Redis.
local function failed(self, p, err)
  local c = self.counters
  local text = errors.clean(tostring(err), errors.EXCERPT, { p.password })
  c.failures = c.failures + 1
  c.last_error = text
  local was_up = self.up ~= false
  self.up = false
  self.down_until = core.monotime() + self.cooldown
  if was_up then
    c.outages = c.outages + 1
    log("WARN", "wecom redis cache: ", self.where, " failed (", text, "): this worker fetches tokens on its own ",
      "and tries Redis again in ", self.cooldown, " s")
  else
    log("INFO", "wecom redis cache: ", self.where, " still failing (", text, ")")
  end
  return nil, ("redis %s: %s"):format(self.where, text)
end

-- Runs op(self, client, ...) -> result, detail | nil, err, true (failed)
-- on a connection: the result, or nil, err.
local function run(self, op, ...)
  local p = private[self]
  if not p then return nil, "the cache was not made by wecom.cache.redis.new" end
  if self.down_until then
    if core.monotime() < self.down_until then
      self.counters.skipped = self.counters.skipped + 1
      return nil, ("redis %s: not tried for %g s after: %s"):format(self.where, self.cooldown, self.counters.last_error)
    end
  end
  local client, pooled, skipped = acquire(self, p)
  if not client then
    local err = pooled
    if skipped then
      self.counters.skipped = self.counters.skipped + 1
      return nil, ("redis %s: %s"):format(self.where, tostring(err))
    end
    return failed(self, p, err)
  end
  local res, detail, broke = op(self, client, ...)
  if broke then
    close(client)
    if p.kept == client then p.kept = nil end
    return failed(self, p, detail)
  end
  release(p, client, pooled)
  if self.up == false then
    log("WARN", "wecom redis cache: ", self.where, " is back: tokens are shared again")
  end
  self.up, self.down_until = true, nil
  if detail == nil then return res end
  return res, detail
end

---------------------------------------------------------------------------
-- the operations

local function key_of(self, key)
  if type(key) ~= "string" or key == "" then return nil end
  return self.prefix .. key
end

-- Seconds as Redis milliseconds: a string, nil for no expiry, false when
-- it is no number of seconds.
local function px(ttl)
  if ttl == nil or ttl == 0 then return nil end
  if type(ttl) ~= "number" or ttl ~= ttl or ttl < 0 or ttl > 1e9 then return false end
  return ("%.0f"):format(math.max(1, math.floor(ttl * 1000 + 0.5)))
end

local function value_of(v)
  if type(v) == "string" then return v end
  if type(v) == "number" and v == v and v > -math.huge and v < math.huge then return tostring(v) end
  return nil
end

local function bad(what) return nil, ("wecom.cache.redis: %s"):format(what) end

-- A method's arguments, checked before anything is sent: the key under
-- the prefix, the value as sent, and the ttl in milliseconds (nil: none).
-- `needs`: "value", "ttl" (a positive one), both, or neither.
local function arguments(self, key, value, ttl, needs)
  local k = key_of(self, key)
  if not k then return bad("key: expected a non-empty string") end
  local v, ms = value_of(value), px(ttl)
  if needs.value and not v then return bad("value: expected a string or a number") end
  if ms == false or (needs.ttl and not ms) then return bad("ttl: expected a positive number of seconds") end
  return k, v, ms
end

local KEY, VALUE, VALUE_TTL = {}, { value = true }, { value = true, ttl = true }

local function op_get(self, client, key)
  local res, err, broke = command(self, client, "get", key)
  if broke then return nil, err, true end
  return value_of(res)
end

local function op_set(self, client, key, value, ms, nx)
  local res, err, broke
  if ms and nx then res, err, broke = command(self, client, "set", key, value, "PX", ms, "NX")
  elseif ms then res, err, broke = command(self, client, "set", key, value, "PX", ms)
  elseif nx then res, err, broke = command(self, client, "set", key, value, "NX")
  else res, err, broke = command(self, client, "set", key, value) end
  if broke then return nil, err, true end
  if is_ok(res) then return true end
  if res == nil and nx then return false, "exists" end
  return nil, "SET answered " .. tostring(res), true
end

local function op_delete(self, client, key)
  local _, err, broke = command(self, client, "del", key)
  if broke then return nil, err, true end
  return true
end

local function op_get_ttl(self, client, key)
  local res, err, broke = command(self, client, "eval", GET_TTL, 1, key)
  if broke then return nil, err, true end
  if res == nil then return nil end
  if type(res) ~= "table" then return nil, "the GET/PTTL script answered " .. type(res), true end
  local value, ms = value_of(res[1]), tonumber(res[2])
  if not value then return nil end
  if ms == -2 or (ms and ms >= 0 and ms < 1) then return nil end -- expired as it was read
  if not ms or ms < 0 then return value, nil end -- no expiry
  return value, ms / 1000
end

-- get(key) -> value | nil; delete(key) -> true; get_ttl(key) -> value,
-- the seconds it has left (nil when it has no expiry) | nil
for name, op in pairs{ get = op_get, delete = op_delete, get_ttl = op_get_ttl } do
  Cache[name] = function(self, key)
    local k, err = arguments(self, key, nil, nil, KEY)
    if not k then return nil, err end
    return run(self, op, k)
  end
end

-- ttl in seconds; nil or 0 keeps the value until it is replaced; a nil
-- value deletes the key.
function Cache:set(key, value, ttl)
  if value == nil then return self:delete(key) end
  local k, v, ms = arguments(self, key, value, ttl, VALUE)
  if not k then return nil, v end
  return run(self, op_set, k, v, ms, false)
end

-- Sets only if the key is absent: the lock of one fetch at a time.
function Cache:add(key, value, ttl)
  local k, v, ms = arguments(self, key, value, ttl, VALUE)
  if not k then return nil, v end
  return run(self, op_set, k, v, ms, true)
end

local function op_compare(self, client, script, key, value, ms)
  local res, err, broke
  if ms then -- no trailing nil: a client may count its arguments with select("#")
    res, err, broke = command(self, client, "eval", script, 1, key, value, ms)
  else
    res, err, broke = command(self, client, "eval", script, 1, key, value)
  end
  if broke then return nil, err, true end
  return tonumber(res) == 1
end

-- Deletes the key only if it still holds `value`: true if it did.
function Cache:compare_and_delete(key, value)
  local k, v = arguments(self, key, value, nil, VALUE)
  if not k then return nil, v end
  return run(self, op_compare, COMPARE_AND_DELETE, k, v)
end

-- Gives the key a new ttl only if it still holds `value`: true if it did.
function Cache:compare_and_expire(key, value, ttl)
  local k, v, ms = arguments(self, key, value, ttl, VALUE_TTL)
  if not k then return nil, v end
  return run(self, op_compare, COMPARE_AND_EXPIRE, k, v, ms)
end

---------------------------------------------------------------------------
-- what happened

-- A snapshot for logs and health checks (per process; in nginx, per
-- worker): state "up" (the last try worked), "down" (it failed: Redis is
-- not tried for retry_in more seconds), or "unknown" (not tried yet);
-- commands sent, failures, outages (times it went down), skipped
-- (operations answered without Redis: while down, or in an nginx phase
-- without cosockets), last_error (no secrets), where.
function Cache:status()
  local s = { where = self.where }
  for k, v in pairs(self.counters) do s[k] = v end
  if self.up == nil then s.state = "unknown" elseif self.up then s.state = "up" else s.state = "down" end
  if self.down_until then s.retry_in = math.max(0, self.down_until - core.monotime()) end
  return s
end

-- Closes the connection this process keeps (outside nginx); the next
-- operation opens a new one.
function Cache:close()
  local p = private[self]
  if p and p.kept then
    close(p.kept)
    p.kept = nil
  end
  return true
end

return M
