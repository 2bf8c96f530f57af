-- Access tokens: where the client gets the token it puts in each URL.
--
-- Three providers share one interface:
--   provider:get()           -> token | nil, err
--   provider:invalidate(tok) -> true when a fresh token can be obtained
-- corp:     corpid + corpsecret, fetched from /cgi-bin/gettoken and cached
--           per (base_url, corpid, secret) in a pluggable cache
-- fixed:    a token given by the user, never fetched
-- callback: the user's function(rejected_token) -> token [, expires_in]
local core = require("wecom.core")
local ypcall = require("wecom.compat").pcall -- pcall that a coroutine may yield through
local errors = require("wecom.errors")
local memory = require("wecom.cache.memory")

local M = {}

-- Shared by every client of this Lua state that has no token_cache option,
-- so two clients of the same app share one token.
local default_cache = memory.new()

-- gettoken failures that only a configuration change can fix. They are
-- remembered for a while so a busy caller does not hammer gettoken (WeCom
-- blocks an IP that keeps sending a wrong secret).
M.CONFIG_ERRORS = { [40001] = true, [40013] = true }
M.CONFIG_ERROR_TTL = 60
local config_failures = {}

-- The longest expires_in we believe (WeCom gives 7200): a token that claims
-- more, or a lifetime that is no finite number, is not kept for it.
M.MAX_EXPIRES_IN = 86400
local MAX_EXPIRES_IN = M.MAX_EXPIRES_IN

-- Seconds a token may be used: refreshed a little before WeCom expires it.
function M.lifetime(expires_in)
  return expires_in - math.min(300, expires_in / 10)
end

function M.cache_key(base_url, corpid, secret)
  return ("wecom:token:%s:%s"):format(corpid, core.sha256(base_url .. "\n" .. corpid .. "\n" .. secret):sub(1, 32))
end

-- Calls a method of a user-supplied cache: its first two results, and
-- whether the cache failed (it raised, or answered nothing with a reason
-- other than "exists"). A failing cache counts as a miss.
local function cache_call(cache, method, ...)
  local fn = cache[method]
  if fn == nil then return nil end
  local ok, value, detail = ypcall(fn, cache, ...)
  if not ok then return nil, nil, true end
  return value, detail, (not value) and detail ~= nil and detail ~= "exists"
end

-- What a cache can do beyond get and set. Each is used where present:
--   add(key, value, ttl)               one fetch at a time (a lock)
--   delete(key)                        else set(key, nil)
--   compare_and_delete(key, value)     releasing the lock and dropping a
--   compare_and_expire(key, value, ttl) rejected token, renewing the lock:
--                                      atomically, else get and then act
--   get_ttl(key) -> value, seconds left
--       a remote cache (wecom.cache.redis): the token is also kept in this
--       Lua state's memory until it expires or WeCom rejects it, so a call
--       costs no round trip to the cache
local CAPABILITIES = { "add", "delete", "compare_and_delete", "compare_and_expire", "get_ttl" }

local function capabilities(cache)
  local has = {}
  for _, name in ipairs(CAPABILITIES) do
    local ok, fn = pcall(function() return cache[name] end)
    has[name] = ok and fn ~= nil
  end
  return has
end

-- The tokens this Lua state keeps from remote caches: cache -> key ->
-- {token =, expires =} (monotonic seconds).
local copies = setmetatable({}, { __mode = "k" })

-- How long a copy of a token that has no expiry in the cache is kept.
M.COPY_WITHOUT_TTL = 300

---------------------------------------------------------------------------
local Corp = {}
Corp.__index = Corp

-- How often a caller waiting for another's fetch looks at the cache.
M.LOCK_POLL = 0.02

-- The fetch locks this Lua state holds: lock key -> the coroutine holding
-- it (MAIN outside any coroutine), so a waiter can tell that the holder is
-- one of its own coroutines.
local holders = {}
local MAIN = {}
local function current_coroutine() return coroutine.running() or MAIN end

-- opts: corpid, corpsecret, base_url, cache (optional); fetch(renew): a
-- function returning token, expires_in or nil, err, calling renew() before
-- each retry; sleep(seconds); can_wait(): whether sleep lets the other
-- coroutines of this Lua state run; attempt_ttl: the longest one attempt of
-- a fetch takes, the lock's lifetime, renewed by its holder before each
-- retry (so a dead holder's lock is gone soon); fetch_ttl: the longest a
-- whole fetch takes, retries included (a waiter's patience).
function M.corp(opts)
  local cache = opts.cache or default_cache
  local has = capabilities(cache)
  local key = M.cache_key(opts.base_url, opts.corpid, opts.corpsecret)
  if has.get_ttl and not copies[cache] then copies[cache] = {} end
  return setmetatable({
    key = key,
    lock_key = key .. ":lock",
    fail_key = key .. ":fail",
    cache = cache,
    has = has,
    copies = has.get_ttl and copies[cache] or nil,
    can_lock = has.add,
    fetch = opts.fetch,
    sleep = opts.sleep or core.sleep,
    can_wait = opts.can_wait or function() return false end,
    attempt_ttl = opts.attempt_ttl or 30,
    fetch_ttl = opts.fetch_ttl or 120,
  }, Corp)
end

-- Keeps a copy of the token in this Lua state, where the cache is remote.
local function keep(self, token, seconds)
  if self.copies then
    self.copies[self.key] = { token = token, expires = core.monotime() + math.min(seconds, MAX_EXPIRES_IN) }
  end
end

local function copied(self)
  local c = self.copies[self.key]
  if not c then return nil end
  if core.monotime() < c.expires then return c.token end
  self.copies[self.key] = nil
  return nil
end

local function cached(self)
  local token, left
  if self.cache == default_cache then
    token = default_cache:get(self.key) -- ours: it can't fail, no pcall needed
  elseif self.copies then
    token, left = cache_call(self.cache, "get_ttl", self.key)
    if type(left) ~= "number" or left ~= left then left = M.COPY_WITHOUT_TTL end
    if type(token) == "string" and token ~= "" and left > 0 then keep(self, token, left) end
  else
    token = cache_call(self.cache, "get", self.key)
  end
  if type(token) == "string" and token ~= "" then return token end
  return nil
end

-- Removes a key: delete(key) where the cache has it, else set(key, nil).
local function drop(cache, has, key)
  if has.delete then
    cache_call(cache, "delete", key)
  else
    cache_call(cache, "set", key, nil)
  end
end

-- Removes a key only if it still holds `value`.
local function drop_if(cache, has, key, value)
  if has.compare_and_delete then
    cache_call(cache, "compare_and_delete", key, value)
  elseif cache_call(cache, "get", key) == value then
    drop(cache, has, key)
  end
end

-- A configuration error of gettoken remembered here, or by another worker
-- or process through the cache ("errcode errmsg"): the error, or nil.
-- local_only: what this Lua state remembers.
local function remembered_failure(self, local_only)
  local failure = config_failures[self.key]
  if failure then
    if core.monotime() < failure.expires then return failure.err end
    config_failures[self.key] = nil
  end
  if local_only then return nil end
  local shared = cache_call(self.cache, "get", self.fail_key)
  local code, msg
  if type(shared) == "string" then code, msg = shared:match("^(%-?%d+) (.*)$") end
  if code then return errors.api("gettoken", tonumber(code), msg .. " (remembered)") end
  return nil
end

local function remember_failure(self, err)
  config_failures[self.key] = { err = err, expires = core.monotime() + M.CONFIG_ERROR_TTL }
  cache_call(self.cache, "set", self.fail_key, ("%d %s"):format(err.errcode, err.errmsg or ""), M.CONFIG_ERROR_TTL)
end

-- add() took the lock: true from ngx.shared.DICT and ours, 1 or "OK" from
-- Redis-style wrappers (SETNX, SET NX).
local function added(r) return r == true or r == 1 or r == "OK" end

-- A value no other caller will put in the lock.
local function lock_owner()
  return ("%.0f-%.0f"):format(core.monotime() * 1e6, core.random() * 1e15)
end

-- Fetches a token and caches it: token, expires_in | nil, err. Whatever
-- raises in the fetch is an error, never a raise.
function Corp:fetch_and_store(renew)
  local ok, token, expires_in = ypcall(self.fetch, renew)
  if not ok then
    return nil, errors.transport("gettoken", "error", "the token fetch raised: " .. tostring(token), true)
  end
  if not token then
    local err = expires_in
    if err.kind == "api" and M.CONFIG_ERRORS[err.errcode] then remember_failure(self, err) end
    return nil, err
  end
  keep(self, token, M.lifetime(expires_in))
  cache_call(self.cache, "set", self.key, token, M.lifetime(expires_in))
  return token
end

-- With a cache that has add() (ngx.shared.DICT, the default cache), one
-- caller fetches while the others (other workers, other coroutines) wait,
-- reading the cache, until the token (or a remembered configuration error)
-- appears. The lock lives one attempt and its holder renews it before each
-- retry: a holder that died leaves a lock that is soon gone, and a waiter
-- takes it. A waiter gives up after the longest a whole fetch can take. A
-- waiter whose sleep can't let the holder run (the holder is a coroutine of
-- this Lua state, and the sleep blocks the whole state) does not wait: it
-- fetches on its own; so does a caller whose cache fails to answer add (a
-- Redis that is down), with this Lua state's own lock where the token is
-- kept here too, so its coroutines still share one fetch.
function Corp:get()
  local token = self.copies and copied(self)
  if token then return token end
  token = cached(self)
  if token then return token end
  local failure = remembered_failure(self)
  if failure then return nil, failure end
  if not self.can_lock then return self:fetch_and_store(nil) end
  return self:locked_fetch(self.cache, self.has)
end

local DEFAULT_HAS = capabilities(default_cache)

-- The fetch under a lock in `cache` (whose capabilities are `has`). With
-- this state's own lock (the remote cache failed), waiters look only here:
-- the holder keeps its token here too, and the remote cache, tried again
-- after its cooldown, could make each of them wait its timeout once more.
function Corp:locked_fetch(cache, has)
  local alone = self.copies and cache == default_cache
  local me, co = lock_owner(), current_coroutine()
  local deadline = core.monotime() + self.fetch_ttl
  local token, failure
  while true do
    local took, _, broken = cache_call(cache, "add", self.lock_key, me, self.attempt_ttl)
    if added(took) then break end
    if broken then
      if self.copies and not alone then return self:locked_fetch(default_cache, DEFAULT_HAS) end
      return self:fetch_and_store(nil)
    end
    local holder = holders[self.lock_key]
    if holder ~= nil and holder ~= co and not self.can_wait() then return self:fetch_and_store(nil) end
    ypcall(self.sleep, M.LOCK_POLL)
    if alone then token = copied(self) else token = (self.copies and copied(self)) or cached(self) end
    if token then return token end
    failure = remembered_failure(self, alone)
    if failure then return nil, failure end
    if core.monotime() >= deadline then
      return nil, errors.transport("gettoken", "timeout", "waited too long for another caller's token fetch", true)
    end
  end
  holders[self.lock_key] = co
  local lock_key, ttl = self.lock_key, self.attempt_ttl
  local function renew()
    if has.compare_and_expire then
      cache_call(cache, "compare_and_expire", lock_key, me, ttl)
    elseif cache_call(cache, "get", lock_key) == me then
      cache_call(cache, "set", lock_key, me, ttl)
    end
  end
  local err
  -- another caller may have finished just before: with a token, or with a
  -- configuration error it remembered (a second gettoken with a wrong
  -- secret is what WeCom blocks IPs for)
  if alone then token = copied(self) else token = (self.copies and copied(self)) or cached(self) end
  if not token then
    err = remembered_failure(self, alone)
    if not err then token, err = self:fetch_and_store(renew) end
  end
  holders[lock_key] = nil
  -- the lock is released only if it is still ours, not a successor's
  drop_if(cache, has, lock_key, me)
  if not token then return nil, err end
  return token
end

-- Drops the token (this state's copy, the cache's entry) only where it is
-- still the one that failed: another client, worker or host may already
-- have put a fresh one there.
function Corp:invalidate(token)
  if self.copies then
    local c = self.copies[self.key]
    if c and c.token == token then self.copies[self.key] = nil end
  end
  drop_if(self.cache, self.has, self.key, token)
  return true
end

---------------------------------------------------------------------------
local Fixed = {}
Fixed.__index = Fixed

function M.fixed(token)
  return setmetatable({ token = token }, Fixed)
end

function Fixed:get() return self.token end

function Fixed.invalidate() return false end

---------------------------------------------------------------------------
local Callback = {}
Callback.__index = Callback

function M.callback(fn)
  return setmetatable({ fn = fn, calling = setmetatable({}, { __mode = "k" }) }, Callback)
end

local function provider_error(text)
  return errors.transport("token", "token", "the token function " .. text, true)
end

-- Without expires_in the function is asked for every request: it is then
-- the user's own cache. With it, the token is kept that long. A function
-- that calls the client it provides tokens for would come back here from
-- its own call: that is refused at once instead of recursing.
function Callback:get()
  if self.token and core.monotime() < self.expires then return self.token end
  local co = current_coroutine()
  if self.calling[co] then
    return nil, provider_error("called the client it provides tokens for: it must get its token elsewhere")
  end
  self.calling[co] = true
  local ok, token, expires_in = ypcall(self.fn, self.rejected)
  self.calling[co] = nil
  if not ok then return nil, provider_error("raised an error: " .. tostring(token)) end
  if type(token) ~= "string" or token == "" then
    return nil, provider_error(("returned no token (%s)"):format(expires_in ~= nil and tostring(expires_in) or type(token)))
  end
  self.rejected = nil
  if type(expires_in) == "number" and expires_in > 0 and expires_in <= MAX_EXPIRES_IN then
    self.token, self.expires = token, core.monotime() + M.lifetime(expires_in)
  end
  return token
end

function Callback:invalidate(token)
  if self.token == token then self.token = nil end
  self.rejected = token
  return true
end

return M
