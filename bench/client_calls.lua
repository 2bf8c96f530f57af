-- This client, sequential calendar_get calls: prints calls per second.
--   client_calls.lua BASE_URL CAL_ID N
local wecom = require("wecom")
local core = require("wecom.core")
local base_url, cal_id, n = arg[1], arg[2], tonumber(arg[3])
local client = assert(wecom.new{ corpid = "wwbench", corpsecret = "bench-secret", base_url = base_url })
local body = { cal_id_list = { cal_id } }
for _ = 1, 50 do assert(client:calendar_get(body)) end -- warm up: token, connection
local t0 = core.monotime()
for _ = 1, n do
  local res = client:calendar_get(body)
  if not res then error("call failed") end
end
print(("%.1f"):format(n / (core.monotime() - t0)))
