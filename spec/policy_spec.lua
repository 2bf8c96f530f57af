-- The retry and token policy on its own: a scripted transport answers each
-- request from a list, so every branch of request.lua and errors.action runs
-- without a server.
local errors = require("wecom.errors")
local request = require("wecom.request")
local wecom = require("wecom")

local TOKEN_REPLY = '{"errcode":0,"access_token":"tok-%d","expires_in":7200}'
local OK = '{"errcode":0,"errmsg":"ok","calendar_list":[]}'

-- A transport that answers from `script`: a list of {status, body} or
-- {nil, reason, message}, or a function(method, url, body) giving them;
-- gettoken gets a fresh token each time unless the script names it. It
-- records every request it sees.
local function scripted(script)
  local t = { log = {}, tokens = 0, script = script }
  function t.request(self, method, url, body)
    self.log[#self.log + 1] = { method = method, url = url, body = body }
    if url:find("/cgi-bin/gettoken", 1, true) and not self.script_gettoken then
      self.tokens = self.tokens + 1
      return 200, TOKEN_REPLY:format(self.tokens)
    end
    local step = table.remove(self.script, 1)
    assert(step, "the script ran out at " .. url)
    if type(step) == "function" then return step(method, url, body) end
    return step[1], step[2], step[3]
  end
  function t.calls(self, pattern)
    local n = 0
    for _, r in ipairs(self.log) do
      if r.url:find(pattern, 1, true) then n = n + 1 end
    end
    return n
  end
  return t
end

local function client_with(transport, opts)
  local o = {
    corpid = "wwpolicy", corpsecret = "policy-secret-0123456789", base_url = "http://wecom.invalid",
    transport = transport, retry_base_delay = 0, retry_max_delay = 0,
    token_cache = require("wecom.cache.memory").new(),
  }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(wecom.new(o))
end

local function api(code) return { 200, ('{"errcode":%d,"errmsg":"e%d"}'):format(code, code) } end

describe("retry and token policy", function()
  describe("errors.action", function()
    it("refreshes on 40014/42001, retries -1/45033, fails other API errors", function()
      assert.equal("refresh", errors.action(errors.api("x", 40014, "")))
      assert.equal("refresh", errors.action(errors.api("x", 42001, "")))
      assert.equal("retry", errors.action(errors.api("x", -1, "")))
      assert.equal("retry", errors.action(errors.api("x", 45033, "")))
      for _, code in ipairs{ 45009, 40001, 40058, 90457, 48002 } do
        assert.equal("fail", errors.action(errors.api("x", code, "")), code)
      end
      -- 45009 is worth trying later, not now
      assert.is_true(errors.api("x", 45009, "").retryable)
    end)

    it("never retries a validation error", function()
      assert.equal("fail", errors.action(errors.validation("x", "f", "bad")))
    end)

    it("weighs each transport reason by the REASONS table and idempotence", function()
      for reason, r in pairs(errors.REASONS) do
        local idem = errors.transport("x", reason, "d", true)
        local once = errors.transport("x", reason, "d", false)
        assert.equal(r.transient and "retry" or "fail", errors.action(idem), reason)
        -- a non-idempotent request is sent again only when it never got there
        assert.equal((r.transient and not r.applied) and "retry" or "fail", errors.action(once), reason)
        assert.equal(r.applied or nil, once.maybe_applied, reason)
        assert.is_nil(idem.maybe_applied)
      end
      -- a reason of a custom transport that is not in the table counts as "error"
      assert.equal("fail", errors.action(errors.transport("x", "weird", "d", true)))
      assert.is_true(errors.transport("x", "weird", "d", false).maybe_applied)
    end)

    it("retries HTTP 5xx and 429 and malformed replies for idempotent calls only", function()
      for _, status in ipairs{ 500, 502, 503, 429 } do
        assert.equal("retry", errors.action(errors.http("x", status, "", true)))
        assert.equal("fail", errors.action(errors.http("x", status, "", false)))
        assert.is_true(errors.http("x", status, "", false).maybe_applied)
      end
      assert.equal("fail", errors.action(errors.http("x", 404, "", true)))
      assert.equal("retry", errors.action(errors.decode("x", "bad", 200, true)))
      assert.equal("fail", errors.action(errors.decode("x", "bad", 200, false)))
    end)
  end)

  describe("back-off", function()
    it("doubles per retry up to the cap, with half of each step random", function()
      local o = { retry_base_delay = 0.5, retry_max_delay = 8 }
      for retry = 1, 8 do
        local step = math.min(8, 0.5 * 2 ^ (retry - 1))
        for _ = 1, 50 do
          local wait = request.backoff(o, retry)
          assert.is_true(wait >= step / 2 and wait <= step, ("retry %d waited %s"):format(retry, wait))
        end
      end
      assert.equal(0, request.backoff({ retry_base_delay = 0, retry_max_delay = 8 }, 3))
    end)
  end)

  describe("one request", function()
    it("retries -1 up to max_retries, counting every attempt", function()
      local t = scripted{ api(-1), api(-1), api(-1), api(-1) }
      local client = client_with(t, { max_retries = 3 })
      local res, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.equal(-1, err.errcode)
      assert.equal(4, err.attempts)
      assert.equal(4, t:calls("oa/calendar/get"))
    end)

    it("stops retrying once an attempt works", function()
      local t = scripted{ api(45033), { 200, OK } }
      local res = client_with(t):calendar_get{ cal_id_list = { "c" } }
      assert.same({}, res.calendar_list)
      assert.equal(2, t:calls("oa/calendar/get"))
    end)

    it("refreshes the token once per request: a second rejection is returned", function()
      local t = scripted{ api(40014), api(42001) }
      local client = client_with(t)
      local res, err = client:calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.equal(42001, err.errcode)
      assert.equal(2, err.attempts)
      assert.equal(2, t:calls("gettoken"))
      -- the retry carried the new token
      assert.truthy(t.log[#t.log].url:find("access_token=tok-2", 1, true))
    end)

    it("does not retry a non-idempotent call after a timeout, and says it may have been applied", function()
      local t = scripted{ { nil, "timeout", "slow" } }
      local res, err = client_with(t):calendar_add{ calendar = { summary = "s", color = "#000000" } }
      assert.is_nil(res)
      assert.equal("timeout", err.reason)
      assert.is_true(err.maybe_applied)
      assert.equal(1, err.attempts)
    end)

    it("sends a non-idempotent call again after a refused connection", function()
      local t = scripted{ { nil, "connect", "refused" }, { 200, '{"errcode":0,"cal_id":"new"}' } }
      local res = client_with(t):calendar_add{ calendar = { summary = "s", color = "#000000" } }
      assert.equal("new", res.cal_id)
    end)

    it("retries transport errors of idempotent calls with bounded attempts", function()
      local t = scripted{ { nil, "network", "reset" }, { nil, "empty", "closed" }, { nil, "partial", "cut" } }
      local res, err = client_with(t, { max_retries = 2 }):calendar_get{ cal_id_list = { "c" } }
      assert.is_nil(res)
      assert.equal("partial", err.reason)
      assert.equal(3, err.attempts)
    end)

    it("never shows the secret or the token in an error", function()
      local t = scripted{ { 502, "proxy says: corpsecret=policy-secret-0123456789 token=tok-1" } }
      local _, err = client_with(t, { max_retries = 0 }):calendar_get{ cal_id_list = { "c" } }
      assert.equal("http", err.kind)
      assert.falsy(err.message:find("policy-secret", 1, true), err.message)
      assert.falsy(err.message:find("tok-1", 1, true), err.message)
    end)
  end)

  describe("many requests", function()
    it("drops a failed token once per round, and each request keeps its own refresh", function()
      -- three requests, all rejected with 40014 in the first round, then all fine
      local replies = { api(40014), api(40014), api(40014), { 200, OK }, { 200, OK }, { 200, OK } }
      local t = scripted(replies)
      local client = client_with(t)
      local results = client:call_many("calendar_get",
        { { cal_id_list = { "a" } }, { cal_id_list = { "b" } }, { cal_id_list = { "c" } } })
      for i = 1, 3 do assert.is_true(results[i].ok, i) end
      -- one gettoken for the first round, one refresh for all three
      assert.equal(2, t:calls("gettoken"))
    end)

    it("returns the second rejection of a request, once it had its refresh", function()
      local t = scripted{ api(40014), { 200, OK }, api(40014) }
      local results = client_with(t):call_many("calendar_get",
        { { cal_id_list = { "a" } }, { cal_id_list = { "b" } } })
      assert.is_false(results[1].ok)
      assert.equal(40014, results[1].err.errcode)
      assert.equal(2, results[1].err.attempts)
      assert.is_true(results[2].ok)
    end)

    it("counts retries per request", function()
      local t = scripted{ api(-1), { 200, OK }, api(-1), api(-1) }
      local results = client_with(t, { max_retries = 2 }):call_many("calendar_get",
        { { cal_id_list = { "a" } }, { cal_id_list = { "b" } } })
      assert.is_true(results[2].ok)
      assert.is_false(results[1].ok)
      assert.equal(3, results[1].err.attempts)
    end)
  end)
end)
