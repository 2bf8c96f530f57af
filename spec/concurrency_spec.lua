-- Concurrent calls from plain Lua (curl's multi interface): call_many and
-- the bulk helpers with {concurrency = N}.
local core = require("wecom.core")
local emulator = require("support.emulator")

describe("concurrency", function()
  local emu, client

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function()
    emu:reset()
    client = emu:client()
  end)

  local function timed(fn)
    local t0 = core.monotime()
    local a, b = fn()
    return core.monotime() - t0, a, b
  end

  describe("call_many", function()
    it("answers in order; a body that fails validation is not sent, the others are", function()
      local bodies = {}
      for i = 1, 6 do bodies[i] = { calendar = { summary = "c" .. i, color = "#000000" } } end
      bodies[3] = { calendar = { summary = "bad", color = "red" } }
      local results = assert(client:call_many("calendar_add", bodies, { concurrency = 4 }))
      assert.equal(6, #results)
      for i, r in ipairs(results) do
        if i == 3 then
          assert.is_false(r.ok)
          assert.equal("calendar.color", r.err.field)
        else
          assert.is_true(r.ok)
          assert.is_string(r.result.cal_id)
        end
      end
      assert.equal(5, emu:calls("oa/calendar/add"))
      local ids = {}
      for i, r in ipairs(results) do if r.ok then ids[#ids + 1] = { i, r.result.cal_id } end end
      for _, pair in ipairs(ids) do
        local cal = assert(client:calendar_get{ cal_id_list = { pair[2] } }).calendar_list[1]
        assert.equal("c" .. pair[1], cal.summary)
      end
    end)

    it("runs up to N at once", function()
      local ids = emu:seed_calendars(10)
      local bodies = {}
      for i, id in ipairs(ids) do bodies[i] = { cal_id_list = { id } } end
      assert(client:calendar_get{ cal_id_list = { ids[1] } }) -- token first
      emu:fault{ path = "oa/calendar/get", latency_ms = 300, times = -1 }
      local at_once, results = timed(function() return client:call_many("calendar_get", bodies, { concurrency = 10 }) end)
      for i, r in ipairs(results) do assert.equal(ids[i], r.result.calendar_list[1].cal_id) end
      local two_by_two = timed(function() return client:call_many("calendar_get", bodies, { concurrency = 2 }) end)
      -- ten 300 ms calls: about one latency at once, five latencies two by two
      assert.is_true(at_once < 0.9, ("at once: %.2f s"):format(at_once))
      assert.is_true(two_by_two >= 1.45, ("two by two: %.2f s"):format(two_by_two))
    end)

    it("refreshes a rejected token once for the whole batch", function()
      local ids = emu:seed_calendars(8)
      assert(client:calendar_get{ cal_id_list = { ids[1] } })
      emu:invalidate_tokens()
      local bodies = {}
      for i, id in ipairs(ids) do bodies[i] = { cal_id_list = { id } } end
      local results = client:call_many("calendar_get", bodies, { concurrency = 8 })
      for _, r in ipairs(results) do assert.is_true(r.ok) end
      assert.equal(2, emu:calls("gettoken"))
      assert.equal(8, emu:stats().errors["40014"])
    end)

    it("retries each request by its own policy", function()
      local ids = emu:seed_calendars(4)
      assert(client:calendar_get{ cal_id_list = { ids[1] } })
      emu:fault{ path = "oa/calendar/get", errcode = -1, times = 2 }
      local results = client:call_many("calendar_get", {
        { cal_id_list = { ids[1] } }, { cal_id_list = { ids[2] } }, { cal_id_list = { "missing" } },
        { cal_id_list = { ids[4] } },
      }, { concurrency = 4 })
      assert.is_true(results[1].ok and results[2].ok and results[4].ok)
      assert.equal(90457, results[3].err.errcode)
      -- the two that drew a -1 were sent again, and only they
      assert.equal(1 + 4 + 2, emu:calls("oa/calendar/get"))
      -- calendar_add is not idempotent: a 502 is not retried
      emu:fault{ path = "oa/calendar/add", status = 502, times = 1 }
      local adds = client:call_many("calendar_add", {
        { calendar = { summary = "a", color = "#000000" } }, { calendar = { summary = "b", color = "#000000" } },
      }, { concurrency = 2 })
      local failed = 0
      for _, r in ipairs(adds) do
        if not r.ok then
          failed = failed + 1
          assert.is_true(r.err.maybe_applied)
          assert.equal(1, r.err.attempts)
        end
      end
      assert.equal(1, failed)
    end)

    it("refuses a bad method, body list or concurrency", function()
      local res, err = client:call_many("nope", {})
      assert.is_nil(res)
      assert.equal("method", err.field)
      res, err = client:call_many("calendar_get", "x")
      assert.is_nil(res)
      assert.equal("bodies", err.field)
      for _, c in ipairs{ 0, 65, 1.5, "10" } do
        res, err = client:call_many("calendar_get", {}, { concurrency = c })
        assert.is_nil(res)
        assert.equal("opts.concurrency", err.field)
      end
      assert.same({}, client:call_many("calendar_get", {}))
    end)
  end)

  describe("bulk helpers", function()
    it("calendars(): ten batches at concurrency 10 take about one latency", function()
      local ids = emu:seed_calendars(10000)
      assert(client:calendar_get{ cal_id_list = { ids[1] } })
      emu:fault{ path = "oa/calendar/get", latency_ms = 300, times = -1 }
      local before = emu:calls("oa/calendar/get")
      local took, list = timed(function() return client:calendars(ids, { concurrency = 10 }) end)
      assert.equal(10, emu:calls("oa/calendar/get") - before)
      assert.equal(10000, #list)
      for i = 1, #ids, 997 do assert.equal(ids[i], list[i].cal_id) end
      -- one after another: 3 s
      assert.is_true(took < 1.2, ("took %.2f s"):format(took))
    end)

    it("schedules(): batches at once, in input order", function()
      local cal_id = assert(client:calendar_add{ calendar = { summary = "s", color = "#000000" } }).cal_id
      emu:seed(cal_id, 2500)
      local ids = {}
      for s in client:each_schedule(cal_id) do ids[#ids + 1] = s.schedule_id end
      emu:fault{ path = "oa/schedule/get", latency_ms = 300, times = -1 }
      local took, list = timed(function() return client:schedules(ids, { concurrency = 3 }) end)
      assert.equal(2500, #list)
      assert.equal(ids[2500], list[2500].schedule_id)
      assert.is_true(took < 0.9, ("took %.2f s"):format(took))
    end)

    it("share_calendars(): N calendars at a time, one result each, past failures", function()
      local ids = emu:seed_calendars(12)
      assert(client:calendar_del{ cal_id = ids[5] })
      emu:fault{ path = "oa/calendar/get", latency_ms = 200, times = -1 }
      emu:fault{ path = "oa/calendar/update", latency_ms = 200, times = -1 }
      local took, results = timed(function()
        return client:share_calendars(ids, { "u1", { userid = "u2", readonly = 0 } }, { concurrency = 6 })
      end)
      assert.equal(12, #results)
      for i, r in ipairs(results) do
        assert.equal(ids[i], r.cal_id)
        if i == 5 then
          assert.is_false(r.ok)
          assert.equal(90459, r.err.errcode)
        else
          assert.is_true(r.ok, r.err and r.err.message)
        end
      end
      -- two chunks of a read round and a write round: 4 latencies, not 24
      assert.is_true(took < 1.6, ("took %.2f s"):format(took))
      emu:clear_faults()
      local cal = assert(client:calendar_get{ cal_id_list = { ids[12] } }).calendar_list[1]
      assert.same({ { userid = "u1", readonly = 1 }, { userid = "u2", readonly = 0 } }, cal.shares)
    end)

    it("check the concurrency option", function()
      local _, err = client:calendars({ "x" }, { concurrency = 0 })
      assert.equal("opts.concurrency", err.field)
      _, err = client:schedules({ "x" }, { parallel = 2 })
      assert.equal("opts.parallel", err.field)
      _, err = client:share_calendars({ "x" }, { "u" }, { concurrency = 100 })
      assert.equal("opts.concurrency", err.field)
      assert.equal(0, emu:calls("oa/calendar/get"))
    end)
  end)
end)
