-- Differences between the Luas that the Lua layer must hide.
local M = {}

-- pcall that lets a coroutine yield through it. Lua 5.1 can't yield across
-- pcall, so a custom transport that yields (copas) would fail inside the
-- library's pcalls there; this runs the function in a coroutine of its own
-- and passes its yields up, as coxpcall does. LuaJIT and Lua 5.2+ yield
-- across pcall already, and a caller outside any coroutine can't yield at
-- all: both get the plain pcall.
local function pass(co, ok, ...)
  if not ok then return false, (...) end
  if coroutine.status(co) == "dead" then return true, ... end
  return pass(co, coroutine.resume(co, coroutine.yield(...)))
end

if _VERSION == "Lua 5.1" and not rawget(_G, "jit") then
  function M.pcall(f, ...)
    if not coroutine.running() then return pcall(f, ...) end
    local co = coroutine.create(f)
    return pass(co, coroutine.resume(co, ...))
  end
else
  M.pcall = pcall
end

return M
