-- Starts examples/nginx.conf as it is (2 workers), on a free port with its
-- files in a directory of its own, against an emulator. env: more
-- environment variables for nginx (the callback's token and key).
local launcher = require("wecom.emulator.launcher")
local shell = require("support.shell")

local M = {}

function M.start(emu, env)
  local text = assert(shell.read("examples/nginx.conf"), "can't read examples/nginx.conf")
  local root = shell.cwd()
  local vars = { WECOM_BASE_URL = emu.base_url, WECOM_CORPID = emu.corpid, WECOM_CORPSECRET = emu.corpsecret }
  for k, v in pairs(env or {}) do vars[k] = v end
  local example = assert(launcher.start_nginx({ port = 0, env = vars }, function(dir, port)
    -- its pid and error log where the launcher looks for them, so stop()
    -- ends it and a start that fails says why
    local conf = text:gsub("listen 127%.0%.0%.1:8080;", ("listen 127.0.0.1:%d;"):format(port))
      :gsub("%$prefix", root):gsub("pid build/nginx%-example%.pid;", "pid " .. dir .. "/nginx.pid;")
      :gsub("error_log build/nginx%-example%.log", "error_log " .. dir .. "/error.log")
      :gsub(" build/nginx%-example", " " .. dir .. "/example")
    return launcher.user_line() .. "\n" .. conf
  end))
  example.base_url = ("http://127.0.0.1:%d"):format(example.port)
  -- the example's error_log (error_log build/nginx-example.log)
  function example.log() return shell.read(example.dir .. "/error.log") or "" end
  return example
end

return M
