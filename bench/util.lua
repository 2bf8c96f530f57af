-- What the rows of `make bench` share (bench/run.lua, callback.lua,
-- mirror.lua): local util = dofile("bench/util.lua")
local M = {}

function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A command's output (stdout and stderr), without the trailing blank.
function M.capture(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

-- The prefix that runs `lua` with the checkout's modules and its C core.
function M.lua_env(lua)
  local cpath = lua == "luajit" and "build/luajit/?.so;;" or "build/lua5.4/?.so;;"
  return ("env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH='lua/?.lua;lua/?/init.lua;emulator/?.lua;;' LUA_CPATH=%s %s"):format(
    M.q(cpath), lua)
end

function M.median(list)
  table.sort(list)
  return list[math.ceil(#list / 2)]
end

-- A row recorded alone (make bench-callback, make bench-mirror): its
-- section of bench/RESULTS.md, the one whose heading starts with
-- `heading`, replaced by `lines`; the rest kept.
function M.record(lines, heading)
  local path = "bench/RESULTS.md"
  local f = io.open(path)
  local text = f and f:read("*a") or "# Benchmark results\n\n"
  if f then f:close() end
  local section = table.concat(lines, "\n")
  section = section:gsub("Run this row alone", ("Recorded alone on %s. Run this row alone")
    :format(os.date("!%Y-%m-%d %H:%M UTC")), 1)
  local escaped = heading:gsub("%p", "%%%0")
  local head, rest = text:match("^(.-)" .. escaped .. "[^\n]*\n(.*)$")
  if head then
    local after = rest:match("\n(## .*)$") or ""
    text = head .. section .. (after ~= "" and "\n" .. after or "")
  else
    text = text:gsub("\n*$", "\n\n") .. section
  end
  f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  print(section)
end

return M
