-- The OpenResty transport: HTTP/1.1 over nginx cosockets, so a call in a
-- request handler never blocks the worker. TLS is always verified, against
-- the CA bundle of nginx's `lua_ssl_trusted_certificate`. A connection goes
-- back to the keepalive pool only after its reply was read in full.
--
--   transport:request(method, url, body) -> status, body | nil, reason, message
--   transport:request_many(requests, concurrency) -> results (ngx.thread)
local M = {}

local Transport = {}
Transport.__index = Transport

local ngx = ngx

-- opts: timeout, connect_timeout (seconds), max_response_bytes, user_agent,
-- keepalive_timeout (seconds, default 60), pool_size (default 32)
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    name = "ngx",
    timeout = opts.timeout or 10,
    connect_timeout = opts.connect_timeout or 5,
    max_bytes = opts.max_response_bytes or 64 * 1024 * 1024,
    user_agent = opts.user_agent or ("wecom-lua/" .. require("wecom.core")._VERSION),
    keepalive_ms = math.floor((opts.keepalive_timeout or 60) * 1000),
    pool_size = opts.pool_size or 32,
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
  if stage == "tls" then return "tls" end
  if err == "closed" then return stage == "status" and "empty" or "partial" end
  return "network"
end

-- A request in flight: the socket, its deadline and the reply being read.
local Exchange = {}
Exchange.__index = Exchange

function Exchange:remaining_ms()
  return math.floor((self.deadline - ngx.now()) * 1000)
end

function Exchange:fail(reason, message)
  self.sock:close()
  return nil, reason, message
end

-- Reads one line, with the time that is left.
function Exchange:line(stage)
  local ms = self:remaining_ms()
  if ms <= 0 then return nil, "timeout" end
  self.sock:settimeouts(ms, ms, ms)
  local line, err = self.sock:receive("*l")
  if not line then return nil, reason_of(err, stage), err end
  return line
end

-- Reads exactly n bytes.
function Exchange:bytes(n)
  local ms = self:remaining_ms()
  if ms <= 0 then return nil, "timeout" end
  self.sock:settimeouts(ms, ms, ms)
  local data, err = self.sock:receive(n)
  if not data then return nil, reason_of(err, "body"), err end
  return data
end

function Exchange:read_chunked(max)
  local parts, total = {}, 0
  while true do
    local line, reason, err = self:line("body")
    if not line then return nil, reason, err end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
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
    data, reason, err = self:bytes(size)
    if not data then return nil, reason, err end
    parts[#parts + 1] = data
    data, reason, err = self:bytes(2)
    if not data then return nil, reason, err end
  end
end

-- Reads until the server closes the connection (no length given).
function Exchange:read_until_close(max)
  local parts, total = {}, 0
  while true do
    local ms = self:remaining_ms()
    if ms <= 0 then return nil, "timeout" end
    self.sock:settimeouts(ms, ms, ms)
    local data, err, partial = self.sock:receive(65536)
    local piece = data or partial
    if piece and #piece > 0 then
      total = total + #piece
      if total > max then return nil, "too_large" end
      parts[#parts + 1] = piece
    end
    if not data then
      if err == "closed" then return table.concat(parts) end
      return nil, reason_of(err, "body"), err
    end
  end
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

  local sock = ngx.socket.tcp()
  local x = setmetatable({ sock = sock, deadline = ngx.now() + self.timeout }, Exchange)
  local connect_ms = math.min(math.floor(self.connect_timeout * 1000), x:remaining_ms())
  sock:settimeouts(connect_ms, connect_ms, connect_ms)
  local ok, err = sock:connect(host, port, {
    pool = ("wecom:%s:%s:%d"):format(scheme, host, port), pool_size = self.pool_size,
  })
  if not ok then return x:fail(reason_of(err, "connect"), err) end
  if scheme == "https" and sock:getreusedtimes() == 0 then
    local ms = x:remaining_ms()
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
  local ms = x:remaining_ms()
  if ms <= 0 then return x:fail("timeout", "timeout") end
  sock:settimeouts(ms, ms, ms)
  ok, err = sock:send(head)
  if not ok then return x:fail(reason_of(err, "send"), err) end

  -- status line (skipping any 1xx) and headers
  local status, minor, line, reason
  repeat
    line, reason, err = x:line("status")
    if not line then return x:fail(reason, err) end
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
        length = tonumber(value)
        if not length then return x:fail("network", "bad Content-Length") end
      elseif name == "transfer-encoding" then
        chunked = value:lower():find("chunked", 1, true) ~= nil
      elseif name == "connection" then
        local v = value:lower()
        if v:find("close", 1, true) then close = true elseif v:find("keep-alive", 1, true) then close = false end
      end
    end
  end

  local data
  if chunked then
    data, reason, err = x:read_chunked(self.max_bytes)
  elseif length then
    if length > self.max_bytes then
      reason = "too_large"
    elseif length == 0 then
      data = ""
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
  if close then
    sock:close()
  else
    sock:setkeepalive(self.keepalive_ms, self.pool_size)
  end
  return status, data
end

-- Up to `concurrency` requests at once in light threads of this request.
function Transport:request_many(requests, concurrency)
  concurrency = concurrency or 10
  local results, next_index = {}, 1
  local function worker()
    while next_index <= #requests do
      local i = next_index
      next_index = next_index + 1
      local r = requests[i]
      local status, body, message = self:request(r.method, r.url, r.body)
      if status then
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

M.parse_url = parse_url

return M
