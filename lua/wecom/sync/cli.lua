-- `wecom mirror`: the work of the command (DESIGN.md "The command line",
-- "Keeping a mirror"). bin/wecom runs it through lua/wecom/cli/mirror.lua
-- (M.mirror, with the command's own client, output and errors); anything
-- else can run it alone:
--
--   local cli = require("wecom.sync.cli")
--   local opts, why = cli.parse(argv_after_the_word_mirror)   -- nil, why: exit 2 with cli.USAGE
--   opts.client, opts.json = client, json
--   os.exit(cli.run(opts))   -- 0 done, 1 a call or the store failed, 2 bad usage
--
-- A run follows the calendars named (the file remembers them), then pulls
-- and reconciles every followed calendar once, printing each change as it
-- is stored: a line per change (kind, cal_id, schedule_id or "-", summary;
-- tab-separated), or with --json one document
--   {"db": ..., "changes": [{kind, cal_id, schedule_id, source, schedule, old, calendar}, ...],
--    "pulled": N, "reconciled": N, "error": {kind, message, ...}?}
-- A change is printed inside its transaction: if stdout fails (a closed
-- pipe), the change is not stored and comes again on the next run.
local errors = require("wecom.errors")
local sync = require("wecom.sync")
local wecom = require("wecom")

local M = {}

M.DEFAULT_DB = "wecom-mirror.db"

M.USAGE = [[
Usage: wecom [--json] mirror [--db FILE] [--no-reconcile] [CAL_ID...]

Keeps a mirror of calendars in a SQLite file (default ]] .. M.DEFAULT_DB .. [[): follows each CAL_ID
given (the file remembers them), pulls the schedules added since the last run, reconciles
(re-reads every schedule, to find what changed without an event), and prints each change:
  added|changed|removed|calendar_changed|calendar_removed <TAB> cal_id <TAB> schedule_id|- <TAB> summary
Run it from cron; with --json, one JSON document. Exit status: 0 done, 1 failed, 2 bad usage.

  --db FILE        the SQLite file (created when missing)
  --no-reconcile   pull only: faster, but misses what changed without an event
]]

-- argv: the arguments after "mirror". -> {db =, cal_ids = {...}, reconcile =, json =, help =} | nil, why
function M.parse(argv)
  local opts = { cal_ids = {}, reconcile = true }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--db" then
      opts.db = argv[i + 1]
      if not opts.db or opts.db == "" then return nil, "--db: expected a file name" end
      i = i + 1
    elseif a:match("^%-%-db=") then
      opts.db = a:sub(6)
      if opts.db == "" then return nil, "--db: expected a file name" end
    elseif a == "--no-reconcile" then
      opts.reconcile = false
    elseif a == "--json" then
      opts.json = true
    elseif a == "-h" or a == "--help" then
      opts.help = true
    elseif a == "--" then
      for k = i + 1, #argv do opts.cal_ids[#opts.cal_ids + 1] = argv[k] end
      break
    elseif a:sub(1, 1) == "-" then
      return nil, "unknown option " .. a
    else
      opts.cal_ids[#opts.cal_ids + 1] = a
    end
    i = i + 1
  end
  return opts
end

local function summary_of(change)
  local s = change.schedule or change.calendar or change.old
  return type(s) == "table" and type(s.summary) == "string" and s.summary or ""
end

local function text_printer(out)
  return {
    change = function(c)
      local ok, err = out:write(("%s\t%s\t%s\t%s\n"):format(c.kind, c.cal_id, c.schedule_id or "-",
        errors.printable(summary_of(c))))
      if not ok then return nil, "stdout: " .. tostring(err) end
      return true
    end,
    finish = function() return true end,
  }
end

local function encode(v)
  return assert(wecom.encode_json(v))
end

local function json_printer(out, db)
  local first = true
  local started = false
  local function start()
    if started then return true end
    started = true
    local head = encode{ db = db }
    return out:write(head:sub(1, -2), ',"changes":[')
  end
  return {
    change = function(c)
      local entry = { kind = c.kind, cal_id = c.cal_id, schedule_id = c.schedule_id, source = c.source,
        schedule = c.schedule, old = c.old, calendar = c.calendar }
      local json, jerr = wecom.encode_json(entry)
      if not json then -- text the encoder refuses (a control character): the summary still tells
        json = encode{ kind = c.kind, cal_id = c.cal_id, schedule_id = c.schedule_id, source = c.source,
          note = tostring(jerr) }
      end
      local ok, err = start()
      if ok then ok, err = out:write(first and "" or ",", json) end
      first = false
      if not ok then return nil, "stdout: " .. tostring(err) end
      return true
    end,
    finish = function(counts, err)
      start()
      local tail = { pulled = counts.pulled, reconciled = counts.reconciled }
      if err then tail.error = { kind = err.kind, reason = err.reason, errcode = err.errcode, message = err.message } end
      local text = encode(tail)
      return out:write("],", text:sub(2), "\n")
    end,
  }
end

local Usage = { __tostring = function(e) return e.message end }

-- A usage error as the `wecom` command's dispatcher reads them (kind
-- "usage": exit 2, with the usage).
local function usage_error(text) return setmetatable({ kind = "usage", message = text }, Usage) end

-- The work of a run. opts: client (a wecom client), db, cal_ids, reconcile
-- (default true), json, stdout, stderr (anything with write, which returns
-- a true value or nil, err). true | nil, err: err.kind "usage" for bad
-- arguments (nothing was done), else the failure (with --json, the
-- document on stdout ends with it).
function M.mirror(opts)
  local out, errout = opts.stdout or io.stdout, opts.stderr or io.stderr
  local db = opts.db or M.DEFAULT_DB
  if type(db) ~= "string" or db == "" then return nil, usage_error("--db: expected a file name") end
  for _, id in ipairs(opts.cal_ids or {}) do
    if type(id) ~= "string" or #id == 0 or #id > 64 then
      return nil, usage_error("CAL_ID: expected 1..64 bytes, got " .. #tostring(id))
    end
  end
  local store, err = sync.sqlite(db)
  if not store then return nil, err end
  local printer = opts.json and json_printer(out, db) or text_printer(out)
  local mirror = assert(sync.new{ client = opts.client, store = store, on_change = printer.change })
  local counts = {}
  local function failed(e)
    printer.finish(counts, e)
    store:close()
    return nil, e
  end
  for _, id in ipairs(opts.cal_ids or {}) do
    local ok, ferr = mirror:follow(id)
    if not ok then return failed(ferr) end
  end
  local followed
  followed, err = mirror:followed()
  if not followed then return failed(err) end
  if #followed == 0 then
    store:close()
    return nil, usage_error("no calendar is followed in " .. db .. ": name one (CAL_ID)")
  end
  counts.pulled, err = mirror:pull()
  if not counts.pulled then
    counts.pulled = err.count
    return failed(err)
  end
  if opts.reconcile ~= false then
    counts.reconciled, err = mirror:reconcile()
    if not counts.reconciled then
      counts.reconciled = err.count
      return failed(err)
    end
  end
  printer.finish(counts)
  store:close()
  if not opts.json then
    errout:write(("wecom mirror: %d followed, %d changes pulled, %d reconciled (%s)\n"):format(#followed,
      counts.pulled, counts.reconciled or 0, db))
  end
  return true
end

-- M.mirror's opts, plus help; prints what went wrong on stderr and
-- returns the exit status: 0 done, 1 failed, 2 bad usage.
function M.run(opts)
  local out, errout = opts.stdout or io.stdout, opts.stderr or io.stderr
  if opts.help then
    out:write(M.USAGE)
    return 0
  end
  local ok, err = M.mirror(opts)
  if ok then return 0 end
  errout:write("wecom mirror: ", tostring(err), "\n")
  if getmetatable(err) == Usage then
    errout:write(M.USAGE)
    return 2
  end
  return 1
end

return M
