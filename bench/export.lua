-- Exports a calendar with client:export_ical to a file; prints
-- "count seconds peak_kB lua_peak_kB" (the process's peak resident memory,
-- and the Lua heap's, sampled at every chunk written).
--   export.lua BASE_URL CAL_ID OUT_FILE
local wecom = require("wecom")
local core = require("wecom.core")
local client = assert(wecom.new{ corpid = "wwbench", corpsecret = "bench-secret", base_url = arg[1], timeout = 60 })
local out = assert(io.open(arg[3], "wb"))
local lua_peak = 0
local t0 = core.monotime()
local res, err = client:export_ical(arg[2], function(chunk)
  local kb = collectgarbage("count")
  if kb > lua_peak then lua_peak = kb end
  return out:write(chunk)
end)
if not res then error(tostring(err)) end
local took = core.monotime() - t0
out:close()
local status = io.open("/proc/self/status"):read("*a")
print(res.schedules, ("%.3f"):format(took), status:match("VmHWM:%s*(%d+) kB"), ("%.0f"):format(lua_peak))
