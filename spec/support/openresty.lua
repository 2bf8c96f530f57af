-- Starts an nginx with the Lua module (2 workers) whose handlers use the
-- library (spec/support/ngx_app.lua) against an emulator.
local cjson = require("cjson")
local core = require("wecom.core")
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
  -- Every worker makes a call from init_worker before it serves: wait until
  -- all are past it, so no test meets a worker that isn't serving yet, nor
  -- sees those calls land on its faults or counts.
  local session = require("support.session")()
  local workers, ready, deadline = opts.workers or 2, 0, core.monotime() + 30
  while ready < workers and core.monotime() < deadline do
    local status, body = session:request("GET", started.base_url .. "/ready")
    ready = status == 200 and cjson.decode(body).ready or 0
    if ready < workers then core.sleep(0.05) end
  end
  session:close()
  assert(ready >= workers, ("nginx: %d of %d workers ready after 30 s"):format(ready, workers))
  return started
end

return M
