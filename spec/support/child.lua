-- Runs a Lua chunk in a child process of the interpreter running the specs,
-- with the same C core under test (spec/support/helper.lua): for scenarios
-- that, should they regress, crash or hang rather than fail, and for those
-- that need a process of their own (a small heap, a memory limit).

local shell = require("support.shell")

local M = {}

-- The child's address space in KB, from /proc/self/status (Linux).
M.VM_SIZE = [[
local function vm_size()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmSize:%s*(%d+)")
    if kb then return tonumber(kb) end
  end
end
]]


-- Returns the exit code (124: killed after `seconds`) and the output.
-- vm_kb: the child's address space limit (ulimit -v), if any.
function M.run(code, seconds, vm_kb)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write('package.path = "lua/?.lua;lua/?/init.lua;emulator/?.lua;spec/?.lua;" .. package.path\n',
    'dofile("spec/support/helper.lua")\n', code)
  f:close()
  local rc, out = shell.run(("%stimeout -s KILL %d %s %s"):format(vm_kb and ("ulimit -v %d && "):format(vm_kb) or "",
    seconds or 120, shell.quote(shell.lua), shell.quote(file)))
  os.remove(file)
  return rc, out
end

return M
