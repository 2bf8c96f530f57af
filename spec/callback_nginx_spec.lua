-- Callbacks end to end: the emulator acts as a member in the WeCom client
-- and POSTs the encrypted events to examples/nginx.conf's callback location
-- (a real nginx, 2 workers, the seen store in a shared dict), whose handler
-- re-reads what changed through the client and records it at /changes.
-- Every genuine event is handled exactly once with the right fields, even
-- delivered many times at once; forged ones never.
local cjson = require("cjson")
local core = require("wecom.core")
local emulator = require("support.emulator")
local example_nginx = require("support.example")
local launcher = require("wecom.emulator.launcher")
local session = require("support.session")
local shell = require("support.shell")

local TOKEN = "emulatorCallbackToken1"
local KEY = "Xk1mZ0p5cW1KcU9ZbWh3Rk1sU2d0b3J3c1RkY2xw0a1"

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

describe("callbacks through nginx", function()
  local emu, example, http, client, box

  setup(function()
    emu = emulator.start()
    example = example_nginx.start(emu, { WECOM_CALLBACK_TOKEN = TOKEN, WECOM_CALLBACK_AES_KEY = KEY })
    http = session{ timeout = 60 }
    box = core.callback_box(TOKEN, KEY, emu.corpid)
  end)

  teardown(function()
    http:close()
    if example then example:stop() end
    emu:stop()
  end)

  before_each(function()
    emu:reset()
    emu:clear_faults()
    emu:control("callback", { url = example.base_url .. "/wecom/callback", token = TOKEN, encoding_aes_key = KEY })
    client = emu:client()
  end)

  local function changes()
    local status, body = http:request("GET", example.base_url .. "/changes")
    assert.equal(200, status)
    return cjson.decode(body)
  end

  -- The changes recorded since `count` were.
  local function since(count)
    local all, new = changes(), {}
    for i = count + 1, #all do new[#new + 1] = all[i] end
    return new
  end

  local function act(body)
    return emu:control("act", body)
  end

  local function finals(reply)
    local list = {}
    for i, d in ipairs(reply.deliveries) do list[i] = d.status end
    return list
  end

  local function calendar(summary)
    return assert(client:calendar_add{ calendar = { summary = summary or "team", color = "#336699" } }).cal_id
  end

  local function schedule(cal_id, summary)
    return assert(client:schedule_add{ schedule = { cal_id = cal_id, start_time = 1800000000,
      end_time = 1800003600, summary = summary or "review", attendees = { { userid = "lisi" } } } }).schedule_id
  end

  it("answers WeCom's URL check with the bare plaintext", function()
    local timestamp = tostring(os.time())
    local echostr, signature, nonce = box:seal("8732478324823", timestamp)
    local url = ("%s/wecom/callback?msg_signature=%s&timestamp=%s&nonce=%s&echostr=%s"):format(example.base_url,
      signature, timestamp, nonce, urlencode(echostr))
    local status, body = http:request("GET", url)
    assert.equal(200, status)
    assert.equal("8732478324823", body)
    status = http:request("GET", url:gsub("msg_signature=%x", "msg_signature=g"))
    assert.equal(403, status)
  end)

  it("handles every event kind once with WeCom's fields, re-reading what changed", function()
    local before = #changes()
    local cal, other = calendar("team"), calendar("to delete")
    local sid = schedule(cal)
    local steps = {
      { event = "modify_calendar", cal_id = cal, calendar = { summary = "team (renamed)" }, userid = "zhangsan" },
      { event = "add_schedule", cal_id = cal, schedule = { start_time = 1800007200, end_time = 1800010800,
        summary = "added in the client" }, userid = "lisi", deliver = 2 },
      { event = "modify_schedule", schedule_id = sid, schedule = { summary = "moved", location = "5楼" },
        userid = "zhangsan", deliver = 2, concurrent = true },
      { event = "respond_schedule", schedule_id = sid, response_status = 3, userid = "lisi" },
      { event = "delete_schedule", schedule_id = sid, userid = "zhangsan", deliver = 3 },
      { event = "delete_calendar", cal_id = other, userid = "zhangsan" },
    }
    local replies = {}
    for i, step in ipairs(steps) do
      replies[i] = act(step)
      for _, status in ipairs(finals(replies[i])) do assert.equal(200, status, step.event) end
      assert.equal(step.deliver or 1, #replies[i].deliveries)
    end
    local got = since(before)
    assert.equal(#steps, #got, cjson.encode(got))
    for i, change in ipairs(got) do
      local sent = replies[i].event
      assert.equal(steps[i].event, change.event)
      assert.equal(sent.CalId, change.cal_id)
      assert.equal(sent.ScheduleId, change.schedule_id)
      assert.equal(steps[i].userid, change.from)
      assert.equal(sent.CreateTime, change.create_time)
      assert.equal("number", type(change.create_time))
    end
    assert.equal("team (renamed)", got[1].calendar.summary)
    assert.equal("added in the client", got[2].schedule.summary)
    assert.equal(replies[2].schedule_id, got[2].schedule.schedule_id)
    assert.equal(cal, got[2].cal_id)
    assert.equal("moved", got[3].schedule.summary)
    assert.equal("5楼", got[3].schedule.location)
    assert.equal(3, got[4].schedule.attendees[1].response_status)
    assert.is_true(got[5].removed)
    assert.is_true(got[6].removed)
    -- what the emulator changed is what a client reads
    assert.equal(1, assert(client:schedule_get{ schedule_id_list = { sid } }).schedule_list[1].status)
  end)

  it("handles a message delivered four times at once exactly once, two workers racing", function()
    local cal = calendar()
    local ids = {}
    for i = 1, 8 do ids[i] = schedule(cal, "s" .. i) end
    local before = #changes()
    -- a slow re-read keeps each handler busy while its duplicates arrive
    emu:fault{ path = "oa/schedule/get", latency_ms = 250, times = -1 }
    local busy = 0
    for i, sid in ipairs(ids) do
      local reply = act{ event = "modify_schedule", schedule_id = sid, schedule = { summary = "v" .. i },
        deliver = 4, concurrent = true, retries = 6, retry_delay_ms = 150 }
      for _, d in ipairs(reply.deliveries) do
        assert.equal(200, d.status, cjson.encode(d))
        for _, s in ipairs(d.statuses) do
          if s == 503 then busy = busy + 1 end
        end
      end
    end
    emu:clear_faults()
    local got = since(before)
    assert.equal(#ids, #got, cjson.encode(got))
    for i, change in ipairs(got) do
      assert.equal(ids[i], change.schedule_id)
      assert.equal("v" .. i, change.schedule.summary)
    end
    -- the duplicates met a message being handled and were told to come again
    assert.is_true(busy >= #ids, busy .. " busy answers")
  end)

  it("never handles a forged, stale, foreign or garbage delivery", function()
    local sid = schedule(calendar())
    local before = #changes()
    local expect = { signature = 403, timestamp = 403, receiveid = 403, key = 400, garbage = 400 }
    for forge, status in pairs(expect) do
      local reply = act{ event = "modify_schedule", schedule_id = sid, schedule = { summary = forge },
        forge = forge, retries = 1, retry_delay_ms = 0 }
      assert.same({ status, status }, reply.deliveries[1].statuses, forge)
    end
    assert.same({}, since(before))
    local log = example.log()
    assert.truthy(log:find("wecom callback: 403 callback: msg_signature does not match", 1, true), log)
    assert.truthy(log:find("wecom callback: 403 callback: the message is for another receiveid", 1, true))
    assert.truthy(log:find("wecom callback: 403 callback: timestamp 36%d%d s old"), log)
    assert.is_nil(log:find(TOKEN, 1, true))
    assert.is_nil(log:find(KEY, 1, true))
    -- a genuine one still goes through
    assert.same({ 200 }, finals(act{ event = "modify_schedule", schedule_id = sid, schedule = { summary = "ok" } }))
    assert.equal(1, #since(before))
  end)

  it("answers 500 when the handler fails, and handles the message when WeCom delivers it again", function()
    local sid = schedule(calendar())
    local before = #changes()
    -- the handler's re-read fails once (not retried by the client): WeCom's next delivery succeeds
    emu:fault{ path = "oa/schedule/get", errcode = 48002, times = 1 }
    local reply = act{ event = "respond_schedule", schedule_id = sid, userid = "lisi", response_status = 1,
      retry_delay_ms = 50 }
    assert.same({ 500, 200 }, reply.deliveries[1].statuses)
    local got = since(before)
    assert.equal(1, #got)
    assert.equal(1, got[1].schedule.attendees[1].response_status)
    assert.truthy(example.log():find("wecom callback: 500 callback: the handler failed", 1, true))
  end)

  it("refuses bodies over 1 MiB unread, other methods, and requests without the signed query", function()
    local url = example.base_url .. "/wecom/callback"
    local status = http:request("POST", url .. "?msg_signature=x&timestamp=1&nonce=1", ("x"):rep(1024 * 1024 + 1))
    assert.equal(413, status)
    status = http:request("POST", url, "<xml/>")
    assert.equal(400, status)
    status = http:request("POST", url .. "?msg_signature=a&msg_signature=b&timestamp=1&nonce=1", "<xml/>")
    assert.equal(400, status)
  end)

  describe("the emulator's callback controls", function()
    it("refuses unknown events, bad options and members who aren't attendees", function()
      local sid = schedule(calendar())
      local function refused(body, text)
        local status, reply = http:request("POST", emu.base_url .. "/emulator/act", cjson.encode(body))
        assert.equal(400, status)
        assert.truthy(reply:find(text, 1, true), reply)
      end
      refused({ event = "explode" }, "event: one of")
      refused({ event = "respond_schedule", schedule_id = sid, userid = "stranger" }, "not an attendee")
      refused({ event = "modify_schedule", schedule_id = sid, schedule = { organizer = "x" } }, "can't change")
      refused({ event = "modify_schedule", schedule_id = sid, forge = "nothing" }, "forge:")
      refused({ event = "modify_schedule", schedule_id = "nope" }, "no such schedule")
      refused({ event = "modify_calendar", cal_id = "nope" }, "cal_id")
      refused({ event = "modify_schedule", schedule_id = sid, deliver = 1000 }, "deliver")
      local status, reply = http:request("POST", emu.base_url .. "/emulator/callback",
        cjson.encode{ url = "http://127.0.0.1:1/", token = TOKEN, encoding_aes_key = "short" })
      assert.equal(400, status)
      assert.truthy(reply:find("encoding_aes_key", 1, true))
      -- without a target the member still acts; nothing is delivered
      emu:control("callback", { url = "" })
      local done = act{ event = "delete_schedule", schedule_id = sid }
      assert.same({}, done.deliveries)
      assert.truthy(done.note)
      assert.equal(1, assert(client:schedule_get{ schedule_id_list = { sid } }).schedule_list[1].status)
    end)

    it("answers 400 naming the option to a callback target whose token, key or receiveid is no string", function()
      for _, field in ipairs{ "token", "encoding_aes_key", "receiveid" } do
        local target = { url = "http://127.0.0.1:1/", token = TOKEN, encoding_aes_key = KEY }
        target[field] = { "not", "a", "string" }
        local status, reply = http:request("POST", emu.base_url .. "/emulator/callback", cjson.encode(target))
        assert.equal(400, status, reply)
        assert.truthy(reply:find(field .. ": expected a string", 1, true), reply)
      end
    end)

    it("lets a member give any answer API.md defines: 1 tentative .. 4 declined, accepted by default", function()
      local sid = schedule(calendar())
      local function answer(body)
        body.event, body.schedule_id, body.userid = "respond_schedule", sid, "lisi"
        return http:request("POST", emu.base_url .. "/emulator/act", cjson.encode(body))
      end
      local function status_of()
        return assert(client:schedule_get{ schedule_id_list = { sid } }).schedule_list[1].attendees[1].response_status
      end
      for _, v in ipairs{ 4, 1, 3 } do
        assert.equal(200, (answer{ response_status = v }))
        assert.equal(v, status_of())
      end
      assert.equal(200, (answer{}))
      assert.equal(2, status_of())
      for _, v in ipairs{ 0, 5 } do
        local status, reply = answer{ response_status = v }
        assert.equal(400, status)
        assert.truthy(reply:find("response_status: 1 tentative, 2 accepted, 3 accepted once or 4 declined", 1, true),
          reply)
      end
    end)

    it("takes the callback target from `wecom-emulator start`", function()
      local dir = os.tmpname()
      os.remove(dir)
      local rc, out = shell.run(("%s %s bin/wecom-emulator start --port 0 --dir %s --corpid %s --callback-url %s "
        .. "--callback-token %s --callback-aes-key %s"):format(shell.lua_env(package.path, package.cpath), shell.lua,
        shell.quote(dir), emu.corpid, shell.quote(example.base_url .. "/wecom/callback"), TOKEN, KEY))
      assert.equal(0, rc, out)
      local ok, err = pcall(function()
        local base = out:match("WECOM_BASE_URL=(%S+)")
        local function control(name, body)
          local status, reply = http:request("POST", base .. "/emulator/" .. name, cjson.encode(body))
          assert.equal(200, status, reply)
          return cjson.decode(reply)
        end
        local cal = control("seed_calendars", { count = 1 }).cal_ids[1]
        local before = #changes()
        -- the example re-reads from the other emulator, where this calendar doesn't exist: 90457, "removed"
        local reply = control("act", { event = "modify_calendar", cal_id = cal, calendar = { summary = "x" } })
        assert.same({ 200 }, finals(reply))
        local got = since(before)
        assert.equal(1, #got)
        assert.equal(cal, got[1].cal_id)
        assert.is_true(got[1].removed)
      end)
      launcher.stop_dir(dir)
      assert(ok, err)
    end)
  end)
end)
