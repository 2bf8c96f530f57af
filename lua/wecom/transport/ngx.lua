-- The OpenResty transport: HTTP/1.1 over nginx cosockets, so a call in a
-- request handler never blocks the worker. TLS is always verified, against
-- the CA bundle of nginx's `lua_ssl_trusted_certificate`.
--
-- Replies are framed strictly (RFC 9112): anything ambiguous (a malformed
-- chunk, Content-Length and Transfer-Encoding together or disagreeing, a
-- folded or malformed header line, a body where none may be) is refused with
-- reason "protocol", since bytes left over on a kept-alive connection would
-- be read as the answer to the next call. A connection goes back to the
-- keepalive pool only after a reply whose framing was exact was read in full.
-- A request that isn't idempotent is sent at most once.
--
-- It keeps the contract written down in wecom.transport (transport/init.lua);
-- request_many runs requests in ngx.thread light threads.
local core = require("wecom.core")

local M = {}

local Transport = {}
Transport.__index = Transport

local ngx = ngx

-- The longest reply head (1xx heads and trailers included), as libcurl's.
local MAX_HEAD_BYTES = core.MAX_HEAD_BYTES
local MAX_CHUNK_LINE = 1024 -- a chunk-size line with its extensions

-- How long an idle connection stays in nginx's pool, and how many per host.
local KEEPALIVE_MS = 60 * 1000
local POOL_SIZE = 32

-- opts: the complete transport options (wecom.options.transport)
function M.new(opts)
  -- wecom.options refuses these too; a header line must never be split
  if type(opts.user_agent) ~= "string" or opts.user_agent:find("%c") then
    error("ngx transport: user_agent: expected a string without control characters", 2)
  end
  return setmetatable({
    name = "ngx",
    timeout = opts.timeout,
    connect_timeout = opts.connect_timeout,
    max_bytes = opts.max_response_bytes,
    user_agent = opts.user_agent,
  }, Transport)
end

local function parse_url(url)
  local scheme, rest = url:match("^(https?)://(.+)$")
  if not scheme then return nil end
  local authority, target = rest:match("^([^/?#]*)(.*)$")
  local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if target == "" then target = "/" end
  if target:sub(1, 1) ~= "/" then target = "/" .. target end
  return scheme, host, port, target, authority
end

-- Names a cosocket error the way the libcurl transport does.
local function reason_of(err, stage)
  err = tostring(err)
  if err == "timeout" then return "timeout" end
  if stage == "connect" then
    if err:find("resolve", 1, true) or err:find("not found", 1, true) then return "resolve" end
    return "connect"
  end
  if err == "closed" then return stage == "status" and "empty" or "partial" end
  return "network"
end

local HEAD_TOO_LARGE = ("reply head larger than %d bytes"):format(MAX_HEAD_BYTES)

---------------------------------------------------------------------------
-- One exchange on one socket. Reads go through a buffer filled with
-- receiveany, each wait bounded by what is left of the deadline: a server
-- that trickles bytes can't stretch the call past the client's timeout.

local Exchange = {}
Exchange.__index = Exchange

function Exchange:remaining_ms()
  return math.floor((self.deadline - ngx.now()) * 1000)
end

function Exchange:fail(reason, message)
  self.sock:close()
  return nil, reason, message
end

-- Whatever the socket has next (up to 64 KiB), waiting no longer than the
-- deadline allows: data, or nil, reason, message.
function Exchange:receive_some(stage)
  ngx.update_time()
  local ms = self:remaining_ms()
  if ms <= 0 then return nil, "timeout", "timeout" end
  self.sock:settimeouts(ms, ms, ms)
  local data, err = self.sock:receiveany(65536)
  if not data then return nil, reason_of(err, stage), err end
  self.got_any = true
  return data
end

-- One CRLF-terminated line of at most `max` bytes, without the CRLF; a
-- longer one is nil, "too_large". A line that arrives in many pieces is
-- gathered in a list and each piece searched once: a server trickling a long
-- line byte by byte costs linear time, not a copy of the line per byte.
function Exchange:line(stage, max)
  local a, b = self.buf:find("\r\n", self.pos, true)
  if a then
    if a - self.pos > max then return nil, "too_large" end
    local line = self.buf:sub(self.pos, a - 1)
    self.pos = b + 1
    return line
  end
  local parts = { self.buf:sub(self.pos) }
  local have = #parts[1]
  while true do
    if have > max then return nil, "too_large" end
    local data, reason, err = self:receive_some(stage)
    if not data then return nil, reason, err end
    local line, rest
    if data:sub(1, 1) == "\n" and parts[#parts]:sub(-1) == "\r" then -- CR LF split between pieces
      line, rest = table.concat(parts):sub(1, -2), data:sub(2)
    else
      a, b = data:find("\r\n", 1, true)
      if a then line, rest = table.concat(parts) .. data:sub(1, a - 1), data:sub(b + 1) end
    end
    if line then
      if #line > max then return nil, "too_large" end
      self.buf, self.pos = rest, 1
      return line
    end
    parts[#parts + 1] = data
    have = have + #data
  end
end

-- A line of the reply head, counted against the head limit.
function Exchange:head_line(stage)
  local line, reason, err = self:line(stage, self.head_left)
  if not line then
    if reason == "too_large" then err = HEAD_TOO_LARGE end
    return nil, reason, err
  end
  self.head_left = self.head_left - #line - 2
  return line
end

-- Exactly n bytes (gathered in pieces and joined once: large bodies cost
-- one copy, not one per piece).
function Exchange:bytes(n, stage)
  local have = #self.buf - self.pos + 1
  if have >= n then
    local data = self.buf:sub(self.pos, self.pos + n - 1)
    self.pos = self.pos + n
    return data
  end
  local parts = { self.buf:sub(self.pos) }
  self.buf, self.pos = "", 1
  while have < n do
    local data, reason, err = self:receive_some(stage or "body")
    if not data then return nil, reason, err end
    parts[#parts + 1] = data
    have = have + #data
  end
  local all = table.concat(parts)
  self.buf = all:sub(n + 1) -- anything past them stays for the next read
  return all:sub(1, n)
end

-- A header field name: an RFC 9110 token, with the colon right after it.
local FIELD = "^([%w!#%$%%&'%*%+%-%.%^_`|~]+):[ \t]*(.-)[ \t]*$"

-- name (lowercase), value of a header or trailer line, or nil, message.
local function field_of(line)
  local c = line:sub(1, 1)
  if c == " " or c == "\t" then return nil, "obsolete line folding in the reply head" end
  local name, value = line:match(FIELD)
  if not name then return nil, "malformed header line in the reply" end
  if value:find("[%z\r\n]") then return nil, "control character in a header value" end
  return name:lower(), value
end

-- The chunked body. The trailers count against the head limit, as libcurl
-- counts them.
function Exchange:read_chunked(max)
  local parts, total = {}, 0
  while true do
    local line, reason, err = self:line("body", MAX_CHUNK_LINE)
    if not line then
      if reason == "too_large" then return nil, "protocol", "chunk-size line too long" end
      return nil, reason, err
    end
    -- hex digits, then nothing or extensions after ";"
    local hex, rest = line:match("^(%x+)(.*)$")
    if not hex or #hex > 16 or not (rest == "" or rest:match("^[ \t]*;")) then
      return nil, "protocol", "bad chunk-size line"
    end
    local size = tonumber(hex, 16)
    if size == 0 then
      while true do
        line, reason, err = self:head_line("body")
        if not line then return nil, reason, err end
        if line == "" then return table.concat(parts) end
        local name, why = field_of(line)
        if not name then return nil, "protocol", why end
      end
    end
    total = total + size
    if total > max then return nil, "too_large" end
    local data
    data, reason, err = self:bytes(size + 2)
    if not data then return nil, reason, err end
    if data:sub(-2) ~= "\r\n" then return nil, "protocol", "chunk data not followed by CRLF" end
    parts[#parts + 1] = data:sub(1, size)
  end
end

-- Reads until the server closes the connection (no length given).
function Exchange:read_until_close(max)
  local parts = { self.buf:sub(self.pos) }
  local total = #parts[1]
  self.buf, self.pos = "", 1
  while true do
    if total > max then return nil, "too_large" end
    local data, reason, err = self:receive_some("body")
    if not data then
      if err == "closed" then return table.concat(parts) end
      return nil, reason, err
    end
    parts[#parts + 1] = data
    total = total + #data
  end
end

-- The value of a Content-Length header: a number, or nil (malformed). A
-- list of copies of one value ("5, 5") is that value.
local function content_length(value, previous)
  local n
  for item in (value .. ","):gmatch("[ \t]*([^,]-)[ \t]*,") do
    if not item:match("^%d+$") or #item > 15 then return nil end
    local v = tonumber(item)
    if n and v ~= n then return nil end
    n = v
  end
  if not n or (previous and previous ~= n) then return nil end
  return n
end

-- A connection from the pool, or a new one (`fresh`: never a pooled one).
function Transport:connect(x, scheme, host, port, fresh)
  local pool = ("wecom:%s:%s:%d"):format(scheme, host, port)
  for _ = 1, POOL_SIZE + 1 do
    local sock = ngx.socket.tcp()
    x.sock = sock
    local ms = math.min(math.floor(self.connect_timeout * 1000), x:remaining_ms())
    if ms <= 0 then return nil, "timeout", "timeout" end
    sock:settimeouts(ms, ms, ms)
    local ok, err = sock:connect(host, port, { pool = pool, pool_size = POOL_SIZE })
    if not ok then return x:fail(reason_of(err, "connect"), err) end
    local reused = sock:getreusedtimes() or 0
    if not fresh or reused == 0 then
      if scheme == "https" and reused == 0 then
        ms = x:remaining_ms()
        if ms <= 0 then return x:fail("timeout", "timeout") end
        sock:settimeouts(ms, ms, ms)
        ok, err = sock:sslhandshake(false, host, true)
        if not ok then return x:fail("tls", err) end
        -- ngx_lua 0.10.23 can report success for a handshake whose certificate
        -- check failed, having closed the connection: nothing may be sent then
        if not sock:getreusedtimes() then
          return x:fail("tls", "TLS handshake failed: the server's certificate was not accepted")
        end
      end
      return true, reused > 0
    end
    sock:close() -- a pooled connection, when a fresh one is wanted
  end
  return x:fail("connect", "no fresh connection")
end

local NO_BODY = { [204] = true, [304] = true }

-- The reply head after the status line: { length =, chunked =, close = },
-- or nil, reason, message.
function Exchange:read_fields(minor)
  local length, te, close = nil, nil, minor == 0
  while true do
    local line, reason, err = self:head_line("headers")
    if not line then return nil, reason, err end
    if line == "" then break end
    local name, value = field_of(line)
    if not name then return nil, "protocol", value end
    if name == "content-length" then
      length = content_length(value, length)
      if not length then return nil, "protocol", "bad or conflicting Content-Length" end
    elseif name == "transfer-encoding" then
      te = (te and te .. "," or "") .. value:lower()
    elseif name == "connection" then
      for token in value:lower():gmatch("[^,%s]+") do
        if token == "close" then close = true elseif token == "keep-alive" and minor == 0 then close = false end
      end
    end
  end
  local chunked = false
  if te then
    -- only "chunked" is spoken here; with a length too, the framing is ambiguous
    if te:gsub("[ \t]", "") ~= "chunked" then return nil, "protocol", "unsupported Transfer-Encoding: " .. te end
    if minor == 0 then return nil, "protocol", "Transfer-Encoding in an HTTP/1.0 reply" end
    if length then return nil, "protocol", "both Transfer-Encoding and Content-Length" end
    chunked = true
  end
  return { length = length, chunked = chunked, close = close }
end

-- One attempt on one connection. The last value says, when the attempt
-- failed on a pooled connection that the server had closed before anything
-- of its reply arrived, whether the request had left: "unsent" (the send
-- failed: the server can't have it whole) or "unanswered" (it went out: the
-- server may have applied it).
function Transport:exchange(scheme, host, port, head, fresh, deadline)
  local x = setmetatable({
    deadline = deadline, buf = "", pos = 1, got_any = false, head_left = MAX_HEAD_BYTES,
  }, Exchange)
  local ok, reused, err = self:connect(x, scheme, host, port, fresh)
  if not ok then return nil, reused, err end
  local sock = x.sock
  local ms = x:remaining_ms()
  if ms <= 0 then return x:fail("timeout", "timeout") end
  sock:settimeouts(ms, ms, ms)
  local sent, serr = sock:send(head)
  if not sent then
    local status, reason, msg = x:fail(reason_of(serr, "send"), serr)
    return status, reason, msg, reused and serr == "closed" and "unsent" or nil
  end

  -- status line, skipping any 1xx reply (its lines count against the head limit)
  local status, minor, line, reason
  repeat
    line, reason, err = x:head_line("status")
    if not line then
      local _, r, m = x:fail(reason, err)
      return nil, r, m, reused and reason == "empty" and not x.got_any and "unanswered" or nil
    end
    local v, code, after = line:match("^HTTP/1%.([01]) ([1-5]%d%d)(.?)")
    if not v or (after ~= "" and after ~= " ") then return x:fail("protocol", "not an HTTP/1.x status line") end
    minor, status = tonumber(v), tonumber(code)
    if status == 101 then return x:fail("protocol", "an unrequested protocol switch (101)") end
    if status < 200 then
      repeat
        line, reason, err = x:head_line("status")
        if not line then return x:fail(reason, err) end
        if line ~= "" then
          local name, why = field_of(line)
          if not name then return x:fail("protocol", why) end
        end
      until line == ""
    end
  until status >= 200
  local fields
  fields, reason, err = x:read_fields(minor)
  if not fields then return x:fail(reason, err) end

  local data
  if NO_BODY[status] then
    if fields.length or fields.chunked then return x:fail("protocol", "framing headers on a reply without a body") end
    if x.pos <= #x.buf then return x:fail("protocol", "body bytes after a reply without a body") end
    data = ""
  elseif fields.chunked then
    data, reason, err = x:read_chunked(self.max_bytes)
  elseif fields.length then
    if fields.length > self.max_bytes then
      reason = "too_large"
    else
      data, reason, err = x:bytes(fields.length)
    end
  else
    fields.close = true
    data, reason, err = x:read_until_close(self.max_bytes)
  end
  if not data then
    if reason == "too_large" and not err then
      err = ("reply larger than max_response_bytes (%d bytes)"):format(self.max_bytes)
    end
    return x:fail(reason, err)
  end
  -- bytes past the reply mean the peer broke the protocol: never pool that
  if fields.close or x.pos <= #x.buf then
    sock:close()
  else
    sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE)
  end
  return status, data
end

local NOT_SENT_AGAIN = "; a request that isn't idempotent is not sent again (the server may have applied it)"

-- idempotent: whether the request may be sent again after its connection
-- closed without a reply (by default GET is, POST isn't).
function Transport:request(method, url, body, idempotent)
  if method ~= "GET" and method ~= "POST" then
    return nil, "url", "method must be GET or POST"
  end
  -- nothing that could end a header line may reach the request head
  if type(url) ~= "string" or url:find("[%z\1-\32\127]") then
    return nil, "url", "the URL contains spaces or control characters"
  end
  local scheme, host, port, target, authority = parse_url(url)
  if not scheme then return nil, "url", "not an http(s) URL" end
  if idempotent == nil then idempotent = method == "GET" end
  body = body or ""
  local head = {
    method, " ", target, " HTTP/1.1\r\n",
    "Host: ", authority, "\r\n",
    "User-Agent: ", self.user_agent, "\r\n",
    "Accept: application/json\r\n",
    -- as the libcurl transport: a compressed reply is refused alike by both
    "Accept-Encoding: identity\r\n",
  }
  if method == "POST" then
    head[#head + 1] = "Content-Type: application/json; charset=utf-8\r\n"
    head[#head + 1] = ("Content-Length: %d\r\n"):format(#body)
  end
  head[#head + 1] = "\r\n"
  head[#head + 1] = body
  ngx.update_time()
  local deadline = ngx.now() + self.timeout
  local status, reply, msg, stale = self:exchange(scheme, host, port, head, false, deadline)
  -- as libcurl does: once more on a fresh connection after a kept-alive one
  -- the server had dropped, unless the request may have been applied
  if stale == "unsent" or (stale == "unanswered" and idempotent) then
    status, reply, msg = self:exchange(scheme, host, port, head, true, deadline)
  elseif stale == "unanswered" then
    msg = "the server closed the kept-alive connection without a reply" .. NOT_SENT_AGAIN
  end
  return status, reply, msg
end

-- Up to `concurrency` requests at once in light threads of this request.
function Transport:request_many(requests, concurrency)
  local results, next_index = {}, 1
  local function worker()
    while next_index <= #requests do
      local i = next_index
      next_index = next_index + 1
      local r = requests[i]
      local ok, status, body, message = pcall(self.request, self, r.method, r.url, r.body, r.idempotent)
      if not ok then
        results[i] = { reason = "error", message = "the transport raised: " .. tostring(status) }
      elseif status then
        results[i] = { status = status, body = body }
      else
        results[i] = { reason = body, message = message }
      end
    end
  end
  local threads = {}
  for k = 1, math.min(concurrency, #requests) do
    threads[k] = ngx.thread.spawn(worker)
  end
  for _, t in ipairs(threads) do ngx.thread.wait(t) end
  return results
end

return M
