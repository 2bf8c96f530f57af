-- The emulator itself: WeCom's semantics as the seeds and API.md describe
-- them, spoken to over raw HTTP where the client would refuse the input.
local cjson = require("cjson")
local core = require("wecom.core")
local emulator = require("support.emulator")
local session = require("support.session")
local decode_reply = require("wecom.request").decode_reply

describe("emulator", function()
  local emu, http, token

  setup(function()
    emu = emulator.start()
    http = session()
  end)
  teardown(function()
    http:close()
    emu:stop()
  end)

  local function get(path)
    local status, body = http:request("GET", emu.base_url .. path)
    return status, cjson.decode(body)
  end

  local function fresh_token()
    local _, res = get(("/cgi-bin/gettoken?corpid=%s&corpsecret=%s"):format(emu.corpid, emu.corpsecret))
    return res.access_token
  end

  -- POST raw text to an API path with the current token.
  local function post_raw(path, raw, tok)
    local url = emu.base_url .. "/cgi-bin/" .. path
    if tok ~= false then url = url .. "?access_token=" .. (tok or token) end
    local status, body = http:request("POST", url, raw)
    return cjson.decode(body), status, body
  end

  local function post(path, body) return post_raw(path, cjson.encode(body)) end

  local function add_calendar(fields)
    local c = { summary = "s", color = "#123456" }
    for k, v in pairs(fields or {}) do c[k] = v end
    local res = post("oa/calendar/add", { calendar = c })
    assert.equal(0, res.errcode, res.errmsg)
    return res.cal_id
  end

  local function get_calendar(cal_id)
    local res = post("oa/calendar/get", { cal_id_list = { cal_id } })
    assert.equal(0, res.errcode, res.errmsg)
    return res.calendar_list[1]
  end

  before_each(function()
    emu:reset()
    token = fresh_token()
  end)

  describe("gettoken", function()
    it("issues a token with expires_in", function()
      local status, res = get(("/cgi-bin/gettoken?corpid=%s&corpsecret=%s"):format(emu.corpid, emu.corpsecret))
      assert.equal(200, status)
      assert.equal(0, res.errcode)
      assert.equal(7200, res.expires_in)
      assert.is_true(#res.access_token >= 32)
    end)

    it("answers wrong or missing credentials with WeCom's codes", function()
      assert.equal(40013, select(2, get("/cgi-bin/gettoken?corpid=nope&corpsecret=" .. emu.corpsecret)).errcode)
      assert.equal(40001, select(2, get("/cgi-bin/gettoken?corpid=" .. emu.corpid .. "&corpsecret=nope")).errcode)
      assert.equal(41002, select(2, get("/cgi-bin/gettoken?corpsecret=x")).errcode)
      assert.equal(41004, select(2, get("/cgi-bin/gettoken?corpid=" .. emu.corpid)).errcode)
    end)
  end)

  describe("every API call", function()
    it("needs the token in the query string", function()
      local res = post_raw("oa/calendar/get", cjson.encode{ cal_id_list = { "x" }, access_token = token }, false)
      assert.equal(41001, res.errcode)
      assert.equal(40014, post_raw("oa/calendar/get", "{}", "not-a-token").errcode)
    end)

    it("answers 42001 for an expired token and 40014 for an invalidated one", function()
      emu:expire_tokens()
      assert.equal(42001, post("oa/calendar/get", { cal_id_list = { "x" } }).errcode)
      token = fresh_token()
      emu:invalidate_tokens()
      assert.equal(40014, post("oa/calendar/get", { cal_id_list = { "x" } }).errcode)
    end)

    it("refuses \\uXXXX escapes (40033) and bad JSON (47001)", function()
      assert.equal(40033, post_raw("oa/calendar/add", '{"calendar":{"summary":"\\u65e5","color":"#000000"}}').errcode)
      assert.equal(47001, post_raw("oa/calendar/add", '{"calendar":').errcode)
    end)
  end)

  describe("calendars", function()
    it("applies the defaults: readonly 1, shares[].readonly 1", function()
      local cal = get_calendar(add_calendar{ shares = { { userid = "u1" }, { userid = "u2", readonly = 0 } } })
      assert.equal(1, cal.readonly)
      assert.same({ { userid = "u1", readonly = 1 }, { userid = "u2", readonly = 0 } }, cal.shares)
      assert.equal("", cal.description)
    end)

    it("overwrites on update: what is left out is cleared", function()
      local cal_id = add_calendar{ readonly = 0, description = "d", shares = { { userid = "u1" } },
        admins = { "u1" } }
      local res = post("oa/calendar/update", { calendar = { cal_id = cal_id, summary = "t", color = "#654321" } })
      assert.equal(0, res.errcode)
      local cal = get_calendar(cal_id)
      assert.equal("t", cal.summary)
      assert.equal(1, cal.readonly)
      assert.equal("", cal.description)
      assert.same({}, cal.shares)
      assert.same({}, cal.admins)
      local _, _, raw = post_raw("oa/calendar/get", cjson.encode{ cal_id_list = { cal_id } })
      assert.truthy(raw:find('"shares":[]', 1, true))
    end)

    it("keeps the organizer: it can't be updated", function()
      local cal_id = add_calendar{ organizer = "boss" }
      local res = post("oa/calendar/update",
        { calendar = { cal_id = cal_id, organizer = "other", summary = "t", color = "#000000" } })
      assert.equal(40058, res.errcode)
      res = post("oa/calendar/update", { calendar = { cal_id = cal_id, organizer = "boss", summary = "t", color = "#000000" } })
      assert.equal(0, res.errcode)
      assert.equal("boss", get_calendar(cal_id).organizer)
    end)

    it("stores and returns the newer fields", function()
      local cal_id = add_calendar{
        shares = { { userid = "a", permission = 1 }, { userid = "b", permission = 3 } },
        admins = { "a" }, is_public = 1, public_range = { userids = { "x" }, partyids = { 7 } },
      }
      local cal = get_calendar(cal_id)
      assert.same({ { userid = "a", permission = 1 }, { userid = "b", permission = 3 } }, cal.shares)
      assert.same({ "a" }, cal.admins)
      assert.equal(1, cal.is_public)
      assert.same({ userids = { "x" }, partyids = { 7 } }, cal.public_range)
      -- skip_public_range keeps it; is_public can't change
      local res = post("oa/calendar/update",
        { calendar = { cal_id = cal_id, summary = "t", color = "#000000" }, skip_public_range = 1 })
      assert.equal(0, res.errcode)
      assert.same({ userids = { "x" }, partyids = { 7 } }, get_calendar(cal_id).public_range)
      post("oa/calendar/update", { calendar = { cal_id = cal_id, summary = "t", color = "#000000" } })
      assert.is_nil(get_calendar(cal_id).public_range)
      res = post("oa/calendar/update", { calendar = { cal_id = cal_id, summary = "t", color = "#000000", is_public = 0 } })
      assert.equal(40058, res.errcode)
    end)

    it("reports refused members in fail_result", function()
      local res = post("oa/calendar/add", { calendar = { summary = "s", color = "#000000",
        shares = { { userid = "ok1" }, { userid = "unknown-user" } } } })
      assert.equal(0, res.errcode)
      assert.same({ shares = { { userid = "unknown-user", errcode = 40001, errmsg = "not found" } } }, res.fail_result)
      assert.same({ { userid = "ok1", readonly = 1 } }, get_calendar(res.cal_id).shares)
    end)

    it("checks colours, summaries and list sizes", function()
      assert.equal(90473, post("oa/calendar/add", { calendar = { summary = "s", color = "blue" } }).errcode)
      assert.equal(40058, post("oa/calendar/add", { calendar = { summary = "", color = "#000000" } }).errcode)
      local shares = {}
      for i = 1, 2001 do shares[i] = { userid = "u" .. i } end
      assert.equal(40058, post("oa/calendar/add", { calendar = { summary = "s", color = "#000000", shares = shares } }).errcode)
      assert.equal(40058, post("oa/calendar/add", { calendar = { summary = "s", color = "#000000",
        shares = { { userid = "a" } }, admins = { "b" } } }).errcode)
    end)

    it("gets up to 1000 ids at once", function()
      local cal_id = add_calendar()
      local ids = {}
      for i = 1, 1000 do ids[i] = cal_id end
      local res = post("oa/calendar/get", { cal_id_list = ids })
      assert.equal(0, res.errcode)
      assert.equal(1, #res.calendar_list)
      ids[1001] = cal_id
      assert.equal(40058, post("oa/calendar/get", { cal_id_list = ids }).errcode)
      assert.equal(40058, post("oa/calendar/get", { cal_id_list = {} }).errcode)
    end)

    it("answers unknown and deleted calendars with 90457 and 90459", function()
      assert.equal(90457, post("oa/calendar/get", { cal_id_list = { "nope" } }).errcode)
      local cal_id = add_calendar()
      assert.equal(0, post("oa/calendar/del", { cal_id = cal_id }).errcode)
      assert.equal(90459, post("oa/calendar/get", { cal_id_list = { cal_id } }).errcode)
      assert.equal(90459, post("oa/calendar/del", { cal_id = cal_id }).errcode)
      local res = post("oa/calendar/update", { calendar = { cal_id = cal_id, summary = "s", color = "#000000" } })
      assert.equal(90459, res.errcode)
    end)
  end)

  describe("get_by_calendar", function()
    it("pages with offset 0 and limit 500 by default, then an empty list", function()
      local cal_id = add_calendar()
      emu:seed(cal_id, 600)
      local res = post("oa/schedule/get_by_calendar", { cal_id = cal_id })
      assert.equal(500, #res.schedule_list)
      assert.equal("seeded schedule 1", res.schedule_list[1].summary)
      res = post("oa/schedule/get_by_calendar", { cal_id = cal_id, offset = 500, limit = 1000 })
      assert.equal(100, #res.schedule_list)
      local _, _, raw = post_raw("oa/schedule/get_by_calendar", cjson.encode{ cal_id = cal_id, offset = 600 })
      assert.truthy(raw:find('"schedule_list":[]', 1, true))
    end)

    it("checks limit: 0 is invalid, over 1000 is 90469", function()
      local cal_id = add_calendar()
      assert.equal(40058, post("oa/schedule/get_by_calendar", { cal_id = cal_id, limit = 0 }).errcode)
      assert.equal(90469, post("oa/schedule/get_by_calendar", { cal_id = cal_id, limit = 1001 }).errcode)
      assert.equal(40058, post("oa/schedule/get_by_calendar", { cal_id = cal_id, offset = -1 }).errcode)
      assert.equal(90457, post("oa/schedule/get_by_calendar", { cal_id = "nope" }).errcode)
    end)

    it("keeps cancelled schedules with status 1 and an increasing sequence", function()
      local cal_id = add_calendar()
      emu:seed(cal_id, 20, { cancelled_every = 4 })
      local list = post("oa/schedule/get_by_calendar", { cal_id = cal_id }).schedule_list
      assert.equal(20, #list)
      for i, s in ipairs(list) do
        assert.equal(i % 4 == 0 and 1 or 0, s.status)
        if i > 1 then assert.is_true(s.sequence > list[i - 1].sequence) end
      end
    end)

    it("continues from the same offset when schedules are added later", function()
      local cal_id = add_calendar()
      emu:seed(cal_id, 10)
      assert.equal(0, #post("oa/schedule/get_by_calendar", { cal_id = cal_id, offset = 10 }).schedule_list)
      emu:seed(cal_id, 3, { summary = "late" })
      local list = post("oa/schedule/get_by_calendar", { cal_id = cal_id, offset = 10 }).schedule_list
      assert.same({ "late 1", "late 2", "late 3" }, { list[1].summary, list[2].summary, list[3].summary })
    end)
  end)

  describe("faults", function()
    it("injects latency, 5xx, malformed and truncated replies, errcodes", function()
      local cal_id = add_calendar()
      emu:fault{ path = "oa/calendar/get", latency_ms = 300 }
      local t0 = core.monotime()
      assert.equal(0, post("oa/calendar/get", { cal_id_list = { cal_id } }).errcode)
      assert.is_true(core.monotime() - t0 >= 0.29)

      emu:fault{ path = "oa/calendar/get", status = 503 }
      local status, body = http:request("POST", emu.base_url .. "/cgi-bin/oa/calendar/get?access_token=" .. token, "{}")
      assert.equal(503, status)
      assert.truthy(body:find("<html>", 1, true))

      emu:fault{ path = "oa/calendar/get", malformed = true }
      status, body = http:request("POST", emu.base_url .. "/cgi-bin/oa/calendar/get?access_token=" .. token, "{}")
      assert.equal(200, status)
      assert.is_nil((decode_reply(body)))

      emu:fault{ path = "oa/calendar/get", truncated = true }
      status, body = http:request("POST", emu.base_url .. "/cgi-bin/oa/calendar/get?access_token=" .. token,
        cjson.encode{ cal_id_list = { cal_id } })
      assert.equal(200, status)
      assert.is_nil((decode_reply(body)))

      emu:fault{ path = "oa/calendar/get", errcode = 45033 }
      assert.equal(45033, post("oa/calendar/get", { cal_id_list = { cal_id } }).errcode)
      assert.equal(0, post("oa/calendar/get", { cal_id_list = { cal_id } }).errcode)
    end)

    it("applies a fault after N requests, N times, or until cleared", function()
      emu:fault{ path = "oa/calendar/get", errcode = -1, after = 2, times = 2 }
      local codes = {}
      for i = 1, 5 do codes[i] = post("oa/calendar/get", { cal_id_list = { "x" } }).errcode end
      assert.same({ 90457, 90457, -1, -1, 90457 }, codes)
      emu:fault{ path = "*", errcode = 45009, times = -1 }
      assert.equal(45009, post("oa/calendar/get", { cal_id_list = { "x" } }).errcode)
      assert.equal(45009, post("oa/calendar/del", { cal_id = "x" }).errcode)
      emu:clear_faults()
      assert.equal(90457, post("oa/calendar/del", { cal_id = "x" }).errcode)
    end)

    it("expires or invalidates tokens when a path is called", function()
      emu:fault{ path = "oa/calendar/get", expire_tokens = true }
      assert.equal(42001, post("oa/calendar/get", { cal_id_list = { "x" } }).errcode)
      token = fresh_token()
      emu:fault{ path = "oa/calendar/get", invalidate_tokens = true }
      assert.equal(40014, post("oa/calendar/get", { cal_id_list = { "x" } }).errcode)
    end)

    it("refuses malformed fault specs", function()
      local status = http:request("POST", emu.base_url .. "/emulator/faults", cjson.encode{ path = "x", bogus = 1 })
      assert.equal(400, status)
      status = http:request("POST", emu.base_url .. "/emulator/faults", cjson.encode{ latency_ms = 1 })
      assert.equal(400, status)
      status = http:request("POST", emu.base_url .. "/emulator/nope", "{}")
      assert.equal(404, status)
    end)

    it("counts calls and errors", function()
      post("oa/calendar/get", { cal_id_list = { "x" } })
      post("oa/calendar/get", { cal_id_list = { "y" } })
      local stats = emu:stats()
      assert.equal(2, stats.calls["oa/calendar/get"])
      assert.equal(1, stats.calls.gettoken)
      assert.equal(2, stats.errors["90457"])
      assert.equal(1, stats.tokens_issued)
    end)
  end)

  it("starts nginx on a port nothing listens on (a reuseport conf would share it)", function()
    local launcher = require("wecom.emulator.launcher")
    local port = tonumber(emu.base_url:match(":(%d+)$"))
    assert.is_true(launcher.listened(port))
    local other = emulator.start()
    local other_port = tonumber(other.base_url:match(":(%d+)$"))
    assert.is_true(launcher.listened(other_port))
    other:stop()
    assert.is_false(launcher.listened(other_port))
  end)

  describe("bin/wecom-emulator", function()
    local function run(args)
      local rc, out = require("support.shell").run(require("support.shell").lua .. " bin/wecom-emulator " .. args)
      return out, rc
    end

    it("starts on a free port, reports status, and stops", function()
      local dir = os.tmpname()
      os.remove(dir)
      local out, rc = run("start --port 0 --dir " .. dir)
      assert.equal(0, rc, out)
      local base = out:match("WECOM_BASE_URL=(%S+)")
      assert.truthy(base, out)
      assert.truthy(out:find("WECOM_CORPID=wwemulator", 1, true))
      local s = session()
      local status = s:request("GET", base .. "/emulator/stats")
      assert.equal(200, status)
      out, rc = run("status --dir " .. dir)
      assert.equal(0, rc, out)
      assert.truthy(out:find("running", 1, true))
      out, rc = run("stop --dir " .. dir)
      assert.equal(0, rc, out)
      local ok, reason = s:request("GET", base .. "/emulator/stats")
      assert.is_nil(ok)
      assert.equal("connect", reason)
      s:close()
      out, rc = run("status --dir " .. dir)
      assert.equal(1, rc, out)
    end)

    it("explains its usage", function()
      local out, rc = run("bogus")
      assert.equal(2, rc)
      assert.truthy(out:find("usage: wecom-emulator start", 1, true))
    end)
  end)
end)
