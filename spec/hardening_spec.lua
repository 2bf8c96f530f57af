-- Issue 11, tried as an attacker and a misbehaving network would: each
-- numbered defect has its regression test here, on the libcurl transport in
-- this process and, where the transport matters, on cosockets in nginx.
local cjson = require("cjson")
local core = require("wecom.core")
local emulator = require("support.emulator")
local hostile = require("support.hostile")
local openresty = require("support.openresty")
local session = require("support.session")
local wecom = require("wecom")

local SECRET = "Kx9f2mQ7vR4tLw8zN1pB6yH3cJ5dG0sA2eU7iO4qWkE" -- 43 characters, as WeCom's

-- No run of errors.FRAGMENT characters of `secret` in `text`.
local function assert_no_piece(text, secret, context)
  local f = wecom.errors.FRAGMENT
  for i = 1, #secret - f + 1 do
    local piece = secret:sub(i, i + f - 1)
    assert.falsy(text:find(piece, 1, true), ("%s: %q holds %q"):format(context, text, piece))
  end
end

-- coroutines that interleave inside calls (a copas-like scheduler)
local scheduler = require("support.scheduler")
local run_all, yielding = scheduler.run_all, scheduler.yielding

describe("hardening", function()
  local emu, nginx, http

  setup(function()
    emu = emulator.start{ corpsecret = SECRET }
    nginx = openresty.start{ emu = emu }
    http = session{ timeout = 60 }
  end)

  teardown(function()
    http:close()
    nginx:stop()
    emu:stop()
  end)

  before_each(function()
    emu:reset()
    assert.equal(200, (http:request("GET", nginx.base_url .. "/flush")))
  end)

  -- GET an nginx handler of spec/support/ngx_app.lua; its decoded reply
  local function ngx_get(path)
    local status, body = http:request("GET", nginx.base_url .. path)
    assert.equal(200, status, body)
    return cjson.decode(body)
  end

  local function ngx_post(path, t)
    local status, body = http:request("POST", nginx.base_url .. path, cjson.encode(t))
    assert.equal(200, status, body)
    return cjson.decode(body)
  end

  describe("1. no piece of a secret in an error", function()
    -- A gateway page that echoes the request line, with the secret or the
    -- token at every offset around the 160-byte excerpt's cut.
    local function page(offset, what)
      return ("x"):rep(offset) .. "GET /cgi-bin/x?" .. what .. " HTTP/1.1 was refused by the gateway"
    end

    it("for the corpsecret echoed by gettoken's 502, at every offset around the cut (libcurl)", function()
      local limit = wecom.errors.EXCERPT
      for offset = limit - #SECRET - 40, limit + 2 do
        emu:fault{ path = "gettoken", status = 502, body = page(offset, "corpsecret={corpsecret}"), times = 1 }
        local client = emu:client{ max_retries = 0 }
        local res, err = client:calendar_get{ cal_id_list = { "c" } }
        assert.is_nil(res)
        assert.equal("http", err.kind)
        assert_no_piece(err.message, SECRET, "offset " .. offset)
      end
    end)

    it("for the access token echoed by an API's 502, at every offset around the cut (libcurl)", function()
      local token = emu:issue_token()
      local client = emu:client{ corpid = false, corpsecret = false, access_token = token, max_retries = 0 }
      local limit = wecom.errors.EXCERPT
      for offset = limit - #token - 20, limit + 2 do
        emu:fault{ path = "oa/calendar/get", status = 502, body = page(offset, "access_token={access_token}"), times = 1 }
        local _, err = client:calendar_get{ cal_id_list = { "c" } }
        assert.equal("http", err.kind)
        assert_no_piece(err.message, token, "offset " .. offset)
      end
    end)

    it("for the corpsecret and the token through cosockets", function()
      local limit = wecom.errors.EXCERPT
      local secret = emu.corpsecret
      for offset = limit - #secret - 10, limit + 2 do
        emu:fault{ path = "gettoken", status = 502, body = page(offset, "corpsecret={corpsecret}"), times = 1 }
        local out = ngx_get("/get?client=hostile")
        assert.equal("http", out.err.kind)
        assert_no_piece(out.err.message, secret, "offset " .. offset)
      end
      for offset = limit - 60, limit + 2, 3 do
        emu:fault{ path = "oa/calendar/get", status = 502, body = page(offset, "access_token={access_token}"), times = 1 }
        local out = ngx_get("/get?client=hostile")
        assert.equal("http", out.err.kind)
        assert.falsy(out.err.message:find("access_token=[%w_%-]", 1), out.err.message)
      end
    end)

    it("for a piece of the secret that a proxy cut short itself", function()
      emu:fault{ path = "gettoken", status = 502, body = "upstream URL corpsecret=" .. SECRET:sub(1, 20), times = 1 }
      local _, err = emu:client{ max_retries = 0 }:calendar_get{ cal_id_list = { "c" } }
      assert_no_piece(err.message, SECRET, "a cut-short echo")
      assert.truthy(err.message:find("corpsecret=***", 1, true), err.message)
    end)
  end)

  describe("3. the token fetch lock", function()
    -- a transport that answers gettoken with nonsense, then behaves
    local function odd(status, body)
      local real = session()
      return {
        request = function(_, method, url, payload)
          if url:find("/gettoken", 1, true) and status ~= "pass" then return status, body end
          return real:request(method, url, payload)
        end,
      }
    end

    it("turns odd answers of a custom transport into transport errors, and leaves no lock behind", function()
      local cache = require("wecom.cache.memory").new()
      for _, case in ipairs{ { "200", "{}" }, { 200, nil }, { {}, "x" }, { 200.5, "x" }, { 99, "x" },
        { nil, nil }, { false, 42 } } do
        local client = emu:client{ transport = odd(case[1], case[2]), token_cache = cache }
        local ok, res, err = pcall(client.calendar_get, client, { cal_id_list = { "c" } })
        assert.is_true(ok, tostring(res))
        assert.is_nil(res)
        assert.equal("transport", err.kind)
        assert.equal("error", err.reason)
        assert.equal("gettoken", err.endpoint)
      end
      -- the next call of the same app does not wait for a lock
      local t0 = core.monotime()
      local client = emu:client{ transport = odd("pass"), token_cache = cache }
      assert(client:calendar_add{ calendar = { summary = "s", color = "#000000" } })
      assert.is_true(core.monotime() - t0 < 1, "waited " .. (core.monotime() - t0))
    end)

    it("releases the lock when the fetch raises", function()
      local cache = require("wecom.cache.memory").new()
      -- a transport whose request method vanishes after wecom.new checked it:
      -- looking it up raises inside the fetch
      local looked = 0
      local boom = setmetatable({}, { __index = function()
        looked = looked + 1
        if looked > 1 then error({ "a table, not a string" }) end
        return function() end
      end })
      local client = emu:client{ transport = boom, token_cache = cache }
      local ok, res, err = pcall(client.calendar_get, client, { cal_id_list = { "c" } })
      assert.is_true(ok, tostring(res))
      assert.equal("transport", err.kind)
      assert.truthy(err.message:find("the token fetch raised", 1, true), err.message)
      local key = require("wecom.token").cache_key(emu.base_url, emu.corpid, SECRET)
      assert.is_nil(cache:get(key .. ":lock"))
    end)

    it("lets a waiter take over from a dead holder after one attempt's time, not the whole fetch's", function()
      -- timeout 1 + connect 1 + back-off 0.01 + 1: the lock lives about 3 s;
      -- the whole fetch may take (10 + 1) * 2 + 10 * 0.01 s
      local client = emu:client{ transport = yielding(), sleep = function() coroutine.yield() end,
        timeout = 1, connect_timeout = 1, max_retries = 10 }
      local call = function() return client:calendar_add{ calendar = { summary = "s", color = "#000000" } } end
      local started = false
      -- the first coroutine takes the lock, is suspended in its gettoken and
      -- never resumed: a holder that died
      local results, took = run_all({ function()
        started = true
        return call()
      end, call }, function(i) return i == 1 and started end)
      assert.is_string(results[2][1].cal_id)
      assert.is_true(took < 6, "waited " .. took)
      assert.is_true(took > 2, "took the lock of a live holder after " .. took)
    end)

    it("keeps the lock while the holder retries, renewing it before each attempt", function()
      local cache = require("wecom.cache.memory").new()
      local key = require("wecom.token").cache_key(emu.base_url, emu.corpid, SECRET)
      local seen = {}
      local real = session()
      local transport = { request = function(_, method, url, body)
        if url:find("/gettoken", 1, true) then
          seen[#seen + 1] = cache:get(key .. ":lock")
          if #seen < 3 then return 200, '{"errcode":-1,"errmsg":"busy"}' end
        end
        return real:request(method, url, body)
      end }
      local client = emu:client{ token_cache = cache, transport = transport, max_retries = 3 }
      assert(client:calendar_add{ calendar = { summary = "s", color = "#000000" } })
      assert.equal(3, #seen)
      -- the same holder all along, and the lock gone afterwards
      assert.is_string(seen[1])
      assert.equal(seen[1], seen[2])
      assert.equal(seen[1], seen[3])
      assert.is_nil(cache:get(key .. ":lock"))
    end)
  end)

  describe("4. coroutines of one Lua state", function()
    it("never blocks the holder: two first calls together finish at once", function()
      local client = emu:client{ transport = yielding() }
      local call = function() return client:calendar_add{ calendar = { summary = "s", color = "#000000" } } end
      local results, took = run_all{ call, call }
      assert.is_string(results[1][1].cal_id)
      assert.is_string(results[2][1].cal_id)
      assert.is_true(took < 2, "took " .. took)
    end)

    it("waits for the holder with a sleep that yields: one gettoken", function()
      local client = emu:client{ transport = yielding(), sleep = function() coroutine.yield() end }
      local call = function() return client:calendar_add{ calendar = { summary = "s", color = "#000000" } } end
      local results, took = run_all{ call, call, call }
      for i = 1, 3 do assert.is_string(results[i][1].cal_id) end
      assert.is_true(took < 2, "took " .. took)
      assert.equal(1, emu:calls("gettoken"))
    end)
  end)

  describe("5. a token function that calls its own client", function()
    it("is refused at once with reason token, and the outer call goes on", function()
      local issued = emu:issue_token()
      local sent, inner = 0, {}
      local real = session()
      local client
      client = assert(wecom.new{ base_url = emu.base_url, transport = { request = function(_, m, u, b)
        sent = sent + 1
        return real:request(m, u, b)
      end }, token = function()
        -- a mistake users make: the provider asks the client it serves
        local _, err = client:calendar_get{ cal_id_list = { "c" } }
        inner[#inner + 1] = err
        return issued
      end })
      local t0 = core.monotime()
      local res, err = client:calendar_add{ calendar = { summary = "s", color = "#000000" } }
      assert.truthy(res, tostring(err))
      assert.equal(1, #inner)
      assert.equal("token", inner[1].reason)
      assert.truthy(inner[1].message:find("called the client it provides tokens for", 1, true), inner[1].message)
      assert.equal(1, sent) -- only the outer call's request
      assert.is_true(core.monotime() - t0 < 1)
    end)
  end)

  describe("6. every helper against every hostile reply", function()
    local ids

    local function prepare()
      local c = emu:client()
      local cal_id = assert(c:calendar_add{ calendar = { summary = "s", color = "#000000",
        shares = { { userid = "lisi" } } } }).cal_id
      local schedule_id = assert(c:schedule_add{ schedule = { cal_id = cal_id, start_time = 1795399200,
        end_time = 1795402800, attendees = { { userid = "wangwu" } } } }).schedule_id
      return { cal_id = cal_id, schedule_id = schedule_id }
    end

    -- The shape answers the next few requests to its path (enough for any
    -- helper's reads), then the emulator answers again: a server that gave
    -- the same page for ever would keep a pager going for ever.
    local function hostile_fault(s)
      emu:clear_faults()
      emu:fault{ path = s.path, malformed = true, body = hostile.fill(s.body, ids), times = 5 }
    end

    local function check(outcome, helper, s, transport)
      local where = ("%s on %q (%s, %s)"):format(helper.name, s.name, s.path, transport)
      assert.is_nil(outcome.raised, where .. " raised: " .. tostring(outcome.raised))
      local fails, kind = hostile.expect(helper, s)
      if fails then
        assert.is_false(outcome.ok, where .. " succeeded")
        assert.equal(kind, outcome.kind, where .. ": " .. tostring(outcome.message))
      else
        assert.is_true(outcome.ok, where .. " failed: " .. tostring(outcome.message))
      end
    end

    it("answers nil, err of the right kind and never raises (libcurl)", function()
      local n = 0
      for _, s in ipairs(hostile.SHAPES) do
        emu:reset()
        ids = prepare()
        local client = emu:client{ max_retries = 0 }
        for _, helper in ipairs(hostile.HELPERS) do
          hostile_fault(s)
          check(hostile.run(helper, client, ids), helper, s, "libcurl")
          n = n + 1
        end
      end
      assert.is_true(n > 400, n .. " cases")
    end)

    it("answers nil, err of the right kind and never raises (cosockets)", function()
      for _, s in ipairs(hostile.SHAPES) do
        emu:reset()
        ids = prepare()
        for _, helper in ipairs(hostile.HELPERS) do
          hostile_fault(s)
          local out = ngx_post("/hostile", { helper = helper.name, ids = ids })
          assert.equal("ngx", out.transport)
          check(out.result, helper, s, "cosockets")
        end
      end
    end)

    it("names the field of the reply that was wrong", function()
      ids = prepare()
      emu:fault{ path = "oa/schedule/get_by_calendar", malformed = true,
        body = '{"errcode":0,"schedule_list":"abcdef"}', times = -1 }
      local cursor = assert(emu:client{ max_retries = 0 }:schedule_cursor(ids.cal_id))
      local page, err = cursor:next_page()
      assert.is_nil(page)
      assert.equal("schedule_list", err.field)
      assert.equal(0, cursor.offset) -- not moved by six "schedules"
      emu:fault{ path = "oa/calendar/get", malformed = true, times = -1,
        body = hostile.fill('{"errcode":0,"calendar_list":[{"cal_id":"{cal_id}","shares":[{"userid":5}]}]}', ids) }
      local _
      _, err = emu:client{ max_retries = 0 }:share_calendar(ids.cal_id, { "x" })
      assert.equal("calendar_list[1].shares[1].userid", err.field)
    end)
  end)

  describe("7. control characters from the server", function()
    it("are escaped in messages (libcurl and cosockets)", function()
      local nasty = "bad\0value\r\nX-Injected: 1\27[31m\226\128\168end"
      emu:fault{ path = "oa/calendar/get", errcode = 40058, errmsg = nasty, times = -1 }
      local _, err = emu:client{ max_retries = 0 }:calendar_get{ cal_id_list = { "c" } }
      local out = ngx_get("/get?client=hostile")
      for _, message in ipairs{ err.message, out.err.message } do
        assert.falsy(message:find("[%z\1-\31\127]"), message)
        assert.falsy(message:find("\226\128\168", 1, true), message)
        assert.truthy(message:find("bad\\x00value\\r\\nX-Injected: 1\\x1B[31m\\u{2028}end", 1, true), message)
      end
      -- errmsg itself stays as WeCom sent it
      assert.equal(nasty, err.errmsg)
      emu:clear_faults()
      emu:fault{ path = "oa/calendar/get", status = 500, body = "line1\r\nline2\0", times = -1 }
      _, err = emu:client{ max_retries = 0 }:calendar_get{ cal_id_list = { "c" } }
      assert.falsy(err.message:find("[%z\1-\31\127]"), err.message)
    end)
  end)

  describe("8. gettoken's expires_in", function()
    it("refuses a lifetime that is no finite number in range, the same on every Lua", function()
      for _, value in ipairs{ "1e400", "1e300", '"nan"', '"inf"', "-1", "0", "86401", '"7200x"', "null" } do
        emu:reset()
        emu:fault{ path = "gettoken", malformed = true, times = 1,
          body = '{"errcode":0,"errmsg":"ok","access_token":"t-' .. #value .. '","expires_in":' .. value .. "}" }
        local client = emu:client{ max_retries = 0 }
        local res, err = client:calendar_get{ cal_id_list = { "c" } }
        assert.is_nil(res, value)
        assert.equal("decode", err.kind, value)
        assert.equal("gettoken", err.endpoint)
        assert.equal(1, err.attempts) -- 9. counted like every other error
        -- nothing was cached: the next call fetches a real token
        local ok = client:calendar_add{ calendar = { summary = "s", color = "#000000" } }
        assert.truthy(ok, value)
        assert.equal(2, emu:calls("gettoken"), value)
      end
    end)

    it("takes a string of digits, as some gateways send it", function()
      emu:fault{ path = "gettoken", malformed = true, times = 1,
        body = '{"errcode":0,"errmsg":"ok","access_token":"' .. ("t"):rep(20) .. '","expires_in":"7200"}' }
      local _, err = emu:client{ max_retries = 0 }:calendar_get{ cal_id_list = { "c" } }
      -- the token is accepted (and then refused by the emulator as unknown)
      assert.equal("api", err.kind)
    end)
  end)

  describe("9. the caller's tables are read raw, as the C encoder reads them", function()
    local ran = {}
    local function raising(kind)
      return setmetatable({}, { [kind] = function()
        ran[#ran + 1] = kind
        error("metamethod ran")
      end })
    end

    it("never runs a metamethod of an argument, nor lets its error out", function()
      local client = emu:client()
      local cases = {
        function(t) return client:calendars(t) end,
        function(t) return client:schedules(t) end,
        function(t) return client:remove_attendees("s", t) end,
        function(t) return client:unshare_calendar("c", t) end,
        function(t) return client:share_calendar("c", t) end,
        function(t) return client:share_calendars(t, { "x" }) end,
        function(t) return client:calendar_patch("c", t) end,
        function(t) return client:schedule_patch("s", t) end,
        function(t) return client:schedule_cursor("c", t) end,
        function(t) return client:calendars({ "c" }, t) end,
        function(t) return client:call_many("calendar_get", t) end,
        function(t) return client:calendar_get(t) end,
      }
      for i, case in ipairs(cases) do
        for _, kind in ipairs{ "__index", "__pairs", "__len", "__tostring" } do
          local ok, res = pcall(case, raising(kind))
          assert.is_true(ok, ("case %d, %s raised: %s"):format(i, kind, tostring(res)))
          assert.same({}, ran, ("case %d"):format(i))
        end
      end
      -- a proxy's fields are not seen: the same answer as the encoder's
      local proxy = setmetatable({}, { __index = { cal_id_list = { "c" } } })
      local _, e1 = client:calendar_get(proxy)
      assert.equal("validation", e1.kind)
      assert.equal("cal_id_list", e1.field)
      assert.same({}, client:calendars(setmetatable({}, { __index = { "c" } })))
    end)
  end)
end)
