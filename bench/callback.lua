-- The callback row of `make bench` (`make bench-callback` runs it alone):
-- genuine callback POSTs per second through cb:serve (signature, AES, XML,
-- the seen store in a shared dict, a handler that counts) against the same
-- nginx answering the same requests with `return 200` (the floor), and with
-- a Lua handler that only reads the query and the body (what any Lua
-- handler costs), side by side, rounds interleaved. Every message is new,
-- so none is skipped as seen; the count of handled messages is checked.
local core = require("wecom.core")
local launcher = require("wecom.emulator.launcher")

local M = {}

local TOKEN = "benchToken"
local KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
local CORPID = "wwbench"

local REQUESTS = tonumber(os.getenv("BENCH_CALLBACKS") or "") or 3000
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 9
local CONCURRENCY = 16
local WORKERS = 1

local function cwd()
  local p = assert(io.popen("pwd"))
  local dir = p:read("*l")
  p:close()
  return dir
end

local function start_nginx()
  return assert(launcher.start_nginx({ port = 0 }, function(dir, port)
    return launcher.conf_head(dir, WORKERS) .. ([[
http {
%s
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_shared_dict seen 64m;
  lua_shared_dict handled 1m;
  init_by_lua_block {
    local callback = require("wecom.callback")
    cb = assert(callback.new{ token = %q, encoding_aes_key = %q, receiveid = %q, seen = ngx.shared.seen })
    count = function() ngx.shared.handled:incr("n", 1, 0) end
  }
  server {
    listen 127.0.0.1:%d;
    location = /floor { return 200 "success"; }
    location = /lua {
      content_by_lua_block {
        local args = ngx.req.get_uri_args()
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        ngx.print(args.nonce and body and "success" or "fail")
      }
    }
    location = /callback { content_by_lua_block { cb:serve(count) } }
    location = /handled { content_by_lua_block { ngx.print(ngx.shared.handled:get("n") or 0) } }
  }
}
]]):format(launcher.http_common(dir), cwd(), TOKEN, KEY, CORPID, port)
  end))
end

-- n distinct modify_schedule events, sealed now: {url_query, body}
local function messages(box, round, n)
  local list = {}
  local timestamp = tostring(os.time())
  for i = 1, n do
    local xml = ("<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>"
      .. "<CreateTime>%s</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[modify_schedule]]>"
      .. "</Event><CalId><![CDATA[wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA]]></CalId><ScheduleId><![CDATA[r%d-%d]]>"
      .. "</ScheduleId></xml>"):format(CORPID, timestamp, round, i)
    local encrypt, signature, nonce = box:seal(xml, timestamp)
    list[i] = {
      query = ("?msg_signature=%s&timestamp=%s&nonce=%s"):format(signature, timestamp, nonce),
      body = ("<xml><ToUserName><![CDATA[%s]]></ToUserName><Encrypt><![CDATA[%s]]></Encrypt>"
        .. "<AgentID><![CDATA[1000002]]></AgentID></xml>"):format(CORPID, encrypt),
    }
  end
  return list
end

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The nginx worker's pid (the master's only child, forked soon after start).
local function worker_pid(master)
  for _ = 1, 100 do
    local children = read_file(("/proc/%d/task/%d/children"):format(master, master)) or ""
    local pid = tonumber(children:match("%d+"))
    if pid then return pid end
    core.sleep(0.02)
  end
end

-- Nanoseconds the process has run on a CPU (Linux schedstat): unlike
-- wall-clock rates, not changed by what else the machine is doing.
local function cpu_ns(pid)
  return tonumber((read_file(("/proc/%d/schedstat"):format(pid)) or ""):match("^(%d+)"))
end

-- Requests per second, and the worker's CPU µs per request.
local function fire(http, base, path, list, worker)
  local reqs = {}
  for i, m in ipairs(list) do reqs[i] = { method = "POST", url = base .. path .. m.query, body = m.body } end
  local cpu0 = cpu_ns(worker)
  local t0 = core.monotime()
  local results = http:request_many(reqs, CONCURRENCY)
  local took = core.monotime() - t0
  local cpu1 = cpu_ns(worker)
  for _, r in ipairs(results) do
    assert(r.status == 200 and r.body == "success", ("%s answered %s %s"):format(path, tostring(r.status),
      tostring(r.body or r.message)))
  end
  return #list / took, (cpu1 - cpu0) / 1000 / #list
end

local median = dofile("bench/util.lua").median

function M.run()
  local nginx = start_nginx()
  local http = require("wecom.transport.curl").new(assert(require("wecom.options").transport{ timeout = 60 }))
  local box = core.callback_box(TOKEN, KEY, CORPID)
  local base = ("http://127.0.0.1:%d"):format(nginx.port)
  local ok, result = pcall(function()
    local worker = assert(worker_pid(nginx.pid), "no nginx worker")
    local PATHS = { floor = "/floor", lua = "/lua", serve = "/callback" }
    local ORDER = { "floor", "lua", "serve" }
    local rate, cpu = {}, {}
    for _, kind in ipairs(ORDER) do rate[kind], cpu[kind] = {}, {} end
    fire(http, base, "/callback", messages(box, 0, 200), worker) -- warm: connections, JIT, the shared dict
    fire(http, base, "/lua", messages(box, 0, 200), worker)
    for round = 1, ROUNDS do
      local list = messages(box, round, REQUESTS)
      -- each round in another order, so drift hits all alike
      for k = 1, #ORDER do
        local kind = ORDER[(k + round - 2) % #ORDER + 1]
        local r, c = fire(http, base, PATHS[kind], list, worker)
        table.insert(rate[kind], r)
        table.insert(cpu[kind], c)
      end
    end
    local _, handled = http:request("GET", base .. "/handled")
    assert(tonumber(handled) == 200 + ROUNDS * REQUESTS, "handled " .. tostring(handled))
    local out = { handled = tonumber(handled) }
    for _, kind in ipairs(ORDER) do
      out[kind], out[kind .. "_cpu"] = median(rate[kind]), median(cpu[kind])
    end
    return out
  end)
  http:close()
  nginx:stop()
  if not ok then error(result, 0) end
  return result
end

function M.lines(r)
  return {
    "## Callbacks: POSTs per second through `cb:serve`",
    "",
    ("Genuine, distinct, encrypted `modify_schedule` events (%d per round, %d rounds, medians) POSTed at"
      .. " concurrency %d by libcurl (Lua 5.4) to one nginx worker (LuaJIT): `cb:serve` checks the signature,"
      .. " decrypts, parses, marks the message in an `ngx.shared.DICT` and calls a handler that counts (%d"
      .. " handled, every one); the floor is the same nginx answering the same requests with `return 200`."):format(
      REQUESTS, ROUNDS, CONCURRENCY, r.handled),
    "",
    "| location | requests/s | of the floor | worker CPU µs/request | floor / this |",
    "| --- | ---: | ---: | ---: | ---: |",
    ("| `return 200 \"success\"` (the floor) | %.0f | 1.00 | %.1f | 1.00 |"):format(r.floor, r.floor_cpu),
    ("| a Lua handler that reads the query and the body, nothing more | %.0f | %.2f | %.1f | %.2f |"):format(
      r.lua, r.lua / r.floor, r.lua_cpu, r.floor_cpu / r.lua_cpu),
    ("| `cb:serve(handler)` | %.0f | %.2f | %.1f | %.2f |"):format(r.serve, r.serve / r.floor, r.serve_cpu,
      r.floor_cpu / r.serve_cpu),
    "",
    "The load generator shares the machine's cores with nginx, so requests per second also measure it;"
      .. " the worker's own CPU time per request (`/proc/<pid>/schedstat`) is the steadier figure, and"
      .. " what a saturated worker's rate follows. Of what `cb:serve` adds to `return 200`, the part"
      .. " any Lua handler pays (running Lua, reading the body) is the middle row.",
    "",
    ("Goal: at least 0.5 of the floor. Measured: %.2f in requests per second, %.2f in worker CPU"
      .. " (%.2f of the bare Lua handler's). Run this row alone with `make bench-callback`."):format(
      r.serve / r.floor, r.floor_cpu / r.serve_cpu, r.lua_cpu / r.serve_cpu),
    "",
  }
end

-- `make bench-callback`: this row alone, replacing its section of RESULTS.md.
function M.record(r)
  dofile("bench/util.lua").record(M.lines(r), "## Callbacks: ")
end

return M
