-- Lua code in the middle of C calls: finalizers (__gc) that run at nearly
-- every allocation, as the garbage collector may run them inside any Lua API
-- call that allocates. Each one makes its successor, so they keep coming.
--
--   local stop = chaos.start()  -- the collector at its most eager
--   chaos.arm(3, fn)            -- the 3rd finalizer from now calls fn, once
--   chaos.always(fn)            -- every finalizer calls fn (nil: none does)
--   stop()                      -- the collector as it was; no more actions
local M = {}

local running, always, countdown, armed = false, nil, 0, nil
local make

local function finalizer()
  if not running then return end
  make()
  if armed then
    countdown = countdown - 1
    if countdown <= 0 then
      local fn = armed
      armed = nil
      fn()
    end
  end
  if always then always() end
end

-- A value with the finalizer: a userdata on Lua 5.1 and LuaJIT (their
-- tables have no __gc), a table on 5.2+.
if newproxy then
  local proto = newproxy(true)
  getmetatable(proto).__gc = finalizer
  make = function() return newproxy(proto) end
else
  local mt = { __gc = finalizer }
  make = function() return setmetatable({}, mt) end
end

local function eager(on)
  if _VERSION == "Lua 5.1" then -- and LuaJIT
    collectgarbage("setpause", on and 10 or 200)
    collectgarbage("setstepmul", on and 10000 or 200)
  else
    collectgarbage("incremental", on and 10 or 200, on and 1000 or 100, on and 0 or 13)
  end
end

function M.start()
  running, always, armed = true, nil, nil
  for _ = 1, 4 do make() end
  eager(true)
  collectgarbage("collect") -- the next threshold is set at the end of a cycle
  return function()
    running, always, armed = false, nil, nil
    eager(false)
    collectgarbage("collect")
  end
end

function M.arm(k, fn)
  countdown, armed = k, fn
end

function M.always(fn)
  always = fn
end

return M
