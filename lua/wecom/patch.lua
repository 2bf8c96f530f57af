-- Safe partial updates of calendars and schedules. Updates overwrite: every
-- optional field left out is cleared. These helpers read the calendar (or
-- schedule), change what was asked, and write everything back, so the rest
-- survives.
-- WeCom has no atomic update: a write by someone else between our read and
-- our write is overwritten. The window is one round trip.
local args = require("wecom.args")
local bulk = require("wecom.bulk")
local errors = require("wecom.errors")
local reply = require("wecom.reply")
local schema = require("wecom.schema")

local M = {}

M.MAX_SHARES = schema.field("calendar_update", "calendar.shares").max

-- Fields a read returns that an update refuses.
local REFUSED = {
  calendar = schema.refused("calendar_update", "calendar"),
  schedule = schema.refused("schedule_update", "schedule"),
  reminders = schema.refused("schedule_update", "schedule.reminders"),
}

-- share permission values, and the update's op_mode and op_start_time
local PERMISSIONS = schema.field("calendar_update", "calendar.shares[].permission").one_of
local OP_MODE = schema.field("schedule_update", "op_mode")
local OP_START_TIME = schema.field("schedule_update", "op_start_time")

local function one_of(list, v)
  for _, x in ipairs(list) do
    if x == v then return true end
  end
  return false
end

-- The fields of a read item that the helpers use, checked: nil, or the error.
local CHECKS = {
  calendar = function(path, item, at)
    local shares, err = reply.objects(path, item, "shares", at)
    if not shares then return err end
    for i = 1, #shares do
      err = reply.field(path, shares[i], ("%s.shares[%d]"):format(at, i), "userid", "string")
      if err then return err end
    end
    return reply.list_of(path, item, at, "admins", "string")
  end,
  schedule = function(path, item, at)
    return reply.field(path, item, at, "start_time", "number") or reply.field(path, item, at, "end_time", "number")
      or reply.field(path, item, at, "reminders", "table", true)
  end,
}

-- The item of a get reply, as the body of an update that keeps every field
-- (a copy without the refused ones), and the item as read; or nil, err.
local function updatable(kind, res, id)
  local k = bulk.KINDS[kind]
  local list, err = reply.objects(k.path, res, k.reply)
  if not list then return nil, err end
  local item = list[1]
  if item == nil or item[k.id] ~= id then
    return nil, errors.decode(k.path, ("the reply does not hold %s %s"):format(kind, id), 200, true)
  end
  err = CHECKS[kind](k.path, item, k.reply .. "[1]")
  if err then return nil, err end
  local body = {}
  for f, v in pairs(item) do
    if not REFUSED[kind][f] then body[f] = v end
  end
  return body, item
end

local function read_one(client, kind, id)
  local k = bulk.KINDS[kind]
  local res, err = client[k.get](client, { [k.list] = { id } })
  if not res then return nil, err end
  return updatable(kind, res, id)
end

local function read(client, cal_id) return read_one(client, "calendar", cal_id) end

-- `changes` must name fields, and none an update refuses: a raw copy of
-- it, or nil, err.
local function check_changes(helper, kind, id, changes)
  local id_field = bulk.KINDS[kind].id
  if type(changes) ~= "table" then return nil, errors.validation(helper, "changes", "expected a table") end
  local copy = {}
  for f, v in next, changes do
    if type(f) ~= "string" then return nil, errors.validation(helper, "changes", "expected field names as keys") end
    if REFUSED[kind][f] then return nil, errors.validation(helper, "changes." .. f, "can't be updated") end
    if f == id_field and v ~= id then return nil, errors.validation(helper, "changes." .. f, "can't be changed") end
    copy[f] = v
  end
  return copy
end

-- The update that writes a calendar back. Unless public_range is being
-- changed, it is not sent and WeCom is told to leave it alone (less to
-- overwrite, less to send).
local function update_request(calendar, keep_public_range)
  local req = { calendar = calendar }
  if keep_public_range then
    calendar.public_range = nil
    req.skip_public_range = 1
  end
  return req
end

local function write(client, calendar, keep_public_range)
  return client:calendar_update(update_request(calendar, keep_public_range))
end

-- client:calendar_patch(cal_id, changes) -> update reply | nil, err
function M.calendar_patch(client, cal_id, changes)
  local helper = "calendar_patch"
  local err = args.id(helper, "cal_id", cal_id)
  if err then return nil, err end
  changes, err = check_changes(helper, "calendar", cal_id, changes)
  if not changes then return nil, err end
  local body
  body, err = read(client, cal_id)
  if not body then return nil, err end
  for k, v in pairs(changes) do body[k] = v end
  return write(client, body, changes.public_range == nil)
end

local OP_OPTIONS = { op_mode = true, op_start_time = true }

-- client:schedule_patch(schedule_id, changes, {op_mode =, op_start_time =})
-- -> update reply: reply.schedule_id is the schedule to use from now on (a
-- new one when op_mode 1 or 2 split a recurring schedule) | nil, err
--
-- Fields not named in `changes` are kept; `reminders` is merged key by key.
-- Attendees are left as they are (skip_attendees = 1) unless `changes`
-- names them. With op_mode 1 or 2 and no new start_time, the changed
-- occurrence keeps its own time; with op_mode 1 it stops repeating (WeCom
-- makes it a single schedule).
function M.schedule_patch(client, schedule_id, changes, opts)
  local helper = "schedule_patch"
  local err = args.id(helper, "schedule_id", schedule_id) or args.options(helper, opts, OP_OPTIONS)
  if err then return nil, err end
  changes, err = check_changes(helper, "schedule", schedule_id, changes)
  if not changes then return nil, err end
  opts = args.copy(opts)
  local mode = opts.op_mode or 0
  err = args.integer(helper, "opts.op_mode", mode, OP_MODE.min, OP_MODE.max)
  if err then return nil, err end
  if mode ~= 0 then
    err = args.integer(helper, "opts.op_start_time", opts.op_start_time, OP_START_TIME.min, OP_START_TIME.max)
    if err then return nil, err end
  end

  local body, old = read_one(client, "schedule", schedule_id)
  if not body then return nil, old end
  local reminders = {}
  for k, v in pairs(type(old.reminders) == "table" and old.reminders or {}) do
    if not REFUSED.reminders[k] then reminders[k] = v end
  end
  for k, v in next, changes do
    if k == "reminders" and type(v) == "table" then
      for rk, rv in next, v do reminders[rk] = rv end
    elseif k == "reminders" then
      reminders = v -- not a table: sent as given, for the schema to judge
    else
      body[k] = v
    end
  end
  body.reminders = reminders
  -- a new start keeps the duration unless the end is named too; with
  -- op_mode 1/2 the changed occurrence starts at its own time
  local duration = (old.end_time or 0) - (old.start_time or 0)
  if mode ~= 0 and changes.start_time == nil then body.start_time = opts.op_start_time end
  if changes.end_time == nil and body.start_time ~= old.start_time and type(body.start_time) == "number" then
    body.end_time = body.start_time + duration
  end
  if mode == 1 and type(reminders) == "table" and
    (type(changes.reminders) ~= "table" or rawget(changes.reminders, "is_repeat") == nil) then
    reminders.is_repeat = 0
  end
  local req = { schedule = body }
  if changes.attendees == nil then
    body.attendees = nil
    req.skip_attendees = 1
  end
  if mode ~= 0 then
    req.op_mode = mode
    req.op_start_time = opts.op_start_time
  end
  return client:schedule_update(req)
end

-- Members as userid strings or {userid=, readonly=} / {userid=, permission=},
-- checked and normalised to tables.
local function normalise_members(helper, members)
  local n = args.list_length(members)
  if not n or n == 0 then
    return nil, errors.validation(helper, "members", "expected a non-empty list of members")
  end
  local out = {}
  for i = 1, n do
    local m = rawget(members, i)
    local field = ("members[%d]"):format(i)
    if type(m) == "string" then m = { userid = m } end
    if type(m) ~= "table" then
      return nil, errors.validation(helper, field, "expected a userid or {userid = ..., readonly = ...}")
    end
    m = args.copy(m)
    local err = args.id(helper, field .. ".userid", m.userid)
    if err then return nil, err end
    local readonly = m.readonly
    if type(readonly) == "boolean" then readonly = readonly and 1 or 0 end
    if readonly ~= nil and readonly ~= 0 and readonly ~= 1 then
      return nil, errors.validation(helper, field .. ".readonly", "expected 0 or 1")
    end
    if m.permission ~= nil and not one_of(PERMISSIONS, m.permission) then
      return nil, errors.validation(helper, field .. ".permission",
        ("expected one of %s (1: view, 3: free/busy only)"):format(table.concat(PERMISSIONS, ", ")))
    end
    out[i] = { userid = m.userid, readonly = readonly, permission = m.permission }
  end
  return out
end

-- Adds members to a calendar read for update, or changes the flags of
-- those already there; the others and the rest of the calendar are kept.
-- Returns the body, or nil, err when it would go over MAX_SHARES members.
local function add_members(helper, cal_id, body, members)
  local shares, index = {}, {}
  for i, s in ipairs(body.shares or {}) do
    shares[i] = s
    index[s.userid] = s
  end
  for _, m in ipairs(members) do
    local entry = index[m.userid]
    if not entry then
      entry = { userid = m.userid }
      shares[#shares + 1] = entry
      index[m.userid] = entry
    end
    if m.readonly ~= nil then entry.readonly = m.readonly end
    if m.permission ~= nil then entry.permission = m.permission end
  end
  if #shares > M.MAX_SHARES then
    return nil, errors.validation(helper, "members", ("calendar %s would have %d members; at most %d"):format(
      cal_id, #shares, M.MAX_SHARES))
  end
  body.shares = shares
  return body
end

local function share(client, helper, cal_id, members)
  local body, err = read(client, cal_id)
  if body then body, err = add_members(helper, cal_id, body, members) end
  if not body then return nil, err end
  return write(client, body, true)
end

-- client:share_calendar(cal_id, members) -> update reply (with fail_result) | nil, err
function M.share_calendar(client, cal_id, members)
  local helper = "share_calendar"
  local err = args.id(helper, "cal_id", cal_id)
  if err then return nil, err end
  local list
  list, err = normalise_members(helper, members)
  if not list then return nil, err end
  return share(client, helper, cal_id, list)
end

-- client:unshare_calendar(cal_id, userids): removes those members (and
-- their admin role: WeCom requires admins to be members).
function M.unshare_calendar(client, cal_id, userids)
  local helper = "unshare_calendar"
  local err = args.id(helper, "cal_id", cal_id) or args.id_list(helper, "userids", userids)
  if err then return nil, err end
  local body
  body, err = read(client, cal_id)
  if not body then return nil, err end
  local gone = {}
  for i = 1, args.rawlen(userids) do gone[rawget(userids, i)] = true end
  local function keep(list, key)
    local out = {}
    for _, v in ipairs(list or {}) do
      if not gone[key and v[key] or v] then out[#out + 1] = v end
    end
    return out
  end
  body.shares = keep(body.shares, "userid")
  body.admins = keep(body.admins)
  return write(client, body, true)
end

-- client:share_calendars(cal_ids, members [, {concurrency = N}]) ->
-- { {cal_id=, ok=true, result=} | {cal_id=, ok=false, err=}, ... } in input
-- order; goes on past failures. N calendars at a time are read at once and
-- then written at once, so each one's read-to-write window stays one round.
function M.share_calendars(client, cal_ids, members, opts)
  local helper = "share_calendars"
  local err = args.id_list(helper, "cal_ids", cal_ids)
  if err then return nil, err end
  local list, n
  list, err = normalise_members(helper, members)
  if not list then return nil, err end
  n, err = bulk.concurrency(helper, opts)
  if not n then return nil, err end
  cal_ids = args.copy(cal_ids) -- checked as a list of ids: a raw copy
  local results = {}
  for first = 1, #cal_ids, n do
    local chunk, reads = {}, {}
    for i = first, math.min(#cal_ids, first + n - 1) do
      chunk[#chunk + 1] = cal_ids[i]
      reads[#reads + 1] = { cal_id_list = { cal_ids[i] } }
    end
    local writes, owners = {}, {}
    for k, r in ipairs(client:call_many("calendar_get", reads, { concurrency = n })) do
      local cal_id, body = chunk[k], nil
      if r.ok then body, err = updatable("calendar", r.result, cal_id) else err = r.err end
      if body then body, err = add_members(helper, cal_id, body, list) end
      if body then
        writes[#writes + 1] = update_request(body, true)
        owners[#writes] = first + k - 1
      else
        results[first + k - 1] = { cal_id = cal_id, ok = false, err = err }
      end
    end
    for w, r in ipairs(client:call_many("calendar_update", writes, { concurrency = n })) do
      local i = owners[w]
      results[i] = { cal_id = cal_ids[i], ok = r.ok, result = r.result, err = r.err }
    end
  end
  return results
end

M.methods = {
  calendar_patch = M.calendar_patch,
  schedule_patch = M.schedule_patch,
  share_calendar = M.share_calendar,
  unshare_calendar = M.unshare_calendar,
  share_calendars = M.share_calendars,
}

return M
