-- `make bench`: every figure is a ratio measured in this run, on this
-- machine, against the same local server; written to bench/RESULTS.md.
--
--   per-call cost  sequential calendar_get against an nginx returning a fixed
--                  reply: this client (LuaJIT, Lua 5.4) vs a plain C libcurl
--                  loop (the floor) vs luasocket + lua-cjson by hand vs one
--                  curl process per call; and the same in instructions per
--                  call under callgrind, which repeats exactly
--   codec          µs per encode of a 2000-member calendar and per decode of
--                  a 1000-schedule page, vs lua-cjson alone
--   paging         each_schedule over 10,000 and 100,000 schedules: time and
--                  peak memory
--   bulk           calendars() of 10,000 ids with 100 ms of latency:
--                  sequential vs concurrency 10
--   callbacks      POSTs per second through cb:serve vs `return 200`
--                  (bench/callback.lua; alone: `make bench-callback`)
--   ical           export_ical of 10,000 and 100,000 schedules, and
--                  occurrence expansion vs dateutil (bench/ical.lua); only
--                  these, into their section of RESULTS.md: `lua5.4 bench/run.lua ical`
--   mirror         the initial pull of 100,000 schedules into SQLite vs
--                  paging without storing (bench/mirror.lua; alone:
--                  `make bench-mirror`)
package.path = "lua/?.lua;lua/?/init.lua;emulator/?.lua;" .. package.path
package.cpath = "build/lua5.4/?.so;" .. package.cpath

local callback_bench = dofile("bench/callback.lua")
if arg[1] == "callback" then
  callback_bench.record(callback_bench.run())
  return
end
local mirror_bench = dofile("bench/mirror.lua")
if arg[1] == "mirror" then
  mirror_bench.record(mirror_bench.run())
  return
end

local core = require("wecom.core")
local launcher = require("wecom.emulator.launcher")
local cjson = require("cjson")

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 5
local CALLS = tonumber(os.getenv("BENCH_CALLS") or "") or 20000
local CURL_CALLS = math.max(50, math.floor(CALLS / 15))

local util = dofile("bench/util.lua")
local q, capture, lua_env, median = util.q, util.capture, util.lua_env, util.median

local function number_of(out, what)
  local v = tonumber(out:match("([%d.]+)%s*$"))
  if not v then error(what .. " failed: " .. out) end
  return v
end

---------------------------------------------------------------------------
-- servers

local CAL_ID = "wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA"
local REPLY = cjson.encode{ errcode = 0, errmsg = "ok", calendar_list = { {
  cal_id = CAL_ID, summary = "test_summary", color = "#FF3030", description = "test_describe_1", readonly = 1,
  shares = { { userid = "userid2", readonly = 1 }, { userid = "userid1", readonly = 1 } },
} } }
local TOKEN_REPLY = '{"errcode":0,"errmsg":"ok","access_token":"bench-token","expires_in":7200}'

local fixed = assert(launcher.start_nginx({ port = 0 }, function(dir, port)
  return launcher.conf_head(dir, 1) .. ([[
http {
%s
  default_type application/json;
  server {
    listen 127.0.0.1:%d;
    location = /cgi-bin/gettoken { return 200 '%s'; }
    location = /cgi-bin/oa/calendar/get { return 200 '%s'; }
  }
}
]]):format(launcher.http_common(dir), port, TOKEN_REPLY, REPLY)
end))
local FIXED = ("http://127.0.0.1:%d"):format(fixed.port)
local GET_URL = FIXED .. "/cgi-bin/oa/calendar/get?access_token=bench-token"
local BODY = cjson.encode{ cal_id_list = { CAL_ID } }

local emu = assert(launcher.start{ port = 0, corpid = "wwbench", corpsecret = "bench-secret" })
local http = require("wecom.transport.curl").new(assert(require("wecom.options").transport{ timeout = 300 }))

local function control(name, body)
  local status, reply = http:request("POST", emu.base_url .. "/emulator/" .. name, cjson.encode(body or {}))
  assert(status == 200, reply)
  return cjson.decode(reply)
end

-- `make profile`: the hot path under callgrind, kept for callgrind_annotate.
if arg[1] == "profile" then
  local ok, err = pcall(function()
    for _, lua in ipairs{ "luajit", "lua5.4" } do
      local file = ("build/bench/callgrind.%s.out"):format(lua)
      capture(("valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=%s %s bench/client_calls.lua %s %s 2000")
        :format(file, lua_env(lua), q(FIXED), CAL_ID))
      print(("== %s: %s (2000 calls of calendar_get)"):format(lua, file))
      print(capture("callgrind_annotate " .. file .. " | sed -n '/^-* *$/,$p' | head -40"))
    end
  end)
  fixed:stop()
  emu:stop()
  if not ok then error(err, 0) end
  return
end

local ical_bench = dofile("bench/ical.lua")
local ical_ctx = { capture = capture, lua_env = lua_env, q = q, control = control, base_url = emu.base_url }

-- `bench/run.lua ical`: the iCalendar rows only, replacing their section.
if arg[1] == "ical" then
  local ok, res = pcall(ical_bench.run, ical_ctx)
  http:close()
  fixed:stop()
  emu:stop()
  if not ok then error(res, 0) end
  local f = assert(io.open("bench/RESULTS.md", "rb"))
  local text = f:read("*a")
  f:close()
  local at = text:find(ical_bench.TITLE, 1, true)
  local section = table.concat(ical_bench.report(res, "make bench-ical"), "\n")
  if at then -- its sections only; the ones after them stay
    local after = at
    repeat
      after = text:find("\n## ", after + 1, true)
    until not after or not section:find(text:match("\n(## [^\n]*)", after), 1, true)
    text = text:sub(1, at - 1) .. section .. (after and "\n" .. text:sub(after + 1) or "")
  else
    text = text .. "\n" .. section
  end
  f = assert(io.open("bench/RESULTS.md", "wb"))
  f:write(text)
  f:close()
  print(section)
  return
end

local results = {}
local ok, err = pcall(function()
  -------------------------------------------------------------------------
  -- per-call cost
  local contenders = {
    { key = "libcurl", name = "plain C libcurl loop (the floor)",
      cmd = ("build/bench/curl_loop %s %s %d"):format(q(GET_URL), q(BODY), CALLS) },
    { key = "wecom_luajit", name = "wecom, LuaJIT",
      cmd = ("%s bench/client_calls.lua %s %s %d"):format(lua_env("luajit"), q(FIXED), CAL_ID, CALLS) },
    { key = "wecom_lua54", name = "wecom, Lua 5.4",
      cmd = ("%s bench/client_calls.lua %s %s %d"):format(lua_env("lua5.4"), q(FIXED), CAL_ID, CALLS) },
    { key = "luasocket", name = "luasocket + lua-cjson by hand, Lua 5.4",
      cmd = ("%s bench/luasocket_calls.lua %s %s %d"):format(lua_env("lua5.4"), q(GET_URL), CAL_ID, CALLS) },
    { key = "curl_process", name = "one curl process per call",
      shell = ("for i in $(seq %d); do curl -s -o /dev/null -H 'Content-Type: application/json' "
        .. "--data-binary %s %s || exit 1; done"):format(CURL_CALLS, q(BODY), q(GET_URL)) },
  }
  local rates = {}
  for _, c in ipairs(contenders) do rates[c.key] = {} end
  -- Rounds interleave the contenders, each round in another order, so drift
  -- and order effects hit them all alike; the fork-heavy curl processes run
  -- on their own afterwards.
  local inproc = {}
  for _, c in ipairs(contenders) do
    if not c.shell then inproc[#inproc + 1] = c end
  end
  for round = 1, ROUNDS do
    for k = 1, #inproc do
      local c = inproc[(k + round - 2) % #inproc + 1]
      table.insert(rates[c.key], number_of(capture(c.cmd), c.name))
    end
  end
  for _, c in ipairs(contenders) do
    if c.shell then
      for _ = 1, 3 do
        local t0 = core.monotime()
        local done = os.execute(c.shell)
        assert(done == true or done == 0, c.name)
        table.insert(rates[c.key], CURL_CALLS / (core.monotime() - t0))
      end
    end
  end
  results.calls = {}
  for _, c in ipairs(contenders) do
    results.calls[#results.calls + 1] = { name = c.name, key = c.key, rate = median(rates[c.key]) }
  end

  -------------------------------------------------------------------------
  -- instructions per call: callgrind counts them repeatably; the difference
  -- between two call counts removes start-up
  results.instructions = {}
  local function instructions(cmd_for)
    local counts = {}
    for _, n in ipairs{ 300, 1300 } do
      local out = capture(("valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=/dev/null %s")
        :format(cmd_for(n)))
      local refs = out:match("I%s+refs:%s+([%d,]+)")
      assert(refs, out)
      counts[#counts + 1] = tonumber((refs:gsub(",", "")))
    end
    return (counts[2] - counts[1]) / 1000
  end
  for _, c in ipairs(contenders) do
    if not c.shell then
      results.instructions[c.key] = instructions(function(n)
        return (c.cmd:gsub(" " .. CALLS .. "$", " " .. n))
      end)
    end
  end

  -------------------------------------------------------------------------
  -- codec
  results.codec = {}
  for _, lua in ipairs{ "luajit", "lua5.4" } do
    local out = capture(("%s bench/codec.lua"):format(lua_env(lua)))
    local r = {}
    for k, v in out:gmatch("(%S+)%s+([%d.]+)") do r[k] = tonumber(v) end
    assert(r.encode_wecom and r.decode_cjson, out)
    results.codec[lua] = r
  end

  -------------------------------------------------------------------------
  -- paging
  results.paging = {}
  for _, n in ipairs{ 10000, 100000 } do
    control("reset", { corpid = "wwbench", corpsecret = "bench-secret" })
    local cal_id = control("seed_calendars", { count = 1 }).cal_ids[1]
    control("seed_schedules", { cal_id = cal_id, count = n, cancelled_every = 10 })
    local out = capture(("%s bench/paging.lua %s %s"):format(lua_env("luajit"), q(emu.base_url), cal_id))
    local count, secs, peak = out:match("(%d+)%s+([%d.]+)%s+(%d+)")
    assert(tonumber(count) == n, out)
    results.paging[#results.paging + 1] = { n = n, seconds = tonumber(secs), peak_kb = tonumber(peak) }
  end

  -------------------------------------------------------------------------
  -- bulk
  control("reset", { corpid = "wwbench", corpsecret = "bench-secret" })
  local ids = control("seed_calendars", { count = 10000 }).cal_ids
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(table.concat(ids, "\n"), "\n")
  f:close()
  control("faults", { path = "oa/calendar/get", latency_ms = 100, times = -1 })
  local out = capture(("%s bench/bulk.lua %s %s"):format(lua_env("luajit"), q(emu.base_url), file))
  os.remove(file)
  results.bulk = {}
  for c, s in out:gmatch("(%d+)%s+([%d.]+)") do results.bulk[tonumber(c)] = tonumber(s) end
  assert(results.bulk[1] and results.bulk[10], out)
  control("clear_faults")

  results.ical = ical_bench.run(ical_ctx)

  -------------------------------------------------------------------------
  -- callbacks
  results.callback = callback_bench.run()
  results.mirror = mirror_bench.run()
end)
http:close()
fixed:stop()
emu:stop()
if not ok then error(err, 0) end

---------------------------------------------------------------------------
-- report

local function first_line(cmd) return capture(cmd):match("[^\n]*") end

local cpu = capture("grep -m1 'model name' /proc/cpuinfo"):match(":%s*(.*)") or "?"
local mem = tonumber(capture("grep MemTotal /proc/meminfo"):match("(%d+)") or "0") / 1024 / 1024
local lines = {
  "# Benchmark results",
  "",
  "Written by `make bench` (`bench/run.lua`). Every figure was measured in the same run, on the same",
  "machine, against the same local servers; the ratios are what to read; the absolute numbers depend",
  "on the machine.",
  "",
  ("- date: %s"):format(os.date("!%Y-%m-%d %H:%M UTC")),
  ("- command: `make bench` (BENCH_CALLS=%d, BENCH_ROUNDS=%d; medians of the rounds)"):format(CALLS, ROUNDS),
  ("- machine: %s, %s cores, %.0f GiB, %s"):format(cpu, capture("nproc"), mem, capture("uname -srm")),
  ("- software: %s; %s; %s; %s; lua-cjson %s"):format(first_line("luajit -v"), first_line("lua5.4 -v"),
    core.curl_version, first_line("nginx -v"), cjson._VERSION),
  "",
  "## Per-call cost: sequential `calendar_get`",
  "",
  "Against a local nginx that answers a fixed reply (`return 200`), so the client is what is measured.",
  "The C loop is the floor: libcurl alone, one kept-alive handle, nothing decoded.",
  "",
  "| client | calls/s | of the libcurl floor |",
  "| --- | ---: | ---: |",
}
local floor = results.calls[1].rate
for _, c in ipairs(results.calls) do
  lines[#lines + 1] = ("| %s | %.0f | %.2f |"):format(c.name, c.rate, c.rate / floor)
end
local by = {}
for _, c in ipairs(results.calls) do by[c.key] = c.rate end
lines[#lines + 1] = ""
lines[#lines + 1] = "The same calls in user-space instructions per call (callgrind; the kernel's share of a loopback"
lines[#lines + 1] = "round trip, common to all, is not counted, so these ratios are the strict ones):"
lines[#lines + 1] = ""
lines[#lines + 1] = "| client | instructions/call | floor / client |"
lines[#lines + 1] = "| --- | ---: | ---: |"
for _, c in ipairs(results.calls) do
  local n = results.instructions[c.key]
  if n then
    lines[#lines + 1] = ("| %s | %.0f | %.2f |"):format(c.name, n, results.instructions.libcurl / n)
  end
end
lines[#lines + 1] = ""
lines[#lines + 1] = ("Goal: at least 0.8 of the floor; well ahead of luasocket. LuaJIT: %.2f of the floor, %.1fx "
  .. "luasocket; Lua 5.4: %.2f of the floor, %.1fx luasocket."):format(by.wecom_luajit / floor,
  by.wecom_luajit / by.luasocket, by.wecom_lua54 / floor, by.wecom_lua54 / by.luasocket)
lines[#lines + 1] = ""
lines[#lines + 1] = "## Encoding and decoding"
lines[#lines + 1] = ""
lines[#lines + 1] = ("Encoding: a `calendar_update` body with 2000 members (%d bytes of JSON), schema validation "
  .. "included. Decoding: a `get_by_calendar` page of 1000 schedules (%d bytes), errcode checked and, on "
  .. "Lua 5.4, integers restored. lua-cjson alone on the same tables is the floor."):format(
  results.codec.luajit.encode_bytes, results.codec.luajit.page_bytes)
lines[#lines + 1] = ""
lines[#lines + 1] = "| Lua | encode µs | cjson.encode µs | ratio | decode µs | cjson.decode µs | ratio |"
lines[#lines + 1] = "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for _, lua in ipairs{ "luajit", "lua5.4" } do
  local r = results.codec[lua]
  lines[#lines + 1] = ("| %s | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |"):format(lua, r.encode_wecom,
    r.encode_cjson, r.encode_wecom / r.encode_cjson, r.decode_wecom, r.decode_cjson, r.decode_wecom / r.decode_cjson)
end
lines[#lines + 1] = ""
lines[#lines + 1] = "Goal: validation plus encoding within 1.5x of a bare `cjson.encode`."
lines[#lines + 1] = ""
lines[#lines + 1] = "## Paging with `each_schedule` (LuaJIT, from the emulator)"
lines[#lines + 1] = ""
lines[#lines + 1] = "| schedules | seconds | peak memory of the process |"
lines[#lines + 1] = "| ---: | ---: | ---: |"
for _, r in ipairs(results.paging) do
  lines[#lines + 1] = ("| %d | %.2f | %.1f MiB |"):format(r.n, r.seconds, r.peak_kb / 1024)
end
lines[#lines + 1] = ""
lines[#lines + 1] = ("Goal: memory bounded by about one page. Ten times the schedules: %.2fx the peak memory.")
  :format(results.paging[2].peak_kb / results.paging[1].peak_kb)
lines[#lines + 1] = ""
lines[#lines + 1] = "## Bulk: `calendars()` of 10,000 ids (10 requests) with 100 ms of latency (LuaJIT)"
lines[#lines + 1] = ""
lines[#lines + 1] = "| concurrency | seconds |"
lines[#lines + 1] = "| ---: | ---: |"
lines[#lines + 1] = ("| 1 | %.2f |"):format(results.bulk[1])
lines[#lines + 1] = ("| 10 | %.2f |"):format(results.bulk[10])
lines[#lines + 1] = ""
lines[#lines + 1] = ("Concurrency 10 is %.1fx faster. One after another the ten batches cost ten latencies; at once,"
  .. " one latency plus the time the emulator's single worker needs to encode the 10,000 calendars.")
  :format(results.bulk[1] / results.bulk[10])
lines[#lines + 1] = ""
for _, line in ipairs(ical_bench.report(results.ical, "make bench")) do lines[#lines + 1] = line end
lines[#lines + 1] = ""
for _, line in ipairs(callback_bench.lines(results.callback)) do lines[#lines + 1] = line end
for _, line in ipairs(mirror_bench.lines(results.mirror)) do lines[#lines + 1] = line end

local report = table.concat(lines, "\n")
local f = assert(io.open("bench/RESULTS.md", "w"))
f:write(report)
f:close()
print(report)
