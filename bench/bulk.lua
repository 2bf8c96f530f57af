-- calendars() of many ids, sequential then concurrent: prints "concurrency seconds".
--   bulk.lua BASE_URL IDS_FILE
local wecom = require("wecom")
local core = require("wecom.core")
local ids = {}
for line in io.lines(arg[2]) do ids[#ids + 1] = line end
local client = assert(wecom.new{ corpid = "wwbench", corpsecret = "bench-secret", base_url = arg[1], timeout = 60 })
assert(client:calendar_get{ cal_id_list = { ids[1] } }) -- token first
for _, concurrency in ipairs{ 1, 10 } do
  local t0 = core.monotime()
  local list = assert(client:calendars(ids, { concurrency = concurrency }))
  assert(#list == #ids and list[#ids].cal_id == ids[#ids])
  print(concurrency, ("%.3f"):format(core.monotime() - t0))
end
