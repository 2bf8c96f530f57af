-- wecom: a client of the WeCom (企业微信) calendar and schedule API.
--
--   local wecom = require("wecom")
--   local client = assert(wecom.new{ corpid = "ww...", corpsecret = "..." })
--   local res, err = client:calendar_get{ cal_id_list = { cal_id } }
--
-- Every runtime failure is `nil, err` with err a wecom.errors object; only
-- programming mistakes (a method called without the colon) raise.
local core = require("wecom.core")
local errors = require("wecom.errors")
local token = require("wecom.token")

local M = {
  _VERSION = core._VERSION,
  errors = errors,
}

local Client = {}
Client.__index = Client
Client.__name = "wecom.client"

-- Credentials and machinery live here, not in the client table, so that
-- printing or walking a client never shows the secret.
local private = setmetatable({}, { __mode = "k" })

local DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"

---------------------------------------------------------------------------
-- options

local function is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

local function has_method(v, name)
  local t = type(v)
  if t ~= "table" and t ~= "userdata" then return false end
  local ok, m = pcall(function() return v[name] end)
  return ok and is_callable(m)
end

local function positive_number(max)
  return function(v)
    if type(v) ~= "number" or v ~= v or v <= 0 or v > max then
      return nil, ("expected a number of seconds in (0, %d]"):format(max)
    end
    return v
  end
end

local function non_negative_number(v)
  if type(v) ~= "number" or v ~= v or v < 0 or v > 3600 then
    return nil, "expected a number of seconds in [0, 3600]"
  end
  return v
end

local function non_empty_string(v)
  if type(v) ~= "string" or v == "" then return nil, "expected a non-empty string" end
  if v:find("[%c ]") then return nil, "must not contain spaces or control characters" end
  return v
end

local OPTIONS = {
  corpid = non_empty_string,
  corpsecret = non_empty_string,
  access_token = non_empty_string,
  token = function(v)
    if not is_callable(v) then return nil, "expected a function returning token, expires_in" end
    return v
  end,
  base_url = function(v)
    if type(v) ~= "string" or not v:match("^https?://[^/%s?#]+") or v:find("[%c%s?#]") then
      return nil, "expected an http(s) URL such as " .. DEFAULT_BASE_URL
    end
    return (v:gsub("/+$", ""):gsub("/cgi%-bin$", ""))
  end,
  timeout = positive_number(3600),
  connect_timeout = positive_number(3600),
  max_retries = function(v)
    if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v > 10 then
      return nil, "expected an integer in 0..10"
    end
    return v
  end,
  retry_base_delay = non_negative_number,
  retry_max_delay = non_negative_number,
  ca_file = function(v)
    if type(v) ~= "string" or v == "" then return nil, "expected the path of a CA bundle" end
    local f = io.open(v, "rb")
    if not f then return nil, "can't read " .. v end
    f:close()
    return v
  end,
  token_cache = function(v)
    if not (has_method(v, "get") and has_method(v, "set")) then
      return nil, "expected an object with get(key) and set(key, value, ttl) methods"
    end
    return v
  end,
  max_response_bytes = function(v)
    if type(v) ~= "number" or v ~= math.floor(v) or v < 1 or v > 2 ^ 53 then
      return nil, "expected a positive integer"
    end
    return v
  end,
  user_agent = function(v)
    if type(v) ~= "string" or v:find("%c") then return nil, "expected a string without control characters" end
    return v
  end,
  transport = function(v)
    if v == "auto" or v == "curl" or v == "ngx" then return v end
    if not has_method(v, "request") then
      return nil, 'expected "auto", "curl", "ngx" or an object with a request(method, url, body) method'
    end
    return v
  end,
}

local function option_error(name, text)
  return nil, errors.validation("wecom.new", name, text)
end

local function check_options(opts)
  if type(opts) ~= "table" then return option_error(nil, "expected a table of options") end
  local o = {}
  for name, value in pairs(opts) do
    local check = OPTIONS[name]
    if not check then
      return option_error(tostring(name), "unknown option")
    end
    local v, why = check(value)
    if v == nil then return option_error(name, why) end
    o[name] = v
  end
  if o.corpid and not o.corpsecret then return option_error("corpsecret", "required with corpid") end
  if o.corpsecret and not o.corpid then return option_error("corpid", "required with corpsecret") end
  local modes = (o.corpid and 1 or 0) + (o.access_token and 1 or 0) + (o.token and 1 or 0)
  if modes ~= 1 then
    return option_error(nil, "give exactly one of corpid + corpsecret, access_token, or token")
  end
  o.base_url = o.base_url or DEFAULT_BASE_URL
  o.timeout = o.timeout or 10
  o.connect_timeout = o.connect_timeout or 5
  o.max_retries = o.max_retries or 3
  o.retry_base_delay = o.retry_base_delay or 0.5
  o.retry_max_delay = o.retry_max_delay or 8
  o.max_response_bytes = o.max_response_bytes or 64 * 1024 * 1024
  return o
end

---------------------------------------------------------------------------
-- the path of one request

local function urlescape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end
M.urlescape = urlescape

-- Everything that must never appear in an error: the secret, the tokens,
-- and their URL-escaped forms.
local function secrets_of(p, current)
  local list = {}
  local function add(s)
    if type(s) == "string" and #s >= errors.MIN_SECRET then
      list[#list + 1] = s
      local escaped = urlescape(s)
      if escaped ~= s then list[#list + 1] = escaped end
    end
  end
  add(p.corpsecret)
  add(p.access_token)
  add(current)
  return list
end

-- Phases of nginx's Lua module where cosockets and ngx.sleep work.
local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

local function cosocket_phase()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then return false end
  return COSOCKET_PHASES[ngx.get_phase()] == true
end

-- The transport for a request made now: cosockets where nginx allows them
-- (a request handler must never block its worker), else the libcurl
-- session; or what the `transport` option forces.
local function transport_kind(p)
  local mode = p.transport_mode
  if mode == "custom" then return "custom" end
  -- outside nginx there is no phase to look at
  return (mode == "ngx" or (mode == "auto" and p.in_nginx and cosocket_phase())) and "ngx" or "curl"
end

-- Made on first use, in the phase that needs it; nil, message if that fails.
local function transport_of(p)
  local kind = transport_kind(p)
  if kind == "custom" then return p.transport end
  local field = kind .. "_transport"
  if not p[field] then
    local ok, t = pcall(function() return require("wecom.transport." .. kind).new(p.options) end)
    if not ok then return nil, "can't make the " .. kind .. " transport: " .. tostring(t) end
    p[field] = t
  end
  return p[field]
end

-- Back-off waits yield to nginx where they can; elsewhere a real sleep.
local function sleep(seconds)
  if cosocket_phase() then return rawget(_G, "ngx").sleep(seconds) end
  return core.sleep(seconds)
end

-- One request through the transport of the moment: status, body, or nil,
-- reason, message (a raising transport is a transport error too).
local function send_one(p, method, url, body)
  if p.closed then return nil, "closed", "the client is closed" end
  local transport, terr = transport_of(p)
  if not transport then return nil, "error", terr end
  local ok, status, reply, detail = pcall(transport.request, transport, method, url, body)
  if not ok then return nil, "error", "the transport raised: " .. tostring(status) end
  if not status then return nil, reply or "network", detail end
  return status, reply
end

-- Several requests: one reply each, {status =, body =} or {reason =,
-- message =}; up to `concurrency` at once where the transport can.
local function send_many(p, reqs, concurrency)
  local transport = not p.closed and transport_of(p) or nil
  if transport and concurrency > 1 and #reqs > 1 and has_method(transport, "request_many") then
    local ok, replies = pcall(transport.request_many, transport, reqs, concurrency)
    if ok and type(replies) == "table" then return replies end
    local broken = {}
    for k = 1, #reqs do broken[k] = { reason = "error", message = "the transport raised: " .. tostring(replies) } end
    return broken
  end
  local replies = {}
  for k, r in ipairs(reqs) do
    local status, body, detail = send_one(p, r.method, r.url, r.body)
    replies[k] = status and { status = status, body = body } or { reason = body, message = detail }
  end
  return replies
end

local NO_REPLY = { reason = "error", message = "the transport gave no reply for this request" }

-- What a reply means: the decoded reply, or nil, err. `status` nil: a
-- transport failure, with `body` its reason.
local function interpret(endpoint, status, body, detail, idempotent)
  if not status then return nil, errors.transport(endpoint, body, detail, idempotent) end
  if status ~= 200 then return nil, errors.http(endpoint, status, body, idempotent) end
  local res, errcode = core.decode(body)
  if not res then return nil, errors.decode(endpoint, errcode, status, idempotent) end
  if errcode ~= 0 then return nil, errors.api(endpoint, errcode, res.errmsg, status) end
  return res
end

-- Exponential back-off with jitter: half the step plus a random half.
local function backoff(p, retry)
  local step = math.min(p.retry_max_delay, p.retry_base_delay * 2 ^ (retry - 1))
  return step / 2 + step / 2 * core.random()
end

-- The retry policy, for a request whose attempt failed with `err`: the
-- seconds to wait before sending it again (0 after a token refresh, which
-- each request gets once), or nil and the final error, counted and
-- redacted. st counts the request's attempts, retries and refresh;
-- can_refresh() drops the failed token and says whether a new one can come.
local function after_failure(p, st, err, idempotent, can_refresh, token_used)
  st.attempts = st.attempts + 1
  local action = errors.action(err, idempotent)
  if action == "refresh" and not st.refreshed and can_refresh and can_refresh() then
    st.refreshed = true
    return 0
  end
  if action == "retry" and st.retries < p.max_retries then
    st.retries = st.retries + 1
    return backoff(p, st.retries)
  end
  err.attempts = st.attempts
  return nil, errors.redact(err, secrets_of(p, token_used))
end

-- The URL with the token, made once per URL while the token stays the same.
local function with_token_url(p, base_url, access_token)
  if p.url_token ~= access_token then
    p.url_token, p.escaped_token, p.token_urls = access_token, urlescape(access_token), {}
  end
  local url = p.token_urls[base_url]
  if not url then
    url = base_url .. "?access_token=" .. p.escaped_token
    p.token_urls[base_url] = url
  end
  return url
end

-- One request under the retry policy: res, or nil, err. `with_token` says
-- whether the URL carries the access token (everything but gettoken does).
local function perform(p, endpoint, method, base_url, payload, idempotent, with_token)
  local st
  while true do
    local url, current = base_url, nil
    if with_token then
      local err
      current, err = p.tokens:get()
      if not current then return nil, errors.redact(err, secrets_of(p)) end
      url = with_token_url(p, base_url, current)
    end
    local status, body, detail = send_one(p, method, url, payload)
    local res, err = interpret(endpoint, status, body, detail, idempotent)
    if res ~= nil then return res end
    st = st or { attempts = 0, retries = 0, refreshed = false }
    local wait, final = after_failure(p, st, err, idempotent,
      with_token and function() return p.tokens:invalidate(current) end, current)
    if not wait then return nil, final end
    if wait > 0 then p.sleep(wait) end
  end
end

-- n requests to one endpoint under the retry policy, up to `concurrency`
-- at once; returns one {res} or {nil, err} per payload. Each request keeps
-- its own retries and its one token refresh; a round drops a failed token
-- once and waits once, for the longest back-off among its retries.
local function perform_many(p, endpoint, method, base_url, payloads, n, idempotent, concurrency)
  local outcomes, states, pending = {}, {}, {}
  for i = 1, n do
    pending[i] = i
    states[i] = { attempts = 0, retries = 0, refreshed = false }
  end
  while #pending > 0 do
    local current, terr = p.tokens:get()
    if not current then
      terr = errors.redact(terr, secrets_of(p))
      for _, i in ipairs(pending) do outcomes[i] = { nil, terr } end
      break
    end
    local url = with_token_url(p, base_url, current)
    local reqs = {}
    for k, i in ipairs(pending) do reqs[k] = { method = method, url = url, body = payloads[i] } end
    local replies = send_many(p, reqs, concurrency)
    local refreshable
    local function can_refresh()
      if refreshable == nil then refreshable = p.tokens:invalidate(current) end
      return refreshable
    end
    local still, longest = {}, 0
    for k, i in ipairs(pending) do
      local r = type(replies[k]) == "table" and replies[k] or NO_REPLY
      local res, err = interpret(endpoint, r.status, r.status and r.body or r.reason, r.message, idempotent)
      if res ~= nil then
        outcomes[i] = { res }
      else
        local wait, final = after_failure(p, states[i], err, idempotent, can_refresh, current)
        if wait then
          still[#still + 1] = i
          if wait > longest then longest = wait end
        else
          outcomes[i] = { nil, final }
        end
      end
    end
    pending = still
    if #pending > 0 and longest > 0 then p.sleep(longest) end
  end
  return outcomes
end

-- GET /cgi-bin/gettoken -> token, expires_in | nil, err
local function fetch_token(p)
  local url = ("%s/cgi-bin/gettoken?corpid=%s&corpsecret=%s"):format(
    p.base_url, urlescape(p.corpid), urlescape(p.corpsecret))
  local res, err = perform(p, "gettoken", "GET", url, nil, true, false)
  if not res then return nil, err end
  local tok, expires_in = res.access_token, tonumber(res.expires_in)
  if type(tok) ~= "string" or tok == "" or #tok > 2048 or tok:find("[%c%s]") or not expires_in or expires_in <= 0 then
    return nil, errors.decode("gettoken", "no usable access_token/expires_in in the reply", 200, true)
  end
  return tok, expires_in
end

---------------------------------------------------------------------------
-- the client

local function state(self, method)
  local p = private[self]
  if not p then
    error(("wecom: call it as client:%s(...), on a client made by wecom.new"):format(method), 3)
  end
  return p
end

function M.new(opts)
  local o, err = check_options(opts)
  if not o then return nil, err end
  local p = {
    base_url = o.base_url,
    corpid = o.corpid,
    corpsecret = o.corpsecret,
    access_token = o.access_token,
    max_retries = o.max_retries,
    retry_base_delay = o.retry_base_delay,
    retry_max_delay = o.retry_max_delay,
    sleep = sleep,
    options = o,
    in_nginx = type(rawget(_G, "ngx")) == "table",
    -- the URL of each endpoint: path -> base_url/cgi-bin/path
    urls = setmetatable({}, { __index = function(t, path)
      local url = o.base_url .. "/cgi-bin/" .. path
      t[path] = url
      return url
    end }),
  }
  if type(o.transport) == "string" then
    p.transport_mode = o.transport
  elseif o.transport ~= nil then
    p.transport_mode, p.transport = "custom", o.transport
  else
    p.transport_mode = "auto"
  end
  if o.corpid then
    p.tokens = token.corp{
      base_url = o.base_url, corpid = o.corpid, corpsecret = o.corpsecret, cache = o.token_cache,
      fetch = function() return fetch_token(p) end,
      -- the longest a fetch can take: every attempt and every back-off
      sleep = sleep,
      lock_ttl = (o.max_retries + 1) * (o.timeout + o.connect_timeout) + o.max_retries * o.retry_max_delay,
    }
  elseif o.access_token then
    p.tokens = token.fixed(o.access_token)
  else
    p.tokens = token.callback(o.token)
  end
  local client = setmetatable({}, Client)
  private[client] = p
  return client
end

-- One method per row of the C endpoint table.
local ENDPOINTS = core.endpoints()
local BY_NAME = {}
M.endpoints = {}
for _, ep in ipairs(ENDPOINTS) do
  local id, name, path, idempotent = ep.id, ep.name, ep.path, ep.idempotent
  BY_NAME[name] = ep
  M.endpoints[#M.endpoints + 1] = { name = name, path = path, idempotent = idempotent }
  Client[name] = function(self, body)
    local p = state(self, name)
    local payload, field, text = core.encode(id, body)
    if not payload then return nil, errors.validation(path, field, text) end
    return perform(p, path, "POST", p.urls[path], payload, idempotent, true)
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
  local idempotent = (opts and opts.idempotent) and true or false
  return perform(p, path, "POST", p.urls[path], payload, idempotent, true)
end

M.MAX_CONCURRENCY = core.MAX_CONCURRENCY

-- client:call_many(method, bodies, {concurrency = N}) -> results
-- Calls one endpoint method with each body, up to N requests at once (the
-- curl multi interface, or nginx light threads in OpenResty), each under
-- the retry policy. results[i] is {ok = true, result = res} or
-- {ok = false, err = err}, in the order of `bodies`; a body that fails
-- validation gets its error and is not sent, the others still are.
function Client:call_many(method, bodies, opts)
  local p = state(self, "call_many")
  local ep = BY_NAME[method]
  if not ep then
    return nil, errors.validation("call_many", "method", "expected an endpoint method name, such as calendar_get")
  end
  if type(bodies) ~= "table" then return nil, errors.validation("call_many", "bodies", "expected a list of bodies") end
  local concurrency = 1
  if opts ~= nil then
    if type(opts) ~= "table" then return nil, errors.validation("call_many", "opts", "expected a table") end
    if opts.concurrency ~= nil then
      local c = opts.concurrency
      if type(c) ~= "number" or c ~= math.floor(c) or c < 1 or c > M.MAX_CONCURRENCY then
        return nil, errors.validation("call_many", "opts.concurrency",
          ("expected an integer in 1..%d"):format(M.MAX_CONCURRENCY))
      end
      concurrency = c
    end
  end
  local results, payloads, owners = {}, {}, {}
  for i = 1, #bodies do
    local payload, field, text = core.encode(ep.id, bodies[i])
    if payload then
      payloads[#payloads + 1] = payload
      owners[#payloads] = i
    else
      results[i] = { ok = false, err = errors.validation(ep.path, field, text) }
    end
  end
  local outcomes = perform_many(p, ep.path, "POST", p.urls[ep.path], payloads, #payloads, ep.idempotent,
    concurrency)
  for k, o in ipairs(outcomes) do
    if o[1] ~= nil then
      results[owners[k]] = { ok = true, result = o[1] }
    else
      results[owners[k]] = { ok = false, err = o[2] }
    end
  end
  return results
end

-- A list for fields the schemas don't know: an empty table is otherwise
-- sent as {}, since keys alone can't tell. wecom.array() or wecom.array(t).
local ARRAY_MT = { __jsontype = "array" }
function M.array(t) return setmetatable(t or {}, ARRAY_MT) end

-- JSON as the library sends it (raw UTF-8, integers as integers, lists
-- marked with wecom.array as []): string, or nil, err.
function M.encode_json(value)
  local json, field, text = core.encode(nil, value)
  if not json then return nil, errors.validation("encode_json", field, text) end
  return json
end

-- The Lua helpers (paging, bulk reads, patches, sharing) use only the
-- public methods above.
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
  return transport_kind(state(self, "transport_name"))
end

-- Closes the HTTP session; the client must not be used afterwards.
function Client:close()
  local p = state(self, "close")
  local t = p.transport_mode == "custom" and p.transport or p.curl_transport
  if has_method(t, "close") then t:close() end
  p.closed = true
  return true
end

Client.__tostring = function(self)
  local p = private[self]
  if not p then return "wecom.client (invalid)" end
  local who = p.corpid and ("corpid " .. p.corpid) or (p.access_token and "fixed token" or "token function")
  return ("wecom.client (%s, %s)"):format(who, p.base_url)
end

M.Client = Client

return M
