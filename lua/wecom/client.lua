-- The client: made by wecom.new, one method per row of the C endpoint
-- table, call and call_many, the helpers, close.
local core = require("wecom.core")
local errors = require("wecom.errors")
local args = require("wecom.args")
local options = require("wecom.options")
local request = require("wecom.request")
local schema = require("wecom.schema")
local token = require("wecom.token")
local transport = require("wecom.transport")

local M = {}

local Client = {}
Client.__index = Client
Client.__name = "wecom.client"
M.Client = Client

-- Credentials and machinery live here, not in the client table, so that
-- printing or walking a client never shows the secret.
local private = setmetatable({}, { __mode = "k" })

local function state(self, method)
  local p = private[self]
  if not p then
    error(("wecom: call it as client:%s(...), on a client made by wecom.new"):format(method), 3)
  end
  return p
end

-- The endpoint record of request.perform for an API path of this client.
local function endpoint(p, path, idempotent)
  return {
    name = path, method = "POST", url = p.options.base_url .. "/cgi-bin/" .. path,
    idempotent = idempotent, with_token = true,
  }
end

-- The token provider the options ask for.
local function tokens_for(p)
  local o = p.options
  if o.corpid then
    local attempt = o.timeout + o.connect_timeout
    return token.corp{
      base_url = o.base_url, corpid = o.corpid, corpsecret = o.corpsecret, cache = o.token_cache,
      fetch = function(renew) return request.fetch_token(p, renew) end,
      sleep = p.sleep,
      -- a sleep of the user's yields (copas.sleep); ngx.sleep does in cosocket phases
      can_wait = function() return o.sleep ~= nil or transport.in_cosocket_phase() end,
      -- one attempt and the back-off after it; the holder renews the lock before each retry
      attempt_ttl = attempt + o.retry_max_delay + 1,
      -- the longest a fetch can take: every attempt and every back-off
      fetch_ttl = (o.max_retries + 1) * attempt + o.max_retries * o.retry_max_delay + 1,
    }
  elseif o.access_token then
    return token.fixed(o.access_token)
  end
  return token.callback(o.token)
end

-- wecom.new(opts) -> client | nil, err
function M.new(opts)
  local o, err = options.check(opts)
  if not o then return nil, err end
  local p = { options = o, sleep = o.sleep or transport.sleep, transports = transport.chooser(o.transport, o) }
  -- per client: the URLs carry its base_url
  p.endpoints = {}
  for _, ep in ipairs(schema.endpoints) do p.endpoints[ep.name] = endpoint(p, ep.path, ep.idempotent) end
  p.tokens = tokens_for(p)
  local client = setmetatable({}, Client)
  private[client] = p
  return client
end

-- One method per row of the C endpoint table.
for _, ep in ipairs(schema.endpoints) do
  local id, name, path = ep.id, ep.name, ep.path
  Client[name] = function(self, body)
    local p = state(self, name)
    local payload, field, text = core.encode(id, body)
    if not payload then return nil, errors.validation(path, field, text) end
    return request.perform(p, p.endpoints[name], payload)
  end
end

-- Any other POST endpoint, sent without a schema (the body is still checked
-- for what JSON and WeCom can carry). opts.idempotent allows retries after
-- transport failures.
function Client:call(path, body, opts)
  local p = state(self, "call")
  if type(path) ~= "string" then return nil, errors.validation("call", "path", "expected a string") end
  path = path:gsub("^/+", ""):gsub("^cgi%-bin/", "")
  if not path:match("^[%w_%-][%w_%-/%.]*$") or path:find("..", 1, true) then
    return nil, errors.validation("call", "path", "expected an API path such as oa/calendar/get")
  end
  if opts ~= nil and type(opts) ~= "table" then
    return nil, errors.validation(path, "opts", "expected a table")
  end
  local payload, field, text = core.encode(nil, body == nil and {} or body)
  if not payload then return nil, errors.validation(path, field, text) end
  return request.perform(p, endpoint(p, path, (opts and rawget(opts, "idempotent")) and true or false), payload)
end

local CALL_MANY_OPTIONS = { concurrency = true }

-- client:call_many(method, bodies, {concurrency = N}) -> results
-- Calls one endpoint method with each body, up to N requests at once (the
-- curl multi interface, or nginx light threads in OpenResty), each under
-- the retry policy. results[i] is {ok = true, result = res} or
-- {ok = false, err = err}, in the order of `bodies`; a body that fails
-- validation gets its error and is not sent, the others still are.
function Client:call_many(method, bodies, opts)
  local p = state(self, "call_many")
  local ep = schema.by_name[method]
  if not ep then
    return nil, errors.validation("call_many", "method", "expected an endpoint method name, such as calendar_get")
  end
  if type(bodies) ~= "table" then return nil, errors.validation("call_many", "bodies", "expected a list of bodies") end
  local concurrency, err = args.concurrency("call_many", opts, CALL_MANY_OPTIONS)
  if not concurrency then return nil, err end
  local results, payloads, owners = {}, {}, {}
  for i = 1, args.rawlen(bodies) do
    local payload, field, text = core.encode(ep.id, rawget(bodies, i))
    if payload then
      payloads[#payloads + 1] = payload
      owners[#payloads] = i
    else
      results[i] = { ok = false, err = errors.validation(ep.path, field, text) }
    end
  end
  for k, o in ipairs(request.perform_many(p, p.endpoints[method], payloads, concurrency)) do
    if o[1] ~= nil then
      results[owners[k]] = { ok = true, result = o[1] }
    else
      results[owners[k]] = { ok = false, err = o[2] }
    end
  end
  return results
end

-- The Lua helpers (paging, bulk reads, patches, sharing, iCalendar export)
-- use only the public methods above.
for _, module in ipairs{ "wecom.paging", "wecom.bulk", "wecom.patch", "wecom.export" } do
  for name, fn in pairs(require(module).methods) do
    Client[name] = function(self, ...)
      state(self, name)
      return fn(self, ...)
    end
  end
end

-- The transport a call made now would use: "curl", "ngx" or "custom".
function Client:transport_name()
  return state(self, "transport_name").transports:kind()
end

-- Closes the HTTP session; the client must not be used afterwards.
function Client:close()
  local p = state(self, "close")
  p.transports:close()
  p.closed = true
  return true
end

Client.__tostring = function(self)
  local p = private[self]
  if not p then return "wecom.client (invalid)" end
  local o = p.options
  local who = o.corpid and ("corpid " .. o.corpid) or (o.access_token and "fixed token" or "token function")
  return ("wecom.client (%s, %s)"):format(who, o.base_url)
end

return M
