-- The mirror of examples/nginx.conf end to end (a real nginx, 2 workers):
-- its timers follow and pull the calendar into a SQLite file, the
-- callbacks the emulator sends when members act are queued by the handler
-- and applied by the timers, schedules the app adds are pulled, a change
-- made without a callback is found by the reconcile timer; each change is
-- reported once, and the file ends equal to the server's truth.
local cjson = require("cjson")
local core = require("wecom.core")
local emulator = require("support.emulator")
local example_nginx = require("support.example")
local session = require("support.session")
local support = require("support.mirror")
local sync = require("wecom.sync")

describe("the mirror of examples/nginx.conf", function()
  local emu, example, http, client, dir, db, cal, sid

  setup(function()
    emu = emulator.start()
    client = emu:client()
    dir = support.tmpdir()
    db = dir .. "/mirror.db"
    cal = support.calendar(client)
    emu:seed(cal, 1500, { cancelled_every = 10 })
    sid = assert(client:schedule_add{ schedule = { cal_id = cal, start_time = 1800000000, end_time = 1800003600,
      summary = "review", attendees = { { userid = "lisi" } } } }).schedule_id
    example = example_nginx.start(emu, {
      WECOM_CALLBACK_TOKEN = support.TOKEN, WECOM_CALLBACK_AES_KEY = support.KEY,
      WECOM_MIRROR_CALENDARS = cal, WECOM_MIRROR_DB = db,
      WECOM_MIRROR_PULL_EVERY = "0.3", WECOM_MIRROR_RECONCILE_EVERY = "2",
    })
    emu:control("callback", { url = example.base_url .. "/wecom/callback", token = support.TOKEN,
      encoding_aes_key = support.KEY })
    http = session{ timeout = 30 }
  end)

  teardown(function()
    if http then http:close() end
    if example then example:stop() end
    emu:stop()
    support.rmdir(dir)
  end)

  local function changes()
    local status, body = http:request("GET", example.base_url .. "/mirror/changes")
    assert.equal(200, status)
    return cjson.decode(body)
  end

  -- Waits until pred(changes) holds; returns the changes.
  local function until_changes(what, pred)
    local deadline = core.monotime() + 30
    while true do
      local list = changes()
      if pred(list) then return list end
      if core.monotime() > deadline then
        error(("timed out waiting for %s; %d changes; log:\n%s"):format(what, #list, example.log():sub(-2000)))
      end
      core.sleep(0.1)
    end
  end

  local function count(list, pred)
    local n = 0
    for _, c in ipairs(list) do
      if pred(c) then n = n + 1 end
    end
    return n
  end

  local function act(body)
    local reply = emu:control("act", body)
    for _, d in ipairs(reply.deliveries) do assert.equal(200, d.status) end
    return reply
  end

  it("pulls, applies the callbacks, reconciles, and reports each change once", function()
    local live = support.truth(client, cal)
    local list = until_changes("the first pull", function(l) return #l >= #live end)
    assert.equal(#live, #list)
    assert.equal(#live, count(list, function(c) return c.kind == "added" and c.source == "pull" end))

    -- a member's change, delivered twice: queued by the handler, applied by a timer, once
    local before = #list
    act{ event = "modify_schedule", schedule_id = sid, schedule = { summary = "moved" }, deliver = 2 }
    until_changes("the event", function(l) return #l > before end)
    core.sleep(1.5) -- a second delivery, or a pull, would have reported it by now
    list = changes()
    assert.equal(before + 1, #list)
    assert.equal("changed", list[#list].kind)
    assert.equal("event", list[#list].source)
    assert.equal("moved", list[#list].summary)
    assert.equal(sid, list[#list].schedule_id)

    act{ event = "delete_schedule", schedule_id = sid }
    list = until_changes("the removal", function(l) return #l > before + 1 end)
    assert.equal("removed", list[#list].kind)
    assert.equal(sid, list[#list].schedule_id)

    -- schedules the app adds (no callback): the pull timer brings them
    before = #list
    for i = 1, 10 do
      assert(client:schedule_add{ schedule = { cal_id = cal, start_time = 1800000000 + i * 3600,
        end_time = 1800001800 + i * 3600, summary = "new " .. i } })
    end
    list = until_changes("10 added", function(l) return #l >= before + 10 end)
    assert.equal(10, count({ (table.unpack or unpack)(list, before + 1) },
      function(c) return c.kind == "added" and c.source == "pull" end))

    -- a change without a callback: the reconcile timer finds it
    before = #list
    local quiet = live[7]
    assert(client:schedule_update{ schedule = { schedule_id = quiet.schedule_id, start_time = quiet.start_time,
      end_time = quiet.end_time, summary = "changed quietly" } })
    until_changes("the reconcile", function(l) return #l > before end)
    core.sleep(2.5) -- another reconcile runs meanwhile: it has nothing to add
    list = changes()
    assert.equal(before + 1, #list)
    assert.equal("changed", list[#list].kind)
    assert.equal("reconcile", list[#list].source)
    assert.equal("changed quietly", list[#list].summary)

    -- the file is the server's truth; the timers of two workers took turns
    local store = assert(sync.sqlite(db))
    support.assert_mirrors(client, store, cal)
    store:close()
    local log = example.log()
    assert.is_nil(log:find("wecom mirror", 1, true), log)
    assert.is_nil(log:find("[error]", 1, true), log)
    -- the callback example's own feed saw the events too
    local status, body = http:request("GET", example.base_url .. "/changes")
    assert.equal(200, status)
    assert.equal(2, #cjson.decode(body))
  end)

  it("holds an event through an outage of WeCom longer than a few ticks, then applies it", function()
    local id = assert(client:schedule_add{ schedule = { cal_id = cal, start_time = 1800000000, end_time = 1800003600,
      summary = "before the outage" } }).schedule_id
    local before = #changes()
    until_changes("the new schedule", function(l) return #l > before end)
    before = #changes()
    -- the event's re-read fails, and so do the pulls and reconciles, for 7 ticks
    emu:fault{ path = "oa/schedule/get", status = 502, times = -1 }
    emu:fault{ path = "oa/schedule/get_by_calendar", status = 502, times = -1 }
    -- queued by the mirror; the callback example's own re-read fails, so it
    -- answers 500 and WeCom would deliver it again (the mirror reports once)
    local reply = emu:control("act", { event = "modify_schedule", schedule_id = id,
      schedule = { summary = "after the outage" } })
    assert.equal(500, reply.deliveries[1].status)
    core.sleep(7)
    assert.equal(before, #changes())
    emu:clear_faults()
    until_changes("the event, after the outage", function(l) return #l > before end)
    core.sleep(2.5) -- a reconcile runs meanwhile: the event had told it all
    local list = changes()
    assert.equal(before + 1, #list)
    assert.equal("changed", list[#list].kind)
    assert.equal("event", list[#list].source)
    assert.equal("after the outage", list[#list].summary)
    assert.is_nil(example.log():find("dropped", 1, true))
  end)

  it("refuses to start with a setting that is no number of seconds above 0, naming it", function()
    for _, bad in ipairs{ "0", "-1", "soon" } do
      local ok, err = pcall(example_nginx.start, emu, {
        WECOM_CALLBACK_TOKEN = support.TOKEN, WECOM_CALLBACK_AES_KEY = support.KEY,
        WECOM_MIRROR_CALENDARS = cal, WECOM_MIRROR_DB = dir .. "/refused.db", WECOM_MIRROR_PULL_EVERY = bad,
      })
      if ok then err:stop() end -- started after all: not left running
      assert.is_false(ok)
      assert.truthy(tostring(err):find("WECOM_MIRROR_PULL_EVERY must be a number of seconds above 0", 1, true),
        tostring(err))
    end
  end)
end)
