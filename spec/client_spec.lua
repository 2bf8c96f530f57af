-- The client against the emulator: options, the seeds' examples, tokens,
-- retries and the error objects.
local core = require("wecom.core")
local emulator = require("support.emulator")
local memory_cache = require("wecom.cache.memory")
local token = require("wecom.token")
local wecom = require("wecom")

local SEED_ADD = {
  calendar = {
    organizer = "userid1", readonly = 1, set_as_default = 1, summary = "test_summary",
    color = "#FF3030", description = "test_describe",
    shares = { { userid = "userid2" }, { userid = "userid3", readonly = 1 } },
  },
  agentid = 1000014,
}

describe("client", function()
  local emu

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  local function new_calendar(client)
    local res = assert(client:calendar_add{ calendar = { summary = "s", color = "#000000" } })
    return res.cal_id
  end

  describe("wecom.new", function()
    it("accepts every documented option", function()
      local client, err = wecom.new{
        corpid = "ww1", corpsecret = "secret", base_url = "https://qyapi.example.com/",
        timeout = 3, connect_timeout = 1, max_retries = 0, ca_file = "/dev/null",
        token_cache = memory_cache.new(), max_response_bytes = 1024, retry_base_delay = 0,
        retry_max_delay = 1, user_agent = "test/1", transport = "curl",
      }
      assert.is_nil(err)
      assert.equal("wecom.client (corpid ww1, https://qyapi.example.com)", tostring(client))
    end)

    it("names the bad or unknown option", function()
      local cases = {
        { { corpid = "ww1", corpsecret = "s", timout = 1 }, "timout", "unknown option" },
        { { corpid = "ww1", corpsecret = "s", timeout = 0 }, "timeout", "expected a number of seconds" },
        { { corpid = "ww1", corpsecret = "s", max_retries = 1.5 }, "max_retries", "integer in 0..10" },
        { { corpid = "ww1", corpsecret = "s", base_url = "ftp://x" }, "base_url", "http(s) URL" },
        { { corpid = "ww1", corpsecret = "s", base_url = "https://x/?a" }, "base_url", "http(s) URL" },
        { { corpid = "ww1", corpsecret = "s", ca_file = "/nonexistent/ca.pem" }, "ca_file", "can't read" },
        { { corpid = "ww1", corpsecret = "s", token_cache = {} }, "token_cache", "get(key) and set" },
        { { corpid = "ww1", corpsecret = "s", transport = "smoke" }, "transport", "request(method" },
        { { corpid = "ww1", corpsecret = "s", max_response_bytes = 0 }, "max_response_bytes", "positive" },
        { { corpid = "ww1", corpsecret = "s", max_response_bytes = 1e16 }, "max_response_bytes", "positive" },
        { { corpid = "ww1" }, "corpsecret", "required with corpid" },
        { { corpsecret = "s" }, "corpid", "required with corpsecret" },
        { { corpid = "ww 1", corpsecret = "s" }, "corpid", "spaces" },
        { { access_token = "" }, "access_token", "non-empty" },
        { { token = "abc" }, "token", "function" },
      }
      for _, case in ipairs(cases) do
        local client, err = wecom.new(case[1])
        assert.is_nil(client)
        assert.equal("validation", err.kind)
        assert.equal(case[2], err.field)
        assert.truthy(err.message:find(case[3], 1, true), err.message)
        assert.truthy(err.message:find("^wecom%.new: "))
      end
    end)

    it("needs exactly one way to get a token", function()
      local _, err = wecom.new{}
      assert.truthy(err.message:find("exactly one of", 1, true))
      _, err = wecom.new{ access_token = "t", corpid = "ww1", corpsecret = "s" }
      assert.truthy(err.message:find("exactly one of", 1, true))
      _, err = wecom.new("nope")
      assert.equal("validation", err.kind)
    end)

    it("keeps credentials out of the client table and its string", function()
      local client = wecom.new{ corpid = "ww1", corpsecret = "very-secret-value" }
      assert.falsy(tostring(client):find("very-secret-value", 1, true))
      for k, v in pairs(client) do
        assert.falsy(tostring(k):find("secret", 1, true))
        assert.falsy(tostring(v):find("very-secret-value", 1, true))
      end
    end)

    it("raises when a method is called without the colon", function()
      local client = emu:client()
      assert.has_error(function() client.calendar_get({ cal_id_list = { "x" } }) end,
        "wecom: call it as client:calendar_get(...), on a client made by wecom.new")
      assert.has_error(function() client.call("oa/x") end)
    end)
  end)

  describe("the seeds' examples", function()
    it("add, get, update, get, del as the seed documents", function()
      local client = emu:client()
      local res, err = client:calendar_add(SEED_ADD)
      assert.is_nil(err)
      assert.equal(0, res.errcode)
      assert.equal("ok", res.errmsg)
      assert.is_string(res.cal_id)
      local cal_id = res.cal_id

      local got = assert(client:calendar_get{ cal_id_list = { cal_id } })
      assert.same({
        cal_id = cal_id, organizer = "userid1", readonly = 1, summary = "test_summary",
        color = "#FF3030", description = "test_describe", admins = {},
        shares = { { userid = "userid2", readonly = 1 }, { userid = "userid3", readonly = 1 } },
      }, got.calendar_list[1])

      res = assert(client:calendar_update{
        calendar = {
          cal_id = cal_id, readonly = 1, summary = "test_summary", color = "#FF3030",
          description = "test_describe_1",
          shares = { { userid = "userid1" }, { userid = "userid2", readonly = 1 } },
        },
      })
      assert.same({ errcode = 0, errmsg = "ok" }, res)
      got = assert(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1]
      assert.equal("test_describe_1", got.description)
      assert.equal("userid1", got.organizer)
      assert.same({ { userid = "userid1", readonly = 1 }, { userid = "userid2", readonly = 1 } }, got.shares)

      assert.same({ errcode = 0, errmsg = "ok" }, assert(client:calendar_del{ cal_id = cal_id }))
      local gone, gerr = client:calendar_get{ cal_id_list = { cal_id } }
      assert.is_nil(gone)
      assert.equal(90459, gerr.errcode)
    end)

    it("get_by_calendar with the seed's body: offset 100, limit 1000", function()
      local client = emu:client()
      local cal_id = new_calendar(client)
      emu:seed(cal_id, 150, { cancelled_every = 7 })
      local res = assert(client:schedule_get_by_calendar{ cal_id = cal_id, offset = 100, limit = 1000 })
      assert.equal(50, #res.schedule_list)
      local s = res.schedule_list[1]
      assert.equal("seeded schedule 101", s.summary)
      assert.equal(cal_id, s.cal_id)
      for _, k in ipairs{ "schedule_id", "sequence", "start_time", "end_time", "status" } do
        assert.is_not_nil(s[k], k)
      end
      assert.equal(0, s.status)
      assert.equal(1, res.schedule_list[5].status) -- the 105th is cancelled (every 7th)
      if math.type then assert.equal("integer", math.type(s.start_time)) end
    end)
  end)

  describe("tokens", function()
    it("one gettoken serves many calls", function()
      local client = emu:client()
      local cal_id = new_calendar(client)
      for _ = 1, 25 do assert(client:calendar_get{ cal_id_list = { cal_id } }) end
      assert.equal(1, emu:calls("gettoken"))
      assert.equal(25, emu:calls("oa/calendar/get"))
    end)

    it("is shared by clients of the same app through the default cache", function()
      local secret = "shared-secret-" .. tostring(core.random())
      emu:configure{ corpsecret = secret }
      local a = emu:client{ corpsecret = secret, token_cache = false }
      local b = emu:client{ corpsecret = secret, token_cache = false }
      local cal_id = new_calendar(a)
      assert(b:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(1, emu:calls("gettoken"))
    end)

    it("URL-escapes corpid and corpsecret", function()
      emu:configure{ corpid = "ww&id=1", corpsecret = "s3cr+t/&=x%" }
      local client = emu:client{ corpid = "ww&id=1", corpsecret = "s3cr+t/&=x%" }
      assert(client:calendar_add{ calendar = { summary = "s", color = "#000000" } })
    end)

    it("is refreshed after it expires (42001), once", function()
      local client = emu:client()
      local cal_id = new_calendar(client)
      emu:expire_tokens()
      assert(client:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(2, emu:calls("gettoken"))
      assert.equal(1, emu:stats().errors["42001"])
      assert(client:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(2, emu:calls("gettoken"))
    end)

    it("is refreshed after it is invalidated (40014)", function()
      local client = emu:client()
      local cal_id = new_calendar(client)
      emu:invalidate_tokens()
      assert(client:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(2, emu:calls("gettoken"))
      assert.equal(1, emu:stats().errors["40014"])
    end)

    it("is cached for less than expires_in, so it is refreshed before WeCom expires it", function()
      local ttls = {}
      local cache = memory_cache.new()
      local recording = {
        get = function(_, k) return cache:get(k) end,
        set = function(_, k, v, ttl)
          ttls[#ttls + 1] = ttl
          return cache:set(k, v, ttl)
        end,
      }
      local client = emu:client{ token_cache = recording }
      new_calendar(client)
      assert.equal(1, #ttls)
      assert.is_true(ttls[1] < 7200 and ttls[1] >= 6900, tostring(ttls[1]))
      -- once the cache lets it go, the next call fetches a new one
      cache:delete(token.cache_key(emu.base_url, emu.corpid, emu.corpsecret))
      new_calendar(client)
      assert.equal(2, emu:calls("gettoken"))
      assert.is_nil(emu:stats().errors["42001"])
    end)

    it("retries a rejected token only once", function()
      local client = emu:client()
      local cal_id = new_calendar(client)
      emu:fault{ path = "oa/calendar/get", errcode = 40014, times = 5 }
      local res, err = client:calendar_get{ cal_id_list = { cal_id } }
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal(40014, err.errcode)
      assert.equal(2, err.attempts)
      assert.equal(2, emu:calls("gettoken"))
      assert.equal(2, emu:calls("oa/calendar/get"))
    end)

    it("drops the cached token only if it is the one that failed", function()
      local cache = memory_cache.new()
      local b = emu:client{ token_cache = cache }
      local cal_id = new_calendar(b)
      -- a's request leaves with the old token; meanwhile b refreshes the
      -- shared cache, so a's failure must not throw b's new token away
      local curl = require("wecom.transport.curl").new(assert(require("wecom.options").transport()))
      local interleave = true
      local a = emu:client{ token_cache = cache, transport = {
        request = function(_, method, url, body)
          if interleave and url:find("oa/calendar/get", 1, true) then
            interleave = false
            emu:invalidate_tokens()
            assert(b:calendar_get{ cal_id_list = { cal_id } })
          end
          return curl:request(method, url, body)
        end,
      } }
      assert(a:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(2, emu:calls("gettoken"))
      curl:close()
    end)

    it("treats 40001 and 40013 from gettoken as configuration errors", function()
      local client = emu:client{ corpsecret = "wrong-secret-value" }
      local res, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal("gettoken", err.endpoint)
      assert.equal(40001, err.errcode)
      assert.is_false(err.retryable)
      -- returned at once, and not asked again while it is remembered
      res, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.equal(40001, err.errcode)
      assert.equal(1, emu:calls("gettoken"))
      assert.equal(0, emu:calls("oa/calendar/get"))

      local other = emu:client{ corpid = "ww-unknown" }
      res, err = other:calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.equal(40013, err.errcode)
      assert.equal(2, emu:calls("gettoken"))
    end)

    it("uses a fixed access_token as given and cannot refresh it", function()
      local cal_id = new_calendar(emu:client())
      -- obtain a real token through a token function that records it
      local seen
      local recorder = emu:client{ corpid = false, corpsecret = false, token_cache = false, token = function()
        seen = emu:issue_token()
        return seen, 7200
      end }
      assert(recorder:calendar_get{ cal_id_list = { cal_id } })
      local fixed = emu:client{ corpid = false, corpsecret = false, token_cache = false, access_token = seen }
      assert(fixed:calendar_get{ cal_id_list = { cal_id } })
      emu:invalidate_tokens()
      local res, err = fixed:calendar_get{ cal_id_list = { cal_id } }
      assert.is_nil(res)
      assert.equal(40014, err.errcode)
      assert.equal(1, err.attempts)
    end)

    it("asks a token function again, with the rejected token, after 40014", function()
      local calls, rejected = 0, {}
      local client = emu:client{ corpid = false, corpsecret = false, token_cache = false, token = function(bad)
        calls = calls + 1
        rejected[#rejected + 1] = bad or "none"
        return emu:issue_token(), 7200
      end }
      local cal_id = new_calendar(client)
      assert(client:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(1, calls)
      emu:invalidate_tokens()
      assert(client:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(2, calls)
      assert.equal("none", rejected[1])
      assert.is_string(rejected[2])
      assert.are_not.equal("none", rejected[2])
    end)

    it("reports a token function that fails", function()
      local client = emu:client{ corpid = false, corpsecret = false, token_cache = false,
        token = function() return nil, "vault unreachable" end }
      local res, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.truthy(err.message:find("vault unreachable", 1, true))
      client = emu:client{ corpid = false, corpsecret = false, token_cache = false,
        token = function() error("boom") end }
      res, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.truthy(err.message:find("boom", 1, true))
    end)

    it("survives a token cache that fails", function()
      local broken = {
        get = function() error("redis down") end,
        set = function() error("redis down") end,
      }
      local client = emu:client{ token_cache = broken }
      local cal_id = new_calendar(client)
      assert(client:calendar_get{ cal_id_list = { cal_id } })
    end)
  end)

  describe("retries", function()
    it("backs off and retries -1 and 45033", function()
      local client = emu:client()
      local cal_id = new_calendar(client)
      emu:fault{ path = "oa/calendar/get", errcode = -1, times = 2 }
      assert(client:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(3, emu:calls("oa/calendar/get"))
      emu:fault{ path = "oa/calendar/get", errcode = 45033, times = 1 }
      assert(client:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(5, emu:calls("oa/calendar/get"))
    end)

    it("stops after max_retries in a storm of -1", function()
      local client = emu:client{ max_retries = 3 }
      local cal_id = new_calendar(client)
      emu:fault{ path = "oa/calendar/get", errcode = -1, times = -1 }
      local res, err = client:calendar_get{ cal_id_list = { cal_id } }
      assert.is_nil(res)
      assert.equal(-1, err.errcode)
      assert.is_true(err.retryable)
      assert.equal(4, err.attempts)
      assert.equal(4, emu:calls("oa/calendar/get"))
    end)

    it("retries -1 on calendar_add too: the server did not apply it", function()
      local client = emu:client()
      emu:fault{ path = "oa/calendar/add", errcode = -1, times = 1 }
      assert(client:calendar_add{ calendar = { summary = "s", color = "#000000" } })
      assert.equal(2, emu:calls("oa/calendar/add"))
    end)

    it("does not retry 45009 but marks it retryable", function()
      local client = emu:client()
      emu:fault{ path = "oa/calendar/get", errcode = 45009, times = -1 }
      local res, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.equal(45009, err.errcode)
      assert.is_true(err.retryable)
      assert.equal(1, emu:calls("oa/calendar/get"))
    end)

    it("retries HTTP 5xx for idempotent endpoints", function()
      local client = emu:client()
      local cal_id = new_calendar(client)
      emu:fault{ path = "oa/calendar/get", status = 502, times = 2 }
      assert(client:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(3, emu:calls("oa/calendar/get"))
      emu:fault{ path = "oa/calendar/update", status = 503, times = 1 }
      assert(client:calendar_update{ calendar = { cal_id = cal_id, summary = "t", color = "#111111" } })
      emu:fault{ path = "oa/calendar/del", status = 500, times = 1 }
      assert(client:calendar_del{ cal_id = cal_id })
    end)

    it("never retries calendar_add after HTTP 5xx: it may have been applied", function()
      local client = emu:client()
      assert(client:calendar_get{ cal_id_list = { new_calendar(client) } })
      emu:fault{ path = "oa/calendar/add", status = 502, times = 1 }
      local res, err = client:calendar_add{ calendar = { summary = "s", color = "#000000" } }
      assert.is_nil(res)
      assert.equal("http", err.kind)
      assert.equal(502, err.status)
      assert.is_false(err.retryable)
      assert.is_true(err.maybe_applied)
      assert.equal(1, err.attempts)
      assert.equal(2, emu:calls("oa/calendar/add"))
    end)

    it("never retries calendar_add after a timeout", function()
      local client = emu:client{ timeout = 0.3 }
      new_calendar(client)
      emu:fault{ path = "oa/calendar/add", latency_ms = 1500, times = 1 }
      local res, err = client:calendar_add{ calendar = { summary = "s", color = "#000000" } }
      assert.is_nil(res)
      assert.equal("transport", err.kind)
      assert.equal("timeout", err.reason)
      assert.is_true(err.maybe_applied)
      assert.equal(2, emu:calls("oa/calendar/add"))
    end)

    it("retries a timeout on an idempotent call, then succeeds", function()
      local client = emu:client{ timeout = 0.3 }
      local cal_id = new_calendar(client)
      emu:fault{ path = "oa/calendar/get", latency_ms = 1500, times = 1 }
      local res = assert(client:calendar_get{ cal_id_list = { cal_id } })
      assert.equal(cal_id, res.calendar_list[1].cal_id)
      assert.equal(2, emu:calls("oa/calendar/get"))
    end)

    it("reports a refused connection after bounded retries", function()
      local client = emu:client{ base_url = "http://127.0.0.1:1", max_retries = 2 }
      local res, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.equal("transport", err.kind)
      assert.equal("connect", err.reason)
      assert.equal("gettoken", err.endpoint)
      assert.equal(3, err.attempts)
      local fixed = emu:client{ base_url = "http://127.0.0.1:1", corpid = false, corpsecret = false,
        access_token = "some-token-value", max_retries = 2 }
      res, err = fixed:calendar_add{ calendar = { summary = "s", color = "#000000" } }
      assert.is_nil(res)
      -- a refused connection sent nothing: even a non-idempotent call is retried
      assert.equal(3, err.attempts)
      assert.is_nil(err.maybe_applied)
      assert.is_true(err.retryable)
    end)

    it("reports a malformed reply as a decode error", function()
      local client = emu:client{ max_retries = 1 }
      emu:fault{ path = "oa/calendar/get", malformed = true, times = -1 }
      local res, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.equal("decode", err.kind)
      assert.equal(200, err.status)
      assert.equal(2, err.attempts)
      assert.truthy(err.message:find("^oa/calendar/get: malformed reply: "))
    end)

    it("reports an HTML error page as an HTTP error with an excerpt", function()
      local client = emu:client{ max_retries = 0 }
      emu:fault{ path = "oa/calendar/get", status = 502 }
      local _, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.equal("http", err.kind)
      assert.equal(502, err.status)
      assert.truthy(err.message:find("HTTP 502 from the server: <html>", 1, true), err.message)
    end)

    it("does not retry a 4xx reply", function()
      local client = emu:client()
      emu:fault{ path = "oa/calendar/get", status = 404, body = "no" }
      local _, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.equal(404, err.status)
      assert.is_false(err.retryable)
      assert.equal(1, emu:calls("oa/calendar/get"))
    end)
  end)

  describe("errors", function()
    it("are tables with the documented fields and a __tostring", function()
      local client = emu:client()
      local _, err = client:calendar_get{ cal_id_list = { "no-such-calendar" } }
      assert.equal("api", err.kind)
      assert.equal("oa/calendar/get", err.endpoint)
      assert.equal(90457, err.errcode)
      assert.equal("invalid cal_id", err.errmsg)
      assert.equal(200, err.status)
      assert.is_false(err.retryable)
      assert.equal("oa/calendar/get: WeCom error 90457: invalid cal_id", err.message)
      assert.equal(err.message, tostring(err))
      assert.is_true(wecom.errors.is(err))
    end)

    it("never contain the secret or the token", function()
      local secret = "Zq8-very-secret-corp-secret-value"
      emu:configure{ corpsecret = secret }
      local client = emu:client{ corpsecret = secret, max_retries = 1 }
      local cal_id = new_calendar(client)
      -- find the token the emulator issued
      local issued = emu:issue_token(secret)
      local tokens_cache = memory_cache.new()
      tokens_cache:set(token.cache_key(emu.base_url, emu.corpid, secret), issued, 3600)
      local c2 = emu:client{ corpsecret = secret, token_cache = tokens_cache, max_retries = 1 }

      local errs = {}
      local function collect(res, err)
        assert.is_nil(res)
        errs[#errs + 1] = err
      end
      -- a hostile server echoing the credentials back
      emu:fault{ path = "oa/calendar/get", status = 500, body = "token=" .. issued .. " secret=" .. secret, times = -1 }
      collect(c2:calendar_get{ cal_id_list = { cal_id } })
      emu:clear_faults()
      emu:fault{ path = "oa/calendar/get", errcode = 40058, errmsg = "bad " .. issued .. " / " .. secret, times = 1 }
      collect(c2:calendar_get{ cal_id_list = { cal_id } })
      emu:fault{ path = "gettoken", errcode = 40001, errmsg = "invalid credential " .. secret }
      emu:invalidate_tokens()
      collect(emu:client{ corpsecret = secret }:calendar_get{ cal_id_list = { cal_id } })
      local offline = emu:client{ corpsecret = secret, base_url = "http://127.0.0.1:1", max_retries = 0 }
      collect(offline:calendar_get{ cal_id_list = { "c" } })
      collect(emu:client{ corpsecret = secret }:calendar_add{ calendar = { summary = secret, color = "x" } })

      assert.equal(5, #errs)
      for _, err in ipairs(errs) do
        for k, v in pairs(err) do
          local text = tostring(v)
          assert.falsy(text:find(secret, 1, true), k .. ": " .. text)
          assert.falsy(text:find(issued, 1, true), k .. ": " .. text)
        end
      end
      assert.truthy(errs[1].message:find("token=*** secret=***", 1, true), errs[1].message)
      assert.truthy(errs[2].errmsg:find("***", 1, true))
    end)
  end)

  describe("call", function()
    it("sends any POST endpoint without a schema", function()
      local client = emu:client()
      local res = assert(client:call("/cgi-bin/oa/calendar/add", { calendar = { summary = "s", color = "#000000" } }))
      assert.is_string(res.cal_id)
      local _, err = client:call("oa/calendar/add", { calendar = { summary = "s", color = "red" } })
      assert.equal("api", err.kind)
      assert.equal(90473, err.errcode)
      _, err = client:call("oa/no/such", {})
      assert.equal("http", err.kind)
      assert.equal(404, err.status)
    end)

    it("checks the path and still refuses what JSON cannot carry", function()
      local client = emu:client()
      local _, err = client:call("../etc", {})
      assert.equal("path", err.field)
      _, err = client:call(42, {})
      assert.equal("path", err.field)
      _, err = client:call("oa/calendar/add", { x = 0 / 0 })
      assert.equal("x", err.field)
      assert.equal(0, emu:calls("oa/calendar/add"))
    end)

    it("retries transport failures only when told the call is idempotent", function()
      local client = emu:client()
      new_calendar(client)
      emu:fault{ path = "oa/calendar/get", status = 502, times = 1 }
      local _, err = client:call("oa/calendar/get", { cal_id_list = { "x" } })
      assert.equal(502, err.status)
      emu:fault{ path = "oa/calendar/get", status = 502, times = 1 }
      _, err = client:call("oa/calendar/get", { cal_id_list = { "x" } }, { idempotent = true })
      assert.equal(90457, err.errcode)
    end)
  end)

  it("close() ends the session", function()
    local client = emu:client()
    new_calendar(client)
    assert.is_true(client:close())
    local _, err = client:calendar_get{ cal_id_list = { "x" } }
    assert.equal("transport", err.kind)
    assert.equal("closed", err.reason)
  end)
end)
