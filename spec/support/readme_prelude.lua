-- Run before each README example by spec/readme_spec.lua, in the example's
-- own process. It points wecom.new's connection options at the emulator and
-- defines, as globals, the names the README says its examples take as given:
--   client                 a client of the app
--   cal_id, cal_ids        a calendar of the app, and a list of three
--   schedule_id            a weekly schedule in cal_id, with attendees
--   occurrence_start       the start of its second occurrence
--   schedule_ids           a list of two schedules
--   userids                members to remove from schedule_id
--   bodies                 request bodies for schedule_add
-- Anything else an example uses must be its own.
local wecom = require("wecom")
_G.wecom = wecom

local base_url = assert(os.getenv("WECOM_README_BASE_URL"))
local corpid = assert(os.getenv("WECOM_README_CORPID"))
local corpsecret = assert(os.getenv("WECOM_README_CORPSECRET"))

-- A token of the emulator, for examples that use a fixed access_token.
local function emulator_token()
  local session = require("support.session")()
  local status, body = session:request("GET",
    ("%s/cgi-bin/gettoken?corpid=%s&corpsecret=%s"):format(base_url, corpid, corpsecret))
  session:close()
  assert(status == 200, "gettoken: " .. tostring(body))
  return (assert(require("cjson").decode(body).access_token))
end

local new = wecom.new
function wecom.new(opts)
  if type(opts) ~= "table" then return new(opts) end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.base_url = base_url
  if o.corpid ~= nil or o.corpsecret ~= nil then
    o.corpid, o.corpsecret = corpid, corpsecret
  elseif o.access_token ~= nil then
    o.access_token = emulator_token()
  end
  return new(o)
end

-- Redis: the examples' 127.0.0.1:6379 is the redis-server spec/readme_spec.lua
-- started (other addresses are left alone: an example may want one where
-- nothing listens), for the cache's own connections and for redis-lua's.
local redis_port = tonumber(os.getenv("WECOM_README_REDIS_PORT") or "")
if redis_port then
  local rcache = require("wecom.cache.redis")
  local function redirected(opts)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    if (o.host == nil or o.host == "127.0.0.1") and (o.port == nil or o.port == 6379) then
      o.host, o.port = "127.0.0.1", redis_port
    end
    return o
  end
  local new_cache, find = rcache.new, rcache.redis_lua
  function rcache.new(opts)
    if type(opts) ~= "table" or opts.connect ~= nil then return new_cache(opts) end
    return new_cache(redirected(opts))
  end
  function rcache.redis_lua()
    local redis_lua, why = find()
    if not redis_lua then return nil, why end
    return setmetatable({ connect = function(params)
      return redis_lua.connect(redirected(params))
    end }, { __index = redis_lua })
  end
end

local function must(res, err)
  if not res then error("README prelude: " .. tostring(err), 2) end
  return res
end

local c = must(wecom.new{ corpid = "ww", corpsecret = "s" })
local function calendar(summary)
  return must(c:calendar_add{ calendar = { summary = summary, color = "#3366FF",
    shares = { { userid = "zhangsan" }, { userid = "lisi" } } } }).cal_id
end

local start = 1795399200 -- Mon 2026-11-23 10:00 +08:00
local cal = calendar("README calendar")
local weekly = must(c:schedule_add{ schedule = {
  cal_id = cal, summary = "Weekly sync", start_time = start, end_time = start + 3600,
  attendees = { { userid = "zhangsan" }, { userid = "lisi" }, { userid = "wangwu" } },
  reminders = { is_remind = 1, remind_before_event_secs = 900, is_repeat = 1, repeat_type = 1, timezone = 8 },
} }).schedule_id
local single = must(c:schedule_add{ schedule = {
  cal_id = cal, summary = "Review", start_time = start + 86400, end_time = start + 86400 + 1800,
} }).schedule_id

client = c
cal_id = cal
cal_ids = { cal, calendar("README calendar 2"), calendar("README calendar 3") }
schedule_id = weekly
occurrence_start = start + 7 * 86400
schedule_ids = { weekly, single }
userids = { "wangwu" }
bodies = {}
for i = 1, 3 do
  bodies[i] = { schedule = { cal_id = cal, summary = "Planning " .. i,
    start_time = start + i * 3600, end_time = start + i * 3600 + 1800 } }
end

