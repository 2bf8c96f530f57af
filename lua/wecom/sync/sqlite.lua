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
--   wecom_sync_schedules (id_key, cal_id, schedule_id, scan, schedule JSON),
--     one row per live schedule; rowid order is the order the mirror met them
-- The JSON is what the API returned, so SQLite's json_extract reads any
-- field: SELECT json_extract(schedule, '$.summary') FROM wecom_sync_schedules.
local args = require("wecom.args")
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

local INT_MAX = 2147483647

local OPTIONS = { busy_timeout = true, synchronous = true, wal_autocheckpoint = true }

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
    -- a step that fails (a malformed page, an I/O error) ends the rows
    -- too: with its message, not as if they were all
    local row, ferr = cur:fetch({}, "n")
    if not row then
      cur:close()
      if ferr ~= nil then return nil, fail(ferr) end
      return out
    end
    out[#out + 1] = row
  end
end

-- A string as an SQL literal. JSON text and ids seldom hold a quote: those
-- that don't go as they are (escaping a page's JSON costs as much as
-- storing it).
local function hex(c) return ("%02X"):format(c:byte()) end
local function quote(conn, s)
  -- LuaSQL hands SQL text to SQLite as a C string: a NUL would end it
  if s:find("%z") then return "CAST(X'" .. s:gsub(".", hex) .. "' AS TEXT)" end
  if s:find("'", 1, true) then return "'" .. conn:escape(s) .. "'" end
  return "'" .. s .. "'"
end

local function int(n) return ("%.0f"):format(n) end

-- wecom_sync_schedules is found by `id_key`, a 32-bit hash of the
-- schedule_id, not by a unique index on the id itself: schedule ids are
-- random, so each page's rows land all over such an index, and with a
-- transaction per page nearly the whole index is written again at every
-- commit. An index of small integers is a fifth of the size (a large pull
-- takes half the time). Rows are unique per (cal_id, schedule_id) because
-- every write looks them up first, inside its transaction.
local SCHEMA = {
  [[CREATE TABLE wecom_sync_calendars (
      cal_id TEXT PRIMARY KEY,
      next_offset INTEGER NOT NULL DEFAULT 0,
      scan INTEGER NOT NULL DEFAULT 0,
      calendar TEXT)]],
  [[CREATE TABLE wecom_sync_schedules (
      id_key INTEGER NOT NULL,
      cal_id TEXT NOT NULL,
      schedule_id TEXT NOT NULL,
      scan INTEGER NOT NULL DEFAULT 0,
      schedule TEXT NOT NULL)]],
  [[CREATE INDEX wecom_sync_schedules_by_key ON wecom_sync_schedules (id_key)]],
  -- (cal_id, rowid) order: a calendar's rows in the order they were stored
  [[CREATE INDEX wecom_sync_schedules_by_calendar ON wecom_sync_schedules (cal_id)]],
}

-- The id_key of a schedule_id: djb2 mod 2^32, exact alike in doubles
-- (Lua 5.1, LuaJIT) and integers (5.3+), so every Lua finds the rows any
-- other wrote.
local function id_key(id)
  local h, n = 5381, #id
  for i = 1, n - 3, 4 do
    local a, b, c, d = id:byte(i, i + 3)
    h = (((h * 33 + a) % 4294967296 * 33 + b) % 4294967296 * 33 + c) % 4294967296
    h = (h * 33 + d) % 4294967296
  end
  for i = n - n % 4 + 1, n do h = (h * 33 + id:byte(i)) % 4294967296 end
  return ("%.0f"):format(h)
end
M.id_key = id_key

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
-- pull fetches again; "FULL": not even those), wal_autocheckpoint (pages
-- of log between checkpoints, default 10000).
function M.open(path, opts)
  if type(path) ~= "string" or path == "" then return invalid("path", "expected a file name") end
  -- a misspelt option would be ignored without a word
  local err = args.options("sync.sqlite", opts, OPTIONS)
  if err then return nil, err end
  opts = args.copy(opts)
  -- SQLite takes both as a C int: a larger number (math.huge for "wait
  -- forever") raised in string.format on Lua 5.4 and became a negative
  -- one (no wait at all) on 5.1 and LuaJIT
  local busy = opts.busy_timeout or 10000
  if type(busy) ~= "number" or busy < 0 or busy > INT_MAX or busy ~= math.floor(busy) then
    return invalid("opts.busy_timeout", "expected milliseconds (an integer 0..2147483647)")
  end
  local synchronous = opts.synchronous or "NORMAL"
  if not SYNCHRONOUS[synchronous] then return invalid("opts.synchronous", "expected OFF, NORMAL, FULL or EXTRA") end
  local checkpoint = opts.wal_autocheckpoint or 10000
  if type(checkpoint) ~= "number" or checkpoint < 0 or checkpoint > INT_MAX or checkpoint ~= math.floor(checkpoint) then
    return invalid("opts.wal_autocheckpoint", "expected a number of pages (an integer 0..2147483647)")
  end
  local found, driver = pcall(require, "luasql.sqlite3")
  if not found then
    return nil, errors.sync("store", "sqlite: LuaSQL's sqlite3 driver is not installed (Debian: lua-sql-sqlite3;"
      .. " LuaRocks: luasql-sqlite3)")
  end
  local env = driver.sqlite3()
  local conn
  conn, err = env:connect(path)
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
  -- A page of schedules dirties index pages all over the file (ids are
  -- random): checkpointing every 40 MB of log instead of SQLite's 4 MB
  -- copies each hot page into the file once for many transactions, not
  -- once for each (a third less time for a large pull). The log is cut
  -- back to 64 MB after a checkpoint.
  ok, err = exec(conn, ("PRAGMA wal_autocheckpoint = %d"):format(checkpoint))
  if ok then ok, err = exec(conn, "PRAGMA journal_size_limit = 67108864") end
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

-- id_key, remembered for the ids of one update (each is looked up, then
-- inserted or updated)
local function key_memo()
  local memo = {}
  return function(id)
    local k = memo[id]
    if not k then
      k = id_key(id)
      memo[id] = k
    end
    return k
  end
end

-- The keys of ids[first..last], as an SQL list.
local function key_list(key, ids, first, last)
  local keys = {}
  for i = first, last do keys[#keys + 1] = key(ids[i]) end
  return table.concat(keys, ",")
end

-- The rows of `ids` the calendar holds: {schedule_id = {rowid, json}}.
-- SQLite finds the rows by key; the ids are told apart here (a key may
-- stand for several).
local function find(conn, key, cal_id, ids)
  local out, wanted = {}, {}
  for _, id in ipairs(ids) do wanted[id] = true end
  local cal = quote(conn, cal_id)
  for first = 1, #ids, CHUNK do
    -- by the keys: the planner, without statistics, would rather walk the
    -- calendar's rows
    local list, err = rows(conn, ("SELECT rowid, schedule_id, schedule FROM wecom_sync_schedules"
      .. " INDEXED BY wecom_sync_schedules_by_key WHERE id_key IN (%s) AND cal_id = %s")
      :format(key_list(key, ids, first, math.min(#ids, first + CHUNK - 1)), cal))
    if not list then return nil, err end
    for _, row in ipairs(list) do
      if wanted[row[2]] then out[row[2]] = { rowid = row[1], json = row[3] } end
    end
  end
  return out
end

-- The stored copies of `ids` (those there are): {schedule_id = schedule},
-- and what this transaction knows of rows: {rows = find()'s answer,
-- looked = {schedule_id = true} for every id looked up}.
local function read_rows(conn, key, cal_id, ids)
  local found, err = find(conn, key, cal_id, ids)
  if not found then return nil, err end
  local out, looked = {}, {}
  for _, id in ipairs(ids) do looked[id] = true end
  for id, row in pairs(found) do
    local s, derr = codec.decode(row.json)
    if not s then return nil, fail("the stored schedule " .. id .. " is not JSON: " .. tostring(derr)) end
    out[id] = s
  end
  return out, { rows = found, looked = looked }
end

local function rowid_list(rowids, first, last)
  local out = {}
  for i = first, last do out[#out + 1] = int(rowids[i]) end
  return table.concat(out, ",")
end

-- Runs `sql` (with %s for a list of rowids) over rowids, a chunk at a time.
local function each_chunk(conn, sql, rowids)
  for first = 1, #rowids, CHUNK do
    local ok, err = exec(conn, sql:format(rowid_list(rowids, first, math.min(#rowids, first + CHUNK - 1))))
    if not ok then return nil, err end
  end
  return true
end

-- The rows of these ids ({schedule_id = {rowid, json}}): what this
-- transaction's read found, and the ids it did not look up, looked up.
local function rowids_of(conn, key, cal_id, ids, known)
  local found, missing = known.rows, {}
  for _, id in ipairs(ids) do
    if not known.looked[id] then missing[#missing + 1] = id end
  end
  if #missing > 0 then
    local more, err = find(conn, key, cal_id, missing)
    if not more then return nil, err end
    for id, row in pairs(more) do found[id] = row end
  end
  return found
end

local function write(conn, key, cal_id, rec, batch, known)
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
  local remove, put, seen = batch.remove or {}, batch.put or {}, batch.seen or {}
  local ids = {}
  for _, id in ipairs(remove) do ids[#ids + 1] = id end
  for _, sch in ipairs(put) do ids[#ids + 1] = sch.schedule_id end
  for _, id in ipairs(seen) do ids[#ids + 1] = id end
  local found
  found, err = rowids_of(conn, key, cal_id, ids, known)
  if not found then return nil, err end

  local gone = {}
  for _, id in ipairs(remove) do
    if found[id] then
      gone[#gone + 1] = found[id].rowid
      found[id] = nil
    end
  end
  ok, err = each_chunk(conn, "DELETE FROM wecom_sync_schedules WHERE rowid IN (%s)", gone)
  if not ok then return nil, err end

  -- rows the reconcile met carry its mark; new ones get it as they are inserted
  local scan = int(batch.scan or (rec and rec.scan) or 0)
  local seen_set, marked = {}, {}
  for _, id in ipairs(seen) do
    seen_set[id] = true
    if found[id] then marked[#marked + 1] = found[id].rowid end
  end
  ok, err = each_chunk(conn, "UPDATE wecom_sync_schedules SET scan = " .. scan .. " WHERE rowid IN (%s)", marked)
  if not ok then return nil, err end

  local values = {}
  local function flush()
    if #values == 0 then return true end
    local sql = "INSERT INTO wecom_sync_schedules (id_key, cal_id, schedule_id, scan, schedule) VALUES "
      .. table.concat(values, ",")
    values = {}
    return exec(conn, sql)
  end
  local inserted = {}
  for _, sch in ipairs(put) do
    local id, json = sch.schedule_id, codec.encode(sch)
    local row = found[id]
    if row then
      -- an update keeps the row (and its rowid: its place in the order)
      ok, err = exec(conn, ("UPDATE wecom_sync_schedules SET schedule = %s WHERE rowid = %s"):format(quote(conn, json),
        int(row.rowid)))
      if not ok then return nil, err end
    elseif inserted[id] then
      return nil, fail("batch.put: schedule " .. id .. " twice")
    else
      inserted[id] = true
      values[#values + 1] = ("(%s,%s,%s,%s,%s)"):format(key(id), cal, quote(conn, id), seen_set[id] and scan or "0",
        quote(conn, json))
      if #values == CHUNK then
        ok, err = flush()
        if not ok then return nil, err end
      end
    end
  end
  ok, err = flush()
  if not ok then return nil, err end
  return true
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
  local key = key_memo()
  local stored, known = {}, { rows = {}, looked = {} }
  if rec then
    stored, known = read_rows(conn, key, cal_id, ids)
    if not stored then return abort(known) end
  end
  local called, batch, ferr = ypcall(fn, rec, stored)
  if not called then return abort(errors.sync("store", "the update function raised: " .. tostring(batch))) end
  if batch == nil then return abort(ferr) end
  local bad = codec.check_batch(batch)
  if bad then return abort(errors.sync("store", bad)) end
  ok, err = write(conn, key, cal_id, rec, batch, known)
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
