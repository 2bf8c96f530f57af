-- Encoding and decoding against lua-cjson alone, on the same tables:
-- microseconds per call. Prints "name value" lines.
local core = require("wecom.core")
local cjson = require("cjson")
local decode_reply = require("wecom.request").decode_reply

local function micros_per_call(fn)
  for _ = 1, 5 do fn() end
  local n, t0 = 0, core.monotime()
  repeat
    for _ = 1, 10 do fn() end
    n = n + 10
  until core.monotime() - t0 > 0.7
  return (core.monotime() - t0) / n * 1e6
end

local ids = {}
for _, ep in ipairs(core.endpoints()) do ids[ep.name] = ep.id end

-- a calendar with 2000 members, as calendar_update sends it
local shares = {}
for i = 1, 2000 do shares[i] = { userid = ("zhang.san.%05d"):format(i), readonly = i % 2 } end
local calendar = { calendar = {
  cal_id = "wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA", summary = "研发中心 团队日历", color = "#FF3030",
  description = "每周例会、发布计划与值班安排", readonly = 0, shares = shares,
} }

-- a page of 1000 schedules, as get_by_calendar answers it
local page = { errcode = 0, errmsg = "ok", schedule_list = {} }
for i = 1, 1000 do
  page.schedule_list[i] = {
    schedule_id = ("17c7d2bd9f20d652840f72f59e7%05d"):format(i), sequence = 1000 + i, cal_id = "wcjgew",
    admins = { "admin1" }, attendees = { { userid = "userid1", response_status = 0 },
      { userid = "userid2", response_status = 2 }, { userid = "userid3", response_status = 4 } },
    summary = "周会 " .. i, description = "议程：进展、风险、计划", location = "3F 会议室",
    reminders = { is_remind = 1, is_repeat = 1, remind_before_event_secs = 3600, repeat_type = 1,
      repeat_until = 1606976813, is_custom_repeat = 0, repeat_interval = 1, timezone = 8 },
    start_time = 1571274600 + i * 3600, end_time = 1571278200 + i * 3600, status = i % 7 == 0 and 1 or 0,
  }
end
local page_json = cjson.encode(page)

assert(core.encode(ids.calendar_update, calendar))
assert(decode_reply(page_json))
print("encode_wecom", micros_per_call(function() return core.encode(ids.calendar_update, calendar) end))
print("encode_cjson", micros_per_call(function() return cjson.encode(calendar) end))
print("decode_wecom", micros_per_call(function() return decode_reply(page_json) end))
print("decode_cjson", micros_per_call(function() return cjson.decode(page_json) end))
print("encode_bytes", #core.encode(ids.calendar_update, calendar))
print("page_bytes", #page_json)
