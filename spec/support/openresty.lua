-- Starts an nginx with the Lua module (2 workers) whose handlers use the
-- library (spec/support/ngx_app.lua) against an emulator.
local launcher = require("wecom.emulator.launcher")
local shell = require("support.shell")

local M = {}

-- opts: emu (from support.emulator, with tls_url when it has TLS), ca (a CA
-- bundle that /tls_trusted trusts), stale (an emulator that drops idle
-- connections), workers (default 2).
function M.start(opts)
  local root = shell.cwd()
  local conf = ("{ base_url = %q, tls_url = %q, stale_url = %q, corpid = %q, corpsecret = %q }"):format(
    opts.emu.base_url, opts.emu.tls_url or "", opts.stale and opts.stale.base_url or "", opts.emu.corpid,
    opts.emu.corpsecret)
  local started, err = launcher.start_nginx({ port = 0 }, function(dir, port)
    return launcher.conf_head(dir, opts.workers or 2) .. ([[
http {
%s
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_shared_dict wecom_tokens 1m;
  lua_shared_dict test_stats 1m;
  init_by_lua_block { require("support.ngx_app").init(%s) }
  init_worker_by_lua_block { require("support.ngx_app").init_worker() }
  server {
    listen 127.0.0.1:%d reuseport;
    location / { content_by_lua_block { require("support.ngx_app").handle() } }
    %s
    location /tls_untrusted { content_by_lua_block { require("support.ngx_app").handle() } }
  }
}
]]):format(launcher.http_common(dir, root .. "/spec/?.lua;"), root, conf, port, opts.ca and ([[
    location /tls_trusted {
      lua_ssl_trusted_certificate %s;
      content_by_lua_block { require("support.ngx_app").handle() }
    }]]):format(opts.ca) or "")
  end)
  assert(started, err)
  started.base_url = ("http://127.0.0.1:%d"):format(started.port)
  return started
end

-- examples/nginx.conf as it is, on a free port with its files in the
-- launcher's dir (its pid where the launcher looks, so stop() ends it),
-- against the emulator; env adds variables for its `env` lines.
function M.example(emu, env)
  local f = assert(io.open("examples/nginx.conf"))
  local text = f:read("*a")
  f:close()
  local root = shell.cwd()
  local vars = { WECOM_BASE_URL = emu.base_url, WECOM_CORPID = emu.corpid, WECOM_CORPSECRET = emu.corpsecret }
  for k, v in pairs(env or {}) do vars[k] = v end
  local example = assert(launcher.start_nginx({ port = 0, env = vars }, function(dir, port)
    local conf = text:gsub("listen 127%.0%.0%.1:8080;", ("listen 127.0.0.1:%d;"):format(port))
      :gsub("%$prefix", root):gsub("pid build/nginx%-example%.pid;", "pid " .. dir .. "/nginx.pid;")
      :gsub(" build/nginx%-example", " " .. dir .. "/example")
    return launcher.user_line() .. "\n" .. conf
  end))
  example.base_url = ("http://127.0.0.1:%d"):format(example.port)
  return example
end

return M
