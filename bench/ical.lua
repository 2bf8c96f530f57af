-- The iCalendar rows of `make bench` (bench/run.lua; alone: `lua5.4 bench/run.lua ical`):
--
--   export       client:export_ical of 10,000 and 100,000 schedules from the
--                emulator: schedules/s and peak memory (process and Lua heap)
--   occurrences  recurrence.occurrences over the corpus of
--                spec/support/ical_corpus.lua vs dateutil's rrule on the
--                RRULEs wecom.ical exports for it, side by side
package.path = "spec/?.lua;" .. package.path
local corpus = require("support.ical_corpus")
local ical = require("wecom.ical")

local M = {}

local ROUNDS = 3
local WEEK_FROM = corpus.at(2030, 6, 3, 0, 0, 0)

local function median(list)
  table.sort(list)
  return list[math.ceil(#list / 2)]
end

-- ctx: capture(cmd), lua_env(lua), q(s), control(name, body)
function M.run(ctx)
  local results = { export = {}, occurrences = {} }

  -- export
  for _, n in ipairs{ 10000, 100000 } do
    ctx.control("reset", { corpid = "wwbench", corpsecret = "bench-secret" })
    local cal_id = ctx.control("seed_calendars", { count = 1 }).cal_ids[1]
    ctx.control("seed_schedules", { cal_id = cal_id, count = n, cancelled_every = 10,
      attendees = { "zhangsan", "lisi", "wangwu" } })
    for _, lua in ipairs{ "luajit", "lua5.4" } do
      local file = os.tmpname()
      local out = ctx.capture(("%s bench/export.lua %s %s %s"):format(ctx.lua_env(lua), ctx.q(ctx.base_url), cal_id,
        ctx.q(file)))
      os.remove(file)
      local count, secs, peak, lua_peak = out:match("(%d+)%s+([%d.]+)%s+(%d+)%s+(%d+)")
      assert(tonumber(count) == n, out)
      table.insert(results.export, { lua = lua, n = n, seconds = tonumber(secs), peak_kb = tonumber(peak),
        lua_peak_kb = tonumber(lua_peak) })
    end
  end

  -- occurrences: the corpus, written for dateutil
  os.execute("mkdir -p build/bench")
  local schedules = corpus.schedules()
  local ics, offsets = "build/bench/corpus.ics", "build/bench/corpus-offsets.txt"
  local f = assert(io.open(ics, "wb"))
  f:write(assert(ical.vcalendar(schedules)))
  f:close()
  f = assert(io.open(offsets, "wb"))
  for _, s in ipairs(schedules) do
    if s.is_whole_day == 1 then f:write(s.schedule_id, " ", s.reminders.timezone, "\n") end
  end
  f:close()
  results.schedules = #schedules
  local windows = {
    { name = "5 years (2026 to 2030)", from = corpus.FROM, to = corpus.TO, lua_passes = 20, py_passes = 2 },
    { name = "one week (3 June 2030)", from = WEEK_FROM, to = WEEK_FROM + 7 * 86400, lua_passes = 2000, py_passes = 20 },
  }
  for _, w in ipairs(windows) do
    local contenders = {
      { key = "dateutil", name = "dateutil rrule (python3-dateutil)",
        cmd = ("/usr/bin/python3 bench/rrule_dateutil.py %s %d %d %d %s"):format(ics, w.from, w.to, w.py_passes, offsets) },
      { key = "lua54", name = "recurrence.occurrences, Lua 5.4", cmd = ("%s bench/occurrences.lua %d %d %d")
        :format(ctx.lua_env("lua5.4"), w.from, w.to, w.lua_passes) },
      { key = "luajit", name = "recurrence.occurrences, LuaJIT", cmd = ("%s bench/occurrences.lua %d %d %d")
        :format(ctx.lua_env("luajit"), w.from, w.to, w.lua_passes) },
    }
    local rates, counts = {}, {}
    for round = 1, ROUNDS do
      for k = 1, #contenders do
        local c = contenders[(k + round - 2) % #contenders + 1]
        local out = ctx.capture(c.cmd)
        local n, secs = out:match("^(%d+)%s+([%d.]+)$")
        assert(n, c.name .. ": " .. out)
        local passes = c.key == "dateutil" and w.py_passes or w.lua_passes
        counts[c.key] = tonumber(n) / passes
        rates[c.key] = rates[c.key] or {}
        table.insert(rates[c.key], tonumber(n) / tonumber(secs))
      end
    end
    -- the same rules give the same occurrences, or the race means nothing
    assert(counts.dateutil == counts.lua54 and counts.lua54 == counts.luajit,
      ("occurrence counts differ: dateutil %s, Lua 5.4 %s, LuaJIT %s"):format(counts.dateutil, counts.lua54, counts.luajit))
    local row = { name = w.name, per_pass = counts.lua54, contenders = {} }
    for _, c in ipairs(contenders) do
      row.contenders[#row.contenders + 1] = { name = c.name, key = c.key, rate = median(rates[c.key]) }
    end
    table.insert(results.occurrences, row)
  end
  results.date = os.date("!%Y-%m-%d %H:%M UTC")
  return results
end

M.TITLE = "## iCalendar export with `export_ical` (from the emulator)"

-- command: how the run was started ("make bench", "make bench-ical")
function M.report(r, command)
  local lines = {
    M.TITLE,
    "",
    ("Measured %s by `%s`."):format(r.date, command),
    "",
    "Schedules seeded with three attendees each, every tenth cancelled; written to a file. Peak memory: the",
    "process's resident peak (VmHWM) and the Lua heap's, sampled at every chunk written.",
    "",
    "| Lua | schedules | seconds | schedules/s | peak memory of the process | Lua heap peak |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  }
  local by = {}
  for _, e in ipairs(r.export) do
    lines[#lines + 1] = ("| %s | %d | %.2f | %.0f | %.1f MiB | %.1f MiB |"):format(e.lua, e.n, e.seconds, e.n / e.seconds,
      e.peak_kb / 1024, e.lua_peak_kb / 1024)
    by[e.lua .. e.n] = e
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = ("Goal: 10x the schedules costs at most 1.2x the peak memory. Ten times the schedules: LuaJIT "
    .. "%.2fx the process's peak (Lua heap %.2fx), Lua 5.4 %.2fx (Lua heap %.2fx)."):format(
    by.luajit100000.peak_kb / by.luajit10000.peak_kb, by.luajit100000.lua_peak_kb / by.luajit10000.lua_peak_kb,
    by["lua5.4100000"].peak_kb / by["lua5.410000"].peak_kb,
    by["lua5.4100000"].lua_peak_kb / by["lua5.410000"].lua_peak_kb)
  lines[#lines + 1] = ""
  lines[#lines + 1] = "## Occurrence expansion: `recurrence.occurrences` vs dateutil's rrule"
  lines[#lines + 1] = ""
  lines[#lines + 1] = ("The %d schedules of `spec/support/ical_corpus.lua` (every repeat type, custom intervals, several "
    .. "weekdays and month days, 29 February, until, removed occurrences, whole-day, offsets -12..+12). dateutil "
    .. "(Debian's python3-dateutil, /usr/bin/python3) expands the RRULE/EXDATE that `wecom.ical` exports for them, "
    .. "its rule objects built before its clock starts; `occurrences()` checks and compiles WeCom's fields on "
    .. "every call. Both give the same occurrences (the run checks the counts). Medians of %d rounds.")
    :format(r.schedules, ROUNDS)
  lines[#lines + 1] = ""
  lines[#lines + 1] = "| window | engine | occurrences per pass | occurrences/s | vs dateutil |"
  lines[#lines + 1] = "| --- | --- | ---: | ---: | ---: |"
  local summary = {}
  for _, row in ipairs(r.occurrences) do
    local base
    for _, c in ipairs(row.contenders) do
      if c.key == "dateutil" then base = c.rate end
    end
    for _, c in ipairs(row.contenders) do
      lines[#lines + 1] = ("| %s | %s | %d | %.0f | %.1fx |"):format(row.name, c.name, row.per_pass, c.rate, c.rate / base)
      if c.key ~= "dateutil" then
        local lua = c.name:match(", (.+)$")
        summary[#summary + 1] = ("%s, %s: %.1fx"):format(row.name, lua, c.rate / base)
      end
    end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Goal: faster than dateutil. " .. table.concat(summary, "; ") .. ". dateutil walks every rule "
    .. "from its DTSTART; `occurrences()` starts at the window."
  lines[#lines + 1] = ""
  return lines
end

return M
