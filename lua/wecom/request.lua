-- The path of one request: the access token in the URL, the transport, what
-- the reply means, and the retry policy (API.md, "Error codes"):
--   40014/42001       -> drop the token, fetch a new one, send again (once)
--   -1/45033          -> back off, send again (max_retries)
--   transport errors and HTTP 5xx -> the same, for idempotent endpoints only
--   anything else     -> the error, counted (err.attempts) and redacted
--
-- `p` is a client's private state (client.lua): its options, its token
-- provider (p.tokens), its transports (p.transports) and p.sleep.
-- An endpoint `ep` is a record {name = "oa/calendar/add", method = "POST",
-- url = ..., idempotent = bool, with_token = bool}: with_token says whether
-- the URL carries the access token (everything but gettoken does).
local core = require("wecom.core")
local ypcall = require("wecom.compat").pcall -- pcall that a coroutine may yield through
local errors = require("wecom.errors")
local options = require("wecom.options")
local token = require("wecom.token")

local M = {}

local function urlescape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end
M.urlescape = urlescape

-- A private lua-cjson instance (a user's cjson settings don't change ours):
-- NaN/Infinity and deep nesting refused. C restores integers and checks
-- errcode: decode_reply(json) -> reply, errcode | nil, message.
local json = require("cjson.safe").new()
json.decode_invalid_numbers(false)
json.decode_max_depth(100)
M.decode_reply = core.reply_decoder(json.decode)
local decode_reply = M.decode_reply

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
  add(p.options.corpsecret)
  add(p.options.access_token)
  add(current)
  return list
end

-- A transport's answer, checked: status, body, or nil, reason, message.
-- Anything outside the contract (a status that is no HTTP status, a body
-- that is no string, a reason that is no string) is a transport error.
local function answer(status, body, detail)
  if status == nil or status == false then
    if type(body) ~= "string" then
      return nil, "error", "the transport failed without naming a reason"
    end
    return nil, body, type(detail) == "string" and detail or body
  end
  if type(status) ~= "number" or status ~= math.floor(status) or status < 100 or status > 599 then
    return nil, "error", "the transport answered a status that is not an HTTP status: " .. type(status)
  end
  if type(body) ~= "string" then
    return nil, "error", "the transport answered status " .. status .. " without a body string"
  end
  return status, body
end

-- One request through the transport of the moment: status, body, or nil,
-- reason, message (a raising transport is a transport error too).
local function send_one(p, method, url, body, idempotent)
  if p.closed then return nil, "closed", "the client is closed" end
  local transport, terr = p.transports:current()
  if not transport then return nil, "error", terr end
  local ok, status, reply, detail = ypcall(transport.request, transport, method, url, body, idempotent)
  if not ok then return nil, "error", "the transport raised: " .. tostring(status) end
  return answer(status, reply, detail)
end

local NO_REPLY = { reason = "error", message = "the transport gave no reply for this request" }

-- One entry of request_many's results, checked as answer() checks.
local function answer_of(r)
  if type(r) ~= "table" then return NO_REPLY end
  local status, body, detail
  if r.status ~= nil then
    status, body, detail = answer(r.status, r.body)
  else
    status, body, detail = answer(nil, r.reason, r.message)
  end
  if status then return { status = status, body = body } end
  return { reason = body, message = detail }
end

-- Several requests: one reply each, {status =, body =} or {reason =,
-- message =}; up to `concurrency` at once where the transport can.
local function send_many(p, reqs, concurrency)
  local transport = not p.closed and p.transports:current() or nil
  if transport and concurrency > 1 and #reqs > 1 and options.has_method(transport, "request_many") then
    local ok, replies = ypcall(transport.request_many, transport, reqs, concurrency)
    if ok and type(replies) == "table" then
      local checked = {}
      for k = 1, #reqs do checked[k] = answer_of(replies[k]) end
      return checked
    end
    local broken = {}
    for k = 1, #reqs do broken[k] = { reason = "error", message = "the transport raised: " .. tostring(replies) } end
    return broken
  end
  local replies = {}
  for k, r in ipairs(reqs) do
    local status, body, detail = send_one(p, r.method, r.url, r.body, r.idempotent)
    replies[k] = status and { status = status, body = body } or { reason = body, message = detail }
  end
  return replies
end

-- What a reply means: the decoded reply, or nil, err. `status` nil: a
-- transport failure, with `body` its reason. `current`: the token the
-- request carried, kept out of the error with the other secrets. An
-- endpoint's check(res) may refuse a reply that decoded (nil, why).
local function interpret(p, ep, status, body, detail, current)
  local name, idempotent = ep.name, ep.idempotent
  if not status then return nil, errors.transport(name, body, detail, idempotent, secrets_of(p, current)) end
  if status ~= 200 then return nil, errors.http(name, status, body, idempotent, secrets_of(p, current)) end
  local res, errcode = decode_reply(body)
  if not res then return nil, errors.decode(name, errcode, status, idempotent, secrets_of(p, current)) end
  if errcode ~= 0 then return nil, errors.api(name, errcode, res.errmsg, status, secrets_of(p, current)) end
  if ep.check then
    local why = ep.check(res)
    if why then return nil, errors.decode(name, why, status, idempotent, secrets_of(p, current)) end
  end
  return res
end

-- Exponential back-off with jitter: half the step plus a random half.
function M.backoff(o, retry)
  local step = math.min(o.retry_max_delay, o.retry_base_delay * 2 ^ (retry - 1))
  return step / 2 + step / 2 * core.random()
end

-- A request's attempts so far.
local function new_tally() return { attempts = 0, retries = 0, refreshed = false } end

-- The retry policy, for a request whose attempt failed with `err`: the
-- seconds to wait before sending it again (0 after a token refresh, which
-- each request gets once), or nil and the final error, counted and
-- redacted. `tally` counts the request's attempts, retries and refresh;
-- can_refresh() drops the failed token and says whether a new one can come.
function M.after_failure(p, tally, err, can_refresh, token_used)
  tally.attempts = tally.attempts + 1
  local action = errors.action(err)
  if action == "refresh" and not tally.refreshed and can_refresh and can_refresh() then
    tally.refreshed = true
    return 0
  end
  if action == "retry" and tally.retries < p.options.max_retries then
    tally.retries = tally.retries + 1
    return M.backoff(p.options, tally.retries)
  end
  err.attempts = tally.attempts
  return nil, errors.redact(err, secrets_of(p, token_used))
end
local after_failure = M.after_failure

-- The URL with the token, made once per URL while the token stays the same.
local function with_token_url(p, url, access_token)
  if p.url_token ~= access_token then
    p.url_token, p.escaped_token, p.token_urls = access_token, urlescape(access_token), {}
  end
  local full = p.token_urls[url]
  if not full then
    full = url .. "?access_token=" .. p.escaped_token
    p.token_urls[url] = full
  end
  return full
end

-- Waits between attempts with the client's sleep; a sleep of the user's
-- that raises only shortens the wait.
local function wait(p, seconds)
  ypcall(p.sleep, seconds)
end

-- One request under the retry policy: res, or nil, err. ep.on_attempt(),
-- when there is one, runs before every attempt after the first.
function M.perform(p, ep, body)
  local tally
  while true do
    if tally and ep.on_attempt then ep.on_attempt() end
    local url, current = ep.url, nil
    if ep.with_token then
      local err
      current, err = p.tokens:get()
      if not current then return nil, errors.redact(err, secrets_of(p)) end
      url = with_token_url(p, url, current)
    end
    local status, reply, detail = send_one(p, ep.method, url, body, ep.idempotent)
    local res, err = interpret(p, ep, status, reply, detail, current)
    if res ~= nil then return res end
    tally = tally or new_tally()
    local seconds, final = after_failure(p, tally, err,
      ep.with_token and function() return p.tokens:invalidate(current) end, current)
    if not seconds then return nil, final end
    if seconds > 0 then wait(p, seconds) end
  end
end

-- One request per body to one endpoint under the retry policy, up to
-- `concurrency` at once; returns one {res} or {nil, err} per body. Each
-- request keeps its own retries and its one token refresh; a round drops a
-- failed token once and waits once, for the longest back-off among its
-- retries.
function M.perform_many(p, ep, bodies, concurrency)
  local outcomes, tallies, pending = {}, {}, {}
  for i = 1, #bodies do
    pending[i] = i
    tallies[i] = new_tally()
  end
  while #pending > 0 do
    local current, terr = p.tokens:get()
    if not current then
      terr = errors.redact(terr, secrets_of(p))
      for _, i in ipairs(pending) do outcomes[i] = { nil, terr } end
      break
    end
    local url = with_token_url(p, ep.url, current)
    local reqs = {}
    for k, i in ipairs(pending) do
      reqs[k] = { method = ep.method, url = url, body = bodies[i], idempotent = ep.idempotent }
    end
    local replies = send_many(p, reqs, concurrency)
    local refreshable
    local function can_refresh()
      if refreshable == nil then refreshable = p.tokens:invalidate(current) end
      return refreshable
    end
    local still, longest = {}, 0
    for k, i in ipairs(pending) do
      local r = type(replies[k]) == "table" and replies[k] or NO_REPLY
      local res, err = interpret(p, ep, r.status, r.status and r.body or r.reason, r.message, current)
      if res ~= nil then
        outcomes[i] = { res }
      else
        local seconds, final = after_failure(p, tallies[i], err, can_refresh, current)
        if seconds then
          still[#still + 1] = i
          if seconds > longest then longest = seconds end
        else
          outcomes[i] = { nil, final }
        end
      end
    end
    pending = still
    if #pending > 0 and longest > 0 then wait(p, longest) end
  end
  return outcomes
end

-- access_token and expires_in of a gettoken reply: nil when usable, else why not.
local function check_token_reply(res)
  local tok, expires_in = res.access_token, res.expires_in
  if type(tok) ~= "string" or tok == "" or #tok > 2048 or tok:find("[%c%s]") then
    return "no usable access_token in the reply"
  end
  if type(expires_in) == "string" and expires_in:match("^%d+$") then expires_in = tonumber(expires_in) end
  if type(expires_in) ~= "number" or not (expires_in >= 1 and expires_in <= token.MAX_EXPIRES_IN) then
    return ("expires_in is not a number of seconds in 1..%d"):format(token.MAX_EXPIRES_IN)
  end
  return nil
end

-- GET /cgi-bin/gettoken -> token, expires_in | nil, err. renew(), when
-- given, runs before every retry (the fetch lock's holder keeps it).
function M.fetch_token(p, renew)
  local o = p.options
  local ep = {
    name = "gettoken", method = "GET", idempotent = true, with_token = false,
    url = ("%s/cgi-bin/gettoken?corpid=%s&corpsecret=%s"):format(
      o.base_url, urlescape(o.corpid), urlescape(o.corpsecret)),
    check = check_token_reply, on_attempt = renew,
  }
  local res, err = M.perform(p, ep, nil)
  if not res then return nil, err end
  return res.access_token, tonumber(res.expires_in)
end

return M
