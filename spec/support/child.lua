-- Runs a Lua chunk in a child process of the interpreter running the specs,
-- with the same C core under test (spec/support/helper.lua): for scenarios
-- that, should they regress, crash or hang rather than fail.
local shell = require("support.shell")

local M = {}

-- Returns the exit code (124: killed after `seconds`) and the output.
function M.run(code, seconds)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write('package.path = "lua/?.lua;lua/?/init.lua;emulator/?.lua;spec/?.lua;" .. package.path\n',
    'dofile("spec/support/helper.lua")\n', code)
  f:close()
  local rc, out = shell.run(("timeout -s KILL %d %s %s"):format(seconds or 120, shell.quote(shell.lua), shell.quote(file)))
  os.remove(file)
  return rc, out
end

return M
