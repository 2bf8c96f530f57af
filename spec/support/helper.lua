-- Loaded by busted before the specs: the C core under test is the one
-- `make build LUA=<this lua>` made in build/<lua>/ (or the one in
-- $WECOM_CORE_DIR: the sanitizer build of `make check`), never whatever
-- else package.cpath would find (a stale ./wecom/core.so, an installed rock).
local dir = os.getenv("WECOM_CORE_DIR")
local name = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
if not dir or dir == "" then dir = "build/" .. name end
local f = io.open(dir .. "/wecom/core.so", "rb")
if not f then
  error(("spec/support/helper.lua: %s/wecom/core.so is missing: run `make build LUA=%s` first"):format(dir, name), 0)
end
f:close()
package.cpath = dir .. "/?.so;" .. package.cpath
package.loaded["wecom.core"] = assert(package.loadlib(dir .. "/wecom/core.so", "luaopen_wecom_core"))("wecom.core")
