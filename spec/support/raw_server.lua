-- A scripted raw HTTP/1.1 server for the transport specs: it writes exactly
-- the bytes a spec gives, including the ones no real server should send
-- (stray bytes after a reply, broken framing, a reply trickled byte by
-- byte). Runs as its own process (luasocket); spec/support/raw.lua starts
-- and stops it.
--
--   lua5.4 raw_server.lua CONFIG
-- CONFIG is a Lua file returning { log = path, replies = { r1, r2, ... },
-- default = r }: the n-th request received (over all connections) gets
-- replies[n], later ones `default`. A reply is a table:
--   send = "bytes"      written at once
--   trickle = "bytes"   written one byte every `interval` seconds
--   later = { delay = s, send = "bytes", close = bool }
--                       written `delay` seconds after the reply
--   close = true        the connection is closed after the reply
-- Prints its port on stdout once listening. Appends one line per event to
-- the log: `open <conn>` and `request <conn> <n> "<head and body, escaped>"`.
local socket = require("socket")

local conf = dofile(arg[1])
local log = assert(io.open(conf.log, "a"))
log:setvbuf("line")

local function escape(s)
  return '"' .. s:gsub("[%c\"\\\128-\255]", function(c) return ("\\%03d"):format(c:byte()) end) .. '"'
end

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(0)
local _, port = server:getsockname()
io.stdout:write(port, "\n")
io.stdout:flush()

local conns = {} -- socket -> { id =, buf = }
local timers = {} -- { at =, conn =, data =, close =, interval = (trickle) }
local received, opened = 0, 0

local function close(sock)
  conns[sock] = nil
  sock:close()
end

local function schedule(at, sock, data, close_after, interval)
  timers[#timers + 1] = { at = at, sock = sock, data = data, close = close_after, interval = interval }
end

local function reply_to(sock, n)
  local r = conf.replies and conf.replies[n] or conf.default or {}
  local now = socket.gettime()
  if r.trickle then
    sock:setoption("tcp-nodelay", true) -- one segment per byte
    schedule(now, sock, r.trickle, r.close, r.interval or 0.01)
    return
  end
  if r.send and r.send ~= "" then
    sock:settimeout(5)
    sock:send(r.send)
    sock:settimeout(0)
  end
  if r.later then schedule(now + (r.later.delay or 0), sock, r.later.send or "", r.later.close) end
  if r.close then close(sock) end
end

-- Takes every complete request out of the connection's buffer.
local function serve(sock, c)
  while conns[sock] do
    local head_end = c.buf:find("\r\n\r\n", 1, true)
    if not head_end then return end
    local head = c.buf:sub(1, head_end + 3)
    local length = tonumber(head:lower():match("\r\ncontent%-length:%s*(%d+)") or "0")
    if #c.buf < head_end + 3 + length then return end
    local request = c.buf:sub(1, head_end + 3 + length)
    c.buf = c.buf:sub(head_end + 4 + length)
    received = received + 1
    log:write(("request %d %d %s\n"):format(c.id, received, escape(request)))
    reply_to(sock, received)
  end
end

while true do
  local watch = { server }
  for sock in pairs(conns) do watch[#watch + 1] = sock end
  local wait = 0.05
  local now = socket.gettime()
  for _, t in ipairs(timers) do wait = math.max(0, math.min(wait, t.at - now)) end
  local readable = socket.select(watch, nil, wait)
  for _, sock in ipairs(readable) do
    if sock == server then
      local client = server:accept()
      if client then
        client:settimeout(0)
        opened = opened + 1
        conns[client] = { id = opened, buf = "" }
        log:write(("open %d\n"):format(opened))
      end
    elseif conns[sock] then
      local data, err, partial = sock:receive(65536)
      data = data or partial
      if data and data ~= "" then
        conns[sock].buf = conns[sock].buf .. data
        serve(sock, conns[sock])
      end
      if err == "closed" and conns[sock] then close(sock) end
    end
  end
  now = socket.gettime()
  local still = {}
  for _, t in ipairs(timers) do
    if not conns[t.sock] then -- closed meanwhile: nothing more to write
      t = nil
    elseif t.at <= now then
      if t.interval then
        if t.data ~= "" then
          t.sock:send(t.data:sub(1, 1))
          t.data, t.at = t.data:sub(2), now + t.interval
        end
        if t.data == "" then
          if t.close then close(t.sock) end
          t = nil
        end
      else
        if t.data ~= "" then
          t.sock:settimeout(5)
          t.sock:send(t.data)
          t.sock:settimeout(0)
        end
        if t.close then close(t.sock) end
        t = nil
      end
    end
    if t then still[#still + 1] = t end
  end
  timers = still
end
