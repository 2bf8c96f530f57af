-- The emulator calls back, as WeCom does: a member acts in the WeCom client
-- (changes or deletes a calendar, adds, changes or deletes a schedule,
-- answers an invitation), the emulator changes its state and POSTs the
-- encrypted event to the app's callback URL (API.md, "Callbacks").
--
-- Control API:
--   /emulator/callback  {url, token, encoding_aes_key, receiveid?}
--       where events go (receiveid defaults to the corpid); {url = ""} stops
--       them. Also set by `wecom-emulator start --callback-url ...`.
--   /emulator/act       {event, userid?, cal_id?, schedule_id?, calendar?,
--       schedule?, response_status?, deliver?, concurrent?, forge?,
--       retries?, retry_delay_ms?}
--       the member `userid` does `event`; the message is delivered `deliver`
--       times (re-encrypted each time, as WeCom does when it repeats one), at
--       once with `concurrent`; a delivery not answered 200 is tried again
--       up to `retries` times (default 3, as WeCom), `retry_delay_ms` apart.
--       `forge`: "signature" (a wrong msg_signature), "timestamp" (signed an
--       hour ago), "receiveid" (sealed for another corp), "key" (encrypted
--       with another key) or "garbage" (a body that is not XML).
--       Answers {event = {...the message's fields}, schedule_id?,
--       deliveries = {{statuses = {...}, status = last}, ...}}.
--
-- Encryption uses wecom.core built for nginx's LuaJIT (the launcher puts the
-- checkout's build/luajit on lua_package_cpath), loaded on first use only.
local calendar = require("wecom.emulator.calendar")
local check = require("wecom.emulator.check")
local json = require("wecom.emulator.json")
local state = require("wecom.emulator.state")

local ngx = ngx

local M = {}

local target -- {url, token, encoding_aes_key, receiveid, box}

-- The emulator's own API handlers, for what a member does the way the API
-- would (adding a schedule validates it like oa/schedule/add).
local api = {}
require("wecom.emulator.schedule").register(function(path, handler) api[path] = handler end)

local FOREIGN_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

local function core() return require("wecom.core") end

local function set_target(t)
  if t.url == nil or t.url == "" then
    target = nil
    return true
  end
  if type(t.url) ~= "string" or not t.url:match("^https?://") then return nil, "url: expected an http(s) URL" end
  local receiveid = t.receiveid or state.config.corpid
  -- callback_box raises on what is no string: a 400 naming it, not a 500
  for name, v in pairs{ token = t.token or "", encoding_aes_key = t.encoding_aes_key or "", receiveid = receiveid } do
    if type(v) ~= "string" then return nil, name .. ": expected a string" end
  end
  local box, field, text = core().callback_box(t.token or "", t.encoding_aes_key or "", receiveid)
  if not box then return nil, ("%s: %s"):format(field, text) end
  target = { url = t.url, token = t.token, encoding_aes_key = t.encoding_aes_key, receiveid = receiveid, box = box }
  return true
end

-- Start options (wecom-emulator start --callback-url ...).
function M.configure(config)
  if config.callback_url then
    local ok, err = set_target{ url = config.callback_url, token = config.callback_token,
      encoding_aes_key = config.callback_aes_key, receiveid = config.callback_receiveid }
    if not ok then ngx.log(ngx.ERR, "emulator: callback target: ", err) end
  end
end

---------------------------------------------------------------------------
-- what the member does

local SCHEDULE_FIELDS = { summary = "string", description = "string", location = "string",
  start_time = "number", end_time = "number" }
local CALENDAR_FIELDS = { summary = "string", description = "string", color = "string" }

local function merge(into, changes, allowed, what)
  if changes == nil then return true end
  if type(changes) ~= "table" then return nil, what .. ": expected an object" end
  for k, v in pairs(changes) do
    if allowed[k] == nil then return nil, ("%s.%s: a member can't change that here"):format(what, k) end
    if type(v) ~= allowed[k] then return nil, ("%s.%s: expected a %s"):format(what, k, allowed[k]) end
  end
  for k, v in pairs(changes) do into[k] = v end
  return true
end

local function live_schedule(id)
  local s = type(id) == "string" and state.schedules[id]
  if not s then return nil, "schedule_id: no such schedule" end
  if s.status == 1 then return nil, "schedule_id: the schedule was deleted" end
  return s
end

local actions = {}

function actions.modify_calendar(body)
  local cal, _, msg = calendar.find(body.cal_id)
  if not cal then return nil, "cal_id: " .. msg end
  local ok, err = merge(cal, body.calendar, CALENDAR_FIELDS, "calendar")
  if not ok then return nil, err end
  return { CalId = cal.cal_id }
end

function actions.delete_calendar(body)
  local cal, _, msg = calendar.find(body.cal_id)
  if not cal then return nil, "cal_id: " .. msg end
  cal.deleted = true
  return { CalId = cal.cal_id }
end

function actions.add_schedule(body)
  local s = {}
  for k, v in pairs(type(body.schedule) == "table" and body.schedule or {}) do s[k] = v end
  s.cal_id = body.cal_id
  local res, _, msg = api["oa/schedule/add"]{ schedule = s }
  if not res then return nil, "schedule: " .. msg end
  return { CalId = state.schedules[res.schedule_id].cal_id, ScheduleId = res.schedule_id }
end

function actions.modify_schedule(body)
  local s, err = live_schedule(body.schedule_id)
  if not s then return nil, err end
  local ok
  ok, err = merge(s, body.schedule, SCHEDULE_FIELDS, "schedule")
  if not ok then return nil, err end
  s.sequence = state.next_sequence()
  return { CalId = s.cal_id, ScheduleId = s.schedule_id }
end

function actions.delete_schedule(body)
  local s, err = live_schedule(body.schedule_id)
  if not s then return nil, err end
  s.status = 1
  s.sequence = state.next_sequence()
  return { CalId = s.cal_id, ScheduleId = s.schedule_id }
end

-- response_status (API.md): 1 tentative, 2 accepted all (the default), 3
-- accepted once, 4 declined; 0 is no answer yet
function actions.respond_schedule(body, userid)
  local s, err = live_schedule(body.schedule_id)
  if not s then return nil, err end
  local answer = body.response_status or 2
  if not check.int(answer, 1, 4) then
    return nil, "response_status: 1 tentative, 2 accepted, 3 accepted once or 4 declined"
  end
  for _, a in ipairs(s.attendees) do
    if a.userid == userid then
      a.response_status = answer
      s.sequence = state.next_sequence()
      return { CalId = s.cal_id, ScheduleId = s.schedule_id }
    end
  end
  return nil, "userid: not an attendee of the schedule"
end

---------------------------------------------------------------------------
-- delivery

local ORDER = { "ToUserName", "FromUserName", "CreateTime", "MsgType", "Event", "CalId", "ScheduleId" }

local function event_xml(fields)
  local out = { "<xml>" }
  for _, name in ipairs(ORDER) do
    local v = fields[name]
    if type(v) == "number" then
      out[#out + 1] = ("<%s>%d</%s>"):format(name, v, name)
    elseif v ~= nil then
      out[#out + 1] = ("<%s><![CDATA[%s]]></%s>"):format(name, v, name)
    end
  end
  out[#out + 1] = "</xml>"
  return table.concat(out)
end

-- One POST of the message, sealed afresh (or forged as asked).
local function post_once(xml, forge)
  ngx.update_time()
  local timestamp = ("%d"):format(ngx.time() - (forge == "timestamp" and 3600 or 0))
  local box = target.box
  if forge == "receiveid" then
    box = core().callback_box(target.token, target.encoding_aes_key, "wwforeign" .. target.receiveid)
  elseif forge == "key" then
    box = core().callback_box(target.token, FOREIGN_KEY, target.receiveid)
  end
  local encrypt, signature, nonce = box:seal(xml, timestamp)
  local body = ("<xml><ToUserName><![CDATA[%s]]></ToUserName><Encrypt><![CDATA[%s]]></Encrypt>"
    .. "<AgentID><![CDATA[]]></AgentID></xml>"):format(target.receiveid, encrypt)
  if forge == "garbage" then
    body = "\0\1<xml><Encrypt>not base64 &bogus; <<" .. state.random_id("", 16)
    signature = target.box:sign(timestamp, nonce, "")
  elseif forge == "signature" then
    signature = signature:sub(1, 39) .. (signature:sub(40) == "0" and "1" or "0")
  end
  local url = ("%s%smsg_signature=%s&timestamp=%s&nonce=%s"):format(target.url,
    target.url:find("?", 1, true) and "&" or "?", signature, timestamp, nonce)
  local transport = require("wecom.transport.ngx").new(assert(require("wecom.options").transport{ timeout = 10 }))
  local status = transport:request("POST", url, body)
  return status or 0
end

-- Delivers like WeCom: whatever is not a 200 is tried again, re-encrypted.
local function deliver(xml, body)
  local retries = body.retries or 3
  local delay = (body.retry_delay_ms or 200) / 1000
  local result = { statuses = json.array() }
  for attempt = 0, retries do
    if attempt > 0 then ngx.sleep(delay) end
    local status = post_once(xml, body.forge)
    result.statuses[#result.statuses + 1] = status
    result.status = status
    if status == 200 then break end
  end
  return result
end

local FORGES = { signature = true, timestamp = true, receiveid = true, key = true, garbage = true }

local function act(body)
  local action = actions[body.event]
  if not action then
    return nil, "event: one of modify_calendar, delete_calendar, add_schedule, modify_schedule, "
      .. "delete_schedule, respond_schedule"
  end
  local userid = body.userid or "emulator-member"
  if not check.id(userid) or userid:find("[^%w_.@-]") then return nil, "userid: letters, digits, _ . @ -" end
  if body.forge ~= nil and not FORGES[body.forge] then
    return nil, "forge: signature, timestamp, receiveid, key or garbage"
  end
  local deliveries = body.deliver or 1
  if not check.int(deliveries, 0, 100) then return nil, "deliver: 0..100" end
  if body.retries ~= nil and not check.int(body.retries, 0, 10) then return nil, "retries: 0..10" end
  if body.retry_delay_ms ~= nil and not check.int(body.retry_delay_ms, 0, 10000) then
    return nil, "retry_delay_ms: 0..10000"
  end
  local ids, err = action(body, userid)
  if not ids then return nil, err end
  ngx.update_time()
  local fields = { ToUserName = state.config.corpid, FromUserName = userid, CreateTime = ngx.time(),
    MsgType = "event", Event = body.event, CalId = ids.CalId, ScheduleId = ids.ScheduleId }
  local reply = { event = fields, schedule_id = ids.ScheduleId, deliveries = json.array() }
  if not target then
    reply.note = "no callback target: nothing delivered"
    return reply
  end
  local xml = event_xml(fields)
  if body.concurrent then
    local threads = {}
    for i = 1, deliveries do threads[i] = ngx.thread.spawn(deliver, xml, body) end
    for i, t in ipairs(threads) do
      local ok, result = ngx.thread.wait(t)
      reply.deliveries[i] = ok and result or { error = tostring(result) }
    end
  else
    for i = 1, deliveries do reply.deliveries[i] = deliver(xml, body) end
  end
  return reply
end

-- Adds the control endpoints to the emulator's table of them.
function M.register(control)
  control["callback"] = function(body)
    local ok, err = set_target(body)
    if not ok then return nil, err end
    return { ok = true }
  end
  control["act"] = act
end

return M
