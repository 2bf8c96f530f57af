-- wecom.callback: the events WeCom POSTs to an app's callback URL, checked,
-- decrypted and handled once (DESIGN.md "Listening", API.md "Callbacks").
--
--   local callback = require("wecom.callback")
--   local cb, err = callback.new{ token = ..., encoding_aes_key = ..., receiveid = "ww..." }
--   cb:serve(function(msg) ... end)               -- an nginx content handler
--   local status, body = cb:handle(method, query, body, fn)   -- any other server
--   local msg, err = cb:decrypt(query, body)      -- or just the checks
--
-- The signature, base64, AES, padding, length and receiveid are checked in
-- C (csrc/callback.c), the XML parsed there too (csrc/xml.c); here live the
-- policy: which timestamps are fresh, which messages were handled before,
-- what each outcome answers. Refusals are `nil, err` with err.kind
-- "callback" and err.reason; no error or log line carries the token, the
-- key or the plaintext of a refused message.
local checks = require("wecom.args") -- (args: the query, below)
local core = require("wecom.core")
local errors = require("wecom.errors")
local memory = require("wecom.cache.memory")
local ypcall = require("wecom.compat").pcall -- a handler or store may yield (a coroutine-based server)

local M = {}

M.MAX_BYTES = core.CALLBACK_MAX_BYTES

-- Seconds a handler has before another delivery of the same message may
-- take it over: a worker that died mid-handler holds the message this long.
M.BUSY_TTL = 60

-- Fields WeCom sends as numbers; the others stay strings (MsgId is a 64-bit
-- id that a double can't hold exactly).
local INTEGER_FIELDS = { "CreateTime", "AgentID" }

-- What each outcome answers over HTTP. WeCom delivers again after anything
-- but a timely 200, so 4xx go to requests that can never succeed and 5xx
-- to those that may later.
local STATUS = {
  request = 400, xml = 400, decrypt = 400, too_large = 413,
  signature = 403, receiveid = 403, expired = 403, method = 405,
  handler = 500, busy = 503, seen = 503,
}

local Callback = {}
Callback.__index = Callback
Callback.__name = "wecom.callback"

-- The box (token, key, receiveid in C) and the strings to scrub from logs,
-- out of reach of whoever prints or serializes a callback object.
local private = setmetatable({}, { __mode = "k" })

local function fail(reason, text) return errors.callback(reason, text) end

local function invalid(field, text) return nil, errors.validation("callback.new", field, text) end

local function default_clock()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.time then return ngx.time() end
  return os.time()
end

-- opts: token, encoding_aes_key, receiveid, max_age (600), seen (any object
-- with get/add/set/delete; default in memory), clock (a function giving
-- Unix seconds, for tests; default ngx.time or os.time).
function M.new(opts)
  if type(opts) ~= "table" then return invalid(nil, "expected a table of options") end
  for _, name in ipairs{ "token", "encoding_aes_key", "receiveid" } do
    if type(opts[name]) ~= "string" or opts[name] == "" then return invalid(name, "expected a non-empty string") end
  end
  if #opts.encoding_aes_key ~= 43 then return invalid("encoding_aes_key", "expected 43 characters") end
  local max_age = opts.max_age
  if max_age == nil then max_age = 600 end
  if type(max_age) ~= "number" or max_age ~= max_age or max_age <= 0 or max_age == math.huge then
    return invalid("max_age", "expected a positive number of seconds")
  end
  local seen = opts.seen
  if seen ~= nil and not checks.methods(seen, { "add", "get", "set", "delete" }) then
    return invalid("seen", "expected an object with add, get, set and delete (an ngx.shared.DICT, a cache)")
  end
  if opts.clock ~= nil and type(opts.clock) ~= "function" then return invalid("clock", "expected a function") end
  local box, field, text = core.callback_box(opts.token, opts.encoding_aes_key, opts.receiveid)
  if not box then return invalid(field, text) end
  local self = setmetatable({
    max_age = max_age,
    seen = seen or memory.new(),
    own_seen = seen == nil,
    clock = opts.clock or default_clock,
  }, Callback)
  private[self] = { box = box, secrets = { opts.token, opts.encoding_aes_key } }
  return self
end

local function check_self(self, method)
  if getmetatable(self) ~= Callback then error(("callback:%s: call it with a colon"):format(method), 3) end
  return private[self]
end

---------------------------------------------------------------------------
-- the checks

-- The signed query parameters, each present once.
local function query(args, names)
  if type(args) ~= "table" then return nil, fail("request", "the query must be a table") end
  for _, name in ipairs(names) do
    local v = args[name]
    if type(v) ~= "string" or v == "" then
      return nil, fail("request", ("query parameter %s: %s"):format(name,
        type(v) == "table" and "given more than once" or "missing"))
    end
  end
  if #args.timestamp > 12 or not args.timestamp:match("^%d+$") then
    return nil, fail("request", "query parameter timestamp: expected Unix seconds")
  end
  return args
end

-- A signed timestamp more than max_age seconds away from now is a replay
-- (or a clock that is badly off).
local function fresh(self, timestamp)
  local age = math.floor(self.clock()) - tonumber(timestamp)
  if age > self.max_age then
    return nil, fail("expired", ("timestamp %.0f s old, max_age %g"):format(age, self.max_age))
  end
  if -age > self.max_age then
    return nil, fail("expired", ("timestamp %.0f s in the future, max_age %g"):format(-age, self.max_age))
  end
  return true
end

-- The plaintext (parsed with as_xml) and its id (a SHA-256 naming the app
-- and the message).
local function open_box(p, q, encrypt, as_xml)
  local plain, id_or_reason, text = p.box:open(q.msg_signature, q.timestamp, q.nonce, encrypt, as_xml)
  if not plain then
    return nil, fail(id_or_reason, id_or_reason == "xml" and "message: " .. text or text)
  end
  return plain, id_or_reason
end

-- The URL check: the plaintext of echostr, to answer as the whole body.
function Callback:verify_url(args)
  local p = check_self(self, "verify_url")
  local q, err = query(args, { "msg_signature", "timestamp", "nonce", "echostr" })
  if not q then return nil, err end
  -- a "+" that reached the query unescaped was decoded as a space; base64
  -- has no spaces, and the signature still decides
  local plain
  plain, err = open_box(p, q, (q.echostr:gsub(" ", "+")))
  if not plain then return nil, err end
  local ok
  ok, err = fresh(self, q.timestamp)
  if not ok then return nil, err end
  return plain
end

-- Returns the message table and its id (the seen store's key).
local function open(self, p, args, body)
  local q, err = query(args, { "msg_signature", "timestamp", "nonce" })
  if not q then return nil, err end
  if type(body) ~= "string" then return nil, fail("request", "body: expected a string") end
  if #body > M.MAX_BYTES then return nil, fail("too_large", ("body over %d bytes"):format(M.MAX_BYTES)) end
  local envelope, xerr = core.xml(body)
  if not envelope then return nil, fail("xml", "envelope: " .. xerr) end
  if type(envelope.Encrypt) ~= "string" then return nil, fail("xml", "envelope: no single <Encrypt>") end
  local msg, id = open_box(p, q, envelope.Encrypt, true)
  if not msg then return nil, id end
  local ok
  ok, err = fresh(self, q.timestamp)
  if not ok then return nil, err end
  for _, name in ipairs(INTEGER_FIELDS) do
    local v = msg[name]
    if type(v) == "string" and #v <= 15 and v:match("^%d+$") then
      msg[name] = tonumber(v)
    elseif name == "CreateTime" and v ~= nil then
      return nil, fail("xml", "message: CreateTime: expected Unix seconds")
    end
  end
  return msg, id
end

function Callback:decrypt(args, body)
  local p = check_self(self, "decrypt")
  local msg, err = open(self, p, args, body)
  if not msg then return nil, err end
  return msg
end

-- A passive reply: reply_xml encrypted, signed and wrapped.
function Callback:encrypt(reply_xml)
  local p = check_self(self, "encrypt")
  if type(reply_xml) ~= "string" then return nil, errors.validation("callback.encrypt", "reply_xml", "expected a string") end
  if #reply_xml > M.MAX_BYTES then
    return nil, errors.validation("callback.encrypt", "reply_xml", ("at most %d bytes"):format(M.MAX_BYTES))
  end
  local timestamp = ("%.0f"):format(math.floor(self.clock()))
  local encrypt, signature, nonce = p.box:seal(reply_xml, timestamp)
  if not encrypt then return nil, fail(signature, nonce) end
  return ("<xml><Encrypt><![CDATA[%s]]></Encrypt><MsgSignature><![CDATA[%s]]></MsgSignature>"
    .. "<TimeStamp>%s</TimeStamp><Nonce><![CDATA[%s]]></Nonce></xml>"):format(encrypt, signature, timestamp, nonce)
end

---------------------------------------------------------------------------
-- handling each message once
--
-- The seen store holds, per message (keyed on its decrypted content: WeCom
-- re-encrypts a delivery it repeats, and events carry no id):
--   "busy"  while a handler runs: add() succeeds for one delivery only,
--           across workers and hosts; expires after BUSY_TTL in case the
--           handler's process dies;
--   "done"  once it succeeded, for 2 * max_age: longer than any delivery of
--           it can stay fresh.
-- A delivery that finds "busy" gets a 503, so WeCom tries again later; one
-- that finds "done" gets "success" and no call. A failed handler deletes
-- its mark, so the next delivery handles the message again.

-- Calls a method of the store; a raise counts as a failure of the store.
local function store_call(seen, method, ...)
  local ok, a, b = ypcall(seen[method], seen, ...)
  if not ok then return nil, tostring(a) end
  return a, b
end

-- A handler's or a store's failure for an error and the log: the secrets
-- out, one printable line, cut (a store's text is a server's).
local function redacted(p, e)
  return errors.clean(tostring(e), errors.TEXT, p.secrets)
end

-- Whether add() set the key, read as token.lua reads its lock: true
-- (ngx.shared.DICT, ours), 1 or "OK" (a Redis client's SETNX, SET NX). A
-- Redis client answers 0 or null (truthy in Lua) when the key exists.
local function added_key(r) return r == true or r == 1 or r == "OK" end

local function deliver(self, p, msg, id, fn)
  local seen = self.seen
  local key = "wecom:callback:" .. id
  local added
  for _ = 1, 2 do
    local res, err = store_call(seen, "add", key, "busy", M.BUSY_TTL)
    added = added_key(res)
    if added then break end
    if err ~= nil and err ~= "exists" then
      return 503, "seen store failed", fail("seen", "the seen store failed: " .. redacted(p, err))
    end
    local state = store_call(seen, "get", key)
    if state == "done" then return 200, "success" end
    -- a mark is a string; nil, false or a Redis null is none
    if type(state) == "string" then
      return 503, "busy", fail("busy", "another delivery of this message is being handled")
    end
    -- the mark went away between add and get (released or expired): once more
  end
  if not added then return 503, "busy", fail("busy", "the seen store keeps changing under this message") end
  local ok, res, ferr = ypcall(fn, msg)
  local failure
  -- nil, err and false, err both mean "failed": the Lua idiom either way
  if not ok then failure = res elseif (res == nil or res == false) and ferr ~= nil then failure = ferr end
  if failure ~= nil then
    store_call(seen, "delete", key)
    local e = fail("handler", "the handler failed: " .. redacted(p, failure))
    e.event = msg.Event
    return 500, "handler failed", e
  end
  local set, serr = store_call(seen, "set", key, "done", 2 * self.max_age + 1)
  local note
  if not set then
    note = fail("seen", "handled, but the seen store failed to record it: " .. redacted(p, serr))
  end
  local reply = "success"
  if type(res) == "string" then
    local rerr
    reply, rerr = self:encrypt(res)
    if not reply then return 500, "reply failed", rerr end
  end
  if note then return 200, reply, note end
  return 200, reply
end

-- Any server: method ("GET" or "POST"), the decoded query as a table, the
-- raw body (POST). Returns the HTTP status and body to answer, and an error
-- (for the log) when the request was refused or the handler failed.
function Callback:handle(method, args, body, fn)
  local p = check_self(self, "handle")
  if type(fn) ~= "function" then error("callback:handle: fn must be a function", 2) end
  if method == "GET" then
    local plain, err = self:verify_url(args)
    if not plain then return STATUS[err.reason] or 400, err.reason, err end
    return 200, plain
  end
  if method ~= "POST" then
    return 405, "method not allowed", fail("method", ("method %s: expected GET or POST"):format(tostring(method)))
  end
  local msg, id = open(self, p, args, body)
  if not msg then return STATUS[id.reason] or 400, id.reason, id end
  return deliver(self, p, msg, id, fn)
end

---------------------------------------------------------------------------
-- nginx

local function read_body(ngx)
  local len = tonumber(ngx.var.http_content_length or "")
  if len and len > M.MAX_BYTES then return nil end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local f = io.open(file, "rb")
  if not f then return "" end
  body = f:read(M.MAX_BYTES + 1) or ""
  f:close()
  return body
end

-- In an nginx content handler (content_by_lua*): answers the request.
function Callback:serve(fn)
  local p = check_self(self, "serve")
  if type(fn) ~= "function" then error("callback:serve: fn must be a function", 2) end
  local ngx = rawget(_G, "ngx")
  if self.own_seen and not p.warned and ngx.worker.count() > 1 then
    p.warned = true
    ngx.log(ngx.WARN, "wecom callback: the default seen store is per worker; with ", ngx.worker.count(),
      " workers a message may be handled once per worker: pass seen = ngx.shared.DICT")
  end
  local method = ngx.req.get_method()
  local status, out, err
  if method == "POST" then
    local body = read_body(ngx)
    if body == nil then
      status, out, err = 413, "too_large", fail("too_large", ("body over %d bytes"):format(M.MAX_BYTES))
    else
      status, out, err = self:handle(method, ngx.req.get_uri_args(), body, fn)
    end
  else
    status, out, err = self:handle(method, ngx.req.get_uri_args(), nil, fn)
  end
  if err then
    -- failures here are errors; refusals, warnings; a duplicate told to come back is routine
    local level = ngx.WARN
    if err.reason == "handler" or err.reason == "seen" then level = ngx.ERR
    elseif err.reason == "busy" then level = ngx.INFO end
    ngx.log(level, "wecom callback: ", status, " ", err.message)
  end
  ngx.status = status
  -- a passive reply is XML; everything else, the URL check's answer included, plain text
  local reply = method == "POST" and status == 200 and out ~= "success"
  ngx.header["Content-Type"] = reply and "application/xml" or "text/plain; charset=utf-8"
  ngx.print(out)
  return ngx.exit(status)
end

return M
