-- The hosts of the many-hosts specs, sharing tokens through one Redis:
--   hosts.nginx(conf, layout)  an nginx with 2 workers running
--                              spec/support/redis_app.lua; layout "debian"
--                              finds lua-resty-redis as nginx.redis (Debian's
--                              lua-nginx-redis), "openresty" as resty.redis
--   hosts.lua(lua, conf)       a plain-Lua process (spec/support/redis_host.lua)
--   hosts.resty_path(layout)   the lua_package_path entry of that layout
-- conf: base_url, corpid, corpsecret, cal_id, redis = {port, timeout, cooldown}.
-- Each has stop(); the specs stop them in teardown.
local cjson = require("cjson")
local launcher = require("wecom.emulator.launcher")
local shell = require("support.shell")

local sh, q = shell.run, shell.quote

local M = {}

M.LUAS = { "lua5.1", "lua5.4", "luajit" }

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function read(path) return shell.read(path) or "" end

-- The C core for every Lua (a plain-Lua host runs under each) and
-- lua-resty-redis (make resty-redis), made if missing.
function M.prepare()
  for _, lua in ipairs(M.LUAS) do
    if not exists(("build/%s/wecom/core.so"):format(lua)) then
      local rc, out = sh("make --no-print-directory build LUA=" .. lua)
      assert(rc == 0, out)
    end
  end
  if not exists("build/resty-redis/openresty/resty/redis.lua") then
    local rc, out = sh("make --no-print-directory resty-redis")
    assert(rc == 0, out)
  end
end

function M.resty_path(layout)
  local root = shell.cwd()
  if layout == "openresty" then return root .. "/build/resty-redis/openresty/?.lua;" end
  return root .. "/build/resty-redis/usr/share/lua/5.1/?.lua;"
end

-- A Lua literal of a plain value (strings, numbers, tables of them).
local function literal(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  for k, x in pairs(v) do parts[#parts + 1] = ("[%q] = %s"):format(k, literal(x)) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

function M.nginx(conf, layout)
  local root = shell.cwd()
  local started, err = launcher.start_nginx({ port = 0 }, function(dir, port)
    return launcher.conf_head(dir, 2) .. ([[
http {
%s
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_shared_dict redis_app 1m;
  init_by_lua_block { require("support.redis_app").init(%s) }
  init_worker_by_lua_block { require("support.redis_app").init_worker() }
  server {
    listen 127.0.0.1:%d reuseport;
    location / { content_by_lua_block { require("support.redis_app").handle() } }
    location = /phase {
      set_by_lua_block $probe { return require("support.redis_app").probe() }
      content_by_lua_block { require("support.redis_app").handle() }
    }
  }
}
]]):format(launcher.http_common(dir, root .. "/spec/?.lua;" .. M.resty_path(layout)), root, literal(conf), port)
  end)
  assert(started, err)
  started.base_url = ("http://127.0.0.1:%d"):format(started.port)
  started.layout = layout
  return started
end

local Host = {}
Host.__index = Host

-- The process reads its commands from a file (a pipe to a process that
-- died would end this one with SIGPIPE) and leaves when it is removed.
function M.lua(lua, conf)
  local root = shell.cwd()
  local out, commands = os.tmpname(), os.tmpname()
  local c = {}
  for k, v in pairs(conf) do c[k] = v end
  c.lua, c.commands = lua, commands
  local rc = sh(("cd %s && (%s timeout 900 %s spec/support/redis_host.lua %s > %s 2>&1 &)"):format(q(root),
    shell.lua_env(("%s/lua/?.lua;%s/lua/?/init.lua;;"):format(root, root), ("%s/build/%s/?.so;;"):format(root, lua)),
    lua, q(cjson.encode(c)), q(out)))
  assert(rc == 0)
  return setmetatable({ lua = lua, out = out, commands = commands }, Host)
end

function Host:send(line)
  local f = assert(io.open(self.commands, "ab"))
  f:write(line, "\n")
  f:close()
end

-- The answer with this seq, waiting for it up to `seconds`.
function Host:answer(seq, seconds)
  local deadline = os.time() + (seconds or 120)
  repeat
    for line in read(self.out):gmatch("[^\n]+") do
      local ok, t = pcall(cjson.decode, line)
      if ok and type(t) == "table" and t.seq == seq then return t end
    end
    sh("sleep 0.05")
  until os.time() > deadline
  error(("the %s host gave no answer %d; its output:\n%s"):format(self.lua, seq, read(self.out)))
end

function Host:stop()
  if self.stopped then return end
  self.stopped = true
  os.remove(self.commands)
  os.remove(self.out)
end

return M
