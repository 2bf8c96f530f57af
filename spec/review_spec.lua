-- Regression tests of defects found reviewing the Lua layer (one `it` per
-- defect; each failed before its fix).
local callback = require("wecom.callback")
local child = require("support.child")
local cjson = require("cjson")
local core = require("wecom.core")
local ical = require("wecom.ical")
local memory = require("wecom.cache.memory")
local wx = require("support.wxcrypt")

local NOW = 1700000000
local MON = 1795399200 -- 2026-11-23 10:00 +08:00

local box = core.callback_box(wx.TOKEN, wx.KEY, wx.RECEIVEID)

local function new_callback(seen)
  return assert(callback.new{ token = wx.TOKEN, encoding_aes_key = wx.KEY, receiveid = wx.RECEIVEID,
    clock = function() return NOW end, seen = seen })
end

-- A POST of the event as WeCom sends it, sealed afresh: query, body.
local function post(create_time)
  local xml = ("<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>"
    .. "<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[modify_schedule]]></Event>"
    .. "<CalId><![CDATA[wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA]]></CalId><ScheduleId><![CDATA[s1]]></ScheduleId></xml>")
    :format(wx.RECEIVEID, create_time or NOW)
  local timestamp = tostring(NOW)
  local encrypt, signature, nonce = box:seal(xml, timestamp)
  return { msg_signature = signature, timestamp = timestamp, nonce = nonce },
    ("<xml><ToUserName><![CDATA[%s]]></ToUserName><Encrypt><![CDATA[%s]]></Encrypt></xml>"):format(wx.RECEIVEID, encrypt)
end

-- Runs fn(...) in a coroutine, resuming it after each yield (as a
-- coroutine-based server's loop does): the number of yields, and what fn
-- returned.
local function drive(fn, ...)
  local co = coroutine.create(fn)
  local yields, res = 0, { coroutine.resume(co, ...) }
  while coroutine.status(co) ~= "dead" do
    yields = yields + 1
    res = { coroutine.resume(co) }
  end
  assert(res[1], res[2])
  return yields, unpack or table.unpack, res -- luacheck: ignore 143
end

describe("review", function()
  describe("wecom.callback", function()
    -- A seen store answering as a Redis client does: add (SET NX / SETNX)
    -- answers `exists` when the key is there, get answers `missing` for an
    -- absent key (ngx.null from lua-resty-redis, here cjson.null).
    local function redis_like(added, exists, missing)
      local store = memory.new()
      return {
        add = function(_, k, v, ttl)
          if store:get(k) ~= nil then return exists end
          store:set(k, v, ttl)
          return added
        end,
        get = function(_, k)
          local v = store:get(k)
          if v == nil then return missing end
          return v
        end,
        set = function(_, k, v, ttl) store:set(k, v, ttl) return "OK" end,
        delete = function(_, k) store:delete(k) return 1 end,
      }
    end

    it("handles a message once with a seen store whose add answers 0 or null for a key that exists", function()
      for _, answers in ipairs{ { 1, 0, cjson.null }, { "OK", cjson.null, cjson.null } } do
        local cb = new_callback(redis_like(answers[1], answers[2], answers[3]))
        local calls, during = 0, nil
        local q1, b1 = post()
        local status = cb:handle("POST", q1, b1, function()
          calls = calls + 1
          -- WeCom delivers again while the handler runs: re-encrypted, same message
          local q, b = post()
          during = cb:handle("POST", q, b, function() calls = calls + 1 end)
        end)
        assert.equal(200, status)
        assert.equal(503, during)
        local q, b = post()
        assert.same({ 200, "success" }, { cb:handle("POST", q, b, function() calls = calls + 1 end) })
        assert.equal(1, calls, tostring(answers[2]))
      end
    end)

    it("lets the handler and the seen store yield through it (a coroutine-based server), on Lua 5.1 too", function()
      local store = memory.new()
      local seen = {}
      for _, m in ipairs{ "add", "get", "set", "delete" } do
        seen[m] = function(_, ...)
          coroutine.yield("io")
          return store[m](store, ...)
        end
      end
      local cb = new_callback(seen)
      local calls = 0
      local q, b = post()
      local yields, unpack_, res = drive(function()
        return cb:handle("POST", q, b, function(msg)
          coroutine.yield("io") -- the handler re-reads the schedule through a yielding transport
          calls = calls + 1
          assert.equal("s1", msg.ScheduleId)
        end)
      end)
      local status, body, err = unpack_(res, 2)
      assert.is_nil(err)
      assert.same({ 200, "success" }, { status, body })
      assert.equal(1, calls)
      assert.is_true(yields >= 3, yields .. " yields") -- add, the handler, set
    end)
    it("keeps a failed handler's or store's text to one printable line of bounded length in the error", function()
      local cb = new_callback()
      local q, b = post()
      local long = "first line\nsecond line \27[31m" .. ("x"):rep(100000) .. wx.TOKEN
      local status, _, err = cb:handle("POST", q, b, function() error(long, 0) end)
      assert.equal(500, status)
      assert.equal("handler", err.reason)
      assert.is_nil(err.message:find("[%c]"), err.message:sub(1, 200))
      assert.truthy(err.message:find("first line\\nsecond line", 1, true), err.message:sub(1, 200))
      assert.is_true(#err.message < 2000, #err.message .. " bytes")
      assert.is_nil(err.message:find(wx.TOKEN, 1, true))
      local down = { add = function() return nil, long end, get = function() end, set = function() end,
        delete = function() end }
      q, b = post()
      status, _, err = new_callback(down):handle("POST", q, b, function() end)
      assert.equal(503, status)
      assert.is_nil(err.message:find("[%c]"), err.message:sub(1, 200))
      assert.is_true(#err.message < 2000, #err.message .. " bytes")
    end)
  end)

  describe("wecom.ical", function()
    local function schedule(userid)
      return { schedule_id = "s1", summary = "sync", start_time = MON, end_time = MON + 3600,
        attendees = { { userid = userid } } }
    end

    it("lets the write function yield through ical.writer, on Lua 5.1 too", function()
      local parts = {}
      local w = assert(ical.writer(function(chunk)
        coroutine.yield("io")
        parts[#parts + 1] = chunk
      end, { dtstamp = MON }))
      local yields, unpack_, res = drive(function()
        assert(w:add(schedule("lisi")))
        return w:finish()
      end)
      local ok, err = unpack_(res, 2)
      assert.is_nil(err)
      assert.is_true(ok)
      assert.equal(1, yields)
      assert.truthy(table.concat(parts):find("END:VCALENDAR\r\n$"))
    end)

    it("keeps what opts.address returns to one clean line: no line a server's userid injects", function()
      local text = assert(ical.vcalendar({ schedule("li\r\nX-INJECTED:1") },
        { dtstamp = MON, address = function(userid) return "mailto:" .. userid .. "@example.com" end }))
      for line in text:gmatch("([^\r\n]*)\r\n") do
        assert.is_nil(line:find("^X%-INJECTED"), text)
      end
      assert.truthy(text:gsub("\r\n ", ""):find(":mailto:liX-INJECTED:1@example.com\r\n", 1, true), text)
    end)

    it("answers nil, err naming opts.address when it returns no string or raises, instead of raising", function()
      local ok, text, err = pcall(ical.vcalendar, { schedule("lisi") }, { address = function() return nil end })
      assert.is_true(ok, tostring(text))
      assert.is_nil(text)
      assert.equal("validation", err.kind)
      assert.equal("opts.address", err.field)
      assert.truthy(err.message:find("lisi", 1, true), err.message)
      ok, text, err = pcall(ical.vcalendar, { schedule("lisi") }, { address = function() error("no mail") end })
      assert.is_true(ok, tostring(text))
      assert.is_nil(text)
      assert.truthy(err.message:find("raised: .*no mail"), err.message)
    end)

    it("writes durations of whole seconds given as floats without a decimal point (Lua 5.4)", function()
      assert.equal("PT1H0M5S", ical.duration(3605.0))
      assert.equal("-P1DT1M30S", ical.duration(-86490.0))
      local text = assert(ical.vcalendar({ { schedule_id = "s1", start_time = MON, end_time = MON + 3600,
        reminders = { is_remind = 1, remind_time_diffs = { -905.0 } } } }, { dtstamp = MON, refresh_interval = 3605.0 }))
      assert.truthy(text:find("\r\nTRIGGER:-PT15M5S\r\n", 1, true), text)
      assert.truthy(text:find("\r\nREFRESH-INTERVAL;VALUE=DURATION:PT1H0M5S\r\n", 1, true), text)
    end)

    it("folds any line in bounded time, bytes that are not UTF-8 included (no endless loop)", function()
      local rc, out = child.run([[
        local ical = require("wecom.ical")
        local line = ical.fold(("\128"):rep(200))
        assert(line:gsub("\r\n ", "") == ("\128"):rep(200))
        local text = assert(ical.vcalendar({ { schedule_id = "s1", start_time = 0, end_time = 60,
          attendees = { { userid = ("\200"):rep(100) } } } }, { address = function(u) return "mailto:" .. u end }))
        for l in text:gmatch("([^\r\n]*)\r\n") do assert(#l <= 75, l) end
        print("folded")
      ]], 20)
      assert.equal(0, rc, out)
      assert.truthy(out:find("folded", 1, true), out)
    end)
  end)
end)
