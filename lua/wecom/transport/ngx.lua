-- The OpenResty transport: HTTP/1.1 over nginx cosockets, so a call in a
-- request handler never blocks the worker. TLS is always verified, against
-- the CA bundle of nginx's `lua_ssl_trusted_certificate`. A connection goes
-- back to the keepalive pool only after its reply was read in full.
--
-- It keeps the contract written down in wecom.transport (transport/init.lua);
-- request_many runs requests in ngx.thread light threads.
local M = {}

local Transport = {}
Transport.__index = Transport

local ngx = ngx

local MAX_LINE = 64 * 1024 -- a status or header line longer than this is refused

-- How long an idle connection stays in nginx's pool, and how many per host.
local KEEPALIVE_MS = 60 * 1000
local POOL_SIZE = 32

-- opts: the complete transport options (wecom.options.transport)
function M.new(opts)
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

-- One CRLF-terminated line, without the CRLF.
function Exchange:line(stage)
  while true do
    local a, b = self.buf:find("\r\n", self.pos, true)
    if a then
      local line = self.buf:sub(self.pos, a - 1)
      self.pos = b + 1
      return line
    end
    if #self.buf - self.pos + 1 > MAX_LINE then return nil, "network", "header line too long" end
    local data, reason, err = self:receive_some(stage)
    if not data then return nil, reason, err end
    self.buf, self.pos = self.buf:sub(self.pos) .. data, 1
  end
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

function Exchange:read_chunked(max)
  local parts, total = {}, 0
  while true do
    local line, reason, err = self:line("body")
    if not line then return nil, reason, err end
    local size = tonumber(line:match("^%s*(%x+)%s*;?") or "", 16)
    if not size then return nil, "network", "bad chunk size line" end
    if size == 0 then
      repeat -- trailers, up to the empty line
        line, reason, err = self:line("body")
        if not line then return nil, reason, err end
      until line == ""
      return table.concat(parts)
    end
    total = total + size
    if total > max then return nil, "too_large" end
    local data
    data, reason, err = self:bytes(size + 2)
    if not data then return nil, reason, err end
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

-- One attempt on one connection. The last value says whether the failure
-- came from a pooled connection the server had closed before anything of
-- its reply arrived (nothing was processed: worth one fresh try).
function Transport:exchange(scheme, host, port, head, fresh, deadline)
  local x = setmetatable({ deadline = deadline, buf = "", pos = 1, got_any = false }, Exchange)
  local ok, reused, err = self:connect(x, scheme, host, port, fresh)
  if not ok then return nil, reused, err end
  local sock = x.sock
  local ms = x:remaining_ms()
  if ms <= 0 then return x:fail("timeout", "timeout") end
  sock:settimeouts(ms, ms, ms)
  local sent, serr = sock:send(head)
  if not sent then
    local status, reason, msg = x:fail(reason_of(serr, "send"), serr)
    return status, reason, msg, reused and serr == "closed"
  end

  -- status line (skipping any 1xx) and headers
  local status, minor, line, reason
  repeat
    line, reason, err = x:line("status")
    if not line then
      local _, r, m = x:fail(reason, err)
      return nil, r, m, reused and reason == "empty" and not x.got_any
    end
    local v
    v, status = line:match("^HTTP/1%.(%d) (%d%d%d)")
    if not v then return x:fail("network", "not an HTTP reply") end
    minor, status = tonumber(v), tonumber(status)
    if status < 200 then
      repeat
        line, reason, err = x:line("status")
        if not line then return x:fail(reason, err) end
      until line == ""
    end
  until status >= 200
  local length, chunked, close = nil, false, minor == 0
  local count = 0
  while true do
    line, reason, err = x:line("headers")
    if not line then return x:fail(reason, err) end
    if line == "" then break end
    count = count + 1
    if count > 200 then return x:fail("network", "too many header lines") end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      if name == "content-length" then
        if not value:match("^%d+$") then return x:fail("network", "bad Content-Length") end
        length = tonumber(value)
      elseif name == "transfer-encoding" then
        chunked = value:lower():find("chunked", 1, true) ~= nil
      elseif name == "connection" then
        local v = value:lower()
        if v:find("close", 1, true) then close = true elseif v:find("keep-alive", 1, true) then close = false end
      end
    end
  end

  local data
  if NO_BODY[status] then
    data = ""
  elseif chunked then
    data, reason, err = x:read_chunked(self.max_bytes)
  elseif length then
    if length > self.max_bytes then
      reason = "too_large"
    else
      data, reason, err = x:bytes(length)
    end
  else
    close = true
    data, reason, err = x:read_until_close(self.max_bytes)
  end
  if not data then
    if reason == "too_large" then
      err = ("reply larger than max_response_bytes (%d bytes)"):format(self.max_bytes)
    end
    return x:fail(reason, err)
  end
  -- bytes past the reply mean the peer broke the protocol: never pool that
  if close or x.pos <= #x.buf then
    sock:close()
  else
    sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE)
  end
  return status, data
end

function Transport:request(method, url, body)
  if method ~= "GET" and method ~= "POST" then
    return nil, "url", "method must be GET or POST"
  end
  -- nothing that could end a header line may reach the request head
  if type(url) ~= "string" or url:find("[%z\1-\32\127]") then
    return nil, "url", "the URL contains spaces or control characters"
  end
  local scheme, host, port, target, authority = parse_url(url)
  if not scheme then return nil, "url", "not an http(s) URL" end
  body = body or ""
  local head = {
    method, " ", target, " HTTP/1.1\r\n",
    "Host: ", authority, "\r\n",
    "User-Agent: ", self.user_agent, "\r\n",
    "Accept: application/json\r\n",
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
  if stale then -- as libcurl does: a kept-alive connection the server had dropped
    status, reply, msg = self:exchange(scheme, host, port, head, true, deadline)
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
      local ok, status, body, message = pcall(self.request, self, r.method, r.url, r.body)
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
