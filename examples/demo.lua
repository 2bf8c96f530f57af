-- The wecom demo: the seed documents' calendar, from creation to deletion.
--
--   make demo                 starts the local emulator, runs this, stops it
--   lua examples/demo.lua     the same, with LUA_PATH/LUA_CPATH set for wecom
--
-- With WECOM_BASE_URL, WECOM_CORPID and WECOM_CORPSECRET in the environment
-- it talks to that server instead (an emulator you started, or a real corp:
-- it then creates and deletes one calendar there).
local wecom = require("wecom")

local function say(fmt, ...) io.write(fmt:format(...), "\n") end

local base_url = os.getenv("WECOM_BASE_URL")
local own_emulator
if not base_url or base_url == "" then
  own_emulator = assert(require("wecom.emulator.launcher").start{ port = 0 })
  base_url = own_emulator.base_url
end
local on_emulator = own_emulator ~= nil or os.getenv("WECOM_EMULATOR_DIR") ~= nil

local function finish(code)
  if own_emulator then own_emulator:stop() end
  os.exit(code)
end

local client, err = wecom.new{
  corpid = os.getenv("WECOM_CORPID") or "wwemulator",
  corpsecret = os.getenv("WECOM_CORPSECRET") or "emulator-secret",
  base_url = base_url,
}
if not client then
  say("can't make a client: %s", tostring(err))
  finish(1)
end

-- Stops the demo on an unexpected failure, showing the error as a user sees it.
local function check(res, e)
  if res then return res end
  say("   unexpected failure: %s", tostring(e))
  finish(1)
end

say("wecom %s demo against %s%s", wecom._VERSION, base_url, on_emulator and " (the local emulator)" or "")
say("")

say("1. Create a calendar: the seed document's example body")
local created = check(client:calendar_add{
  calendar = {
    organizer = "userid1", readonly = 1, set_as_default = 1,
    summary = "test_summary", color = "#FF3030", description = "test_describe",
    shares = { { userid = "userid2" }, { userid = "userid3", readonly = 1 } },
  },
  agentid = 1000014,
})
local cal_id = created.cal_id
say("   cal_id = %s", cal_id)

local function show(cal)
  local shares = {}
  for _, s in ipairs(cal.shares or {}) do
    shares[#shares + 1] = ("%s (readonly %s)"):format(s.userid, tostring(s.readonly))
  end
  say("   summary %q, color %s, readonly %s, description %q", cal.summary, tostring(cal.color),
    tostring(cal.readonly), cal.description or "")
  say("   shares: %s", #shares > 0 and table.concat(shares, ", ") or "none")
end

say("2. Read it back (calendar_get)")
show(check(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1])

say("3. Update it: update overwrites, so every field is sent again")
check(client:calendar_update{
  calendar = {
    cal_id = cal_id, readonly = 1, summary = "test_summary", color = "#FF3030",
    description = "test_describe_1",
    shares = { { userid = "userid1" }, { userid = "userid2", readonly = 1 } },
  },
})
show(check(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1])

say("4. Page through the calendar's schedules (schedule_get_by_calendar)")
if on_emulator then
  -- the emulator's control API stands in for schedules made in the WeCom app
  local core = require("wecom.core")
  local http = core.session()
  local status = http:request("POST", base_url .. "/emulator/seed_schedules",
    ('{"cal_id":"%s","count":1234,"cancelled_every":7}'):format(cal_id))
  http:close()
  say("   (the emulator seeded 1234 schedules, every 7th cancelled: %s)", status == 200 and "ok" or "failed")
end
local offset, total, cancelled = 0, 0, 0
while true do
  local page = check(client:schedule_get_by_calendar{ cal_id = cal_id, offset = offset, limit = 500 })
  local list = page.schedule_list
  if #list == 0 then break end
  say("   offset %4d: %3d schedules, first %q", offset, #list, list[1].summary)
  for _, s in ipairs(list) do
    total = total + 1
    if s.status == 1 then cancelled = cancelled + 1 end
  end
  offset = offset + #list
end
say("   %d schedules, %d of them cancelled (status 1); resume later from offset %d", total, cancelled, offset)

say("5. A validation error: refused before anything is sent")
local _, verr = client:calendar_add{ calendar = { summary = "bad colour", color = "red" } }
say("   %s", tostring(verr))
say("   kind %s, field %s", verr.kind, verr.field)

say("6. An API error: WeCom's answer, as an error object")
local _, aerr = client:calendar_get{ cal_id_list = { "wcNoSuchCalendar" } }
say("   %s", tostring(aerr))
say("   kind %s, errcode %s, retryable %s", aerr.kind, tostring(aerr.errcode), tostring(aerr.retryable))

say("7. Delete the calendar")
check(client:calendar_del{ cal_id = cal_id })
local _, gone = client:calendar_get{ cal_id_list = { cal_id } }
say("   deleted; reading it now gives: %s", tostring(gone))

client:close()
say("")
say("done")
finish(0)
