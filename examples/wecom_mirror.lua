-- The mirror of examples/nginx.conf: the calendars named in
-- WECOM_MIRROR_CALENDARS (comma-separated cal_ids) kept in a SQLite file
-- (WECOM_MIRROR_DB, default wecom-mirror.db under nginx's prefix), with the
-- changes listed by GET /mirror/changes:
--   [{"id": 1, "kind": "added", "cal_id": ..., "schedule_id": ..., "source": "pull",
--     "summary": ..., "worker": 12345}, ...]
--
-- SQLite through LuaSQL blocks, so it never runs in a request handler:
--   - the callback handler (wecom_callback.lua) only queues each message in
--     a shared dict (M.enqueue) and answers WeCom at once;
--   - timers do the work, in one worker at a time (a lock in the shared
--     dict): every second the queued messages are applied, every
--     WECOM_MIRROR_PULL_EVERY seconds (default 30) the calendars are pulled,
--     every WECOM_MIRROR_RECONCILE_EVERY seconds (default 3600) reconciled.
-- A transaction holds the worker for about a page's worth of SQLite work;
-- the calls to WeCom in between go over cosockets and don't.
local cjson = require("cjson")
local sync = require("wecom.sync")

local M = {}

local EVENTS_EVERY = 1
local LOCK_TTL = 60       -- a worker that died holding the lock holds it this long (WECOM_MIRROR_LOCK_TTL)
local FEED_LENGTH = 5000  -- the feed keeps the latest changes
local RETRY_FOR = 600     -- a message failing this long is dropped (WECOM_MIRROR_EVENT_RETRY_FOR): reconcile repairs

local calendars, db_path, pull_every, reconcile_every, lock_ttl, retry_for
local mirror -- per worker, opened by its first timer that gets the lock
local ticks = 0  -- this worker's ticks, so each holds the lock under a name of its own
local holding    -- the name the lock is held under by this worker's running tick

local function dict() return ngx.shared.wecom_mirror end

-- A number of seconds from the environment; a bad one stops nginx from
-- starting, with the variable named (a timer every 0 s would fail later).
local function seconds(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  local n = tonumber(v)
  if not n or n ~= n or n <= 0 or n == math.huge then
    error(("wecom mirror: %s must be a number of seconds above 0, not %q"):format(name, v), 0)
  end
  return n
end

-- From init_by_lua: the configuration, no I/O.
function M.init()
  calendars = {}
  for id in (os.getenv("WECOM_MIRROR_CALENDARS") or ""):gmatch("[^,%s]+") do calendars[#calendars + 1] = id end
  db_path = os.getenv("WECOM_MIRROR_DB") or ""
  if db_path == "" then db_path = ngx.config.prefix() .. "wecom-mirror.db" end
  pull_every = seconds("WECOM_MIRROR_PULL_EVERY", 30)
  reconcile_every = seconds("WECOM_MIRROR_RECONCILE_EVERY", 3600)
  lock_ttl = seconds("WECOM_MIRROR_LOCK_TTL", LOCK_TTL)
  retry_for = seconds("WECOM_MIRROR_EVENT_RETRY_FOR", RETRY_FOR)
end

local function enabled() return calendars and #calendars > 0 end

-- From the callback handler: the message queued for the timers. true, or
-- nil, err (the handler then fails and WeCom delivers the message again).
function M.enqueue(msg)
  if not enabled() or msg.MsgType ~= "event" then return true end
  local len, err = dict():rpush("events", cjson.encode{ msg = msg, attempts = 0 })
  if not len then return nil, "the mirror's queue is full: " .. tostring(err) end
  return true
end

local function record(change)
  local feed = dict()
  local s = change.schedule or change.old or {}
  local entry = { kind = change.kind, cal_id = change.cal_id, schedule_id = change.schedule_id,
    source = change.source, summary = s.summary, worker = ngx.worker.pid() }
  entry.id = feed:incr("count", 1, 0)
  -- never by evicting: the least recently used keys may be the lock's
  local ok, err = feed:safe_set("change:" .. entry.id, cjson.encode(entry))
  if not ok then ngx.log(ngx.WARN, "wecom mirror: the feed is full, change ", entry.id, " not listed: ", err) end
  feed:delete("change:" .. (entry.id - FEED_LENGTH))
end

-- The lock renewed for the tick that holds it, before each transaction, so
-- a long pull or reconcile that finds nothing keeps it as surely as one
-- that reports. false when it was lost (it expired and another took it):
-- the tick then stops rather than work alongside the new holder. (get and
-- set don't yield: only an expiry in between could slip through.)
local function renew()
  local queue = dict()
  if not holding or queue:get("lock") ~= holding then return false end
  queue:set("lock", holding, lock_ttl)
  return true
end

local LOST = "the mirror's lock was lost (it expired): another worker has the work now"

local function open()
  if mirror then return mirror end
  -- the lock keeps the workers from writing at once; another process
  -- writing the file (wecom mirror from cron) is waited for, briefly
  local store, err = sync.sqlite(db_path, { busy_timeout = 1000 })
  if not store then return nil, err end
  local update = store.update
  store.update = function(self, ...)
    if not renew() then return nil, LOST end
    return update(self, ...)
  end
  mirror, err = sync.new{ client = require("wecom_app").client(), store = store, on_change = record }
  if not mirror then
    store:close()
    return nil, err
  end
  return mirror
end

-- The calendars of the configuration that are not followed yet, followed.
local function follow_all(m)
  local followed, err = m:followed()
  if not followed then return nil, err end
  local have = {}
  for _, id in ipairs(followed) do have[id] = true end
  for _, id in ipairs(calendars) do
    if not have[id] then
      local ok, ferr = m:follow(id)
      if not ok then ngx.log(ngx.ERR, "wecom mirror: follow ", id, ": ", tostring(ferr)) end
    end
  end
  return true
end

-- The queued messages, applied in order. A message that fails goes back to
-- the front of the queue for the next tick, so an outage of WeCom (or of the
-- store) keeps the messages in order until it ends; one that fails for good
-- (an error not `retryable`: a bad message, an API refusal), or for longer
-- than retry_for, is dropped.
local function drain(m)
  local queue = dict()
  while true do
    local item = queue:lpop("events")
    if not item then return true end
    local entry = cjson.decode(item)
    local ok, err = m:apply(entry.msg)
    if not ok then
      local retry = type(err) == "table" and err.retryable
      -- another tick's call still running is no fault of the message
      if not (retry and err.kind == "sync" and err.reason == "busy") then
        entry.attempts = entry.attempts + 1
        entry.since = entry.since or ngx.now()
      end
      if retry and ngx.now() - (entry.since or ngx.now()) < retry_for then
        local len, perr = queue:lpush("events", cjson.encode(entry))
        if not len then ngx.log(ngx.ERR, "wecom mirror: lost ", tostring(entry.msg.Event), ": ", perr) end
      else
        ngx.log(ngx.ERR, "wecom mirror: dropped ", tostring(entry.msg.Event), " after ", entry.attempts,
          " attempts (the next reconcile repairs what it changed): ", tostring(err))
      end
      return nil, err
    end
    if not renew() then return nil, LOST end
  end
end

local WORK = {
  events = drain,
  pull = function(m)
    local ok, err = follow_all(m)
    if not ok then return nil, err end
    ok, err = drain(m) -- what happened before the pages it reads
    if not ok then return nil, err end
    return m:pull()
  end,
  reconcile = function(m)
    local ok, err = drain(m) -- an event first: it tells why a schedule differs
    if not ok then return nil, err end
    return m:reconcile()
  end,
}

local function tick(premature, what)
  if premature then return end
  local queue = dict()
  -- one worker at a time, and in it one timer at a time
  ticks = ticks + 1
  local name = ngx.worker.pid() .. ":" .. ticks
  if not queue:add("lock", name, lock_ttl) then return end
  holding = name
  local m, err = open()
  local ok = m ~= nil
  if m then ok, err = WORK[what](m) end
  if not ok then ngx.log(ngx.ERR, "wecom mirror: ", what, ": ", tostring(err)) end
  if queue:get("lock") == name then queue:delete("lock") end
  if holding == name then holding = nil end
end

-- From init_worker_by_lua: the timers (in every worker; the lock picks one).
function M.start()
  if not enabled() then return end
  ngx.timer.at(0, tick, "pull")
  ngx.timer.every(EVENTS_EVERY, tick, "events")
  ngx.timer.every(pull_every, tick, "pull")
  ngx.timer.every(reconcile_every, tick, "reconcile")
end

-- GET /mirror/changes: the latest changes, oldest first.
function M.changes()
  local feed = dict()
  local count = feed:get("count") or 0
  local list = {}
  for id = math.max(1, count - FEED_LENGTH + 1), count do
    list[#list + 1] = feed:get("change:" .. id)
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.print("[" .. table.concat(list, ",") .. "]")
end

return M
