-- The WeCom emulator's request handling, run by nginx's Lua module in one
-- worker with all state in memory (see launcher.lua for the nginx side).
--
-- /cgi-bin/gettoken and /cgi-bin/oa/... behave like WeCom (API.md): token
-- checks, validation, defaults and error codes. /emulator/... is the control
-- API of the tests: reset, config, seeding, fault injection and statistics.
local cjson = require("cjson")
local json = require("wecom.emulator.json")
local state = require("wecom.emulator.state")

local ngx = ngx

local M = {}

local routes = {}

-- Endpoint modules register their handlers: handler(body, ctx) returns a
-- reply table, or nil, errcode, errmsg.
function M.route(path, handler) routes[path] = handler end

require("wecom.emulator.calendar").register(M.route)
require("wecom.emulator.schedule").register(M.route)

function M.init(config)
  state.configure(config or {})
  require("wecom.emulator.callback").configure(config or {})
end

---------------------------------------------------------------------------
-- replies

local function send(status, body, content_type)
  ngx.status = status
  ngx.header["Content-Type"] = content_type or "application/json; charset=utf-8"
  ngx.print(body)
  return ngx.exit(status)
end

local function reply(t, fault)
  if t.errcode == nil then t.errcode = 0 end
  if t.errmsg == nil then t.errmsg = t.errcode == 0 and "ok" or "error" end
  local body = json.encode(t)
  if fault and fault.truncated then body = body:sub(1, math.floor(#body / 2)) end
  return send(200, body)
end

local function api_error(errcode, errmsg, fault)
  state.count_error(errcode)
  return reply({ errcode = errcode, errmsg = errmsg }, fault)
end

---------------------------------------------------------------------------
-- fault injection

local HTML_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n" ..
  "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

-- Streams `n` bytes of a syntactically endless JSON reply, for size caps:
-- announced by Content-Length, or (chunked) discovered only while reading.
local function send_huge(n, chunked)
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  if not chunked then ngx.header["Content-Length"] = n end
  local chunk = string.rep("0", 65536)
  ngx.print('{"errcode":0,"pad":"')
  local sent = 20
  while sent < n do
    local k = math.min(#chunk, n - sent)
    local ok = ngx.print(k == #chunk and chunk or chunk:sub(1, k))
    if not ok then return ngx.exit(444) end
    sent = sent + k
    if sent % (1024 * 1024) < 65536 then ngx.flush(true) end
  end
  return ngx.exit(200)
end

-- A hostile server echoes credentials: {access_token} and {corpsecret} in a
-- fault's body or errmsg become the request's own.
local function echo(text)
  if not text then return nil end
  local args = ngx.req.get_uri_args()
  local function value(v) return type(v) == "string" and v or "" end
  return (text:gsub("{access_token}", function() return value(args.access_token) end)
              :gsub("{corpsecret}", function() return value(args.corpsecret) end))
end

-- Applies what must happen before the request is handled. Returns true
-- when the fault produced the whole reply.
local function pre_fault(f)
  f.body, f.errmsg = echo(f.body), echo(f.errmsg)
  if f.latency_ms then ngx.sleep(f.latency_ms / 1000) end
  if f.expire_tokens then state.expire_tokens() end
  if f.invalidate_tokens then state.invalidate_tokens() end
  if f.hang then
    ngx.sleep(f.hang)
    return true, ngx.exit(444)
  end
  if f.close then return true, ngx.exit(444) end
  if f.status then
    return true, send(f.status, f.body or HTML_502, "text/html")
  end
  if f.malformed then
    return true, send(200, f.body or '{"errcode":0,"errmsg":"ok","calendar_list":[{"cal_id":')
  end
  if f.short_body then
    local body = '{"errcode":0,"errmsg":"ok"}'
    ngx.status = 200
    ngx.header["Content-Type"] = "application/json; charset=utf-8"
    ngx.header["Content-Length"] = #body + 100
    ngx.print(body)
    ngx.flush(true)
    return true, ngx.exit(444)
  end
  if f.huge_bytes then return true, send_huge(f.huge_bytes, f.chunked) end
  if f.raw then -- exactly these bytes on the connection, then close it
    ngx.req.read_body()
    local sock = ngx.req.socket(true)
    if sock then sock:send(f.raw) end
    return true, ngx.exit(444)
  end
  if f.trickle_ms then -- a valid reply, one byte at a time
    local body = '{"errcode":0,"errmsg":"ok","calendar_list":[]}'
    ngx.status = 200
    ngx.header["Content-Type"] = "application/json; charset=utf-8"
    ngx.header["Content-Length"] = #body
    for i = 1, #body do
      ngx.print(body:sub(i, i))
      ngx.flush(true)
      ngx.sleep(f.trickle_ms / 1000)
    end
    return true, ngx.exit(200)
  end
  if f.errcode then
    return true, api_error(f.errcode, f.errmsg or ("injected errcode " .. f.errcode))
  end
  return false
end

---------------------------------------------------------------------------
-- WeCom endpoints

local function gettoken(fault)
  local args = ngx.req.get_uri_args()
  local corpid, secret = args.corpid, args.corpsecret
  if type(corpid) ~= "string" or corpid == "" then return api_error(41002, "corpid missing", fault) end
  if type(secret) ~= "string" or secret == "" then return api_error(41004, "corpsecret missing", fault) end
  if corpid ~= state.config.corpid then return api_error(40013, "invalid corpid", fault) end
  if secret ~= state.config.corpsecret then return api_error(40001, "invalid credential", fault) end
  local token, ttl = state.issue_token()
  return reply({ access_token = token, expires_in = ttl }, fault)
end

local function read_body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data == nil then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      if f then
        data = f:read("*a")
        f:close()
      end
    end
  end
  return data or ""
end

local function api(path, handler, fault)
  local raw = read_body()
  state.record_request(path, raw)
  if ngx.req.get_method() ~= "POST" then return send(405, "method not allowed", "text/plain") end
  local token = ngx.var.arg_access_token
  if token == nil or token == "" then
    return api_error(41001, "access_token missing", fault)
  end
  local status = state.token_status(ngx.unescape_uri(token))
  if status == "expired" then return api_error(42001, "access_token expired", fault) end
  if status ~= "valid" then return api_error(40014, "invalid access_token", fault) end
  if raw:find("\\u", 1, true) then
    return api_error(40033, "invalid charset. please check your request, if include \\uxxxx will create fail!", fault)
  end
  local ok, body = pcall(cjson.decode, raw)
  if not ok or type(body) ~= "table" then return api_error(47001, "data format error", fault) end
  local res, errcode, errmsg = handler(body)
  if not res then return api_error(errcode, errmsg, fault) end
  return reply(res, fault)
end

---------------------------------------------------------------------------
-- control API (/emulator/...)

local function control_body()
  local raw = read_body()
  if raw == "" then return {} end
  local ok, body = pcall(cjson.decode, raw)
  if ok and type(body) == "table" then return body end
  return nil
end

local control = {}

control["reset"] = function(body)
  state.reset(body)
  return { ok = true }
end

control["config"] = function(body)
  state.configure(body)
  return { ok = true }
end

control["faults"] = function(body)
  local ok, err = state.add_fault(body)
  if not ok then return nil, err end
  return { ok = true }
end

control["clear_faults"] = function()
  state.clear_faults()
  return { ok = true }
end

control["tokens"] = function(body)
  if body.action == "expire" then state.expire_tokens()
  elseif body.action == "invalidate" then state.invalidate_tokens()
  else return nil, 'action must be "expire" or "invalidate"' end
  return { ok = true }
end

control["stats"] = function()
  return state.stats()
end

control["requests"] = function()
  local path = ngx.var.arg_path
  return { path = path, body = path and state.last_request(path) or nil }
end

control["seed_calendars"] = function(body)
  return require("wecom.emulator.calendar").seed(body)
end

control["seed_schedules"] = function(body)
  return require("wecom.emulator.schedule").seed(body)
end

require("wecom.emulator.callback").register(control)

local function handle_control(name)
  local fn = control[name]
  if not fn then return send(404, '{"error":"no such control endpoint"}') end
  local body = control_body()
  if not body then return send(400, '{"error":"the body must be a JSON object"}') end
  local res, err = fn(body)
  if not res then return send(400, json.encode{ error = err }) end
  return send(200, json.encode(res))
end

---------------------------------------------------------------------------

function M.handle()
  local uri = ngx.var.uri
  local name = uri:match("^/emulator/([%w_]+)$")
  if name then return handle_control(name) end
  local path = uri:match("^/cgi%-bin/(.+)$")
  if not path then return send(404, "not found", "text/plain") end
  state.count_call(path)
  local fault = state.take_fault(path)
  if fault then
    local done = pre_fault(fault)
    if done then return end
  end
  if path == "gettoken" then return gettoken(fault) end
  local handler = routes[path]
  if not handler then
    return send(404, '{"errcode":404,"errmsg":"no such API"}')
  end
  return api(path, handler, fault)
end

return M
