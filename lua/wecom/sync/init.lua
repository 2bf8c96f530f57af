-- wecom.sync: a mirror of some calendars, kept current, with a feed of what
-- changed (DESIGN.md "Keeping a mirror").
--
--   local sync = require("wecom.sync")
--   local mirror = assert(sync.new{ client = client, store = sync.sqlite("mirror.db"),
--                                   on_change = function(change) ... end })
--   mirror:follow(cal_id)      -- once
--   mirror:pull()              -- often: schedules added since the saved offset
--   mirror:apply(msg)          -- each callback message (cb:serve's msg)
--   mirror:reconcile()         -- now and then: what went without an event
--
-- Every step goes through store:update(cal_id, ids, fn): the store opens a
-- transaction, hands fn its record of the calendar and its copies of the
-- schedules `ids` names, and applies the batch fn returns (or nothing, when
-- fn fails). The differences are computed inside that transaction, against
-- what the store holds then, and reported from inside it: so a schedule two
-- paths bring (an event, then the page that lists it) is reported once, a
-- page and the offset past it are stored together, and a change whose
-- handler failed is rolled back and reported again next time.
--
-- Cancelled schedules: the API keeps them in the calendar's list with
-- status 1, and no call brings one back. The mirror holds live schedules
-- only: a schedule that turns up cancelled (by an event, a page or a
-- reconcile) is `removed` from it, one first seen cancelled is never added.
local args = require("wecom.args")
local codec = require("wecom.sync.codec")
local errors = require("wecom.errors")
local reply = require("wecom.reply")
local schema = require("wecom.schema")
local ypcall = require("wecom.compat").pcall

local M = {}

local LIMIT = schema.field("schedule_get_by_calendar", "limit")
local SCHEDULE_GET = schema.by_name.schedule_get.path
local CALENDAR_GET = schema.by_name.calendar_get.path

M.PAGE_SIZE = LIMIT.max

-- API errors that say the calendar is gone: 90457 no such calendar, 90459
-- deleted.
M.CALENDAR_GONE = { [90457] = true, [90459] = true }
-- ... and that a schedule is: 90460 deleted, 40058 (reading one id) not a
-- schedule id the server knows.
M.SCHEDULE_GONE = { [90460] = true, [40058] = true }

local STORE_METHODS = { "calendar_ids", "calendar", "update", "page" }

local Mirror = {}
Mirror.__index = Mirror
Mirror.__name = "wecom.sync.mirror"

local function invalid(field, text) return nil, errors.validation("sync.new", field, text) end

-- sync.new{client, store, on_change, page_size} -> mirror | nil, err
function M.new(opts)
  if type(opts) ~= "table" then return invalid(nil, "expected a table of options") end
  local err = args.options("sync.new", opts, { client = true, store = true, on_change = true, page_size = true })
  if err then return nil, err end
  if getmetatable(rawget(opts, "client")) ~= require("wecom.client").Client then
    return invalid("client", "expected a client made by wecom.new")
  end
  local store = rawget(opts, "store")
  if not args.methods(store, STORE_METHODS) then
    return invalid("store", "expected a store: sync.sqlite(path), sync.memory() or an object with "
      .. table.concat(STORE_METHODS, ", "))
  end
  local on_change = rawget(opts, "on_change")
  if on_change ~= nil and type(on_change) ~= "function" then return invalid("on_change", "expected a function") end
  local page_size = rawget(opts, "page_size")
  if page_size ~= nil then
    err = args.integer("sync.new", "page_size", page_size, LIMIT.min, LIMIT.max)
    if err then return nil, err end
  end
  return setmetatable({
    client = rawget(opts, "client"), store = store, on_change = on_change, page_size = page_size or M.PAGE_SIZE,
  }, Mirror)
end

M.memory = function() return require("wecom.sync.memory").new() end

-- sync.sqlite(path [, opts]) -> store | nil, err (lua/wecom/sync/sqlite.lua)
M.sqlite = function(path, opts) return require("wecom.sync.sqlite").open(path, opts) end

-- level: of the user's call, seen from here
local function check_self(self, method, level)
  if getmetatable(self) ~= Mirror then error(("mirror:%s: call it with a colon"):format(method), level or 3) end
end

---------------------------------------------------------------------------
-- the store, called safely: a raise or a bare message becomes a sync error

local function store_error(err, what)
  if errors.is(err) then return err end
  return errors.sync("store", ("%s: %s"):format(what, errors.clean(tostring(err), errors.TEXT)))
end

local function store_call(self, method, ...)
  local ok, a, b = ypcall(self.store[method], self.store, ...)
  if not ok then return nil, store_error(a, "store:" .. method .. " raised") end
  if a == nil then return nil, store_error(b, "store:" .. method .. " failed") end
  return a, b
end

-- The store's record of a calendar: {offset, scan, calendar} or false.
local function record(self, cal_id)
  local rec, err = store_call(self, "calendar", cal_id)
  if rec == nil then return nil, err end
  if rec and type(rec) ~= "table" then
    return nil, errors.sync("store", "store:calendar returned " .. type(rec))
  end
  return rec
end

---------------------------------------------------------------------------
-- one transaction: a step's changes computed against the store, reported,
-- and written together

local Step = {}
Step.__index = Step

local function step(self, cal_id, source, event)
  return setmetatable({ mirror = self, cal_id = cal_id, source = source, event = event }, Step)
end

-- Records a change of this step, reported once the batch is written.
function Step:change(change)
  change.cal_id = self.cal_id
  change.source = self.source
  change.event = self.event
  local list = self.changes
  list[#list + 1] = change
end

-- Calls on_change with each change, inside the transaction, after the
-- batch was written and before it is committed: true | nil, err.
function Step:report()
  local fn = self.mirror.on_change
  if not fn then return true end
  for _, change in ipairs(self.changes) do
    local ok, res, err = ypcall(fn, change)
    local failure
    if not ok then failure = res elseif res == nil and err ~= nil then failure = err end
    if failure ~= nil then
      return nil, errors.sync("handler", ("on_change failed on %s %s: %s"):format(change.kind,
        change.schedule_id or change.cal_id, errors.clean(tostring(failure), errors.TEXT)))
    end
  end
  return true
end

-- A schedule as the API shows it now, against the stored copy (rows): the
-- change it makes, recorded in the batch.
function Step:schedule(s, rows, batch)
  local id = s.schedule_id
  local old = rows[id]
  if s.status == 1 then
    if not old then return end
    rows[id] = nil
    batch.remove[#batch.remove + 1] = id
    return self:change{ kind = "removed", schedule_id = id, old = old, schedule = s }
  end
  rows[id] = s
  if not old then
    batch.put[#batch.put + 1] = s
    return self:change{ kind = "added", schedule_id = id, schedule = s }
  end
  if codec.same(old, s) then return end
  batch.put[#batch.put + 1] = s
  return self:change{ kind = "changed", schedule_id = id, schedule = s, old = old }
end

-- One store:update: fn(rec, rows, batch) fills the batch and records the
-- changes (rec is false when the calendar is not followed). Returns the
-- number of changes reported, or nil, err (then nothing was written).
function Step:run(ids, fn)
  local ok, err = store_call(self.mirror, "update", self.cal_id, ids, function(rec, rows)
    self.changes = {}
    local batch = { put = {}, remove = {} }
    fn(rec, rows or {}, batch)
    return batch
  end, function() return self:report() end)
  local n = self.changes and #self.changes or 0
  self.changes = nil
  if not ok then return nil, err end
  return n
end

---------------------------------------------------------------------------
-- reading what the API says

local function gone(err, codes)
  return type(err) == "table" and err.kind == "api" and codes[err.errcode] == true
end

-- The schedules of a reply list, checked for the fields the mirror reads.
local function check_schedules(path, list, at)
  for i, s in ipairs(list) do
    local where = ("%s[%d]"):format(at, i)
    local err = reply.field(path, s, where, "schedule_id", "string")
      or reply.field(path, s, where, "status", "number", true)
    if err then return err end
  end
  return nil
end

-- The calendar's details now: calendar | false, err (gone) | nil, err.
local function read_calendar(self, cal_id)
  local res, err = self.client:calendar_get{ cal_id_list = { cal_id } }
  if not res then
    if gone(err, M.CALENDAR_GONE) then return false, err end
    return nil, err
  end
  local list
  list, err = reply.objects(CALENDAR_GET, res, "calendar_list")
  if not list then return nil, err end
  if #list == 0 then return false, errors.api(CALENDAR_GET, 90457, "the calendar was not returned") end
  return list[1]
end

-- The calendar and its schedules dropped from the store, reported once.
local function drop(self, cal_id, source, event)
  local st = step(self, cal_id, source, event)
  return st:run({}, function(rec, _, batch)
    if not rec then return end
    batch.drop = true
    return st:change{ kind = "calendar_removed", old = rec.calendar }
  end)
end

-- The calendar's details compared with the stored ones (follow: creating
-- the record when there is none). count | nil, err.
local function refresh_calendar(self, cal_id, source, event, follow)
  local cal, err = read_calendar(self, cal_id)
  if cal == nil then return nil, err end
  if cal == false then
    if not follow then return drop(self, cal_id, source, event) end
    -- following one that is gone fails; if it was followed, it is dropped
    -- first (reported once), so a loop that follows its list before each
    -- pull is told once and then only fails that follow
    local n, derr = drop(self, cal_id, source, event)
    if not n then return nil, derr end
    err.count = n
    return nil, err
  end
  local st = step(self, cal_id, source, event)
  return st:run({}, function(rec, _, batch)
    if not rec then
      if not follow then return end
      batch.follow, batch.calendar = true, cal
      return
    end
    if codec.same(rec.calendar, cal) then return end
    batch.calendar = cal
    return st:change{ kind = "calendar_changed", calendar = cal, old = rec.calendar }
  end)
end

---------------------------------------------------------------------------
-- one operation of a mirror at a time

local function exclusive(self, name, fn, ...)
  check_self(self, name, 4)
  if self.running then
    return nil, errors.sync("busy", ("mirror:%s: mirror:%s is still running"):format(name, self.running))
  end
  self.running = name
  local ok, a, b = ypcall(fn, self, ...)
  self.running = nil
  if not ok then error(a, 0) end
  return a, b
end

local function check_id(method, cal_id)
  return args.id("mirror:" .. method, "cal_id", cal_id)
end

-- The cal_ids an operation covers: {cal_id} when given, else every followed one.
local function targets(self, method, cal_id)
  if cal_id ~= nil then
    local err = check_id(method, cal_id)
    if err then return nil, err end
    local rec
    rec, err = record(self, cal_id)
    if rec == nil then return nil, err end
    if not rec then
      return nil, errors.validation("mirror:" .. method, "cal_id", "not followed: call mirror:follow(cal_id) first")
    end
    return { cal_id }
  end
  local ids, err = store_call(self, "calendar_ids")
  if not ids then return nil, err end
  if type(ids) ~= "table" then return nil, errors.sync("store", "store:calendar_ids returned " .. type(ids)) end
  return ids
end

-- Runs one(self, cal_id) -> count | nil, err for each target. Every
-- calendar is tried; the first failure is returned, with err.count the
-- changes reported before it and err.cal_id the calendar it concerns.
local function each_calendar(self, method, cal_id, one)
  local ids, err = targets(self, method, cal_id)
  if not ids then return nil, err end
  local total, first = 0, nil
  for _, id in ipairs(ids) do
    local n, e = one(self, id)
    if n then
      total = total + n
    else
      e.cal_id = e.cal_id or id
      total = total + (e.count or 0)
      first = first or e
    end
  end
  if first then
    first.count = total
    return nil, first
  end
  return total
end

---------------------------------------------------------------------------
-- the public operations

-- mirror:follow(cal_id) -> true | nil, err: reads the calendar's details and
-- starts mirroring it (the next pull brings every schedule). Following a
-- followed calendar refreshes its details (calendar_changed if they differ),
-- or drops it when it is gone (calendar_removed, and the follow fails).
function Mirror:follow(cal_id)
  return exclusive(self, "follow", function()
    local err = check_id("follow", cal_id)
    if err then return nil, err end
    local n
    n, err = refresh_calendar(self, cal_id, "follow", nil, true)
    if not n then return nil, err end
    return true
  end)
end

-- mirror:unfollow(cal_id) -> true | nil, err: forgets the calendar and its
-- schedules, without a report.
function Mirror:unfollow(cal_id)
  return exclusive(self, "unfollow", function()
    local err = check_id("unfollow", cal_id)
    if err then return nil, err end
    local n
    n, err = step(self, cal_id, "unfollow"):run({}, function(rec, _, batch)
      if rec then batch.drop = true end
    end)
    if not n then return nil, err end
    return true
  end)
end

-- mirror:followed() -> { cal_id, ... } | nil, err
function Mirror:followed()
  check_self(self, "followed")
  return targets(self, "followed", nil)
end

-- A page of the calendar's list stored with `to`, the offset past it, in
-- one transaction.
local function store_page(st, page, to, scan)
  local ids = {}
  for i, s in ipairs(page) do ids[i] = s.schedule_id end
  return st:run(ids, function(rec, rows, batch)
    if not rec then return end
    for _, s in ipairs(page) do
      st:schedule(s, rows, batch)
    end
    -- another process may have pulled further meanwhile
    if to > rec.offset then batch.offset = to end
    if scan then batch.scan, batch.seen = scan, ids end
  end)
end

-- Pages the calendar from `offset` to the end. count | nil, err.
local function scan_pages(self, cal_id, offset, source, scan)
  local cursor, err = self.client:schedule_cursor(cal_id, { offset = offset, limit = self.page_size })
  if not cursor then return nil, err end
  local st = step(self, cal_id, source)
  local total = 0
  while true do
    local page
    page, err = cursor:next_page()
    if not page then
      if gone(err, M.CALENDAR_GONE) then
        local n, derr = drop(self, cal_id, source)
        if not n then return nil, derr end
        return total + n
      end
      err.count = total
      return nil, err
    end
    if #page == 0 then return total end
    err = check_schedules(schema.by_name.schedule_get_by_calendar.path, page, "schedule_list")
    if err then
      err.count = total
      return nil, err
    end
    local n
    n, err = store_page(st, page, cursor.offset, scan)
    if not n then
      err.count = total
      return nil, err
    end
    total = total + n
  end
end

local function pull_one(self, cal_id)
  local rec, err = record(self, cal_id)
  if rec == nil then return nil, err end
  if not rec then return 0 end -- unfollowed meanwhile
  return scan_pages(self, cal_id, rec.offset, "pull")
end

-- mirror:pull([cal_id]) -> count | nil, err: the schedules added to the
-- calendar (every followed one by default) since the saved offset, stored
-- page by page with the offset past each page. count: the changes reported.
function Mirror:pull(cal_id)
  return exclusive(self, "pull", function()
    return each_calendar(self, "pull", cal_id, pull_one)
  end)
end

local SCHEDULE_EVENTS = {
  add_schedule = true, modify_schedule = true, delete_schedule = true, respond_schedule = true,
}

-- Whether a schedule read by id belongs to another calendar than the one
-- it is mirrored in (an event's CalId, a stored row): cal_id can't be
-- updated, so such a schedule is not in this calendar, whatever it says.
local function elsewhere(s, cal_id)
  return type(s) == "table" and type(s.cal_id) == "string" and s.cal_id ~= cal_id
end

-- The schedule as it is now, against the store. count | nil, err.
local function apply_schedule(self, cal_id, schedule_id, event)
  local res, err = self.client:schedule_get{ schedule_id_list = { schedule_id } }
  local s
  if res then
    local list
    list, err = reply.objects(SCHEDULE_GET, res, "schedule_list")
    if not list then return nil, err end
    err = check_schedules(SCHEDULE_GET, list, "schedule_list")
    if err then return nil, err end
    s = list[1]
  elseif not gone(err, M.SCHEDULE_GONE) then
    return nil, err
  end
  -- gone for good, not returned at all, or in another calendar: as good
  -- as cancelled, for this calendar
  if not s or s.schedule_id ~= schedule_id or elsewhere(s, cal_id) then
    s = { schedule_id = schedule_id, status = 1, gone = true }
  end
  local st = step(self, cal_id, "event", event)
  return st:run({ schedule_id }, function(rec, rows, batch)
    if not rec then return end
    local old = rows[schedule_id]
    if s.gone then
      if not old then return end
      batch.remove[1] = schedule_id
      return st:change{ kind = "removed", schedule_id = schedule_id, old = old }
    end
    return st:schedule(s, rows, batch)
  end)
end

-- mirror:apply(msg) -> true | nil, err: a callback message (cb:serve's,
-- cb:decrypt's). Schedule events read the schedule again (schedule_get) and
-- report what differs from the mirror: added, changed, or removed when it
-- is cancelled; modify_calendar reads the calendar (calendar_changed);
-- delete_calendar drops it (calendar_removed). Events of calendars not
-- followed, and other messages, pass without a call. Applying a message
-- again reports nothing new.
function Mirror:apply(msg)
  return exclusive(self, "apply", function()
    if type(msg) ~= "table" then
      return nil, errors.validation("mirror:apply", "msg", "expected a callback message (a table)")
    end
    local event = rawget(msg, "Event")
    if rawget(msg, "MsgType") ~= "event" then return true end
    if not (SCHEDULE_EVENTS[event] or event == "modify_calendar" or event == "delete_calendar") then return true end
    local cal_id = rawget(msg, "CalId")
    local err = args.id("mirror:apply", "msg.CalId", cal_id)
    if err then return nil, err end
    local rec
    rec, err = record(self, cal_id)
    if rec == nil then return nil, err end
    if not rec then return true end
    local n
    if event == "modify_calendar" then
      n, err = refresh_calendar(self, cal_id, "event", msg)
    elseif event == "delete_calendar" then
      n, err = drop(self, cal_id, "event", msg)
    else
      local schedule_id = rawget(msg, "ScheduleId")
      err = args.id("mirror:apply", "msg.ScheduleId", schedule_id)
      if err then return nil, err end
      n, err = apply_schedule(self, cal_id, schedule_id, msg)
    end
    if not n then return nil, err end
    return true
  end)
end

-- Rows the scan did not meet, read by id to tell gone from moved: every
-- returned schedule is compared as usual, the others are removed.
local function confirm(self, ids)
  local found, err = self.client:schedules(ids)
  if found then return found end
  if not (type(err) == "table" and err.kind == "api") or #ids == 1 then
    if #ids == 1 and gone(err, M.SCHEDULE_GONE) then return { false } end
    return nil, err
  end
  -- one unknown id can fail a whole batch: one by one
  found = {}
  for i, id in ipairs(ids) do
    local one
    one, err = confirm(self, { id })
    if not one then return nil, err end
    found[i] = one[1]
  end
  return found
end

-- The stored schedules the scan `scan` did not meet. count | nil, err.
local function sweep(self, cal_id, scan)
  local st = step(self, cal_id, "reconcile")
  local total, after = 0, nil
  while true do
    local list, pos = store_call(self, "page", cal_id, after, self.page_size, scan)
    if not list then return nil, pos end
    if #list == 0 then return total end
    after = pos
    local ids = {}
    for i, s in ipairs(list) do ids[i] = s.schedule_id end
    local found, err = confirm(self, ids)
    if not found then return nil, err end
    local n
    n, err = st:run(ids, function(rec, rows, batch)
      if not rec then return end
      batch.scan, batch.seen = scan, {}
      for i, id in ipairs(ids) do
        local s = found[i]
        if elsewhere(s, cal_id) then s = false end
        if rows[id] then
          if s then
            batch.seen[#batch.seen + 1] = id
            st:schedule(s, rows, batch)
          else
            batch.remove[#batch.remove + 1] = id
            st:change{ kind = "removed", schedule_id = id, old = rows[id] }
            rows[id] = nil
          end
        end
      end
    end)
    if not n then return nil, err end
    total = total + n
  end
end

local function reconcile_one(self, cal_id)
  local rec, err = record(self, cal_id)
  if rec == nil then return nil, err end
  if not rec then return 0 end
  local total
  total, err = refresh_calendar(self, cal_id, "reconcile")
  if not total then return nil, err end
  rec, err = record(self, cal_id)
  if rec == nil then return nil, err end
  if not rec then return total end -- the calendar is gone: reported above
  local scan = (tonumber(rec.scan) or 0) + 1
  local n
  n, err = scan_pages(self, cal_id, 0, "reconcile", scan)
  if not n then
    err.count = total + (err.count or 0)
    return nil, err
  end
  total = total + n
  rec, err = record(self, cal_id)
  if rec == nil then return nil, err end
  if not rec then return total end
  n, err = sweep(self, cal_id, scan)
  if not n then
    err.count = total + (err.count or 0)
    return nil, err
  end
  return total + n
end

-- mirror:reconcile([cal_id]) -> count | nil, err: the calendar's details and
-- its whole list read again and compared with the mirror by content, so
-- what changed without an event (an endpoint down, a handler failing, a
-- store edited by hand) is repaired and reported, once. Memory: a page.
function Mirror:reconcile(cal_id)
  return exclusive(self, "reconcile", function()
    return each_calendar(self, "reconcile", cal_id, reconcile_one)
  end)
end

-- for schedule, err in mirror:schedules(cal_id) do ... end: the mirrored
-- schedules of a calendar, a page of the store at a time, in the order they
-- were first mirrored. On a failure it yields false, err once and stops.
function Mirror:schedules(cal_id)
  check_self(self, "schedules")
  local err = check_id("schedules", cal_id)
  local page, i, after, done = {}, 0, nil, false
  return function()
    if done then return nil end
    if err then
      done = true
      return false, err
    end
    if i >= #page then
      local list, pos = store_call(self, "page", cal_id, after, self.page_size)
      if not list then
        done = true
        return false, pos
      end
      if #list == 0 then
        done = true
        return nil
      end
      page, i, after = list, 0, pos
    end
    i = i + 1
    return page[i]
  end
end

return M
