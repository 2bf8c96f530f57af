-- A redis-server for a spec: on a free 127.0.0.1 port, in a directory of
-- its own, nothing saved to disk; stop() ends it (call it in teardown).
--
--   local redis = require("support.redis")
--   local server
--   setup(function() server = redis.start{ password = "..." } end)
--   teardown(function() server:stop() end)
--
-- kill() ends it as a crash would, pause()/resume() make it hang (SIGSTOP),
-- restart() starts it again on the same port, empty. cli(...) runs
-- redis-cli against it.
local shell = require("support.shell")

local sh, q = shell.run, shell.quote

local M = {}

local Server = {}
Server.__index = Server

local read = shell.read

local function alive(pid)
  if not pid then return false end
  local stat = read(("/proc/%d/stat"):format(pid))
  if not stat then return false end
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

local function wait_until(fn, seconds)
  for _ = 1, math.ceil(seconds / 0.02) do
    if fn() then return true end
    sh("sleep 0.02")
  end
  return fn()
end

-- Starts redis-server on self.port; true, or nil, its log, and whether the
-- port was taken.
local function launch(self)
  sh("rm -f " .. q(self.dir .. "/redis.pid"))
  local args = {
    "redis-server", "--port", self.port, "--bind", "127.0.0.1", "--save", "''", "--appendonly", "no",
    "--daemonize", "yes", "--dir", q(self.dir), "--pidfile", q(self.dir .. "/redis.pid"),
    "--logfile", q(self.dir .. "/redis.log"),
  }
  if self.password then args[#args + 1] = "--requirepass " .. q(self.password) end
  sh(table.concat(args, " "))
  local up = wait_until(function()
    self.pid = tonumber(read(self.dir .. "/redis.pid") or "")
    return self.pid ~= nil and self:cli("PING") == "PONG"
  end, 5)
  if up then return true end
  local log = read(self.dir .. "/redis.log") or ""
  return nil, log, log:find("Address already in use", 1, true) ~= nil
end

-- opts.password: requirepass.
function M.start(opts)
  opts = opts or {}
  local dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir -p " .. q(dir)) == 0)
  local self = setmetatable({ dir = dir, password = opts.password }, Server)
  local seed = os.time() + math.floor(os.clock() * 1e6) + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003
  local last
  for attempt = 1, 20 do
    self.port = 20000 + (seed * 7919 + attempt * 104729) % 40000
    local ok, log, busy = launch(self)
    if ok then return self end
    last = log
    if not busy then break end
  end
  sh("rm -rf " .. q(dir))
  error("redis-server did not start: " .. tostring(last))
end

-- redis-cli against this server: its output, trimmed.
function Server:cli(...)
  local args = {}
  for i = 1, select("#", ...) do args[i] = q((select(i, ...))) end
  local auth = self.password and ("REDISCLI_AUTH=" .. q(self.password) .. " ") or ""
  local _, out = sh(("%sredis-cli -h 127.0.0.1 -p %d %s"):format(auth, self.port, table.concat(args, " ")))
  return (out:gsub("%s+$", ""))
end

-- Calls per command since the last CONFIG RESETSTAT (INFO commandstats),
-- without the INFO and CONFIG of the test itself.
function Server:commandstats()
  local calls = {}
  for name, n in self:cli("INFO", "commandstats"):gmatch("cmdstat_([%w|_]+):calls=(%d+)") do
    if name ~= "info" and not name:find("^config") then calls[name] = tonumber(n) end
  end
  return calls
end

function Server:reset_stats() return self:cli("CONFIG", "RESETSTAT") end

-- Every key with its value (strings only).
function Server:dump()
  local all = {}
  for key in self:cli("--scan"):gmatch("[^\n]+") do all[key] = self:cli("GET", key) end
  return all
end

local function signal(self, sig)
  if self.pid then sh(("kill -%s %d 2>/dev/null"):format(sig, self.pid)) end
end

-- Ends it at once, as a crash would.
function Server:kill()
  signal(self, "CONT")
  signal(self, "KILL")
  assert(wait_until(function() return not alive(self.pid) end, 5), "redis-server did not die")
end

function Server:pause() signal(self, "STOP") end

function Server:resume() signal(self, "CONT") end

-- Starts it again on the same port, empty.
function Server:restart()
  if alive(self.pid) then self:kill() end
  local ok, log = launch(self)
  assert(ok, "redis-server did not restart: " .. tostring(log))
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  if alive(self.pid) then
    signal(self, "CONT")
    signal(self, "TERM")
    if not wait_until(function() return not alive(self.pid) end, 5) then signal(self, "KILL") end
  end
  sh("rm -rf " .. q(self.dir))
end

return M
