-- Running commands from the specs.
local M = {}

-- Runs a shell command; returns its exit code and its output (stdout and
-- stderr together).
function M.run(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

function M.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The interpreter running the specs (lua5.1, lua5.4, luajit).
M.lua = arg and arg[-1] or "lua"

-- An `env` prefix that runs the interpreter with these paths (and no 5.4
-- specific ones from the caller's environment).
function M.lua_env(path, cpath)
  return ("env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH=%s LUA_CPATH=%s"):format(M.quote(path), M.quote(cpath))
end

-- The whole file at path (read as bytes), or nil when it can't be opened.
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.cwd()
  local p = io.popen("pwd")
  local d = p:read("*l")
  p:close()
  return d
end

return M
