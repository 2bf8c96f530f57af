-- Pages through a calendar with each_schedule; prints "count seconds peak_kB".
--   paging.lua BASE_URL CAL_ID
local wecom = require("wecom")
local core = require("wecom.core")
local client = assert(wecom.new{ corpid = "wwbench", corpsecret = "bench-secret", base_url = arg[1], timeout = 60 })
local n, t0 = 0, core.monotime()
for s, err in client:each_schedule(arg[2]) do
  if s == false then error(tostring(err)) end
  n = n + 1
end
local took = core.monotime() - t0
local status = io.open("/proc/self/status"):read("*a")
print(n, ("%.3f"):format(took), status:match("VmHWM:%s*(%d+) kB"))
