-- Starts and stops the WeCom emulator: an unprivileged nginx with its Lua
-- module, serving emulator/wecom/emulator/server.lua on 127.0.0.1.
--
--   local launcher = require("wecom.emulator.launcher")
--   local emu = assert(launcher.start{ port = 0 })   -- 0: any free port
--   print(emu.base_url)
--   emu:stop()
local M = {}

M.DEFAULT_PORT = 18080

-- A running nginx: port, dir, pid; stop() ends it.
local Instance = {}
Instance.__index = Instance

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- os.execute's result as a boolean on 5.1 and 5.2+.
local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(data)
  f:close()
  return true
end

local function capture(cmd)
  local p = io.popen(cmd)
  if not p then return "" end
  local s = p:read("*a") or ""
  p:close()
  return (s:gsub("%s+$", ""))
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The directories of our Lua modules, as absolute paths: the one holding
-- wecom/emulator/server.lua, and the library's (a checkout keeps it in
-- lua/ beside emulator/; an installed tree has both in one directory).
local function lua_roots()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local root = src:gsub("wecom/emulator/launcher%.lua$", "")
  if root == "" then root = "./" end
  if root:sub(1, 1) ~= "/" then root = capture("cd " .. shell_quote(root) .. " && pwd") .. "/" end
  local library = root:gsub("emulator/$", "lua/")
  if library == root or not file_exists(library .. "wecom/init.lua") then return { root } end
  return { root, library }
end

local function find_nginx()
  local env = os.getenv("WECOM_NGINX")
  if env and env ~= "" then return env end
  for _, p in ipairs{ "/usr/sbin/nginx", "/usr/local/openresty/nginx/sbin/nginx", "/usr/local/sbin/nginx" } do
    if file_exists(p) then return p end
  end
  local p = capture("command -v nginx 2>/dev/null")
  if p ~= "" then return p end
  return nil
end

-- load_module lines for Debian's dynamic modules; OpenResty has them built in.
local function module_lines()
  local dir = os.getenv("WECOM_NGINX_MODULES") or "/usr/lib/nginx/modules"
  local lines = {}
  for _, m in ipairs{ "ndk_http_module.so", "ngx_http_lua_module.so" } do
    if file_exists(dir .. "/" .. m) then lines[#lines + 1] = ("load_module %s/%s;"):format(dir, m) end
  end
  return table.concat(lines, "\n")
end

local function default_dir(port)
  local tmp = os.getenv("TMPDIR")
  if not tmp or tmp == "" then tmp = "/tmp" end
  return ("%s/wecom-emulator-%d"):format(tmp, port)
end

-- Settings passed to the server at start (corpid, corpsecret, token_ttl,
-- the callback target).
local function lua_literal(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

local function config_block(opts)
  local parts = {}
  for _, k in ipairs{ "corpid", "corpsecret", "token_ttl", "callback_url", "callback_token", "callback_aes_key",
    "callback_receiveid" } do
    if opts[k] ~= nil then parts[#parts + 1] = ("%s = %s"):format(k, lua_literal(opts[k])) end
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

-- The top of every nginx.conf of ours: modules, one or more workers, a
-- daemon with its pid and log in `dir`.
-- As root, nginx would run its workers as nobody, who may not be able to
-- read the checkout: ours run as the user that starts them.
function M.user_line()
  return capture("id -u 2>/dev/null") == "0" and "user root;" or ""
end

function M.conf_head(dir, workers)
  return ([[
%s
%s
worker_processes %d;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 4096; }
]]):format(module_lines(), M.user_line(), workers or 1, dir, dir)
end

-- The emulator's callbacks need wecom.core built for nginx's LuaJIT: in a
-- checkout, build/luajit next to lua/ (make build LUA=luajit); an installed
-- rock's is on LuaJIT's own path.
local function core_cpath()
  local dir = lua_roots()[1] .. "../build/luajit/"
  if not file_exists(dir .. "wecom/core.so") then return "" end
  return ('lua_package_cpath "%s?.so;;";'):format(dir)
end

-- http{} directives every nginx of ours shares: our Lua modules on the path,
-- request bodies kept in memory, temporary files in `dir`.
function M.http_common(dir, extra_path)
  local path = {}
  for _, root in ipairs(lua_roots()) do path[#path + 1] = ("%s?.lua;%s?/init.lua;"):format(root, root) end
  return ([[
  access_log off;
  lua_package_path "%s%s;";
  lua_socket_log_errors off;
  client_body_buffer_size 64m;
  client_max_body_size 64m;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  keepalive_requests 100000;
]]):format(extra_path or "", table.concat(path), dir, dir, dir, dir, dir)
end

local function emulator_conf(dir, port, opts)
  local tls = ""
  if opts.tls then
    tls = ("listen 127.0.0.1:%d ssl;\n    ssl_certificate %s;\n    ssl_certificate_key %s;"):format(
      port + 1, opts.tls.cert, opts.tls.key)
  end
  return M.conf_head(dir, 1) .. ([[
http {
%s
  %s
  keepalive_timeout %ds;
  init_by_lua_block { require("wecom.emulator.server").init(%s) }
  server {
    listen 127.0.0.1:%d;
    %s
    location / { content_by_lua_block { require("wecom.emulator.server").handle() } }
  }
}
]]):format(M.http_common(dir), core_cpath(), opts.keepalive_timeout or 75, config_block(opts), port, tls)
end

-- A zombie counts as gone: a daemon's parent (PID 1 in a container) may
-- never reap it.
local function pid_alive(pid)
  if not pid then return false end
  local stat = read_file(("/proc/%d/stat"):format(pid))
  if stat then return stat:match("^%d+ %b() (%a)") ~= "Z" end
  return run("kill -0 " .. pid .. " 2>/dev/null")
end

local function sleep(s) run("sleep " .. s) end

-- Tries to start nginx with `conf` in `dir`; returns true, or nil and the
-- error text (with `busy` true when a port was taken).
local function try_start(nginx, dir, conf, env)
  run("mkdir -p " .. shell_quote(dir))
  local ok, err = write_file(dir .. "/nginx.conf", conf)
  if not ok then return nil, "can't write " .. dir .. "/nginx.conf: " .. tostring(err) end
  -- nginx's LuaJIT must not see the caller's Lua paths (they may name
  -- another Lua version's C modules), nor a sanitizer preloaded for the tests
  local vars = {}
  for k, v in pairs(env or {}) do vars[#vars + 1] = shell_quote(k .. "=" .. v) end
  local started = run(("env -u LUA_PATH -u LUA_CPATH -u LUA_INIT -u LD_PRELOAD %s %s -p %s -c %s 2>%s"):format(
    table.concat(vars, " "), shell_quote(nginx), shell_quote(dir .. "/"),
    shell_quote(dir .. "/nginx.conf"), shell_quote(dir .. "/start.log")))
  if started then return true end
  local log = (read_file(dir .. "/start.log") or "") .. (read_file(dir .. "/error.log") or "")
  return nil, log, log:find("Address already in use", 1, true) ~= nil
end

-- Whether something listens on TCP `port` (Linux: /proc/net/tcp*). A conf
-- with `reuseport` binds a port that another process of the same user
-- listens on with it too, and the two then share the connections: such a
-- port is skipped before trying, not found taken by the bind.
function M.listened(port)
  local pattern = (":%04X %%x+:%%x+ 0A "):format(port)
  for _, file in ipairs{ "/proc/net/tcp", "/proc/net/tcp6" } do
    local text = read_file(file)
    if text and text:find(pattern) then return true end
  end
  return false
end

-- Starts an nginx whose conf is build(dir, port): on opts.port, or on a
-- free one (and the one after it, which a conf may use too) when opts.port
-- is 0 or nil. opts.dir defaults to a directory named after the port;
-- opts.env adds environment variables. Returns {port, dir, nginx, pid} or
-- nil, err.
function M.start_nginx(opts, build)
  local nginx = find_nginx()
  if not nginx then
    return nil, "nginx not found: install nginx-light and libnginx-mod-http-lua (or set WECOM_NGINX)"
  end
  local fixed = opts.port and opts.port ~= 0
  -- a private generator: the application's math.random is left alone
  local seed = (os.time() + math.floor(os.clock() * 1e6) +
    (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0)) % 2147483647
  local last_err
  for _ = 1, fixed and 1 or 30 do
    seed = (seed * 1103515245 + 12345) % 2147483648
    local port = fixed and opts.port or 20000 + seed % 40000
    local dir = opts.dir or default_dir(port)
    local ok, err, busy
    if not fixed and (M.listened(port) or M.listened(port + 1)) then
      err, busy = "port " .. port .. " in use", true
    elseif not fixed and not opts.dir and not run("mkdir " .. shell_quote(dir) .. " 2>/dev/null") then
      -- the directory named after the port is taken (mkdir is atomic): an
      -- instance starting on the same port at the same moment, whose conf
      -- and pid file must not be overwritten, nor its directory removed
      err, busy = dir .. " exists", true
    else
      ok, err, busy = try_start(nginx, dir, build(dir, port), opts.env)
    end
    if ok then
      return setmetatable({ port = port, dir = dir, nginx = nginx,
        pid = tonumber(read_file(dir .. "/nginx.pid") or "") }, Instance)
    end
    last_err = err
    if not opts.dir and err ~= dir .. " exists" then run("rm -rf " .. shell_quote(dir)) end
    if not busy then break end
  end
  return nil, tostring(last_err)
end

-- opts: port (0 or nil for any free one), dir, corpid, corpsecret, token_ttl,
-- tls = {cert =, key =} (an HTTPS listener on the next port),
-- keepalive_timeout (seconds an idle connection is kept; default 75).
function M.start(opts)
  opts = opts or {}
  local started, err = M.start_nginx(opts, function(dir, port) return emulator_conf(dir, port, opts) end)
  if not started then return nil, "the emulator did not start: " .. err end
  local self = started
  self.base_url = ("http://127.0.0.1:%d"):format(self.port)
  if opts.tls then self.tls_url = ("https://127.0.0.1:%d"):format(self.port + 1) end
  return self
end

-- The pids of a process's children (Linux), or nil when it can't be read.
local function children(pid)
  local s = read_file(("/proc/%d/task/%d/children"):format(pid, pid))
  if not s then return nil end
  local list = {}
  for c in s:gmatch("%d+") do list[#list + 1] = c end
  return list
end

-- Stops the nginx serving `dir` and waits until it is gone. The workers
-- leave at once on TERM; the master then lingers for a second and more in
-- its reaping back-off, so once its workers are gone it is killed.
function M.stop_dir(dir, keep)
  local pid = tonumber(read_file(dir .. "/nginx.pid") or "")
  if not pid then return nil, "no emulator is running in " .. dir end
  run("kill -TERM " .. pid .. " 2>/dev/null")
  for _ = 1, 250 do
    if not pid_alive(pid) then break end
    local kids = children(pid)
    if kids and #kids == 0 then
      run("kill -KILL " .. pid .. " 2>/dev/null")
      break
    end
    sleep(0.02)
  end
  for _ = 1, 50 do
    if not pid_alive(pid) then break end
    sleep(0.02)
  end
  if pid_alive(pid) then run("kill -KILL " .. pid .. " 2>/dev/null") end
  if not keep then run("rm -rf " .. shell_quote(dir)) end
  return true
end

-- The pid of the emulator running in `dir`, or nil.
function M.running(dir)
  local pid = tonumber(read_file(dir .. "/nginx.pid") or "")
  if pid_alive(pid) then return pid end
  return nil
end

function M.stop_port(port)
  return M.stop_dir(default_dir(port))
end

function Instance:stop(keep)
  if self.stopped then return true end
  self.stopped = true
  return M.stop_dir(self.dir, keep)
end

function Instance:error_log()
  return read_file(self.dir .. "/error.log") or ""
end

M.default_dir = default_dir

return M
