-- Starts an emulator for a spec file and talks to its control API.
--
--   local emulator = require("support.emulator")
--   local emu
--   setup(function() emu = emulator.start() end)
--   teardown(function() emu:stop() end)
--   before_each(function() emu:reset() end)
local cjson = require("cjson")
local launcher = require("wecom.emulator.launcher")
local session = require("support.session")

local M = {}

M.CORPID = "wwemulator"
M.SECRET = "emulator-secret-0123456789"

local Emu = {}
Emu.__index = Emu

function M.start(opts)
  opts = opts or {}
  opts.port = opts.port or 0
  opts.corpid = opts.corpid or M.CORPID
  opts.corpsecret = opts.corpsecret or M.SECRET
  local nginx, err = launcher.start(opts)
  assert(nginx, err)
  return setmetatable({
    nginx = nginx,
    base_url = nginx.base_url,
    tls_url = nginx.tls_url,
    port = nginx.port,
    http = session{ timeout = 30 },
    corpid = opts.corpid,
    corpsecret = opts.corpsecret,
  }, Emu)
end

function Emu:stop()
  self.http:close()
  return self.nginx:stop()
end

-- POST (or GET with method "GET") to /emulator/<name>; returns the decoded reply.
function Emu:control(name, body, method)
  method = method or "POST"
  local status, reply, detail = self.http:request(method, self.base_url .. "/emulator/" .. name,
    method == "GET" and nil or cjson.encode(body or {}))
  assert(status, detail)
  assert(status == 200, ("control %s: HTTP %s %s"):format(name, tostring(status), tostring(reply)))
  return cjson.decode(reply)
end

-- A real access token, fetched from the emulator's gettoken (with
-- `secret`, default the emulator's own).
function Emu:issue_token(secret)
  local status, reply = self.http:request("GET", ("%s/cgi-bin/gettoken?corpid=%s&corpsecret=%s"):format(
    self.base_url, self.corpid, secret or self.corpsecret))
  assert(status == 200, "gettoken: " .. tostring(reply))
  return (assert(cjson.decode(reply).access_token, reply))
end

function Emu:reset()
  return self:control("reset", { corpid = self.corpid, corpsecret = self.corpsecret })
end

function Emu:configure(t) return self:control("config", t) end

function Emu:fault(spec) return self:control("faults", spec) end

function Emu:clear_faults() return self:control("clear_faults") end

function Emu:stats()
  local s = self:control("stats", nil, "GET")
  s.calls = s.calls or {}
  s.errors = s.errors or {}
  return s
end

function Emu:calls(path) return self:stats().calls[path] or 0 end

function Emu:last_request(path)
  return self:control("requests?path=" .. path, nil, "GET").body
end

function Emu:seed(cal_id, count, extra)
  local body = { cal_id = cal_id, count = count }
  for k, v in pairs(extra or {}) do body[k] = v end
  return self:control("seed_schedules", body)
end

-- Creates `count` calendars; returns their ids in creation order.
function Emu:seed_calendars(count, summary)
  return self:control("seed_calendars", { count = count, summary = summary }).cal_ids
end

function Emu:expire_tokens() return self:control("tokens", { action = "expire" }) end

function Emu:invalidate_tokens() return self:control("tokens", { action = "invalidate" }) end

local luassert = require("luassert")

-- Asserts that client:method(body) is refused before anything is sent, with
-- a validation error naming `field` (false: any) and containing `text`.
function Emu:refused(client, method, body, field, text)
  local before = self:stats().calls
  local res, err = client[method](client, body)
  luassert.is_nil(res)
  luassert.equal("validation", err.kind)
  if field ~= false then luassert.equal(field, err.field) end
  if text then luassert.truthy(err.message:find(text, 1, true), err.message) end
  luassert.same(before, self:stats().calls)
  return err
end

-- Asserts that client:method(body) succeeds; returns the reply.
function Emu.accepted(_, client, method, body)
  local res, err = client[method](client, body)
  luassert.is_nil(err)
  return res
end

-- A fresh start for a test: forgets everything, then makes a client and a
-- calendar (the calendar table of calendar_add). Returns both.
function Emu:fresh(calendar)
  self:reset()
  local client = self:client()
  local res, err = client:calendar_add{ calendar = calendar }
  assert(res, tostring(err))
  return client, res.cal_id
end

-- A client of this emulator with fast retries and its own token cache, so
-- counts of gettoken calls are not shared between tests.
function Emu:client(opts)
  local wecom = require("wecom")
  local o = {
    corpid = self.corpid, corpsecret = self.corpsecret, base_url = self.base_url,
    retry_base_delay = 0.001, retry_max_delay = 0.01, timeout = 5,
    token_cache = require("wecom.cache.memory").new(),
  }
  for k, v in pairs(opts or {}) do
    if v == false then o[k] = nil else o[k] = v end
  end
  return assert(wecom.new(o))
end

return M
