-- Error objects: every runtime failure of the library is one of these,
-- returned as `nil, err`. `tostring(err)` gives the one-line message.
local M = {}

local Error = {}
Error.__index = Error
Error.__name = "wecom.error"
Error.__tostring = function(e) return e.message end

local function new(t) return setmetatable(t, Error) end

function M.is(v) return getmetatable(v) == Error end

-- Codes WeCom asks clients to treat specially (API.md, "Error codes").
M.TOKEN_INVALID = { [40014] = true, [42001] = true }
M.BUSY = { [-1] = true, [45033] = true }
M.RATE_LIMITED = 45009

-- Transport failures after which the request may simply be sent again.
local TRANSIENT = {
  timeout = true, connect = true, resolve = true, partial = true, empty = true, network = true,
}

local function prefix(endpoint, text)
  if endpoint and endpoint ~= "" then return endpoint .. ": " .. text end
  return text
end

-- A printable excerpt of a reply body, for HTTP errors.
local function excerpt(body)
  if type(body) ~= "string" or body == "" then return nil end
  local s = body:sub(1, 160):gsub("[%c]+", " "):gsub("^%s+", ""):gsub("%s+$", "")
  if #body > 160 then s = s .. "..." end
  return s
end

function M.validation(endpoint, field, text)
  if field == "" then field = nil end
  return new{
    kind = "validation", endpoint = endpoint, field = field, retryable = false,
    message = prefix(endpoint, field and (field .. ": " .. text) or text),
  }
end

-- idempotent: whether the request may be sent again without harm.
function M.transport(endpoint, reason, detail, idempotent)
  local transient = TRANSIENT[reason] or false
  return new{
    kind = "transport", endpoint = endpoint, reason = reason,
    retryable = transient and idempotent,
    -- a non-idempotent request that failed in flight may have been applied
    maybe_applied = (not idempotent and reason ~= "url" and reason ~= "closed") or nil,
    message = prefix(endpoint, ("transport error (%s): %s"):format(reason, detail or reason)),
  }
end

function M.http(endpoint, status, body, idempotent)
  local transient = status >= 500 or status == 429
  local text = ("HTTP %d from the server"):format(status)
  local ex = excerpt(body)
  if ex then text = text .. ": " .. ex end
  return new{
    kind = "http", endpoint = endpoint, status = status,
    retryable = transient and idempotent,
    maybe_applied = (transient and not idempotent) or nil,
    message = prefix(endpoint, text),
  }
end

function M.decode(endpoint, detail, status, idempotent)
  return new{
    kind = "decode", endpoint = endpoint, status = status, retryable = idempotent,
    maybe_applied = (not idempotent) or nil,
    message = prefix(endpoint, "malformed reply: " .. tostring(detail)),
  }
end

-- A write callback that failed (export_ical's write, ical.writer's).
function M.write(endpoint, detail)
  return new{
    kind = "write", endpoint = endpoint, retryable = false,
    message = prefix(endpoint, "write failed: " .. tostring(detail)),
  }
end

function M.api(endpoint, errcode, errmsg, status)
  errmsg = type(errmsg) == "string" and errmsg or ""
  local retryable = M.BUSY[errcode] or errcode == M.RATE_LIMITED or false
  local text = ("WeCom error %d"):format(errcode)
  if errmsg ~= "" then text = text .. ": " .. errmsg end
  return new{
    kind = "api", endpoint = endpoint, errcode = errcode, errmsg = errmsg, status = status,
    retryable = retryable, message = prefix(endpoint, text),
  }
end

-- What the retry policy should do with an error:
--   "refresh" (get a new token, then send again), "retry" (back off, then
--   send again) or "fail".
function M.action(err, idempotent)
  if err.kind == "api" then
    if M.TOKEN_INVALID[err.errcode] then return "refresh" end
    if M.BUSY[err.errcode] then return "retry" end
    return "fail"
  end
  if err.kind == "validation" then return "fail" end
  return (idempotent and err.retryable) and "retry" or "fail"
end

-- Replaces every occurrence of each secret by "***" (plain text, no patterns).
local function scrub(s, secrets)
  if type(s) ~= "string" then return s end
  for i = 1, #secrets do
    local secret = secrets[i]
    local from = 1
    while true do
      local a, b = s:find(secret, from, true)
      if not a then break end
      s = s:sub(1, a - 1) .. "***" .. s:sub(b + 1)
      from = a + 3
    end
  end
  return s
end

-- Secrets shorter than this are not scrubbed: they would mangle every message.
M.MIN_SECRET = 4

-- Removes the given secrets from an error's text fields.
function M.redact(err, secrets)
  if secrets and #secrets > 0 then
    err.message = scrub(err.message, secrets)
    err.errmsg = scrub(err.errmsg, secrets)
  end
  return err
end

return M
