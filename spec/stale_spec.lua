-- What a kept-alive connection may and may not carry into the next call, on
-- both transports (libcurl here in the process; cosockets inside nginx),
-- against a raw server that misbehaves on purpose:
--   * bytes a server writes on an idle connection (an unsolicited second
--     reply, a proxy's 408) are never read as the next call's reply;
--   * a non-idempotent request is sent at most once, even when the pooled
--     connection it went out on closes without a reply.
local cosockets = require("support.cosockets")
local raw = require("support.raw")
local session = require("support.session")
local wecom = require("wecom")

local REAL = '{"errcode":0,"errmsg":"ok","who":"real"}'
local FORGED = '{"errcode":0,"errmsg":"ok","who":"forged"}'
local IDLE_408 = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

-- Every request gets REAL; `later` is written on the connection 0.1 s after
-- each reply (or after the first only, with `once`).
local function stray_server(later, once)
  local r = { send = raw.reply(REAL), later = later }
  if once then return raw.start{ replies = { r }, default = { send = raw.reply(REAL) } } end
  return raw.start{ default = r }
end

local SECOND_REPLY = { delay = 0.1, send = raw.reply(FORGED) }
local PROXY_408 = { delay = 0.1, send = IDLE_408, close = true }

-- The first request is answered and its connection kept; the second is read
-- in full and its connection closed without a reply; later ones answered.
local function dropping_server()
  return raw.start{
    replies = { { send = raw.reply(REAL) }, { close = true } },
    default = { send = raw.reply(REAL) },
  }
end

describe("a kept-alive connection", function()
  describe("through libcurl", function()
    local srv
    after_each(function() if srv then srv:stop() end end)

    it("is never reused after the server wrote stray bytes on it: the next call opens a fresh one", function()
      srv = stray_server(SECOND_REPLY)
      local s = session{ timeout = 5 }
      for i = 1, 3 do
        local status, body = s:request("GET", srv.base_url .. "/x" .. i)
        assert.equal(200, status)
        assert.equal(REAL, body)
        require("wecom.core").sleep(0.5) -- the stray reply arrives while the connection is idle
      end
      s:close()
      assert.equal(3, #srv:requests())
      assert.equal(3, srv:connections())
    end)

    it("costs no failed call when an idle connection gets a proxy's 408", function()
      srv = stray_server(PROXY_408)
      local s = session{ timeout = 5 }
      for i = 1, 3 do
        local status, body = s:request("POST", srv.base_url .. "/x" .. i, "{}")
        assert.equal(200, status)
        assert.equal(REAL, body)
        require("wecom.core").sleep(0.5)
      end
      s:close()
      assert.equal(3, #srv:requests())
    end)

    it("is never reused by request_many after stray bytes", function()
      srv = stray_server(SECOND_REPLY)
      local s = session{ timeout = 5 }
      local reqs = {}
      for i = 1, 4 do reqs[i] = { method = "GET", url = srv.base_url .. "/m" .. i } end
      for _ = 1, 2 do
        for _, r in ipairs(s:request_many(reqs, 4)) do
          assert.equal(200, r.status, r.message)
          assert.equal(REAL, r.body)
        end
        require("wecom.core").sleep(0.5)
      end
      -- and a single request after a batch
      assert.equal(REAL, select(2, s:request("GET", srv.base_url .. "/single")))
      s:close()
      assert.equal(9, #srv:requests())
    end)

    it("is reused while the server keeps to the protocol", function()
      srv = raw.start{ default = { send = raw.reply(REAL) } }
      local s = session{ timeout = 5 }
      for i = 1, 5 do assert.equal(REAL, select(2, s:request("GET", srv.base_url .. "/k" .. i))) end
      s:close()
      assert.equal(1, srv:connections())
    end)

    it("that closes without a reply: a non-idempotent request is not sent again", function()
      srv = dropping_server()
      local s = session{ timeout = 5 }
      assert.equal(200, (s:request("POST", srv.base_url .. "/add", "{}")))
      local ok, reason, message = s:request("POST", srv.base_url .. "/add", "{}", false)
      assert.is_nil(ok)
      assert.equal("empty", reason)
      assert.truthy(message:find("not sent again", 1, true), message)
      assert.equal(2, #srv:requests())
      -- the session goes on with a fresh connection
      assert.equal(200, (s:request("POST", srv.base_url .. "/add", "{}")))
      s:close()
    end)

    it("that closes without a reply: POST without the flag counts as non-idempotent", function()
      srv = dropping_server()
      local s = session{ timeout = 5 }
      assert.equal(200, (s:request("POST", srv.base_url .. "/add", "{}")))
      assert.equal("empty", select(2, s:request("POST", srv.base_url .. "/add", "{}")))
      assert.equal(2, #srv:requests())
      s:close()
    end)

    it("that closes without a reply: an idempotent request is sent again on a fresh one", function()
      srv = dropping_server()
      local s = session{ timeout = 5 }
      assert.equal(200, (s:request("POST", srv.base_url .. "/get", "{}")))
      local status, body = s:request("POST", srv.base_url .. "/get", "{}", true)
      assert.equal(200, status)
      assert.equal(REAL, body)
      assert.equal(3, #srv:requests())
      s:close()
    end)

    it("that closes without a reply: request_many keeps the same rule per request", function()
      srv = raw.start{
        replies = { { send = raw.reply(REAL) }, { close = true } },
        default = { send = raw.reply(REAL) },
      }
      local s = session{ timeout = 5 }
      assert.equal(200, (s:request_many({ { method = "POST", url = srv.base_url .. "/a", body = "{}" } }, 1)[1].status))
      local res = s:request_many({ { method = "POST", url = srv.base_url .. "/a", body = "{}", idempotent = false } }, 1)
      assert.equal("empty", res[1].reason)
      assert.equal(2, #srv:requests())
      s:close()
    end)

    it("refuses a bad idempotent flag", function()
      local s = session()
      assert.has_error(function() s:request("POST", "http://127.0.0.1:1/", "{}", "yes") end)
      assert.has_error(function()
        s:request_many({ { method = "POST", url = "http://127.0.0.1:1/", body = "{}", idempotent = 1 } })
      end)
      s:close()
    end)
  end)

  describe("through the client", function()
    local srv
    after_each(function() if srv then srv:stop() end end)

    it("fails calendar_add with maybe_applied, sent once, when its connection closes without a reply", function()
      srv = dropping_server()
      local client = assert(wecom.new{ access_token = "test-token", base_url = srv.base_url, transport = "curl" })
      assert(client:calendar_get{ cal_id_list = { "x" } })
      local res, err = client:calendar_add{ calendar = { summary = "once", color = "#000000" } }
      assert.is_nil(res)
      assert.equal("transport", err.kind)
      assert.equal("empty", err.reason)
      assert.is_true(err.maybe_applied)
      assert.equal(1, err.attempts)
      assert.equal(2, #srv:requests())
      client:close()
    end)
  end)

  describe("through cosockets", function()
    local ngx_transport, srv

    setup(function() ngx_transport = cosockets.start() end)
    teardown(function() ngx_transport:stop() end)
    after_each(function() if srv then srv:stop() end end)

    local function run(calls) return ngx_transport:run(calls) end

    local function get(path, sleep) return { requests = { { method = "GET", url = srv.base_url .. path } }, sleep = sleep } end

    it("is never reused after the server wrote stray bytes on it", function()
      srv = stray_server(SECOND_REPLY)
      local results = run{ get("/1"), get("/2", 0.5), get("/3", 0.5) }
      for i = 1, 3 do
        assert.equal(200, results[i][1].status, results[i][1].message)
        assert.equal(REAL, results[i][1].body)
      end
      assert.equal(3, srv:connections())
    end)

    it("costs no failed call when an idle connection gets a proxy's 408", function()
      srv = stray_server(PROXY_408)
      local results = run{ get("/1"), get("/2", 0.5), get("/3", 0.5) }
      for i = 1, 3 do assert.equal(REAL, results[i][1].body, results[i][1].message) end
      assert.equal(3, #srv:requests())
    end)

    local function post(idempotent)
      return { requests = { { method = "POST", url = srv.base_url .. "/add", body = "{}", idempotent = idempotent } } }
    end

    it("that closes without a reply: a non-idempotent request is not sent again", function()
      srv = dropping_server()
      local results = run{ post(false), post(false), post(false) }
      assert.equal(200, results[1][1].status)
      assert.equal("empty", results[2][1].reason)
      assert.truthy(results[2][1].message:find("not sent again", 1, true), results[2][1].message)
      assert.equal(200, results[3][1].status)
      assert.equal(3, #srv:requests())
    end)

    it("that closes without a reply: POST without the flag counts as non-idempotent", function()
      srv = dropping_server()
      local results = run{ post(nil), post(nil) }
      assert.equal("empty", results[2][1].reason)
      assert.equal(2, #srv:requests())
    end)

    it("that closes without a reply: an idempotent request is sent again on a fresh one", function()
      srv = dropping_server()
      local results = run{ post(true), post(true) }
      assert.equal(200, results[2][1].status, results[2][1].message)
      assert.equal(REAL, results[2][1].body)
      assert.equal(3, #srv:requests())
    end)

    it("that closes without a reply: request_many keeps the same rule", function()
      srv = dropping_server()
      local many = post(false)
      many.concurrency = 2
      local results = run{ post(false), many }
      assert.equal("empty", results[2][1].reason)
      assert.equal(2, #srv:requests())
    end)
  end)
end)
