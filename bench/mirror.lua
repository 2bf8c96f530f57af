-- The mirror row of `make bench` (`make bench-mirror` runs it alone): the
-- initial pull of 100,000 schedules into a SQLite file (wecom.sync: follow,
-- then pull, a transaction per page of 1000 with the offset), against
-- paging the same calendar with the cursor and storing nothing (the
-- floor), and into the memory store; LuaJIT and Lua 5.4, each contender in
-- a process of its own, rounds interleaved, medians. Schedules per second
-- and the process's peak memory (VmHWM).
local launcher = require("wecom.emulator.launcher")
local cjson = require("cjson")

local M = {}

local N = tonumber(os.getenv("BENCH_MIRROR_SCHEDULES") or "") or 100000
local ROUNDS = tonumber(os.getenv("BENCH_MIRROR_ROUNDS") or "") or 3
local LUAS = { "luajit", "lua5.4" }
local MODES = { "floor", "sqlite", "memory" }
local NAMES = {
  floor = "paging with the cursor, nothing stored (the floor)",
  sqlite = "`mirror:pull()` into `sync.sqlite(file)`",
  memory = "`mirror:pull()` into `sync.memory()`",
}

local util = dofile("bench/util.lua")
local q, capture, lua_env, median = util.q, util.capture, util.lua_env, util.median

function M.run()
  local emu = assert(launcher.start{ port = 0, corpid = "wwbench", corpsecret = "bench-secret" })
  local http = require("wecom.transport.curl").new(assert(require("wecom.options").transport{ timeout = 300 }))
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. q(dir)))
  local ok, result = pcall(function()
    local function control(name, body)
      local status, reply = http:request("POST", emu.base_url .. "/emulator/" .. name, cjson.encode(body or {}))
      assert(status == 200, reply)
      return cjson.decode(reply)
    end
    local cal_id = control("seed_calendars", { count = 1 }).cal_ids[1]
    control("seed_schedules", { cal_id = cal_id, count = N, attendees = { "zhangsan", "lisi" } })
    local runs = {}
    for _, lua in ipairs(LUAS) do
      runs[lua] = {}
      for _, mode in ipairs(MODES) do runs[lua][mode] = { rate = {}, peak = {}, cpu = {} } end
    end
    local file = 0
    for round = 1, ROUNDS do
      for _, lua in ipairs(LUAS) do
        for k = 1, #MODES do
          local mode = MODES[(k + round - 2) % #MODES + 1]
          file = file + 1
          local db = ("%s/mirror-%d.db"):format(dir, file)
          local out = capture(("%s bench/mirror_pull.lua %s %s %s %s"):format(lua_env(lua), q(emu.base_url), cal_id,
            mode, q(db)))
          os.execute(("rm -f %s %s-wal %s-shm"):format(q(db), q(db), q(db)))
          local count, secs, peak, cpu = out:match("^(%d+)%s+([%d.]+)%s+(%d+)%s+([%d.]+)$")
          assert(tonumber(count) == N, ("%s %s: %s"):format(lua, mode, out))
          table.insert(runs[lua][mode].rate, N / tonumber(secs))
          table.insert(runs[lua][mode].peak, tonumber(peak))
          table.insert(runs[lua][mode].cpu, tonumber(cpu))
        end
      end
    end
    local out = {}
    for _, lua in ipairs(LUAS) do
      out[lua] = {}
      for _, mode in ipairs(MODES) do
        out[lua][mode] = { rate = median(runs[lua][mode].rate), peak_kb = median(runs[lua][mode].peak),
          cpu = median(runs[lua][mode].cpu) }
      end
    end
    return out
  end)
  http:close()
  emu:stop()
  os.execute("rm -rf " .. q(dir))
  if not ok then error(result, 0) end
  return result
end

function M.lines(r)
  local lines = {
    "## Keeping a mirror: the initial pull of 100,000 schedules",
    "",
    ("A calendar of %d schedules in the emulator (each with two attendees), pulled from offset 0 in pages"
      .. " of 1000 by a fresh process (%d rounds, the contenders interleaved, medians). `mirror:pull()`"
      .. " stores each page and the offset past it in one SQLite transaction (WAL, synchronous=NORMAL),"
      .. " after looking up which of the page's schedules the file already holds; the floor pages the same"
      .. " calendar with `schedule_cursor` and keeps nothing. Peak memory is the process's VmHWM; CPU, the"
      .. " client process's own seconds (the emulator, on the same two cores, spends most of the floor's"
      .. " time encoding the pages)."):format(N, ROUNDS),
    "",
    "| Lua | contender | schedules/s | of the floor | peak memory | client CPU s |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
  }
  for _, lua in ipairs(LUAS) do
    local floor = r[lua].floor.rate
    for _, mode in ipairs(MODES) do
      local x = r[lua][mode]
      lines[#lines + 1] = ("| %s | %s | %.0f | %.2f | %.1f MiB | %.2f |"):format(lua, NAMES[mode], x.rate,
        x.rate / floor, x.peak_kb / 1024, x.cpu)
    end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = ("Goal: at least 0.5 of the floor. Into SQLite: %.2f of the floor on LuaJIT, %.2f on Lua 5.4;"
    .. " peak memory %.1f / %.1f MiB against the floor's %.1f / %.1f (about one page: the memory store, which"
    .. " keeps every schedule, shows what holding them costs). Run this row alone with `make bench-mirror`.")
    :format(r.luajit.sqlite.rate / r.luajit.floor.rate, r["lua5.4"].sqlite.rate / r["lua5.4"].floor.rate,
      r.luajit.sqlite.peak_kb / 1024, r["lua5.4"].sqlite.peak_kb / 1024, r.luajit.floor.peak_kb / 1024,
      r["lua5.4"].floor.peak_kb / 1024)
  lines[#lines + 1] = ""
  return lines
end

-- `make bench-mirror`: this row alone, replacing its section of RESULTS.md.
function M.record(r)
  util.record(M.lines(r), "## Keeping a mirror: ")
end

return M
