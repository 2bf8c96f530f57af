-- Loaded by busted before the specs: finds the C core built for this Lua,
-- or in $WECOM_CORE_DIR (the sanitizer build of `make check`).
local dir = os.getenv("WECOM_CORE_DIR")
if not dir or dir == "" then
  local name
  if jit then
    name = "luajit"
  else
    name = "lua" .. _VERSION:match("%d+%.%d+")
  end
  dir = "build/" .. name
end
local f = io.open(dir .. "/wecom/core.so", "rb")
if f then
  f:close()
  package.cpath = dir .. "/?.so;" .. package.cpath
end
