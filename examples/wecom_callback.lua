-- The callback location of examples/nginx.conf: WeCom POSTs an event there
-- when a member changes one of the app's calendars or schedules. An event
-- says what changed, not how, so the handler reads it again through the
-- client and appends what it found to a feed, listed by GET /changes:
--   [{"id": 1, "event": "modify_schedule", "cal_id": ..., "schedule_id": ...,
--     "from": "zhangsan", "create_time": 1700000000, "schedule": {...}}, ...]
-- Each message is handled once across the workers (the seen store is a
-- shared dict), or across hosts with WECOM_REDIS_HOST (Redis). A handler that fails answers 500, and WeCom delivers the
-- message again later.
local callback = require("wecom.callback")
local cjson = require("cjson")

local M = {}

local FEED_LENGTH = 1000 -- the feed keeps the latest changes

local client, cb, not_configured

-- From init_by_lua, after wecom_app.init(): no I/O here.
function M.init()
  client = require("wecom_app").client() -- one client (and token) for the whole example
  local err
  cb, err = callback.new{
    token = os.getenv("WECOM_CALLBACK_TOKEN"),
    encoding_aes_key = os.getenv("WECOM_CALLBACK_AES_KEY"),
    receiveid = os.getenv("WECOM_CORPID"),
    -- handled once by one host (Redis), or by one worker of this nginx
    seen = require("wecom_app").redis() or ngx.shared.wecom_callbacks,
  }
  -- the rest of the example works without callbacks
  if not cb then not_configured = tostring(err) end
end

-- A calendar or schedule that is gone answers these on a read.
local GONE = { [90457] = true, [90459] = true, [90460] = true }

local function reread(msg, change)
  local res, err
  if msg.Event == "modify_calendar" then
    res, err = client:calendar_get{ cal_id_list = { msg.CalId } }
    if res then change.calendar = res.calendar_list[1] end
  elseif msg.Event == "add_schedule" or msg.Event == "modify_schedule" or msg.Event == "respond_schedule" then
    res, err = client:schedule_get{ schedule_id_list = { msg.ScheduleId } }
    if res then change.schedule = res.schedule_list[1] end
  else -- delete_calendar, delete_schedule: nothing left to read
    change.removed = true
    return true
  end
  if not res and err.kind == "api" and GONE[err.errcode] then
    change.removed = true -- deleted since: a delete event follows
    return true
  end
  return res, err
end

local EVENTS = {
  modify_calendar = true, delete_calendar = true, add_schedule = true, modify_schedule = true,
  delete_schedule = true, respond_schedule = true,
}

local function on_event(msg)
  if msg.MsgType ~= "event" or not EVENTS[msg.Event] then return end -- other messages: not ours
  -- the mirror's timers apply it (wecom_mirror.lua): no SQLite in a request handler
  local queued, qerr = require("wecom_mirror").enqueue(msg)
  if not queued then return nil, qerr end
  local change = {
    event = msg.Event, cal_id = msg.CalId, schedule_id = msg.ScheduleId, from = msg.FromUserName,
    create_time = msg.CreateTime, worker = ngx.worker.pid(),
  }
  local ok, err = reread(msg, change)
  if not ok then return nil, err end -- answered 500: WeCom delivers it again
  -- the calendar's iCalendar feed (ical_feed.lua) is stale now
  if msg.CalId then require("ical_feed").drop(msg.CalId) end
  local feed = ngx.shared.wecom_changes
  change.id = feed:incr("count", 1, 0)
  feed:set("change:" .. change.id, cjson.encode(change))
  feed:delete("change:" .. (change.id - FEED_LENGTH))
end

function M.serve()
  if not cb then
    ngx.log(ngx.ERR, "callbacks are not configured: ", not_configured)
    return ngx.exit(503)
  end
  return cb:serve(on_event)
end

function M.changes()
  local feed = ngx.shared.wecom_changes
  local count = feed:get("count") or 0
  local list = {}
  for id = math.max(1, count - FEED_LENGTH + 1), count do
    list[#list + 1] = feed:get("change:" .. id) -- nil while another worker is still writing it
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.print("[" .. table.concat(list, ",") .. "]")
end

return M
