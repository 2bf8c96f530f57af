-- The library inside a real nginx (Debian's nginx-light with its Lua module,
-- LuaJIT, 2 workers) against the emulator: handlers never block a worker,
-- the shared dict gives one token to all workers, and TLS is verified.
local cjson = require("cjson")
local core = require("wecom.core")
local emulator = require("support.emulator")
local openresty = require("support.openresty")
local tls = require("support.tls")
local session = require("support.session")

describe("OpenResty", function()
  local certs, emu, stale, nginx, http, cal_id

  setup(function()
    certs = tls.make()
    emu = emulator.start{ tls = { cert = certs.cert, key = certs.key } }
    stale = emulator.start{ keepalive_timeout = 1 }
    nginx = openresty.start{ emu = emu, ca = certs.ca, stale = stale }
    http = session{ timeout = 60 }
  end)

  teardown(function()
    http:close()
    nginx:stop()
    stale:stop()
    emu:stop()
    certs.remove()
  end)

  before_each(function()
    emu:reset()
    assert.equal(200, (http:request("GET", nginx.base_url .. "/flush")))
    cal_id = assert(emu:client():calendar_add{ calendar = { summary = "s", color = "#000000" } }).cal_id
  end)

  -- n concurrent GETs of path, each on a new connection (the kernel spreads
  -- new ones over the workers; kept-alive ones may all be one worker's);
  -- returns the decoded replies and the time taken
  local function fire(n, path)
    local reqs = {}
    for i = 1, n do reqs[i] = { method = "GET", url = nginx.base_url .. path, idempotent = false } end
    local t0 = core.monotime()
    local results = http:request_many(reqs, math.min(n, 64))
    local elapsed = core.monotime() - t0
    local replies = {}
    for i, r in ipairs(results) do
      assert.equal(200, r.status, r.message or r.body)
      replies[i] = cjson.decode(r.body)
    end
    return replies, elapsed
  end

  local function all_ok(replies)
    for _, r in ipairs(replies) do assert.is_true(r.ok, cjson.encode(r.err)) end
  end

  local function pids(replies)
    local set, n = {}, 0
    for _, r in ipairs(replies) do
      if not set[r.pid] then n = n + 1 end
      set[r.pid] = true
    end
    return n
  end

  -- Bursts of fire(n, path) until one reached both workers: the kernel
  -- spreads new connections over the workers' sockets unevenly, and now and
  -- then a whole burst lands on one (here about one in fifteen). fresh() runs
  -- before each burst: it undoes what the last one left (a token in the dict)
  -- and reads the counts the burst is judged by.
  local function fire_both(n, path, fresh)
    for _ = 1, 10 do
      local counts = fresh()
      local replies, elapsed = fire(n, path)
      if pids(replies) == 2 then return replies, elapsed, counts end
    end
    error(("10 bursts of %d requests each reached one worker only"):format(n))
  end

  it("uses cosockets in request handlers and libcurl in init_worker", function()
    local replies = fire(1, "/calendar?cal_id=" .. cal_id)
    assert.equal("ngx", replies[1].transport)
    all_ok(replies)
    local init = fire(1, "/init_worker")[1].result
    assert.equal("curl", init.transport)
    assert.equal(90457, init.errcode) -- the call from init_worker reached the emulator
  end)

  it("never blocks a worker: 40 requests with 400 ms latency take about one latency", function()
    fire(4, "/calendar?cal_id=" .. cal_id) -- tokens and connections warm
    emu:fault{ path = "oa/calendar/get", latency_ms = 400, times = -1 }
    local replies, elapsed = fire_both(40, "/calendar?cal_id=" .. cal_id, function() end)
    all_ok(replies)
    -- one after another on 2 workers this would take 8 s
    assert.is_true(elapsed < 2, ("40 requests took %.2f s"):format(elapsed))

    -- the same through the blocking libcurl transport: a worker serves one at a time
    fire(2, "/calendar?client=curl&cal_id=" .. cal_id)
    local _, blocked = fire(10, "/calendar?client=curl&cal_id=" .. cal_id)
    assert.is_true(blocked > 1.2, ("blocking took only %.2f s"):format(blocked))
    emu:clear_faults()
  end)

  it("backs off with ngx.sleep: waiting requests don't hold their worker", function()
    fire(4, "/calendar?client=backoff&cal_id=" .. cal_id) -- tokens first
    -- every first attempt answers -1: each request waits 0.3..0.6 s, then succeeds
    local replies, elapsed = fire_both(20, "/calendar?client=backoff&cal_id=" .. cal_id, function()
      emu:clear_faults()
      emu:fault{ path = "oa/calendar/get", errcode = -1, times = 20 }
    end)
    all_ok(replies)
    -- blocking sleeps would make each worker wait its ten requests' back-offs in turn: 3..6 s
    assert.is_true(elapsed < 1.8, ("20 back-offs took %.2f s"):format(elapsed))
  end)

  it("shares one token between the workers through ngx.shared.DICT", function()
    -- a slow gettoken, so the 40 requests all find no token and overlap
    emu:fault{ path = "gettoken", latency_ms = 300, times = -1 }
    local replies, _, before = fire_both(40, "/calendar?cal_id=" .. cal_id, function()
      assert.equal(200, (http:request("GET", nginx.base_url .. "/flush")))
      -- the spec's own client made the calendar: its gettoken is not counted
      return { gettoken = emu:calls("gettoken"), get = emu:calls("oa/calendar/get") }
    end)
    all_ok(replies)
    assert.equal(1, emu:calls("gettoken") - before.gettoken)
    assert.equal(40, emu:calls("oa/calendar/get") - before.get)
  end)

  it("refreshes a token that expires mid-load once", function()
    all_ok(fire(4, "/calendar?cal_id=" .. cal_id))
    local before = emu:calls("gettoken")
    emu:fault{ path = "oa/calendar/get", latency_ms = 300, times = -1 }
    emu:fault{ path = "oa/calendar/get", expire_tokens = true, after = 10, times = 1 }
    emu:fault{ path = "gettoken", latency_ms = 100, times = -1 }
    local replies = fire(40, "/calendar?cal_id=" .. cal_id)
    all_ok(replies)
    assert.is_true((emu:stats().errors["42001"] or 0) >= 1)
    assert.equal(1, emu:calls("gettoken") - before)
    emu:clear_faults()
  end)

  it("verifies TLS: refused without trust, works with lua_ssl_trusted_certificate", function()
    for _, untrusted in ipairs(fire(6, "/tls_untrusted?cal_id=" .. cal_id)) do
      assert.is_false(untrusted.ok)
      assert.equal("transport", untrusted.err.kind)
      assert.equal("tls", untrusted.err.reason, untrusted.err.message)
    end
    assert.equal(0, emu:calls("oa/calendar/get"))
    local trusted = fire(1, "/tls_trusted?cal_id=" .. cal_id)[1]
    assert.is_true(trusted.ok, cjson.encode(trusted.err))
    assert.equal("ngx", trusted.transport)
  end)

  it("runs bulk calls at once in light threads: ten batches take about one latency", function()
    local ids = emu:seed_calendars(10000)
    all_ok(fire(1, "/calendar?cal_id=" .. ids[1]))
    emu:fault{ path = "oa/calendar/get", latency_ms = 300, times = -1 }
    local before = emu:calls("oa/calendar/get")
    local status, body = http:request("POST", nginx.base_url .. "/bulk", cjson.encode{ ids = ids, concurrency = 10 })
    assert.equal(200, status)
    local reply = cjson.decode(body)
    assert.is_nil(reply.err, body)
    assert.equal("ngx", reply.transport)
    assert.equal(10000, reply.count)
    assert.equal(ids[10000], reply.last)
    assert.equal(10, emu:calls("oa/calendar/get") - before)
    assert.is_true(reply.took < 1.2, ("took %.2f s"):format(reply.took))
    emu:clear_faults()
  end)

  it("meets hostile replies over cosockets with the right errors, in time", function()
    local function call(fault)
      emu:clear_faults()
      if fault then
        fault.path, fault.times = "oa/calendar/get", -1
        emu:fault(fault)
      end
      local t0 = core.monotime()
      local reply = fire(1, "/calendar?client=hostile&cal_id=" .. cal_id)[1]
      return reply, core.monotime() - t0
    end
    assert.is_true(call().ok) -- token fetched, connection pooled
    local cases = {
      { { malformed = true }, "decode" },
      { { status = 502 }, "http" },
      { { short_body = true }, "transport", "partial" },
      { { close = true }, "transport", "empty" },
      { { hang = 5 }, "transport", "timeout" },
      { { huge_bytes = 300 * 1000 * 1000 }, "transport", "too_large" },
      { { huge_bytes = 300 * 1000 * 1000, chunked = true }, "transport", "too_large" },
      { { truncated = true }, "decode" },
      { { trickle_ms = 200 }, "transport", "timeout" },
      { { raw = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}" }, "transport", "protocol" },
      { { raw = "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n{}" }, "transport", "protocol" },
      { { raw = "HTTP/1.1 204 No Content\r\n\r\n" }, "http" },
      { { raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" }, "transport", "protocol" },
    }
    for _, case in ipairs(cases) do
      local reply, took = call(case[1])
      assert.is_false(reply.ok, cjson.encode(case[1]))
      assert.equal(case[2], reply.err.kind, cjson.encode(case[1]) .. " " .. reply.err.message)
      if case[3] then assert.equal(case[3], reply.err.reason, reply.err.message) end
      assert.is_true(took < 3, ("%s took %.2f s"):format(cjson.encode(case[1]), took))
      assert.is_true(call().ok, "not usable after " .. cjson.encode(case[1]))
    end
    local refused = fire(1, "/calendar?client=refused&cal_id=" .. cal_id)[1]
    assert.equal("connect", refused.err.reason)
  end)

  it("bulk calls in light threads fail cleanly on a broken reply, never raise", function()
    local ids = emu:seed_calendars(3)
    emu:fault{ path = "oa/calendar/get", raw = "HTTP/1.1 200 OK\r\nContent-Length: 1.5\r\n\r\n{}", times = -1 }
    local status, body = http:request("POST", nginx.base_url .. "/bulk", cjson.encode{ ids = ids, concurrency = 3 })
    assert.equal(200, status, body)
    local reply = cjson.decode(body)
    assert.equal("transport", reply.err.kind)
    emu:clear_faults()
  end)

  it("survives a server that drops idle kept-alive connections", function()
    assert.is_true(fire(1, "/add?client=stale")[1].ok)
    core.sleep(1.5) -- the server closes its idle connections after 1 s
    for _, reply in ipairs(fire(4, "/add?client=stale")) do
      assert.is_true(reply.ok, cjson.encode(reply.err))
    end
  end)

  it("never sends calendar_add again when a kept-alive connection closes before any reply", function()
    -- the second call of the handler reuses the first one's connection, which
    -- the server closes without answering: WeCom may have applied it
    local before = stale:calls("oa/calendar/add")
    stale:fault{ path = "oa/calendar/add", close = true, after = 1, times = 1 }
    local reply = fire(1, "/add2?client=stale")[1]
    assert.is_false(reply.ok)
    assert.equal("empty", reply.err.reason, reply.err.message)
    assert.equal(2, stale:calls("oa/calendar/add") - before)
  end)

  it("shares a wrong secret's 40001 between workers: one gettoken for 40 requests", function()
    -- a slow gettoken, so the 40 requests overlap (a burst of quick ones
    -- under load went all to one worker, ten times running)
    emu:fault{ path = "gettoken", latency_ms = 300, times = -1 }
    local replies, _, before = fire_both(40, "/calendar?client=badsecret&cal_id=" .. cal_id, function()
      assert.equal(200, (http:request("GET", nginx.base_url .. "/flush"))) -- the 40001 remembered
      return emu:calls("gettoken")
    end)
    for _, r in ipairs(replies) do assert.equal(40001, r.err.errcode) end
    assert.equal(1, emu:calls("gettoken") - before)
  end)

  describe("examples/nginx.conf", function()
    local example

    setup(function() example = require("support.example").start(emu) end)

    teardown(function()
      assert.is_true(example:stop())
      assert.is_nil(require("wecom.emulator.launcher").running(example.dir))
    end)

    local function get(path)
      local status, body = http:request("GET", example.base_url .. path)
      return status, cjson.decode(body)
    end

    it("lists a calendar's schedules as JSON, a page at a time", function()
      emu:seed(cal_id, 150)
      local status, page = get("/schedules?limit=100&cal_id=" .. cal_id)
      assert.equal(200, status)
      assert.equal(100, #page.schedules)
      assert.equal("seeded schedule 1", page.schedules[1].summary)
      assert.equal(100, page.next_offset)
      status, page = get("/schedules?limit=100&offset=100&cal_id=" .. cal_id)
      assert.equal(200, status)
      assert.equal(50, #page.schedules)
      local body
      status, body = http:request("GET", example.base_url .. "/schedules?offset=150&cal_id=" .. cal_id)
      assert.equal(200, status)
      assert.truthy(body:find('"schedules":[]', 1, true), body)
    end)

    it("answers errors as JSON: 400 for bad input, 502 for WeCom's", function()
      local status, res = get("/schedules")
      assert.equal(400, status)
      assert.equal("validation", res.error.kind)
      status, res = get("/schedules?cal_id=no-such-calendar")
      assert.equal(502, status)
      assert.equal(90457, res.error.errcode)
    end)
  end)
end)
