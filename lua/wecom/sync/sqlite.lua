-- sync.sqlite(path [, opts]): the mirror's embedded store, a SQLite file
-- through LuaSQL's sqlite3 driver (Debian: lua-sql-sqlite3, for Lua 5.1 to
-- 5.4 and LuaJIT; LuaRocks: luasql-sqlite3).
--
-- The file may hold other tables of yours: ours are named wecom_sync_*.
-- The library creates them and records their version in
-- wecom_sync_meta (schema_version); a file made by a newer version is
-- refused rather than misread. The journal is a WAL, so readers (another
-- process, sqlite3 on the command line) never wait for the mirror nor it
-- for them. Each store:update is one transaction (BEGIN IMMEDIATE: one
-- writer at a time, waiting up to busy_timeout for another), so a page of
-- schedules and the offset past it are written together, or not at all.
--
--   wecom_sync_calendars (cal_id PRIMARY KEY, next_offset, scan, calendar JSON)
--   wecom_sync_schedules (cal_id, schedule_id, scan, schedule JSON), one row
--     per live schedule; rowid order is the order the mirror met them
-- The JSON is what the API returned, so SQLite's json_extract reads any
-- field: SELECT json_extract(schedule, '$.summary') FROM wecom_sync_schedules.
local codec = require("wecom.sync.codec")
local errors = require("wecom.errors")
local ypcall = require("wecom.compat").pcall

local M = {}

M.SCHEMA_VERSION = 1

-- Ids per IN (...) list and rows per INSERT: SQL text of a few hundred KB.
local CHUNK = 500

local Store = {}
Store.__index = Store
Store.__name = "wecom.sync.sqlite"

local function fail(text)
  return errors.sync("store", "sqlite: " .. errors.clean(tostring(text), errors.TEXT))
end

local function invalid(field, text) return nil, errors.validation("sync.sqlite", field, text) end

local SYNCHRONOUS = { OFF = true, NORMAL = true, FULL = true, EXTRA = true }

-- Runs one statement: true | nil, err. (A statement that yields rows, such
-- as some PRAGMAs, gives a cursor: closed, or the connection can't close.)
local function exec(conn, sql)
  local res, err = conn:execute(sql)
  if res == nil then return nil, fail(err) end
  if type(res) == "userdata" then res:close() end
  return true
end

-- The rows of a query, each as an array (mode "n"), or nil, err.
local function rows(conn, sql)
  local cur, err = conn:execute(sql)
  if cur == nil then return nil, fail(err) end
  if type(cur) ~= "userdata" then return {} end
  local out = {}
  while true do
    local row = cur:fetch({}, "n")
    if not row then break end
    out[#out + 1] = row
  end
  cur:close()
  return out
end

-- A string as an SQL literal. JSON text and ids seldom hold a quote: those
-- that don't go as they are (escaping a page's JSON costs as much as
-- storing it).
local function quote(conn, s)
  if s:find("'", 1, true) then return "'" .. conn:escape(s) .. "'" end
  return "'" .. s .. "'"
end

local function int(n) return ("%.0f"):format(n) end

local SCHEMA = {
  [[CREATE TABLE wecom_sync_calendars (
      cal_id TEXT PRIMARY KEY,
      next_offset INTEGER NOT NULL DEFAULT 0,
      scan INTEGER NOT NULL DEFAULT 0,
      calendar TEXT)]],
  [[CREATE TABLE wecom_sync_schedules (
      cal_id TEXT NOT NULL,
      schedule_id TEXT NOT NULL,
      scan INTEGER NOT NULL DEFAULT 0,
      schedule TEXT NOT NULL,
      PRIMARY KEY (cal_id, schedule_id))]],
  -- (cal_id, rowid) order: a calendar's rows in the order they were stored
  [[CREATE INDEX wecom_sync_schedules_by_calendar ON wecom_sync_schedules (cal_id)]],
}

-- Creates the tables in a new file, or checks the version of an old one.
local function prepare(conn)
  local ok, err = exec(conn, "BEGIN IMMEDIATE")
  if not ok then return nil, err end
  local function rollback(e)
    conn:execute("ROLLBACK")
    return nil, e
  end
  ok, err = exec(conn, "CREATE TABLE IF NOT EXISTS wecom_sync_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
  if not ok then return rollback(err) end
  local found
  found, err = rows(conn, "SELECT value FROM wecom_sync_meta WHERE key = 'schema_version'")
  if not found then return rollback(err) end
  local version = found[1] and tonumber(found[1][1])
  if not version then
    for _, sql in ipairs(SCHEMA) do
      ok, err = exec(conn, sql)
      if not ok then return rollback(err) end
    end
    ok, err = exec(conn, ("INSERT INTO wecom_sync_meta VALUES ('schema_version', '%d')"):format(M.SCHEMA_VERSION))
    if not ok then return rollback(err) end
  elseif version > M.SCHEMA_VERSION then
    return rollback(fail(("the file's mirror tables are of schema version %d; this library knows %d: "
      .. "upgrade the library"):format(version, M.SCHEMA_VERSION)))
  end
  -- (migrations from older versions go here, in this transaction)
  ok, err = exec(conn, "COMMIT")
  if not ok then return rollback(err) end
  return true
end

-- opts: busy_timeout (ms another writer is waited for, default 10000),
-- synchronous ("NORMAL", the default: a killed process loses nothing
-- committed, a power cut may lose the last transactions, which the next
-- pull fetches again; "FULL": not even those).
function M.open(path, opts)
  if type(path) ~= "string" or path == "" then return invalid("path", "expected a file name") end
  if opts ~= nil and type(opts) ~= "table" then return invalid("opts", "expected a table") end
  opts = opts or {}
  local busy = opts.busy_timeout or 10000
  if type(busy) ~= "number" or busy < 0 or busy ~= math.floor(busy) then
    return invalid("opts.busy_timeout", "expected milliseconds (an integer >= 0)")
  end
  local synchronous = opts.synchronous or "NORMAL"
  if not SYNCHRONOUS[synchronous] then return invalid("opts.synchronous", "expected OFF, NORMAL, FULL or EXTRA") end
  local found, driver = pcall(require, "luasql.sqlite3")
  if not found then
    return nil, errors.sync("store", "sqlite: LuaSQL's sqlite3 driver is not installed (Debian: lua-sql-sqlite3;"
      .. " LuaRocks: luasql-sqlite3)")
  end
  local env = driver.sqlite3()
  local conn, err = env:connect(path)
  if not conn then
    env:close()
    return nil, fail(("%s: %s"):format(path, tostring(err)))
  end
  local function give_up(e)
    conn:close()
    env:close()
    return nil, e
  end
  local ok
  ok, err = exec(conn, ("PRAGMA busy_timeout = %d"):format(busy))
  if not ok then return give_up(err) end
  local mode
  mode, err = rows(conn, "PRAGMA journal_mode = WAL")
  if not mode then return give_up(err) end
  if not (mode[1] and tostring(mode[1][1]):lower() == "wal") then
    return give_up(fail(path .. ": can't use a write-ahead log here (journal_mode " .. tostring(mode[1] and mode[1][1]) .. ")"))
  end
  ok, err = exec(conn, "PRAGMA synchronous = " .. synchronous)
  if not ok then return give_up(err) end
  ok, err = prepare(conn)
  if not ok then return give_up(err) end
  return setmetatable({ env = env, conn = conn, path = path }, Store)
end

local function open_conn(self)
  if not self.conn then return nil, fail(self.path .. ": the store is closed") end
  return self.conn
end

function Store:calendar_ids()
  local conn, err = open_conn(self)
  if not conn then return nil, err end
  local list
  list, err = rows(conn, "SELECT cal_id FROM wecom_sync_calendars ORDER BY rowid")
  if not list then return nil, err end
  for i, row in ipairs(list) do list[i] = row[1] end
  return list
end

local function read_record(conn, cal_id)
  local list, err = rows(conn, ("SELECT next_offset, scan, calendar FROM wecom_sync_calendars WHERE cal_id = %s")
    :format(quote(conn, cal_id)))
  if not list then return nil, err end
  local row = list[1]
  if not row then return false end
  local calendar
  if row[3] then
    calendar, err = codec.decode(row[3])
    if not calendar then return nil, fail("the stored calendar " .. cal_id .. " is not JSON: " .. tostring(err)) end
  end
  return { offset = tonumber(row[1]), scan = tonumber(row[2]), calendar = calendar }
end

function Store:calendar(cal_id)
  local conn, err = open_conn(self)
  if not conn then return nil, err end
  return read_record(conn, cal_id)
end

-- "'a','b',..." for ids[first..last]
local function id_list(conn, ids, first, last)
  local out = {}
  for i = first, last do out[#out + 1] = quote(conn, ids[i]) end
  return table.concat(out, ",")
end

-- The stored copies of `ids` (those there are): {schedule_id = schedule}.
local function read_rows(conn, cal_id, ids)
  local out = {}
  for first = 1, #ids, CHUNK do
    local list, err = rows(conn, ("SELECT schedule_id, schedule FROM wecom_sync_schedules WHERE cal_id = %s"
      .. " AND schedule_id IN (%s)"):format(quote(conn, cal_id), id_list(conn, ids, first, math.min(#ids, first + CHUNK - 1))))
    if not list then return nil, err end
    for _, row in ipairs(list) do
      local s, derr = codec.decode(row[2])
      if not s then return nil, fail("the stored schedule " .. row[1] .. " is not JSON: " .. tostring(derr)) end
      out[row[1]] = s
    end
  end
  return out
end

local function write(conn, cal_id, rec, batch)
  local cal = quote(conn, cal_id)
  local ok, err
  if batch.drop then
    ok, err = exec(conn, "DELETE FROM wecom_sync_schedules WHERE cal_id = " .. cal)
    if not ok then return nil, err end
    return exec(conn, "DELETE FROM wecom_sync_calendars WHERE cal_id = " .. cal)
  end
  if not rec then
    if not batch.follow then return true end
    ok, err = exec(conn, "INSERT INTO wecom_sync_calendars (cal_id) VALUES (" .. cal .. ")")
    if not ok then return nil, err end
  end
  local set = {}
  if batch.calendar ~= nil then set[#set + 1] = "calendar = " .. quote(conn, codec.encode(batch.calendar)) end
  if batch.offset ~= nil then set[#set + 1] = "next_offset = " .. int(batch.offset) end
  if batch.scan ~= nil then set[#set + 1] = "scan = " .. int(batch.scan) end
  if #set > 0 then
    ok, err = exec(conn, ("UPDATE wecom_sync_calendars SET %s WHERE cal_id = %s"):format(table.concat(set, ", "), cal))
    if not ok then return nil, err end
  end
  local remove = batch.remove or {}
  for first = 1, #remove, CHUNK do
    ok, err = exec(conn, ("DELETE FROM wecom_sync_schedules WHERE cal_id = %s AND schedule_id IN (%s)")
      :format(cal, id_list(conn, remove, first, math.min(#remove, first + CHUNK - 1))))
    if not ok then return nil, err end
  end
  local put = batch.put or {}
  for first = 1, #put, CHUNK do
    local values = {}
    for i = first, math.min(#put, first + CHUNK - 1) do
      local s = put[i]
      values[#values + 1] = ("(%s,%s,%s)"):format(cal, quote(conn, s.schedule_id), quote(conn, codec.encode(s)))
    end
    -- an update keeps the row (and its rowid: its place in the order)
    ok, err = exec(conn, "INSERT INTO wecom_sync_schedules (cal_id, schedule_id, schedule) VALUES "
      .. table.concat(values, ",") .. " ON CONFLICT (cal_id, schedule_id) DO UPDATE SET schedule = excluded.schedule")
    if not ok then return nil, err end
  end
  local seen = batch.seen or {}
  if #seen > 0 then
    local scan = batch.scan or (rec and rec.scan) or 0
    for first = 1, #seen, CHUNK do
      ok, err = exec(conn, ("UPDATE wecom_sync_schedules SET scan = %s WHERE cal_id = %s AND schedule_id IN (%s)")
        :format(int(scan), cal, id_list(conn, seen, first, math.min(#seen, first + CHUNK - 1))))
      if not ok then return nil, err end
    end
  end
  return true
end

local function check(batch)
  if type(batch) ~= "table" then return "the update function returned no batch" end
  for _, key in ipairs{ "put", "remove", "seen" } do
    if batch[key] ~= nil and type(batch[key]) ~= "table" then return "batch." .. key .. ": expected a list" end
  end
  for i, s in ipairs(batch.put or {}) do
    if type(s) ~= "table" or type(s.schedule_id) ~= "string" then
      return ("batch.put[%d]: expected a schedule with a schedule_id"):format(i)
    end
  end
  for _, key in ipairs{ "offset", "scan" } do
    if batch[key] ~= nil and type(batch[key]) ~= "number" then return "batch." .. key .. ": expected a number" end
  end
  return nil
end

-- One transaction: fn(record | false, rows) -> batch | nil, err, inside
-- it; the batch written; report() -> true | nil, err; then the commit.
function Store:update(cal_id, ids, fn, report)
  local conn, err = open_conn(self)
  if not conn then return nil, err end
  if self.in_update then return nil, errors.sync("busy", "sqlite: the store is inside another update") end
  local ok
  ok, err = exec(conn, "BEGIN IMMEDIATE")
  if not ok then return nil, err end
  self.in_update = true
  local function abort(e)
    conn:execute("ROLLBACK")
    self.in_update = false
    return nil, e
  end
  local rec
  rec, err = read_record(conn, cal_id)
  if rec == nil then return abort(err) end
  local stored = {}
  if rec then
    stored, err = read_rows(conn, cal_id, ids)
    if not stored then return abort(err) end
  end
  local called, batch, ferr = ypcall(fn, rec, stored)
  if not called then return abort(errors.sync("store", "the update function raised: " .. tostring(batch))) end
  if batch == nil then return abort(ferr) end
  local bad = check(batch)
  if bad then return abort(errors.sync("store", bad)) end
  ok, err = write(conn, cal_id, rec, batch)
  if not ok then return abort(err) end
  if report then
    local reported
    called, reported, err = ypcall(report)
    if not called then return abort(errors.sync("store", "the report function raised: " .. tostring(reported))) end
    if not reported then return abort(err) end
  end
  ok, err = exec(conn, "COMMIT")
  if not ok then return abort(err) end
  self.in_update = false
  return true
end

-- Up to `limit` schedules of the calendar after rowid `after`, in rowid
-- order; with `scan`, only those not marked with it. list, last rowid.
function Store:page(cal_id, after, limit, scan)
  local conn, err = open_conn(self)
  if not conn then return nil, err end
  local list
  list, err = rows(conn, ("SELECT rowid, schedule_id, schedule FROM wecom_sync_schedules WHERE cal_id = %s AND rowid > %s%s"
    .. " ORDER BY rowid LIMIT %d"):format(quote(conn, cal_id), int(after or 0),
    scan and (" AND scan <> " .. int(scan)) or "", limit))
  if not list then return nil, err end
  local out = {}
  for i, row in ipairs(list) do
    local s, derr = codec.decode(row[3])
    if not s then return nil, fail("the stored schedule " .. row[2] .. " is not JSON: " .. tostring(derr)) end
    out[i] = s
    after = tonumber(row[1])
  end
  return out, after
end

function Store:close()
  if self.conn then
    self.conn:close()
    self.env:close()
    self.conn, self.env = nil, nil
  end
  return true
end

return M
