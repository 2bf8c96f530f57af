-- Starts the scripted raw HTTP server (spec/support/raw_server.lua) on a
-- free 127.0.0.1 port, reads what it received, stops it.
--
--   local raw = require("support.raw")
--   local srv = raw.start{ replies = { { send = raw.reply("{}"), later = {...} } } }
--   ... srv.base_url ...
--   srv:requests()  -- { {conn =, n =, text =}, ... } in arrival order
--   srv:stop()
local core = require("wecom.core")
local shell = require("support.shell")

local M = {}

-- A complete reply with a Content-Length; extra header lines may be given.
function M.reply(body, status, headers)
  return ("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"):format(
    status or "200 OK", #body, headers or "", body)
end

local function serialize(v)
  local t = type(v)
  if t == "string" then return ("%q"):format(v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  assert(t == "table", "raw server config: can't write a " .. t)
  local out = {}
  for k, x in pairs(v) do out[#out + 1] = ("[%s] = %s"):format(serialize(k), serialize(x)) end
  return "{" .. table.concat(out, ", ") .. "}"
end

local Server = {}
Server.__index = Server

-- conf: { replies = {...}, default = reply } (see raw_server.lua)
function M.start(conf)
  local dir = os.tmpname()
  os.remove(dir)
  assert(shell.run("mkdir -p " .. shell.quote(dir)) == 0)
  local c = {}
  for k, v in pairs(conf or {}) do c[k] = v end
  c.log = dir .. "/log"
  local f = assert(io.open(dir .. "/conf.lua", "w"))
  f:write("return ", serialize(c), "\n")
  f:close()
  -- the sanitizer runtime of `make asan` is for the C core, not for this server
  local p = io.popen(("cd %s && env -u LD_PRELOAD lua5.4 %s/spec/support/raw_server.lua conf.lua >port 2>err & echo $!")
    :format(shell.quote(dir), shell.quote(shell.cwd())))
  local pid = assert(tonumber(p:read("*l")))
  p:close()
  local self = setmetatable({ dir = dir, pid = pid }, Server)
  for _ = 1, 250 do
    local pf = io.open(dir .. "/port")
    local port = pf and tonumber(pf:read("*l") or "")
    if pf then pf:close() end
    if port then
      self.port = port
      self.base_url = ("http://127.0.0.1:%d"):format(port)
      return self
    end
    core.sleep(0.02)
  end
  local ef = io.open(dir .. "/err")
  local err = ef and ef:read("*a") or ""
  if ef then ef:close() end
  self:stop()
  error("the raw server did not start: " .. err)
end

-- Every request received so far: { conn = connection number, n = request
-- number, text = head and body }.
function Server:requests()
  local list = {}
  local f = io.open(self.dir .. "/log")
  if not f then return list end
  for line in f:lines() do
    local conn, n, text = line:match('^request (%d+) (%d+) (".*")$')
    if conn then
      list[#list + 1] = { conn = tonumber(conn), n = tonumber(n), text = assert((loadstring or load)("return " .. text))() }
    end
  end
  f:close()
  return list
end

-- How many connections the server accepted so far.
function Server:connections()
  local count = 0
  local f = io.open(self.dir .. "/log")
  if not f then return 0 end
  for line in f:lines() do
    if line:match("^open ") then count = count + 1 end
  end
  f:close()
  return count
end

function Server:stop()
  shell.run("kill " .. self.pid .. " 2>/dev/null")
  shell.run("rm -rf " .. shell.quote(self.dir))
end

return M
