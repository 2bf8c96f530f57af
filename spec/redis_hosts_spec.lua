-- Many hosts, one Redis: two nginx instances with two workers each
-- (lua-resty-redis over cosockets, found as nginx.redis in one and as
-- resty.redis in the other) and three plain-Lua processes (lua5.1, lua5.4,
-- luajit: redis-lua over luasocket), all calling the emulator at once with
-- a slow gettoken. They fetch one token between them, refresh a rejected
-- one once, cost no Redis command per call, and serve every call while
-- Redis is killed, hanging or back.
--
-- The rounds run in order: the first needs hosts that hold no token yet.
local cjson = require("cjson")
local emulator = require("support.emulator")
local hosts = require("support.hosts")
local redis = require("support.redis")
local session = require("support.session")
local shell = require("support.shell")

local TIMEOUT, COOLDOWN = 0.3, 1 -- the hosts' Redis timeout and cooldown
local SLOW = 0.5                 -- seconds gettoken takes in the timed rounds

-- WECOM_REDIS_FIGURES=1 prints the figures (gettoken counts, commands, latencies).
local function figure(...)
  if os.getenv("WECOM_REDIS_FIGURES") then io.stderr:write("[figures] ", string.format(...), "\n") end
end

describe("many hosts sharing tokens through Redis", function()
  local emu, server, http, nginxes, luas = nil, nil, nil, {}, {}
  local seq = 0

  setup(function()
    hosts.prepare()
    emu = emulator.start()
    server = redis.start()
    http = session{ timeout = 60 }
    local cal_id = assert(emu:client():calendar_add{ calendar = { summary = "hosts", color = "#000000" } }).cal_id
    local conf = { base_url = emu.base_url, corpid = emu.corpid, corpsecret = emu.corpsecret, cal_id = cal_id,
      redis = { port = server.port, timeout = TIMEOUT, cooldown = COOLDOWN } }
    nginxes[1] = hosts.nginx(conf, "debian")
    nginxes[2] = hosts.nginx(conf, "openresty")
    for i, lua in ipairs(hosts.LUAS) do luas[i] = hosts.lua(lua, conf) end
  end)

  teardown(function()
    for _, h in ipairs(luas) do h:stop() end
    for _, n in ipairs(nginxes) do n:stop() end
    if http then http:close() end
    if server then server:stop() end
    if emu then emu:stop() end
  end)

  local function get(url)
    local status, body = http:request("GET", url)
    assert(status == 200, ("GET %s: %s %s"):format(url, tostring(status), tostring(body)))
    return cjson.decode(body)
  end

  -- One round: every plain-Lua host makes `k` calls one after another,
  -- every nginx worker `k` at once from its timer, and `per_nginx` requests
  -- go to each nginx, all at the same time. Returns every call's
  -- {who, pid, took, ok, err}, and how many processes took part.
  local function round(k, per_nginx)
    seq = seq + 1
    for _, h in ipairs(luas) do h:send(("call %d %d"):format(k, seq)) end
    for _, n in ipairs(nginxes) do get(("%s/round?n=%d&calls=%d"):format(n.base_url, seq, k)) end
    local requests = {}
    for _, n in ipairs(nginxes) do
      for _ = 1, per_nginx do requests[#requests + 1] = { method = "GET", url = n.base_url .. "/call" } end
    end
    local calls, processes = {}, {}
    local function add(who, r)
      r.who = who
      calls[#calls + 1] = r
      processes[who .. ":" .. tostring(r.pid)] = true
    end
    for i, reply in ipairs(http:request_many(requests, #requests)) do
      assert(reply.status == 200, tostring(reply.message or reply.body))
      add("nginx" .. (i <= per_nginx and 1 or 2), cjson.decode(reply.body))
    end
    for _, h in ipairs(luas) do
      for _, r in ipairs(h:answer(seq).results) do add(h.lua, r) end
    end
    for i, n in ipairs(nginxes) do
      local workers
      for _ = 1, 600 do
        workers = get(("%s/results?n=%d"):format(n.base_url, seq))
        local count = 0
        for _ in pairs(workers) do count = count + 1 end
        if count == 2 then break end
        shell.run("sleep 0.05")
      end
      for _, list in pairs(workers) do
        for _, r in ipairs(list) do add("nginx" .. i, r) end
      end
    end
    local count = 0
    for _ in pairs(processes) do count = count + 1 end
    return calls, count
  end

  local function all_ok(calls)
    for _, c in ipairs(calls) do
      assert(c.ok, ("%s pid %s: %s"):format(tostring(c.who), tostring(c.pid), cjson.encode(c.err or {})))
    end
  end

  local function slowest(calls)
    local max = 0
    for _, c in ipairs(calls) do max = math.max(max, c.took) end
    return max
  end

  it("fetch one token between them: first calls of 2 nginx x 2 workers and 3 Luas at once", function()
    emu:fault{ path = "gettoken", latency_ms = 1000, times = -1 }
    local before = emu:calls("gettoken")
    local calls, processes = round(2, 4)
    emu:clear_faults()
    all_ok(calls)
    -- 2 nginx x 2 workers, 3 plain-Lua processes
    assert.equal(7, processes)
    assert.equal(1, emu:calls("gettoken") - before)
    figure("first calls: %d calls from %d processes, %d gettoken", #calls, processes, emu:calls("gettoken") - before)
  end)

  it("refresh a token WeCom rejected once between them", function()
    all_ok((round(1, 2)))
    emu:fault{ path = "gettoken", latency_ms = SLOW * 1000, times = -1 }
    emu:invalidate_tokens()
    local before, rejected = emu:calls("gettoken"), emu:stats().errors["40014"] or 0
    local calls, processes = round(2, 4)
    emu:clear_faults()
    all_ok(calls)
    assert.equal(7, processes)
    assert.equal(1, emu:calls("gettoken") - before)
    -- every process saw the old token rejected, and dropped it
    assert.is_true((emu:stats().errors["40014"] or 0) - rejected >= 7)
    figure("refresh: %d calls, %d gettoken", #calls, emu:calls("gettoken") - before)
  end)

  it("send no Redis command per call once warm: 200 calls from nginx and from plain Lua", function()
    all_ok((round(1, 2)))
    server:reset_stats()
    local list = get(nginxes[1].base_url .. "/calls?n=200")
    assert.equal(200, #list)
    all_ok(list)
    local from_nginx = server:commandstats()
    assert.same({}, from_nginx)
    seq = seq + 1
    luas[2]:send(("call 200 %d"):format(seq))
    local answer = luas[2]:answer(seq)
    all_ok(answer.results)
    local from_lua = server:commandstats()
    assert.same({}, from_lua)
    local function total(stats)
      local n = 0
      for _, calls in pairs(stats) do n = n + calls end
      return n
    end
    figure("200 warm calls: %d Redis commands from an nginx worker, %d from %s", total(from_nginx), total(from_lua),
      luas[2].lua)
  end)

  it("leave Redis alone where nginx has no cosockets, without counting it as a failure", function()
    for _ = 1, 4 do
      local probe = get(nginxes[1].base_url .. "/phase")
      assert.is_nil(probe.res)
      assert.truthy(probe.err:find("no cosockets in nginx's set phase", 1, true), probe.err)
      assert.is_not.equal("down", probe.status.state)
      assert.equal(0, probe.status.failures)
      assert.is_true(probe.status.skipped >= 1)
    end
  end)

  it("serve every call while Redis is killed or hangs, within its timeout; share again when it is back", function()
    emu:fault{ path = "gettoken", latency_ms = SLOW * 1000, times = -1 }
    -- Redis up: what a refresh costs
    emu:invalidate_tokens()
    local up = round(2, 4)
    all_ok(up)
    -- killed in the middle of a refresh (while the holder waits for gettoken)
    emu:invalidate_tokens()
    shell.run(("(sleep %.2f; kill -KILL %d) >/dev/null 2>&1 &"):format(SLOW / 2, server.pid))
    local killed = round(2, 4)
    all_ok(killed)
    -- down: every process on its own
    emu:invalidate_tokens()
    local before = emu:calls("gettoken")
    local down, processes = round(2, 4)
    all_ok(down)
    local alone = emu:calls("gettoken") - before
    assert.is_true(alone <= processes)
    figure("Redis down: %d calls from %d processes, %d gettoken (at most one per process)", #down, processes, alone)
    -- hanging: back after the cooldown, then stopped (SIGSTOP): each
    -- process waits one timeout for it, then goes on alone
    server:restart()
    shell.run(("sleep %.2f"):format(COOLDOWN + 0.2))
    server:pause()
    emu:invalidate_tokens()
    local ok, hung = pcall(round, 2, 4)
    server:resume()
    assert(ok, hung)
    all_ok(hung)
    -- the timeout, not the fetch's time limit (tens of seconds), bounds the wait
    local base = slowest(up)
    for name, calls in pairs{ killed = killed, down = down, hung = hung } do
      local extra = slowest(calls) - base
      assert.is_true(extra < TIMEOUT + 1, ("%s: %.2f s more than with Redis up"):format(name, extra))
    end
    figure("refresh with gettoken %.1f s: slowest call %.3f s with Redis up; %.3f s killed mid-refresh, "
      .. "%.3f s down, %.3f s hanging (timeout %.1f s)", SLOW, base, slowest(killed), slowest(down), slowest(hung),
      TIMEOUT)
    -- back: after the cooldown a refresh is shared again
    shell.run(("sleep %.2f"):format(COOLDOWN + 0.2))
    emu:invalidate_tokens()
    before = emu:calls("gettoken")
    local back
    back, processes = round(2, 4)
    emu:clear_faults()
    all_ok(back)
    assert.equal(7, processes)
    assert.equal(1, emu:calls("gettoken") - before)
    -- what happened is in each nginx's log, without secrets
    for _, n in ipairs(nginxes) do
      local log = n:error_log()
      assert.truthy(log:find("wecom redis cache: 127.0.0.1:" .. server.port .. " db 0 failed", 1, true), log)
      assert.truthy(log:find("is back: tokens are shared again", 1, true), log)
      assert.falsy(log:find(emu.corpsecret, 1, true))
    end
    local status = get(nginxes[1].base_url .. "/status")
    assert.equal("up", status.state)
  end)
end)

-- examples/nginx.conf as it is on two hosts with WECOM_REDIS_HOST set,
-- behind a load balancer that sends each delivery of WeCom's to the next
-- host: a message delivered to both is handled once.
describe("callbacks on two hosts sharing the seen store in Redis", function()
  local TOKEN = "emulatorCallbackToken1"
  local KEY = "Xk1mZ0p5cW1KcU9ZbWh3Rk1sU2d0b3J3c1RkY2xw0a1"
  local example_nginx = require("support.example")
  local launcher = require("wecom.emulator.launcher")
  local emu, server, http, examples, balancer = nil, nil, nil, {}, nil

  setup(function()
    hosts.prepare()
    emu = emulator.start()
    server = redis.start()
    http = session{ timeout = 60 }
    for i = 1, 2 do
      examples[i] = example_nginx.start(emu, { WECOM_CALLBACK_TOKEN = TOKEN, WECOM_CALLBACK_AES_KEY = KEY,
        WECOM_REDIS_HOST = "127.0.0.1", WECOM_REDIS_PORT = tostring(server.port),
        -- lua-resty-redis where Debian's lua-nginx-redis puts it: on LuaJIT's default path
        LUA_PATH = hosts.resty_path("debian") .. ";" })
    end
    balancer = assert(launcher.start_nginx({ port = 0 }, function(dir, port)
      return launcher.conf_head(dir, 1) .. ([[
http {
%s
  log_format upstreams '$request_method $upstream_addr $upstream_status';
  upstream hosts { server 127.0.0.1:%d; server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d;
    access_log %s/upstreams.log upstreams;
    location / { proxy_pass http://hosts; proxy_next_upstream off; }
  }
}
]]):format(launcher.http_common(dir), examples[1].port, examples[2].port, port, dir)
    end))
    balancer.base_url = ("http://127.0.0.1:%d"):format(balancer.port)
  end)

  teardown(function()
    if balancer then balancer:stop() end
    for _, e in ipairs(examples) do e:stop() end
    if http then http:close() end
    if server then server:stop() end
    if emu then emu:stop() end
  end)

  local function changes(example)
    local status, body = http:request("GET", example.base_url .. "/changes")
    assert.equal(200, status)
    return cjson.decode(body)
  end

  local function upstreams()
    local f = io.open(balancer.dir .. "/upstreams.log")
    local seen = {}
    for line in f:lines() do
      local port = line:match("^POST 127%.0%.0%.1:(%d+)")
      if port then seen[port] = (seen[port] or 0) + 1 end
    end
    f:close()
    return seen
  end

  it("handles a message delivered to both hosts once", function()
    emu:control("callback", { url = balancer.base_url .. "/wecom/callback", token = TOKEN, encoding_aes_key = KEY })
    local client = emu:client()
    local cal_id = assert(client:calendar_add{ calendar = { summary = "team", color = "#336699" } }).cal_id
    local sid = assert(client:schedule_add{ schedule = { cal_id = cal_id, start_time = 1800000000,
      end_time = 1800003600, summary = "review" } }).schedule_id
    -- (members of their own: the same member's same event in the same second is one message)
    local steps = {
      -- one after the other: the second host finds it done
      { event = "modify_schedule", schedule_id = sid, schedule = { summary = "moved" }, deliver = 2,
        userid = "zhangsan" },
      -- at the same moment: one host handles it, the other answers busy and WeCom comes back
      { event = "modify_schedule", schedule_id = sid, schedule = { summary = "moved again" }, deliver = 2,
        concurrent = true, userid = "lisi" },
      { event = "delete_schedule", schedule_id = sid, deliver = 4, concurrent = true, userid = "wangwu" },
    }
    for _, step in ipairs(steps) do
      local reply = emu:control("act", step)
      for _, d in ipairs(reply.deliveries) do assert.equal(200, d.status, cjson.encode(reply)) end
    end
    local got = {}
    for _, example in ipairs(examples) do
      for _, change in ipairs(changes(example)) do got[#got + 1] = change end
    end
    table.sort(got, function(a, b) return a.create_time < b.create_time or
      (a.create_time == b.create_time and a.event < b.event) end)
    assert.equal(3, #got, cjson.encode(got))
    local events = {}
    for _, change in ipairs(got) do events[change.event] = (events[change.event] or 0) + 1 end
    assert.same({ modify_schedule = 2, delete_schedule = 1 }, events)
    -- both hosts got deliveries
    local seen = upstreams()
    local one, two = seen[tostring(examples[1].port)] or 0, seen[tostring(examples[2].port)] or 0
    assert.is_true(one >= 2 and two >= 2, cjson.encode(seen))
    -- the messages' marks are in Redis, nothing of the secrets
    local keys = server:dump()
    local marks = 0
    for k, v in pairs(keys) do
      if k:find("^wecom:wecom:callback:") then
        marks = marks + 1
        assert.equal("done", v)
      end
      assert.falsy(k:find(emu.corpsecret, 1, true) or v:find(emu.corpsecret, 1, true))
    end
    assert.equal(3, marks)
    -- and the hosts' token is there too: one gettoken for both (and one for this spec's own client)
    assert.is_string(keys["wecom:" .. require("wecom.token").cache_key(emu.base_url, emu.corpid, emu.corpsecret)])
    assert.equal(2, emu:calls("gettoken"))
    for _, example in ipairs(examples) do
      local status, body = http:request("GET", example.base_url .. "/redis")
      assert.equal(200, status)
      -- the worker that answers may not have needed Redis yet: up or unknown, never a failure
      local view = cjson.decode(body)
      assert.is_not.equal("down", view.state)
      assert.equal(0, view.failures)
    end
  end)
end)
