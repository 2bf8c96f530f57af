-- What a Lua user writes by hand: luasocket's http.request with lua-cjson.
--   luasocket_calls.lua URL CAL_ID N  ->  calls per second
local http = require("socket.http")
local ltn12 = require("ltn12")
local socket = require("socket")
local cjson = require("cjson")
local url, cal_id, n = arg[1], arg[2], tonumber(arg[3])

local function calendar_get()
  local body = cjson.encode{ cal_id_list = { cal_id } }
  local out = {}
  local ok, status = http.request{
    url = url, method = "POST", source = ltn12.source.string(body), sink = ltn12.sink.table(out),
    headers = { ["Content-Type"] = "application/json; charset=utf-8", ["Content-Length"] = #body },
  }
  if not ok or status ~= 200 then error("request failed: " .. tostring(status)) end
  local res = cjson.decode(table.concat(out))
  if res.errcode ~= 0 then error("errcode " .. res.errcode) end
  return res
end

for _ = 1, 50 do calendar_get() end
local t0 = socket.gettime()
for _ = 1, n do calendar_get() end
print(("%.1f"):format(n / (socket.gettime() - t0)))
