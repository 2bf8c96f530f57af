-- sync.memory(): a store in this Lua state, for tests, short-lived scripts
-- and mirrors that are rebuilt on start. It implements the store interface
-- (lua/wecom/sync/init.lua, README "Keeping a mirror") the way a database
-- would: a batch is applied whole or not at all, and what it hands out are
-- copies (JSON text kept, decoded on the way out).
local codec = require("wecom.sync.codec")
local ypcall = require("wecom.compat").pcall
local errors = require("wecom.errors")

local M = {}

local Store = {}
Store.__index = Store
Store.__name = "wecom.sync.memory"

function M.new()
  -- calendars: cal_id -> {offset, scan, calendar (JSON), rows = {id -> row}, order = {row, ...}, seq}
  -- A row is {id, json, scan, seq}; seq grows with each row stored, and
  -- `order` holds rows by seq, removed ones too (a row is current while
  -- rows[row.id] is that row) until a compaction drops them. Positions handed
  -- out by page() are seqs, so they survive compactions.
  return setmetatable({ calendars = {}, list = {} }, Store)
end

local function record_of(c)
  local calendar
  if c.calendar then calendar = assert(codec.decode(c.calendar)) end
  return { offset = c.offset, scan = c.scan, calendar = calendar }
end

function Store:calendar_ids()
  local out = {}
  for i, id in ipairs(self.list) do out[i] = id end
  return out
end

function Store:calendar(cal_id)
  local c = self.calendars[cal_id]
  if not c then return false end
  return record_of(c)
end

local function current(c, row) return c.rows[row.id] == row end

local function compact(c)
  local order = {}
  for _, row in ipairs(c.order) do
    if current(c, row) then order[#order + 1] = row end
  end
  c.order, c.gaps = order, 0
end

-- Applies a batch; returns the function that undoes it.
local function apply(self, cal_id, c, batch)
  if batch.drop then
    if not c then return function() end end
    local list = self.list
    self.calendars[cal_id] = nil
    local at
    for i, id in ipairs(list) do
      if id == cal_id then at = i break end
    end
    table.remove(list, at)
    return function()
      self.calendars[cal_id] = c
      table.insert(list, at, cal_id)
    end
  end
  if not c then
    if not batch.follow then return function() end end
    c = { offset = 0, scan = 0, rows = {}, order = {}, seq = 0, gaps = 0 }
    self.calendars[cal_id] = c
    self.list[#self.list + 1] = cal_id
    local apply_undo = function()
      self.calendars[cal_id] = nil
      table.remove(self.list)
    end
    apply(self, cal_id, c, { calendar = batch.calendar, offset = batch.offset, scan = batch.scan,
      put = batch.put, remove = batch.remove, seen = batch.seen })
    return apply_undo
  end
  -- what the batch changes, as it was
  local before = { offset = c.offset, scan = c.scan, calendar = c.calendar, gaps = c.gaps, rows = {} }
  local function keep(id)
    if before.rows[id] == nil then
      local row = c.rows[id]
      before.rows[id] = row and { row = row, json = row.json, scan = row.scan } or false
    end
  end
  if batch.calendar ~= nil then c.calendar = codec.encode(batch.calendar) end
  if batch.offset ~= nil then c.offset = batch.offset end
  if batch.scan ~= nil then c.scan = batch.scan end
  for _, id in ipairs(batch.remove or {}) do
    keep(id)
    if c.rows[id] then
      c.rows[id] = nil
      c.gaps = c.gaps + 1
    end
  end
  for _, s in ipairs(batch.put or {}) do
    keep(s.schedule_id)
    local row = c.rows[s.schedule_id]
    if row then
      row.json = codec.encode(s)
    else
      c.seq = c.seq + 1
      row = { id = s.schedule_id, json = codec.encode(s), scan = 0, seq = c.seq }
      c.rows[row.id] = row
      c.order[#c.order + 1] = row
    end
  end
  for _, id in ipairs(batch.seen or {}) do
    local row = c.rows[id]
    if row then
      keep(id)
      row.scan = c.scan
    end
  end
  return function()
    c.offset, c.scan, c.calendar, c.gaps = before.offset, before.scan, before.calendar, before.gaps
    for id, was in pairs(before.rows) do
      if was then
        was.row.json, was.row.scan = was.json, was.scan
        c.rows[id] = was.row
      else
        c.rows[id] = nil -- added by the batch: its entry in order is no longer current
      end
    end
  end
end

function Store:update(cal_id, ids, fn, report)
  if self.busy then return nil, errors.sync("busy", "the memory store is inside another update") end
  local c = self.calendars[cal_id]
  local rows = {}
  if c then
    for _, id in ipairs(ids) do
      local row = c.rows[id]
      if row then rows[id] = assert(codec.decode(row.json)) end
    end
  end
  self.busy = true
  local ok, batch, err = ypcall(fn, c and record_of(c) or false, rows)
  if not ok then
    self.busy = false
    return nil, errors.sync("store", "the update function raised: " .. tostring(batch))
  end
  if batch == nil then
    self.busy = false
    return nil, err
  end
  local bad = codec.check_batch(batch)
  if bad then
    self.busy = false
    return nil, errors.sync("store", bad)
  end
  local undo = apply(self, cal_id, c, batch)
  if report then
    local reported, rerr
    ok, reported, rerr = ypcall(report)
    if not ok or not reported then
      undo()
      self.busy = false
      if not ok then return nil, errors.sync("store", "the report function raised: " .. tostring(reported)) end
      return nil, rerr
    end
  end
  c = self.calendars[cal_id]
  if c and c.gaps > 64 and c.gaps > #c.order / 2 then compact(c) end
  self.busy = false
  return true
end

-- Up to `limit` schedules after position `after` (nil: from the first), in
-- the order they were first stored; with `scan`, only rows not marked with
-- it. Returns the list and the position to continue from.
function Store:page(cal_id, after, limit, scan)
  local c = self.calendars[cal_id]
  local out = {}
  if not c then return out, after end
  after = after or 0
  -- the first row past `after`: order is sorted by seq
  local lo, hi = 1, #c.order + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if c.order[mid].seq <= after then lo = mid + 1 else hi = mid end
  end
  for i = lo, #c.order do
    local row = c.order[i]
    after = row.seq
    if current(c, row) and (scan == nil or row.scan ~= scan) then
      out[#out + 1] = assert(codec.decode(row.json))
      if #out == limit then break end
    end
  end
  return out, after
end

function Store.close() return true end

return M
