-- One contender of the mirror row (bench/mirror.lua); prints "count seconds
-- peak_kB cpu_seconds" (cpu: this process's, from the first call on).
--   mirror_pull.lua BASE_URL CAL_ID floor          pages the calendar, storing nothing
--   mirror_pull.lua BASE_URL CAL_ID sqlite FILE    follow + pull into a new SQLite file
--   mirror_pull.lua BASE_URL CAL_ID memory         follow + pull into sync.memory()
local wecom = require("wecom")
local core = require("wecom.core")
local sync = require("wecom.sync")

local base_url, cal_id, mode, file = arg[1], arg[2], arg[3], arg[4]
local client = assert(wecom.new{ corpid = "wwbench", corpsecret = "bench-secret", base_url = base_url, timeout = 60 })
assert(client:calendar_get{ cal_id_list = { cal_id } }) -- the token, fetched before the clock starts

local n, t0, cpu0 = 0, core.monotime(), os.clock()
if mode == "floor" then
  local cursor = assert(client:schedule_cursor(cal_id, { limit = 1000 }))
  while true do
    local page = assert(cursor:next_page())
    if #page == 0 then break end
    for _, s in ipairs(page) do
      if s.status ~= 1 then n = n + 1 end
    end
  end
else
  local store = mode == "memory" and sync.memory() or assert(sync.sqlite(file))
  local mirror = assert(sync.new{ client = client, store = store })
  wecom.assert(mirror:follow(cal_id))
  n = wecom.assert(mirror:pull())
  store:close()
end
local took, cpu = core.monotime() - t0, os.clock() - cpu0
local status = io.open("/proc/self/status"):read("*a")
print(n, ("%.3f"):format(took), status:match("VmHWM:%s*(%d+) kB"), ("%.3f"):format(cpu))
