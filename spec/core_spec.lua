-- The C core (wecom.core) used directly: endpoint table, encoder, decoder,
-- the libcurl session and the small utilities.
local core = require("wecom.core")
local emulator = require("support.emulator")
local session = require("support.session")
local decode_reply = require("wecom.request").decode_reply

local function id_of(name)
  for _, ep in ipairs(core.endpoints()) do
    if ep.name == name then return ep.id end
  end
  error("no endpoint " .. name)
end

-- The socket inodes this process holds open (Linux /proc).
local function sockets()
  local set = {}
  local p = io.popen("ls -l /proc/$PPID/fd 2>/dev/null")
  for line in p:lines() do
    local inode = line:match("socket:%[(%d+)%]")
    if inode then set[inode] = true end
  end
  p:close()
  return set
end

local function new_since(before, now)
  local list = {}
  for inode in pairs(now) do
    if not before[inode] then list[#list + 1] = inode end
  end
  return list
end

describe("wecom.core", function()
  it("is the one built for this Lua: the specs refuse to run without it", function()
    local shell = require("support.shell")
    local rc, out = shell.run(("WECOM_CORE_DIR=/nonexistent %s -e %s"):format(shell.lua,
      shell.quote('dofile("spec/support/helper.lua")')))
    assert.is_not.equal(0, rc)
    assert.truthy(out:find("/nonexistent/wecom/core.so is missing: run `make build", 1, true), out)
  end)

  describe("endpoint table", function()
    it("has one row per seed endpoint with its path and idempotency", function()
      local rows = {}
      for _, ep in ipairs(core.endpoints()) do rows[ep.name] = ep end
      assert.equal("calendar_add", rows.calendar_add.name)
      assert.equal("oa/calendar/add", rows.calendar_add.path)
      assert.is_false(rows.calendar_add.idempotent)
      assert.equal("oa/calendar/update", rows.calendar_update.path)
      assert.is_true(rows.calendar_update.idempotent)
      assert.equal("oa/calendar/get", rows.calendar_get.path)
      assert.is_true(rows.calendar_get.idempotent)
      assert.equal("oa/calendar/del", rows.calendar_del.path)
      assert.is_true(rows.calendar_del.idempotent)
      assert.equal("oa/schedule/get_by_calendar", rows.schedule_get_by_calendar.path)
      assert.is_true(rows.schedule_get_by_calendar.idempotent)
    end)

    it("gives each row's request schema, with the limits the helpers read", function()
      local rows = {}
      for _, ep in ipairs(core.endpoints()) do rows[ep.name] = ep end
      local ids = rows.calendar_get.body.fields.cal_id_list
      assert.same({ type = "array", required = true, min = 1, max = 1000,
        elem = { type = "string", bytes = true, min = 1, max = 64 } }, ids)
      local calendar = rows.calendar_update.body.fields.calendar
      assert.equal(2000, calendar.fields.shares.max)
      assert.same({ 1, 3 }, calendar.fields.shares.elem.fields.permission.one_of)
      assert.same({ type = "flag" }, calendar.fields.set_as_default)
      assert.same({ type = "color" }, calendar.fields.color)
      assert.truthy(calendar.fields.organizer.refused:find("can't be updated", 1, true))
      assert.equal(300, rows.schedule_del_attendees.body.fields.attendees.max)
      local limit = rows.schedule_get_by_calendar.body.fields.limit
      assert.same({ type = "integer", min = 1, max = 1000 }, limit)
      assert.same({ 0, 300, 900, 3600, 86400 },
        rows.schedule_add.body.fields.schedule.fields.reminders.fields.remind_before_event_secs.one_of)
    end)

    it("refuses an unknown endpoint id", function()
      assert.has_error(function() core.encode(9999, {}) end)
      assert.has_error(function() core.encode(0, {}) end)
    end)
  end)

  describe("encode", function()
    it("writes text as raw UTF-8 and integers as integers", function()
      local json = core.encode(id_of("calendar_del"), { cal_id = "日历" })
      assert.equal('{"cal_id":"日历"}', json)
      json = core.encode(id_of("schedule_get_by_calendar"), { cal_id = "c", offset = 3.0 })
      assert.truthy(json:find('"offset":3[,}]'))
      assert.falsy(json:find("\\u", 1, true))
    end)

    it("escapes quotes, backslashes and line breaks the JSON way", function()
      local json = core.encode(nil, { s = 'a"b\\c\nd\re\tf' })
      assert.equal('{"s":"a\\"b\\\\c\\nd\\re\\tf"}', json)
    end)

    it("returns nil, field and message for bad input", function()
      local json, field, msg = core.encode(id_of("calendar_del"), { cal_id = 5 })
      assert.is_nil(json)
      assert.equal("cal_id", field)
      assert.equal("expected a string, got 5", msg)
    end)

    it("sends unknown values by their Lua type", function()
      local json = core.encode(nil, { list = { 1, 2.5, "x", true, false }, obj = { k = "v" } })
      local cjson = require("cjson")
      assert.same({ list = { 1, 2.5, "x", true, false }, obj = { k = "v" } }, cjson.decode(json))
    end)

    it("sends cjson.null as null", function()
      local cjson = require("cjson")
      assert.equal('{"a":null}', core.encode(nil, { a = cjson.null }))
    end)

    it("tells a known field from a key that only starts like it", function()
      -- "cal_id_list" followed by NUL bytes is another key, refused for its NULs
      local json, field, msg = core.encode(id_of("calendar_get"), { cal_id_list = { "a" }, ["cal_id_list\0\0\0"] = 1 })
      assert.is_nil(json)
      assert.truthy(msg:find("control character U+0000", 1, true), msg)
      assert.truthy(field:find("^cal_id_list"))
      -- and a prefix of a known name is an unknown field, passed through
      local sent = require("cjson").decode(core.encode(id_of("calendar_get"), { cal_id_list = { "a" }, cal_id_lis = 1 }))
      assert.same({ cal_id_list = { "a" }, cal_id_lis = 1 }, sent)
    end)

    it("leaves a reused buffer clean after a large body", function()
      local big = core.encode(nil, { s = string.rep("x", 3 * 1024 * 1024) })
      assert.equal(3 * 1024 * 1024 + 8, #big)
      assert.equal('{"a":1}', core.encode(nil, { a = 1 }))
    end)
  end)

  describe("decode", function()
    it("returns the reply and its errcode", function()
      local res, errcode = decode_reply('{"errcode":0,"errmsg":"ok","cal_id":"x"}')
      assert.equal("x", res.cal_id)
      assert.equal(0, errcode)
      res, errcode = decode_reply('{"errcode":90457,"errmsg":"bad"}')
      assert.equal(90457, errcode)
      assert.equal("bad", res.errmsg)
    end)

    it("treats a reply without errcode as success", function()
      local res, errcode = decode_reply('{"access_token":"t"}')
      assert.equal("t", res.access_token)
      assert.equal(0, errcode)
    end)

    it("gives integers back as integers, even on Lua 5.3+", function()
      local res = decode_reply('{"errcode":0,"schedule_list":[{"start_time":1571274600,"x":1.5}]}')
      local s = res.schedule_list[1]
      assert.equal(1571274600, s.start_time)
      assert.equal(1.5, s.x)
      if math.type then
        assert.equal("integer", math.type(s.start_time))
        assert.equal("integer", math.type(res.errcode))
        assert.equal("float", math.type(s.x))
      end
      assert.equal("1571274600", tostring(s.start_time))
    end)

    it("refuses malformed JSON, arrays, scalars and odd errcodes", function()
      local res, msg = decode_reply('{"errcode":')
      assert.is_nil(res)
      assert.truthy(msg:find("Expected", 1, true))
      assert.same({ nil, "reply is not a JSON object" }, { decode_reply("[1,2]") })
      assert.same({ nil, "reply is not a JSON object" }, { decode_reply('"x"') })
      assert.same({ nil, "empty reply" }, { decode_reply("") })
      assert.same({ nil, "reply has an errcode that is not an integer" }, { decode_reply('{"errcode":"0"}') })
      assert.same({ nil, "reply has an errcode that is not an integer" }, { decode_reply('{"errcode":1.5}') })
    end)

    it("refuses a JSON array even when empty, and allows leading blanks", function()
      assert.same({ nil, "reply is not a JSON object" }, { decode_reply("[]") })
      assert.same({ nil, "reply is not a JSON object" }, { decode_reply(" \n[]") })
      assert.same({ nil, "empty reply" }, { decode_reply(" \r\n") })
      local res, errcode = decode_reply(' \n {"errcode":0,"x":1}')
      assert.equal(1, res.x)
      assert.equal(0, errcode)
    end)

    it("gives integers back only where a double holds them exactly", function()
      local res = decode_reply('{"small":9007199254740992,"big":1234567890123456789}')
      assert.equal(9007199254740992, res.small)
      if math.type then
        assert.equal("integer", math.type(res.small))
        -- cjson has already lost the last digits: no false precision
        assert.equal("float", math.type(res.big))
      end
    end)

    it("refuses NaN and absurd nesting", function()
      assert.is_nil((decode_reply('{"a":NaN}')))
      assert.is_nil((decode_reply(string.rep("[", 5000) .. string.rep("]", 5000))))
    end)

    it("is not affected by the user's cjson settings", function()
      local cjson = require("cjson")
      cjson.decode_max_depth(2)
      local res = decode_reply('{"a":{"b":{"c":1}}}')
      cjson.decode_max_depth(1000)
      assert.equal(1, res.a.b.c)
    end)

    it("lets a raising JSON decoder raise: a memory error stays a memory error", function()
      local decode = core.reply_decoder(function() error("not enough memory", 0) end)
      assert.has_error(function() decode("{}") end, "not enough memory")
      assert.has_error(function() core.reply_decoder("cjson") end)
    end)
  end)

  describe("session", function()
    local emu
    setup(function() emu = emulator.start() end)
    teardown(function() emu:stop() end)

    it("closes twice without harm and refuses requests after close", function()
      local s = session()
      assert.truthy(tostring(s):find("open", 1, true))
      assert.is_true(s:close())
      assert.is_true(s:close())
      assert.is_true(s:is_closed())
      assert.truthy(tostring(s):find("closed", 1, true))
      assert.same({ nil, "closed", "the HTTP session is closed" }, { s:request("GET", "http://127.0.0.1:1/") })
    end)

    it("raises on misuse: bad options, methods and arguments", function()
      -- the options come complete from wecom.options: C has no defaults of its own
      local function complete(t)
        local o = assert(require("wecom.options").transport())
        for k, v in pairs(t) do o[k] = v end
        return o
      end
      assert.has_no_error(function() core.session(complete{}):close() end)
      assert.has_error(function() core.session{} end, "session option timeout: expected a positive number of seconds")
      assert.has_error(function() core.session(complete{ timeout = -1 }) end)
      assert.has_error(function() core.session(complete{ timeout = "1" }) end)
      assert.has_error(function() core.session(complete{ connect_timeout = 0 }) end)
      assert.has_error(function() core.session(complete{ max_response_bytes = 0 }) end)
      assert.has_error(function() core.session(complete{ ca_file = 5 }) end)
      assert.has_error(function() core.session(5) end)
      assert.has_error(function() core.session() end)
      local s = session()
      assert.has_error(function() s:request("PUT", "http://127.0.0.1:1/") end)
      assert.has_error(function() s:request("GET", "http://127.0.0.1:1/\0x") end)
      assert.has_error(function() s.request({}, "GET", "http://x/") end)
      s:close()
    end)

    it("makes requests and keeps the connection alive", function()
      local s = session()
      local status, body = s:request("GET", emu.base_url .. "/emulator/stats")
      assert.equal(200, status)
      assert.truthy(body:find("tokens_issued", 1, true))
      local before = sockets()
      for _ = 1, 20 do assert.equal(200, (s:request("GET", emu.base_url .. "/emulator/stats"))) end
      assert.same({}, new_since(before, sockets()))
      s:close()
    end)

    it("is freed by the garbage collector with its connection", function()
      local before = sockets()
      local weak = setmetatable({}, { __mode = "v" })
      local opened
      do
        local s = session()
        assert.equal(200, (s:request("GET", emu.base_url .. "/emulator/stats")))
        weak[1] = s
        opened = new_since(before, sockets())
        assert.is_true(#opened > 0) -- the kept-alive connection
      end
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
      local now = sockets()
      for _, inode in ipairs(opened) do assert.is_nil(now[inode], "socket " .. inode .. " still open") end
    end)

    it("runs many requests at once, answering in request order", function()
      emu:fault{ path = "slow", latency_ms = 300, times = -1 }
      local s = session()
      local reqs = {}
      for i = 1, 10 do reqs[i] = { method = "GET", url = emu.base_url .. "/cgi-bin/slow" } end
      reqs[11] = { method = "GET", url = "http://127.0.0.1:1/" }
      reqs[12] = { method = "POST", url = emu.base_url .. "/emulator/stats", body = "{}" }
      local t0 = core.monotime()
      local res = s:request_many(reqs, 12)
      -- ten 300 ms requests one after another would take 3 s
      assert.is_true(core.monotime() - t0 < 1.5, "took " .. (core.monotime() - t0))
      assert.equal(12, #res)
      for i = 1, 10 do assert.equal(404, res[i].status) end
      assert.same({ "connect" }, { res[11].reason })
      assert.is_string(res[11].message)
      assert.equal(200, res[12].status)
      assert.truthy(res[12].body:find("tokens_issued", 1, true))
      -- a lower concurrency queues the rest
      t0 = core.monotime()
      res = s:request_many({ reqs[1], reqs[2], reqs[3], reqs[4] }, 2)
      assert.is_true(core.monotime() - t0 >= 0.55)
      assert.equal(4, #res)
      emu:clear_faults()
      s:close()
      res = s:request_many({ reqs[12] })
      assert.equal("closed", res[1].reason)
    end)

    it("refuses a bad request list before sending anything", function()
      local s = session()
      local before = emu:calls("x")
      assert.has_error(function() s:request_many({ { method = "GET", url = emu.base_url .. "/cgi-bin/x" }, 5 }) end)
      assert.has_error(function() s:request_many({ { method = "PUT", url = "http://x/" } }) end)
      assert.has_error(function() s:request_many({ { method = "GET" } }) end)
      assert.has_error(function() s:request_many({ { method = "POST", url = "http://x/", body = {} } }) end)
      assert.has_error(function() s:request_many({}, 0) end)
      assert.has_error(function() s:request_many({}, 65) end)
      assert.equal(before, emu:calls("x"))
      assert.same({}, s:request_many({}))
      s:close()
    end)

    it("names refused connections", function()
      local s = session{ connect_timeout = 2 }
      local ok, reason, msg = s:request("GET", "http://127.0.0.1:1/")
      assert.is_nil(ok)
      assert.equal("connect", reason)
      assert.is_string(msg)
      s:close()
    end)

    it("gives up at the total timeout", function()
      emu:fault{ path = "oa/calendar/get", latency_ms = 3000 }
      local s = session{ timeout = 0.3 }
      local t0 = core.monotime()
      local ok, reason = s:request("POST", emu.base_url .. "/cgi-bin/oa/calendar/get", "{}")
      assert.is_nil(ok)
      assert.equal("timeout", reason)
      assert.is_true(core.monotime() - t0 < 2)
      s:close()
      emu:clear_faults()
    end)

    it("refuses a reply larger than max_response_bytes", function()
      local s = session{ max_response_bytes = 16 }
      local ok, reason, msg = s:request("GET", emu.base_url .. "/emulator/stats")
      assert.is_nil(ok)
      assert.equal("too_large", reason)
      assert.truthy(msg:find("max_response_bytes", 1, true))
      -- the session stays usable
      assert.equal("too_large", select(2, s:request("GET", emu.base_url .. "/emulator/stats")))
      s:close()
      s = session()
      assert.equal(200, (s:request("GET", emu.base_url .. "/emulator/stats")))
      s:close()
    end)

    it("does not follow redirects or speak other protocols", function()
      local s = session()
      local ok, reason = s:request("GET", "file:///etc/passwd")
      assert.is_nil(ok)
      assert.equal("url", reason)
      s:close()
    end)
  end)

  describe("utilities", function()
    it("sleeps without spinning", function()
      local t0, c0 = core.monotime(), os.clock()
      core.sleep(0.2)
      assert.is_true(core.monotime() - t0 >= 0.19)
      assert.is_true(os.clock() - c0 < 0.1)
    end)

    it("draws jitter in [0, 1)", function()
      for _ = 1, 1000 do
        local r = core.random()
        assert.is_true(r >= 0 and r < 1)
      end
      assert.are_not.equal(core.random(), core.random())
    end)

    it("computes SHA-256", function()
      assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", core.sha256(""))
      assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256("abc"))
      assert.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        core.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    end)

    it("reports its versions", function()
      assert.is_string(core._VERSION)
      assert.truthy(core.curl_version:find("libcurl", 1, true))
    end)
  end)
end)
