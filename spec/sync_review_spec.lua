-- wecom.sync: what a review found, each case once per store (a real SQLite
-- file and the memory store).
local emulator = require("support.emulator")
local support = require("support.mirror")
local sync = require("wecom.sync")

describe("wecom.sync review", function()
  local emu, dir, client
  local files = 0

  setup(function()
    emu = emulator.start()
    dir = support.tmpdir()
  end)

  teardown(function()
    emu:stop()
    support.rmdir(dir)
  end)

  before_each(function() client = support.fresh(emu) end)

  local function new_store(kind)
    if kind == "memory" then return sync.memory() end
    files = files + 1
    return assert(sync.sqlite(("%s/review-%d.db"):format(dir, files)))
  end

  local function schedule(cal_id, summary)
    return assert(client:schedule_add{ schedule = { cal_id = cal_id, start_time = 1800000000,
      end_time = 1800003600, summary = summary or "review" } }).schedule_id
  end

  for _, kind in ipairs{ "sqlite", "memory" } do
    describe("with the " .. kind .. " store", function()
      local store, feed, mirror

      before_each(function()
        store = new_store(kind)
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
end)
