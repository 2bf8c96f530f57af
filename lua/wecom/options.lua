-- The options of wecom.new: each one's check, range and default, in this
-- one place. The client and the transports receive them complete.
local core = require("wecom.core")
local errors = require("wecom.errors")

local M = {}

M.DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"

-- The longest wait anything in the library is configured for: a timeout, a
-- connect timeout, a back-off step.
M.MAX_SECONDS = 3600

local function is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

-- Whether v[name] is callable; a raising __index counts as no.
function M.has_method(v, name)
  local t = type(v)
  if t ~= "table" and t ~= "userdata" then return false end
  local ok, m = pcall(function() return v[name] end)
  return ok and is_callable(m)
end
local has_method = M.has_method

-- A number of seconds in (0, MAX_SECONDS], or [0, MAX_SECONDS] with zero_ok.
local function seconds(zero_ok)
  local text = ("expected a number of seconds in %s0, %d]"):format(zero_ok and "[" or "(", M.MAX_SECONDS)
  return function(v)
    if type(v) ~= "number" or v ~= v or v < 0 or (v == 0 and not zero_ok) or v > M.MAX_SECONDS then
      return nil, text
    end
    return v
  end
end
local positive_seconds = seconds(false)
local non_negative_seconds = seconds(true)

local function non_empty_string(v)
  if type(v) ~= "string" or v == "" then return nil, "expected a non-empty string" end
  if v:find("[%c ]") then return nil, "must not contain spaces or control characters" end
  return v
end

local function integer(min, max, text)
  text = text or ("expected an integer in %d..%d"):format(min, max)
  return function(v)
    if type(v) ~= "number" or v ~= math.floor(v) or v < min or v > max then return nil, text end
    return v
  end
end

-- name -> { check = function(v) -> v | nil, why; default = value }
M.SPEC = {
  corpid = { check = non_empty_string },
  corpsecret = { check = non_empty_string },
  access_token = { check = non_empty_string },
  token = { check = function(v)
    if not is_callable(v) then return nil, "expected a function returning token, expires_in" end
    return v
  end },
  base_url = { default = M.DEFAULT_BASE_URL, check = function(v)
    if type(v) ~= "string" or not v:match("^https?://[^/%s?#]+") or v:find("[%c%s?#]") then
      return nil, "expected an http(s) URL such as " .. M.DEFAULT_BASE_URL
    end
    return (v:gsub("/+$", ""):gsub("/cgi%-bin$", ""))
  end },
  timeout = { default = 10, check = positive_seconds },
  connect_timeout = { default = 5, check = positive_seconds },
  max_retries = { default = 3, check = integer(0, 10) },
  retry_base_delay = { default = 0.5, check = non_negative_seconds },
  retry_max_delay = { default = 8, check = non_negative_seconds },
  ca_file = { check = function(v)
    if type(v) ~= "string" or v == "" then return nil, "expected the path of a CA bundle" end
    local f = io.open(v, "rb")
    if not f then return nil, "can't read " .. v end
    f:close()
    return v
  end },
  token_cache = { check = function(v)
    if not (has_method(v, "get") and has_method(v, "set")) then
      return nil, "expected an object with get(key) and set(key, value, ttl) methods"
    end
    return v
  end },
  max_response_bytes = { default = 64 * 1024 * 1024, check = integer(1, 2 ^ 53, "expected a positive integer") },
  user_agent = { default = "wecom-lua/" .. core._VERSION, check = function(v)
    if type(v) ~= "string" or v:find("%c") then return nil, "expected a string without control characters" end
    return v
  end },
  -- waits between attempts and for another caller's token fetch; give a
  -- sleep that yields (copas.sleep) when your transport yields
  sleep = { check = function(v)
    if not is_callable(v) then return nil, "expected a function(seconds) that waits" end
    return v
  end },
  transport = { default = "auto", check = function(v)
    if v == "auto" or v == "curl" or v == "ngx" then return v end
    if not has_method(v, "request") then
      return nil, 'expected "auto", "curl", "ngx" or an object with a request(method, url, body) method'
    end
    return v
  end },
}

-- What a transport is made with (wecom.transport).
M.TRANSPORT = { "timeout", "connect_timeout", "max_response_bytes", "user_agent", "ca_file" }

local function fail(name, text)
  return nil, errors.validation("wecom.new", name, text)
end

-- Checks each given option and fills in the defaults of the others:
-- a new table, or nil, err.
local function complete(opts, allowed)
  if type(opts) ~= "table" then return fail(nil, "expected a table of options") end
  local o = {}
  for name, value in next, opts do
    local spec = allowed[name] and M.SPEC[name]
    if not spec then return fail(tostring(name), "unknown option") end
    local v, why = spec.check(value)
    if v == nil then return fail(name, why) end
    o[name] = v
  end
  for name in pairs(allowed) do
    if o[name] == nil then o[name] = M.SPEC[name].default end
  end
  return o
end

local ALL = {}
for name in pairs(M.SPEC) do ALL[name] = true end
local TRANSPORT_ONLY = {}
for _, name in ipairs(M.TRANSPORT) do TRANSPORT_ONLY[name] = true end

-- The options of wecom.new, complete: a table, or nil, err.
function M.check(opts)
  local o, err = complete(opts, ALL)
  if not o then return nil, err end
  if o.corpid and not o.corpsecret then return fail("corpsecret", "required with corpid") end
  if o.corpsecret and not o.corpid then return fail("corpid", "required with corpsecret") end
  local modes = (o.corpid and 1 or 0) + (o.access_token and 1 or 0) + (o.token and 1 or 0)
  if modes ~= 1 then
    return fail(nil, "give exactly one of corpid + corpsecret, access_token, or token")
  end
  return o
end

-- Only the transport options (for making a transport directly, as the tests
-- do), complete: a table, or nil, err.
function M.transport(opts)
  return complete(opts or {}, TRANSPORT_ONLY)
end

return M
