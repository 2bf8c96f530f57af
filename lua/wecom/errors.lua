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

-- Every reason a transport failure can have, the one list both transports
-- (libcurl in csrc/http.c, cosockets in transport/ngx.lua) and custom ones
-- draw from. transient: sending the request again may work; applied: the
-- server may have received and applied the request before it failed.
M.REASONS = {
  timeout = { transient = true, applied = true, doc = "no complete reply in time" },
  connect = { transient = true, applied = false, doc = "no connection to the server" },
  resolve = { transient = true, applied = false, doc = "the host name did not resolve" },
  tls = { transient = false, applied = false, doc = "TLS failed: the certificate was not accepted" },
  too_large = { transient = false, applied = true, doc = "the reply is larger than max_response_bytes" },
  partial = { transient = true, applied = true, doc = "the reply was cut short" },
  empty = { transient = true, applied = true, doc = "the server closed the connection without a reply" },
  network = { transient = true, applied = true, doc = "the connection failed mid-exchange" },
  protocol = { transient = true, applied = true, doc = "the reply broke HTTP's rules" },
  url = { transient = false, applied = false, doc = "the URL can't be requested" },
  closed = { transient = false, applied = false, doc = "the client is closed" },
  busy = { transient = false, applied = false, doc = "the HTTP session was mid-call (a call from a __gc finalizer)" },
  token = { transient = false, applied = false, doc = "no access token: your token function failed" },
  error = { transient = false, applied = true, doc = "a custom transport raised or answered nonsense" },
}

local function prefix(endpoint, text)
  if endpoint and endpoint ~= "" then return endpoint .. ": " .. text end
  return text
end

---------------------------------------------------------------------------
-- Text from elsewhere (a server's reply, errmsg, a transport's message) in
-- an error: secrets out first, then made printable, then cut. In that
-- order, so a secret that straddles the cut can't leave a piece behind.

-- Secrets shorter than this are not scrubbed: they would mangle every message.
M.MIN_SECRET = 4
-- Any run of this many characters of a secret is scrubbed too: a proxy that
-- echoes a URL it cut short shows a piece of the secret, not all of it.
M.FRAGMENT = 8

-- Marks [a, b] in `marks` (a list of {a, b}) for every piece of `secret` in
-- `s`: the whole of it, and every run of at least FRAGMENT of its characters.
local function mark(s, secret, marks)
  local n = #secret
  local f = math.min(M.FRAGMENT, n)
  for i = 1, n - f + 1 do
    local gram = secret:sub(i, i + f - 1)
    local from = 1
    while true do
      local a = s:find(gram, from, true)
      if not a then break end
      local b = a + f - 1
      -- as far as the secret goes on matching, both ways
      local j, k = i + f, b + 1
      while j <= n and s:byte(k) == secret:byte(j) do j, k = j + 1, k + 1 end
      local lo, li = a - 1, i - 1
      while li >= 1 and lo >= 1 and s:byte(lo) == secret:byte(li) do lo, li = lo - 1, li - 1 end
      marks[#marks + 1] = { lo + 1, k - 1 }
      from = a + 1
    end
  end
end

-- `s` with every piece of every secret replaced by "***".
local function scrub(s, secrets)
  if type(s) ~= "string" or not secrets or #secrets == 0 then return s end
  local marks = {}
  for i = 1, #secrets do
    if #secrets[i] >= M.MIN_SECRET then mark(s, secrets[i], marks) end
  end
  if #marks == 0 then return s end
  table.sort(marks, function(x, y) return x[1] < y[1] end)
  local out, pos = {}, 1
  for _, m in ipairs(marks) do
    if m[2] >= pos then
      if m[1] > pos then out[#out + 1] = s:sub(pos, m[1] - 1) end
      if m[1] >= pos or #out == 0 or out[#out] ~= "***" then out[#out + 1] = "***" end
      pos = m[2] + 1
    end
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end
M.scrub = scrub

-- Control characters (C0, DEL, C1, U+2028/2029: what can start a new line in
-- a log) escaped, and bytes that are not UTF-8 shown as \xNN.
local LEAD = { 1, 32, 16, 8 } -- the payload bits of a lead byte, per length
local NAMED = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function printable(s)
  if not s:find("[%z\1-\31\127\128-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or c >= 0xC2 and c <= 0xDF and 2 or c >= 0xE0 and c <= 0xEF and 3
      or c >= 0xF0 and c <= 0xF4 and 4 or 0
    local ok = len > 0 and i + len - 1 <= n
    local cp = c
    if ok and len > 1 then
      cp = c % LEAD[len]
      for k = i + 1, i + len - 1 do
        local cc = s:byte(k)
        if cc < 0x80 or cc > 0xBF then ok = false break end
        cp = cp * 64 + cc % 64
      end
      -- overlong forms, surrogates and code points past U+10FFFF are not UTF-8
      if ok and (cp < ({ 0, 0x80, 0x800, 0x10000 })[len] or (cp >= 0xD800 and cp <= 0xDFFF) or cp > 0x10FFFF) then
        ok = false
      end
    end
    if not ok then
      out[#out + 1] = ("\\x%02X"):format(c)
      i = i + 1
    else
      if cp < 0x20 or cp == 0x7F then
        out[#out + 1] = NAMED[string.char(cp)] or ("\\x%02X"):format(cp)
      elseif (cp >= 0x80 and cp <= 0x9F) or cp == 0x2028 or cp == 0x2029 then
        out[#out + 1] = ("\\u{%04X}"):format(cp)
      else
        out[#out + 1] = s:sub(i, i + len - 1)
      end
      i = i + len
    end
  end
  return table.concat(out)
end
M.printable = printable

-- Cuts a printable text at `limit` bytes, on a character boundary, marking
-- the cut with "...".
local function cut(s, limit)
  if #s <= limit then return s end
  local n = limit
  while n > 0 and s:byte(n + 1) and s:byte(n + 1) >= 0x80 and s:byte(n + 1) <= 0xBF do n = n - 1 end
  return s:sub(1, n) .. "..."
end

-- The first `limit` bytes of s, and as far past them as the longest secret
-- reaches, scrubbed: whatever a cut at `limit` leaves was scrubbed whole.
local function head(s, limit, secrets)
  local longest = 0
  for _, secret in ipairs(secrets or {}) do longest = math.max(longest, #secret) end
  return scrub(s:sub(1, limit + longest), secrets)
end

-- Outside text for an error: at most `limit` bytes shown, secrets gone,
-- printable.
function M.clean(s, limit, secrets)
  if type(s) ~= "string" then return s end
  return cut(printable(head(s, limit, secrets)), limit)
end
local clean = M.clean

-- How much of a reply body an HTTP error shows, and of a server's errmsg or
-- a transport's message.
M.EXCERPT = 160
M.TEXT = 1024

function M.validation(endpoint, field, text)
  if field == "" then field = nil end
  return new{
    kind = "validation", endpoint = endpoint, field = field, retryable = false,
    message = prefix(endpoint, field and (field .. ": " .. text) or text),
  }
end

-- idempotent: whether the request may be sent again without harm.
-- A reason not in REASONS (a custom transport's own) counts as "error".
-- secrets: what must not show in the message (every constructor below).
function M.transport(endpoint, reason, detail, idempotent, secrets)
  local r = M.REASONS[reason] or M.REASONS.error
  if type(reason) ~= "string" then reason = "error" end
  reason = clean(reason, 64, secrets)
  return new{
    kind = "transport", endpoint = endpoint, reason = reason,
    -- a request that never reached the server can be sent again, whatever it is
    retryable = r.transient and (idempotent or not r.applied),
    -- a non-idempotent request that failed in flight may have been applied
    maybe_applied = (not idempotent and r.applied) or nil,
    message = prefix(endpoint, ("transport error (%s): %s"):format(reason,
      clean(type(detail) == "string" and detail or reason, M.TEXT, secrets))),
  }
end

function M.http(endpoint, status, body, idempotent, secrets)
  local transient = status >= 500 or status == 429
  local text = ("HTTP %d from the server"):format(status)
  if type(body) == "string" then
    local ex = clean(body, M.EXCERPT, secrets):gsub("^%s+", ""):gsub("%s+$", "")
    if ex ~= "" then text = text .. ": " .. ex end
  end
  return new{
    kind = "http", endpoint = endpoint, status = status,
    retryable = transient and idempotent,
    maybe_applied = (transient and not idempotent) or nil,
    message = prefix(endpoint, text),
  }
end

function M.decode(endpoint, detail, status, idempotent, secrets)
  return new{
    kind = "decode", endpoint = endpoint, status = status, retryable = idempotent,
    maybe_applied = (not idempotent) or nil,
    message = prefix(endpoint, "malformed reply: " .. clean(tostring(detail), M.TEXT, secrets)),
  }
end

-- A write callback that failed (export_ical's write, ical.writer's).
function M.write(endpoint, detail)
  return new{
    kind = "write", endpoint = endpoint, retryable = false,
    message = prefix(endpoint, "write failed: " .. clean(tostring(detail), M.TEXT)),
  }
end

-- errmsg is kept as WeCom sent it (but without secrets, and at most TEXT
-- bytes); the message shows it printable.
function M.api(endpoint, errcode, errmsg, status, secrets)
  errmsg = type(errmsg) == "string" and cut(head(errmsg, M.TEXT, secrets), M.TEXT) or ""
  local retryable = M.BUSY[errcode] or errcode == M.RATE_LIMITED or false
  local text = ("WeCom error %d"):format(errcode)
  if errmsg ~= "" then text = text .. ": " .. printable(errmsg) end
  return new{
    kind = "api", endpoint = endpoint, errcode = errcode, errmsg = errmsg, status = status,
    retryable = retryable, message = prefix(endpoint, text),
  }
end

-- A callback request refused or not handled (wecom.callback); `reason`
-- names the check: "signature", "decrypt", "receiveid", "xml", "expired"...
function M.callback(reason, text)
  return new{ kind = "callback", reason = reason, retryable = false, message = "callback: " .. text }
end

-- A mirror's operation that could not finish (wecom.sync); `reason` says
-- why: "store" (the store failed: nothing of the step was written),
-- "handler" (on_change failed: the step was rolled back, to be reported
-- again) or "busy" (another operation of the same mirror is running).
function M.sync(reason, text)
  return new{ kind = "sync", reason = reason, retryable = true, message = "sync: " .. text }
end

-- What the retry policy should do with an error:
--   "refresh" (get a new token, then send again), "retry" (back off, then
--   send again) or "fail".
function M.action(err)
  if err.kind == "api" then
    if M.TOKEN_INVALID[err.errcode] then return "refresh" end
    if M.BUSY[err.errcode] then return "retry" end
    return "fail"
  end
  if err.kind == "validation" then return "fail" end
  -- retryable already weighs idempotence against whether it was applied
  return err.retryable and "retry" or "fail"
end

-- Removes the given secrets (and any piece of them) from an error's text
-- fields: for errors made before the secrets were known (a token
-- provider's), and as a last pass over every error the client returns.
function M.redact(err, secrets)
  if secrets and #secrets > 0 then
    err.message = scrub(err.message, secrets)
    err.errmsg = scrub(err.errmsg, secrets)
  end
  return err
end

return M
