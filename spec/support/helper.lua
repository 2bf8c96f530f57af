-- Loaded by busted before the specs: finds the C core built for this Lua.
local name
if jit then
  name = "luajit"
else
  name = "lua" .. _VERSION:match("%d+%.%d+")
end
local f = io.open("build/" .. name .. "/wecom/core.so", "rb")
if f then
  f:close()
  package.cpath = "build/" .. name .. "/?.so;" .. package.cpath
end
