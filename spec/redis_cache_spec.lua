-- wecom.cache.redis in plain Lua (redis-lua over luasocket) against a real
-- redis-server: the cache's semantics, and the client's tokens through it:
-- shared between processes (two cache objects: two processes' worth of
-- state), no round trip per call, one refresh, and every call still served
-- when Redis is down, slow or refusing.
local callback = require("wecom.callback")
local core = require("wecom.core")
local emulator = require("support.emulator")
local redis = require("support.redis")
local rcache = require("wecom.cache.redis")
local token = require("wecom.token")

local PASSWORD = "redis-password-for-the-spec"

describe("wecom.cache.redis", function()
  local server, locked

  setup(function()
    server = redis.start()
    locked = redis.start{ password = PASSWORD }
  end)
  teardown(function()
    if server then server:stop() end
    if locked then locked:stop() end
  end)
  before_each(function()
    server:cli("FLUSHALL")
    server:reset_stats()
  end)

  local function cache(opts)
    local o = { port = server.port }
    for k, v in pairs(opts or {}) do
      if v == false then o[k] = nil else o[k] = v end
    end
    return assert(rcache.new(o))
  end

  local function timed(fn, ...)
    local t0 = core.monotime()
    local a, b = fn(...)
    return core.monotime() - t0, a, b
  end

  describe("new", function()
    it("names the bad or unknown option", function()
      local function bad(opts, field, text)
        local c, err = rcache.new(opts)
        assert.is_nil(c)
        assert.equal("validation", err.kind)
        assert.equal(field, err.field)
        assert.truthy(err.message:find(text, 1, true), err.message)
      end
      bad("x", nil, "table of options")
      bad({ hots = "x" }, "hots", "unknown option")
      bad({ port = 0 }, "port", "1..65535")
      bad({ port = "6379" }, "port", "1..65535")
      bad({ host = "" }, "host", "host name")
      bad({ host = "a b" }, "host", "host name")
      bad({ db = -1 }, "db", "database number")
      bad({ db = 1.5 }, "db", "database number")
      bad({ password = "" }, "password", "non-empty")
      bad({ username = "u" }, "password", "required with username")
      bad({ prefix = 1 }, "prefix", "string")
      bad({ timeout = 0 }, "timeout", "seconds")
      bad({ timeout = 0 / 0 }, "timeout", "seconds")
      bad({ cooldown = -1 }, "cooldown", "seconds")
      bad({ connect = "redis://x" }, "connect", "function")
      bad({ connect = function() end, port = 1 }, "port", "not with connect")
      bad({ connect = function() end, password = "p" }, "password", "not with connect")
    end)

    it("keeps the password out of its printed form", function()
      local c = cache{ password = PASSWORD }
      assert.equal(("wecom.cache.redis (127.0.0.1:%d db 0, prefix \"wecom:\")"):format(server.port), tostring(c))
      for k, v in pairs(c) do
        assert.falsy(tostring(k):find(PASSWORD, 1, true))
        assert.falsy(tostring(v):find(PASSWORD, 1, true))
      end
    end)
  end)

  describe("get, set, add, delete", function()
    it("store strings under the prefix", function()
      local c = cache()
      assert.is_nil(c:get("k"))
      assert.is_true(c:set("k", "v1"))
      assert.equal("v1", c:get("k"))
      assert.is_true(c:set("k", "v2"))
      assert.equal("v2", c:get("k"))
      assert.equal("v2", server:cli("GET", "wecom:k"))
      assert.is_true(c:set("n", 42))
      assert.equal("42", c:get("n"))
      assert.is_true(c:set("k", nil))
      assert.is_nil(c:get("k"))
      assert.is_true(c:delete("n"))
      assert.is_true(c:delete("n"))
      assert.is_nil(c:get("n"))
      assert.equal("", server:cli("--scan"))
    end)

    it("add sets only an absent key", function()
      local c = cache()
      assert.is_true(c:add("lock", "me", 10))
      local ok, why = c:add("lock", "you", 10)
      assert.is_false(ok)
      assert.equal("exists", why)
      assert.equal("me", c:get("lock"))
      assert.is_true(c:delete("lock"))
      assert.is_true(c:add("lock", "you"))
      assert.equal("-1", server:cli("PTTL", "wecom:lock"))
    end)

    it("keep values for their ttl, in milliseconds", function()
      local c = cache()
      assert.is_true(c:set("short", "x", 0.25))
      assert.is_true(c:add("lock", "me", 0.25))
      local pttl = tonumber(server:cli("PTTL", "wecom:short"))
      assert.is_true(pttl > 150 and pttl <= 250, tostring(pttl))
      assert.is_true(c:set("long", "y", 7200))
      pttl = tonumber(server:cli("PTTL", "wecom:long"))
      assert.is_true(pttl > 7199000 and pttl <= 7200000, tostring(pttl))
      assert.is_true(c:set("forever", "z", 0))
      assert.equal("-1", server:cli("PTTL", "wecom:forever"))
      local value, left = c:get_ttl("long")
      assert.equal("y", value)
      assert.is_true(left > 7199 and left <= 7200, tostring(left))
      value, left = c:get_ttl("forever")
      assert.equal("z", value)
      assert.is_nil(left)
      assert.is_nil(c:get_ttl("absent"))
      core.sleep(0.35)
      assert.is_nil(c:get("short"))
      assert.is_nil(c:get_ttl("short"))
      assert.is_true(c:add("lock", "you", 1))
    end)

    it("refuses a bad key, value or ttl without asking Redis", function()
      local c = cache()
      local checks = {
        { c.get, { 1 }, "key" }, { c.set, { "", "v" }, "key" }, { c.set, { "k", {} }, "value" },
        { c.set, { "k", "v", -1 }, "ttl" }, { c.set, { "k", "v", 0 / 0 }, "ttl" }, { c.add, { "k", nil }, "value" },
        { c.compare_and_delete, { "k", nil }, "value" }, { c.compare_and_expire, { "k", "v", 0 }, "ttl" },
      }
      for _, case in ipairs(checks) do
        local res, err = case[1](c, (table.unpack or unpack)(case[2]))
        assert.is_nil(res)
        assert.truthy(err:find(case[3], 1, true), err)
      end
      assert.equal(0, c:status().commands)
      assert.equal("unknown", c:status().state)
    end)

    it("keep prefixes apart", function()
      local a, b = cache{ prefix = "app-a:" }, cache{ prefix = "" }
      assert.is_true(a:set("k", "a"))
      assert.is_true(b:set("k", "b"))
      assert.equal("a", a:get("k"))
      assert.equal("b", b:get("k"))
      assert.equal("a", server:cli("GET", "app-a:k"))
      assert.equal("b", server:cli("GET", "k"))
    end)

    it("use the database asked for", function()
      -- whole numbers that are floats (JSON decoders give them on Lua 5.4) go as integers
      local c = cache{ db = 3.0, port = server.port + 0.0 }
      assert.is_true(c:set("k", "in 3"))
      assert.equal("in 3", server:cli("-n", "3", "GET", "wecom:k"))
      assert.equal("", server:cli("GET", "wecom:k"))
      assert.equal("in 3", c:get("k"))
    end)
  end)

  describe("compare_and_delete, compare_and_expire", function()
    it("act only while the key still holds the value", function()
      local c = cache()
      assert.is_true(c:set("lock", "mine", 10))
      assert.is_false(c:compare_and_expire("lock", "theirs", 100))
      assert.is_true(tonumber(server:cli("PTTL", "wecom:lock")) <= 10000)
      assert.is_true(c:compare_and_expire("lock", "mine", 100))
      assert.is_true(tonumber(server:cli("PTTL", "wecom:lock")) > 90000)
      assert.is_false(c:compare_and_delete("lock", "theirs"))
      assert.equal("mine", c:get("lock"))
      assert.is_true(c:compare_and_delete("lock", "mine"))
      assert.is_nil(c:get("lock"))
      assert.is_false(c:compare_and_delete("lock", "mine"))
      assert.is_false(c:compare_and_expire("lock", "mine", 1))
      -- one EVAL each: nothing can come between the read and the write
      -- (Redis counts the commands its scripts ran too: the two that matched)
      local stats = server:commandstats()
      assert.equal(6, stats.eval)
      assert.equal(1, stats.del)
      assert.equal(1, stats.pexpire)
    end)
  end)

  describe("password", function()
    it("authenticates with it; a wrong one or none fails without showing it", function()
      local right = assert(rcache.new{ port = locked.port, password = PASSWORD })
      assert.is_true(right:set("k", "v"))
      assert.equal("v", right:get("k"))
      assert.equal("up", right:status().state)
      local wrong = assert(rcache.new{ port = locked.port, password = "not-" .. PASSWORD })
      local res, err = wrong:get("k")
      assert.is_nil(res)
      assert.truthy(err:find("AUTH", 1, true), err)
      local none = assert(rcache.new{ port = locked.port })
      res, err = none:get("k")
      assert.is_nil(res)
      assert.truthy(err:find("NOAUTH", 1, true), err)
      for _, c in ipairs{ wrong, none } do
        local s = c:status()
        assert.equal("down", s.state)
        assert.equal(1, s.outages)
        for _, v in pairs(s) do assert.falsy(tostring(v):find(PASSWORD, 1, true)) end
      end
      assert.falsy(err:find(PASSWORD, 1, true))
    end)
  end)

  describe("connect", function()
    it("takes a client of the user's, as it is", function()
      local conn
      local c = assert(rcache.new{ prefix = "mine:", connect = function()
        conn = conn or assert(rcache.redis_lua()).connect("127.0.0.1", server.port)
        return conn
      end })
      assert.is_true(c:set("k", "v", 10))
      assert.is_true(c:add("l", "v", 10))
      assert.is_false(c:add("l", "v", 10))
      assert.equal("v", c:get("k"))
      assert.is_true(c:compare_and_delete("k", "v"))
      assert.equal("v", server:cli("GET", "mine:l"))
      assert.matches("your connect function", tostring(c))
    end)

    it("counts a connect that fails or raises as Redis failing", function()
      for _, fn in ipairs{ function() return nil, "no route" end, function() error("boom") end } do
        local c = assert(rcache.new{ connect = fn })
        local res, err = c:get("k")
        assert.is_nil(res)
        assert.truthy(err:find("no route", 1, true) or err:find("boom", 1, true), err)
        assert.equal("down", c:status().state)
      end
    end)
  end)

  describe("when Redis fails", function()
    it("answers at once while down, and tries again after the cooldown", function()
      local spare = redis.start()
      local ok, err = pcall(function()
        local c = assert(rcache.new{ port = spare.port, cooldown = 0.5 })
        assert.is_true(c:set("k", "v"))
        spare:kill()
        local res, why = c:get("k")
        assert.is_nil(res)
        assert.truthy(why:find(("127.0.0.1:%d"):format(spare.port), 1, true), why)
        local s = c:status()
        assert.equal("down", s.state)
        assert.equal(1, s.failures)
        -- within the cooldown nothing is sent: not even a connection attempt
        local commands = s.commands
        for _ = 1, 20 do assert.is_nil(c:get("k")) end
        s = c:status()
        assert.equal(1, s.failures)
        assert.equal(20, s.skipped)
        assert.equal(commands, s.commands)
        assert.is_true(s.retry_in > 0 and s.retry_in <= 0.5)
        spare:restart()
        core.sleep(0.6)
        assert.is_true(c:set("k", "again"))
        assert.equal("again", c:get("k"))
        s = c:status()
        assert.equal("up", s.state)
        assert.equal(1, s.outages)
      end)
      spare:stop()
      assert(ok, err)
    end)

    it("waits no longer than its timeout for a Redis that hangs", function()
      local spare = redis.start()
      local ok, err = pcall(function()
        local c = assert(rcache.new{ port = spare.port, timeout = 0.3 })
        assert.is_true(c:set("k", "v")) -- the connection is open
        spare:pause()
        local took, res = timed(c.get, c, "k")
        assert.is_nil(res)
        assert.is_true(took >= 0.25 and took < 1.5, ("took %.2f s"):format(took))
        -- a new connection to it hangs the same way (the kernel accepts it)
        local fresh = assert(rcache.new{ port = spare.port, timeout = 0.3 })
        took, res = timed(fresh.get, fresh, "k")
        assert.is_nil(res)
        assert.is_true(took < 1.5, ("took %.2f s"):format(took))
        -- and then nothing waits at all (against the timeout's 0.3 s)
        took = timed(c.get, c, "k")
        assert.is_true(took < 0.15, ("took %.2f s"):format(took))
      end)
      spare:resume()
      spare:stop()
      assert(ok, err)
    end)
  end)

  describe("as the client's token cache", function()
    local emu

    setup(function() emu = emulator.start() end)
    teardown(function() emu:stop() end)
    before_each(function() emu:reset() end)

    -- A client with a Redis cache of its own: what one process has.
    local function host(opts)
      local o = { token_cache = cache(opts and opts.cache) }
      for k, v in pairs(opts or {}) do if k ~= "cache" then o[k] = v end end
      return emu:client(o), o.token_cache
    end

    local function call(client)
      return client:calendar_get{ cal_id_list = { "none" } }
    end

    local function ok_or_90457(client)
      local res, err = call(client)
      -- an unknown calendar is WeCom's answer: the call went through with a token
      if res == nil then assert.equal(90457, err.errcode, tostring(err)) end
    end

    it("keeps one token for every process, and never the secret", function()
      local a, b = host(), host()
      ok_or_90457(a)
      ok_or_90457(b)
      assert.equal(1, emu:calls("gettoken"))
      local key = "wecom:" .. token.cache_key(emu.base_url, emu.corpid, emu.corpsecret)
      local all = server:dump()
      assert.is_string(all[key])
      for k, v in pairs(all) do
        assert.falsy(k:find(emu.corpsecret, 1, true))
        assert.falsy(v:find(emu.corpsecret, 1, true))
      end
      local pttl = tonumber(server:cli("PTTL", key))
      -- a little less than WeCom's 7200 s: refreshed before it expires
      assert.is_true(pttl > 6800 * 1000 and pttl <= 6900 * 1000, tostring(pttl))
    end)

    it("costs no Redis round trip per call once the token is known", function()
      local a = host()
      ok_or_90457(a)
      server:reset_stats()
      for _ = 1, 200 do ok_or_90457(a) end
      assert.same({}, server:commandstats())
      -- a second process reads it once: one EVAL (whose script runs GET and PTTL)
      local b = host()
      for _ = 1, 200 do ok_or_90457(b) end
      assert.same({ eval = 1, get = 1, pttl = 1 }, server:commandstats())
      assert.equal(1, emu:calls("gettoken"))
    end)

    it("drops a rejected token only where it still is: one refresh for all", function()
      local a, b, c = host(), host(), host()
      for _, h in ipairs{ a, b, c } do ok_or_90457(h) end
      emu:invalidate_tokens()
      for _, h in ipairs{ a, b, c } do ok_or_90457(h) end
      assert.equal(2, emu:calls("gettoken"))
      assert.equal(3, emu:stats().errors["40014"])
    end)

    it("serves every call while Redis is down, refusing or hanging, and shares again when it is back", function()
      local spare = redis.start()
      local ok, err = pcall(function()
        local opts = { cache = { port = spare.port, timeout = 0.3, cooldown = 0.5 } }
        local a, ca = host(opts)
        local b = host(opts)
        ok_or_90457(a)
        ok_or_90457(b)
        assert.equal(1, emu:calls("gettoken"))
        -- down: each process fetches on its own, at once
        spare:kill()
        emu:invalidate_tokens()
        local took = timed(ok_or_90457, a)
        assert.is_true(took < 1, ("took %.2f s"):format(took))
        ok_or_90457(b)
        assert.equal(3, emu:calls("gettoken"))
        assert.equal("down", ca:status().state)
        -- hanging: a call waits one timeout at most, then goes on without it
        spare:restart()
        core.sleep(0.6)
        ok_or_90457(a) -- its own token, still good: Redis not asked
        spare:pause()
        emu:invalidate_tokens()
        took = timed(ok_or_90457, a)
        assert.is_true(took < 0.3 + 1, ("took %.2f s"):format(took))
        spare:resume()
        -- back: after the cooldown, a refresh is shared again
        core.sleep(0.6)
        emu:invalidate_tokens()
        local before = emu:calls("gettoken")
        ok_or_90457(a)
        ok_or_90457(b)
        assert.equal(before + 1, emu:calls("gettoken"))
        assert.equal("up", ca:status().state)
      end)
      spare:resume()
      spare:stop()
      assert(ok, err)
    end)

    it("lets the coroutines of a process share one fetch while Redis is down", function()
      local scheduler = require("support.scheduler")
      local client = emu:client{ token_cache = assert(rcache.new{ port = 1 }), transport = scheduler.yielding(),
        sleep = function() coroutine.yield() end }
      local add = function() return client:calendar_add{ calendar = { summary = "s", color = "#000000" } } end
      local results = scheduler.run_all{ add, add, add }
      for i = 1, 3 do assert.is_string(results[i][1].cal_id) end
      assert.equal(1, emu:calls("gettoken"))
    end)

    it("serves every call when Redis refuses the password", function()
      local a = emu:client{ token_cache = assert(rcache.new{ port = locked.port, password = "wrong" }) }
      local b = emu:client{ token_cache = assert(rcache.new{ port = locked.port, password = "wrong" }) }
      ok_or_90457(a)
      ok_or_90457(b)
      assert.equal(2, emu:calls("gettoken"))
    end)
  end)

  describe("as the callbacks' seen store", function()
    it("lets two processes handle a message once", function()
      local wx = require("support.wxcrypt")
      local now = os.time()
      local function host()
        return assert(callback.new{ token = wx.TOKEN, encoding_aes_key = wx.KEY, receiveid = wx.RECEIVEID,
          seen = cache(), clock = function() return now end })
      end
      local a, b = host(), host()
      local box = core.callback_box(wx.TOKEN, wx.KEY, wx.RECEIVEID)
      local xml = ("<xml><ToUserName><![CDATA[%s]]></ToUserName><CreateTime>%d</CreateTime>"
        .. "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[modify_schedule]]></Event></xml>"):format(
        wx.RECEIVEID, now)
      local function post(cb, fn)
        local encrypt, signature, nonce = box:seal(xml, tostring(now))
        return cb:handle("POST", { msg_signature = signature, timestamp = tostring(now), nonce = nonce },
          "<xml><Encrypt><![CDATA[" .. encrypt .. "]]></Encrypt></xml>", fn)
      end
      local calls = 0
      local inner
      assert.equal(200, (post(a, function()
        calls = calls + 1
        inner = post(b, function() calls = calls + 1 end) -- delivered to the other host meanwhile
      end)))
      assert.equal(503, inner)
      assert.same({ 200, "success" }, { post(b, function() calls = calls + 1 end) })
      assert.equal(1, calls)
    end)
  end)
end)
