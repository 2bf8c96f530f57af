-- wecom.sync: what a review found, each case once per store (a real SQLite
-- file and the memory store).
local emulator = require("support.emulator")
local support = require("support.mirror")
local sync = require("wecom.sync")

describe("wecom.sync review", function()
  local emu, dir, client

  setup(function()
    emu = emulator.start()
    dir = support.tmpdir()
  end)

  teardown(function()
    emu:stop()
    support.rmdir(dir)
  end)

  before_each(function() client = support.fresh(emu) end)

  local function schedule(cal_id, summary)
    return assert(client:schedule_add{ schedule = { cal_id = cal_id, start_time = 1800000000,
      end_time = 1800003600, summary = summary or "review" } }).schedule_id
  end

  for _, kind in ipairs{ "sqlite", "memory" } do
    describe("with the " .. kind .. " store", function()
      local store, feed, mirror

      before_each(function()
        store = support.store(kind, dir)
        feed = support.feed()
        mirror = assert(sync.new{ client = client, store = store, on_change = feed.fn })
      end)

      after_each(function() store:close() end)

      -- An event's CalId is the mirror's only clue to the calendar; the
      -- schedule it names says which calendar it is in (cal_id can't be
      -- updated). Taking the message's word put another calendar's
      -- schedule into this one, where reconcile (which read it by id and
      -- found it alive) kept it for good.
      it("keeps out of a calendar a schedule of another one that an event names", function()
        local cal, elsewhere = support.calendar(client, "team"), support.calendar(client, "not followed")
        schedule(cal, "ours")
        local foreign = schedule(elsewhere, "theirs")
        assert(mirror:follow(cal))
        assert.equal(1, mirror:pull())
        feed.take()
        assert.is_true(mirror:apply{ MsgType = "event", Event = "modify_schedule", CalId = cal, ScheduleId = foreign })
        assert.same({}, feed.take())
        support.assert_mirrors(client, store, cal)
      end)

      -- The decoder reads a number beyond a double (1e999) as inf, which
      -- the store wrote as "inf": text no decoder reads, so every later
      -- read of that schedule failed (or raised, in the memory store).
      it("stores a schedule with a number beyond a double, and reads it back", function()
        local cal = "wchuge"
        assert(store:update(cal, {}, function() return { follow = true, calendar = { summary = "x" } } end))
        local s = { schedule_id = "huge", start_time = math.huge, end_time = -math.huge, summary = "x\0y" }
        for _ = 1, 2 do
          local ok, err = store:update(cal, { "huge" }, function() return { put = { s } } end)
          assert.is_true(ok, tostring(err))
        end
        local list, err = store:page(cal, nil, 10)
        assert.is_table(list, tostring(err))
        assert.equal(1, #list)
        assert.equal(math.huge, list[1].start_time)
        assert.equal(-math.huge, list[1].end_time)
        assert.equal("x\0y", list[1].summary)
      end)

      it("removes with reconcile a stored schedule that is in another calendar", function()
        local cal, elsewhere = support.calendar(client, "team"), support.calendar(client, "not followed")
        schedule(cal, "ours")
        local foreign = schedule(elsewhere, "theirs")
        assert(mirror:follow(cal))
        assert.equal(1, mirror:pull())
        feed.take()
        -- a store that holds it anyway (written by an older version, restored, edited)
        local s = assert(client:schedule_get{ schedule_id_list = { foreign } }).schedule_list[1]
        assert(store:update(cal, { foreign }, function() return { put = { s } } end))
        assert.equal(1, mirror:reconcile())
        local got = feed.take()
        assert.equal(1, #got)
        assert.equal("removed", got[1].kind)
        assert.equal(foreign, got[1].schedule_id)
        support.assert_mirrors(client, store, cal)
        assert.equal(0, mirror:reconcile())
      end)
    end)
  end

  describe("the SQLite store", function()
    -- LuaSQL passes SQL text as a C string: an id with a NUL cut the
    -- statement short, and every pull failed on that page for good.
    it("stores and finds again ids that hold NUL bytes and quotes", function()
      local store = support.store("sqlite", dir)
      local cal, id = "wc'\0cal", "sch\0ed'ule"
      assert(store:update(cal, {}, function() return { follow = true, calendar = { summary = "x" } } end))
      for round = 1, 2 do
        local held
        local ok, err = store:update(cal, { id }, function(_, rows)
          held = rows[id]
          return { put = { { schedule_id = id, summary = "round " .. round } }, offset = round }
        end)
        assert.is_true(ok, tostring(err))
        if round == 2 then assert.equal("round 1", held.summary) end
      end
      local list = store:page(cal, nil, 10)
      assert.equal(1, #list)
      assert.equal(id, list[1].schedule_id)
      assert.equal("round 2", list[1].summary)
      assert.equal(2, store:calendar(cal).offset)
      assert.same({ cal }, store:calendar_ids())
      store:close()
    end)

    it("refuses a busy_timeout or wal_autocheckpoint beyond a C int, naming it, on every Lua", function()
      for _, field in ipairs{ "busy_timeout", "wal_autocheckpoint" } do
        for _, v in ipairs{ math.huge, 1e300, 2 ^ 31 } do
          local ok, store, err = pcall(sync.sqlite, dir .. "/refused.db", { [field] = v })
          assert.is_true(ok, tostring(store))
          assert.is_nil(store)
          assert.equal("validation", err.kind)
          assert.equal("opts." .. field, err.field)
        end
      end
      local store = assert(sync.sqlite(dir .. "/refused.db", { busy_timeout = 2 ^ 31 - 1 }))
      store:close()
    end)

    it("refuses an option it does not know (a misspelt one was ignored)", function()
      local store, err = sync.sqlite(dir .. "/refused.db", { busy_timout = 60000 })
      assert.is_nil(store)
      assert.equal("validation", err.kind)
      assert.equal("opts.busy_timout", err.field)
      store, err = sync.sqlite(dir .. "/refused.db", "FULL")
      assert.is_nil(store)
      assert.equal("opts", err.field)
    end)

    -- LuaSQL's fetch gives nil, message when a step fails: taken as the
    -- end of the rows, a malformed page or an I/O error made a short
    -- answer (a page cut short, rows not found and inserted again).
    it("fails a read that meets a malformed page, rather than answer short", function()
      local store, path = support.store("sqlite", dir)
      local cal = "wccorrupt"
      assert(store:update(cal, {}, function() return { follow = true, calendar = { summary = "x" } } end))
      for p = 0, 2 do
        local put, ids = {}, {}
        for i = 1, 1000 do
          ids[i] = ("sch%06d"):format(p * 1000 + i)
          put[i] = { schedule_id = ids[i], summary = ("summary %d "):format(i) .. ("z"):rep(200) }
        end
        assert(store:update(cal, ids, function() return { put = put } end))
      end
      store:close() -- checkpointed into the file
      local f = assert(io.open(path, "r+b"))
      local size = f:seek("end")
      for at = math.floor(size * 0.6 / 4096) * 4096, size - 4096, 4096 * 3 do
        f:seek("set", at)
        f:write(("\255"):rep(4096))
      end
      f:close()
      store = assert(sync.sqlite(path))
      local after, read, failed = nil, 0, nil
      while true do
        local list, pos = store:page(cal, after, 500)
        if not list then
          failed = pos
          break
        end
        if #list == 0 then break end
        assert.equal(500, #list) -- 3000 rows: every page is whole, or fails
        read, after = read + #list, pos
      end
      store:close()
      assert.is_true(read < 3000)
      assert.equal("store", failed.reason)
      assert.truthy(failed.message:find("malformed", 1, true), failed.message)
    end)
  end)
end)

-- The mirror of examples/nginx.conf keeps its work to one worker at a time
-- with a lock in a shared dict. The lock was renewed only as changes came:
-- a pull or reconcile that found nothing for longer than the lock's TTL
-- lost it, and another worker (pulling alongside) or another timer of the
-- same worker (failing "busy", and counting that against a queued message
-- until it was dropped) took it.
describe("the mirror of examples/nginx.conf, on a long pull that finds nothing", function()
  local core = require("wecom.core")
  local example_nginx = require("support.example")
  local emu, example, dir

  setup(function()
    emu = emulator.start()
    dir = support.tmpdir()
  end)

  teardown(function()
    if example then example:stop() end
    emu:stop()
    support.rmdir(dir)
  end)

  it("keeps the lock while it works: one worker pages at a time", function()
    local client = support.fresh(emu)
    local cal = support.calendar(client)
    emu:seed(cal, 30000, { cancelled_every = 1 }) -- 30 pages, every schedule cancelled: no change to report
    local LATENCY = 0.25
    emu:fault{ path = "oa/schedule/get_by_calendar", latency_ms = LATENCY * 1000, times = -1 }
    local before = emu:calls("oa/schedule/get_by_calendar")
    example = example_nginx.start(emu, {
      WECOM_MIRROR_CALENDARS = cal, WECOM_MIRROR_DB = dir .. "/mirror.db",
      WECOM_MIRROR_PULL_EVERY = "0.2", WECOM_MIRROR_LOCK_TTL = "2",
    })
    local started = core.monotime()
    local WINDOW = 5 -- the first pull takes 31 pages * 0.25 s: still running at its end
    core.sleep(WINDOW)
    local pages = emu:calls("oa/schedule/get_by_calendar") - before
    local elapsed = core.monotime() - started
    -- one worker at a time: a page every LATENCY s at most; two at once page twice as fast
    assert.is_true(pages <= elapsed / LATENCY + 2, ("%d pages in %.1f s"):format(pages, elapsed))
    local log = example.log()
    assert.is_nil(log:find("wecom mirror", 1, true), log)
  end)
end)
