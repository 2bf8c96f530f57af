-- wecom.sync against the emulator, with a real SQLite file (and the memory
-- store, which must behave the same): follow and pull, the callbacks the
-- emulator sends when members act, applied; what reconcile finds that went
-- without an event; every change reported once; bad input refused.
local codec = require("wecom.sync.codec")
local emulator = require("support.emulator")
local support = require("support.mirror")
local sync = require("wecom.sync")

local function ids_of(list)
  local out = {}
  for i, c in ipairs(list) do out[i] = c.schedule_id end
  table.sort(out)
  return out
end

describe("wecom.sync", function()
  local emu, inbox, dir, client

  setup(function()
    emu = emulator.start()
    inbox = support.inbox(emu.corpid)
    dir = support.tmpdir()
  end)

  teardown(function()
    if inbox then inbox:stop() end
    emu:stop()
    support.rmdir(dir)
  end)

  before_each(function()
    client = support.fresh(emu)
    inbox:target(emu)
    inbox:messages() -- what earlier tests left
  end)

  local function calendar(summary) return support.calendar(client, summary) end

  local function schedule(cal_id, summary, at)
    at = at or 1800000000
    return assert(client:schedule_add{ schedule = { cal_id = cal_id, start_time = at, end_time = at + 3600,
      summary = summary or "review", attendees = { { userid = "lisi" }, { userid = "wangwu" } } } }).schedule_id
  end

  -- Acts as a member through the emulator, then applies what it delivered.
  local function act(mirror, body)
    local reply = emu:control("act", body)
    for _, d in ipairs(reply.deliveries) do assert.equal(200, d.status) end
    local msgs = inbox:messages()
    assert.equal(body.deliver or 1, #msgs)
    for _, msg in ipairs(msgs) do assert(mirror:apply(msg)) end
    return reply, msgs
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

      it("follows a calendar of 2,345 schedules, then pulls exactly the 10 added since", function()
        local cal = calendar()
        emu:seed(cal, 2345, { cancelled_every = 7 })
        assert.is_true(mirror:follow(cal))
        assert.same({}, feed.list) -- following reads the details; the schedules come with pull
        local live = support.truth(client, cal)
        assert.equal(2345 - math.floor(2345 / 7), #live)
        assert.equal(#live, mirror:pull())
        local added = feed.take()
        assert.equal(#live, #added)
        assert.same(ids_of(live), ids_of(added))
        for _, c in ipairs(added) do
          assert.equal("added", c.kind)
          assert.equal(cal, c.cal_id)
          assert.equal("pull", c.source)
          assert.equal(c.schedule_id, c.schedule.schedule_id)
        end
        support.assert_mirrors(client, store, cal)
        assert.equal(2345, store:calendar(cal).offset)
        assert.equal(0, mirror:pull())

        local new = {}
        for i = 1, 10 do new[i] = schedule(cal, "new " .. i, 1800000000 + i * 3600) end
        assert.equal(10, mirror:pull())
        local got = feed.take()
        assert.equal(10, #got)
        for i, c in ipairs(got) do
          assert.equal("added", c.kind)
          assert.equal(new[i], c.schedule_id)
          assert.equal("new " .. i, c.schedule.summary)
        end
        assert.equal(2355, store:calendar(cal).offset)
        assert.equal(0, mirror:pull(cal))
        support.assert_mirrors(client, store, cal)
        -- mirror:schedules iterates the same, in the order they were mirrored
        local n, last = 0, nil
        for s, err in mirror:schedules(cal) do
          assert.is_table(s, tostring(err))
          n = n + 1
          last = s
        end
        assert.equal(#live + 10, n)
        assert.equal(new[10], last.schedule_id)
      end)

      it("applies what members do in the WeCom client, from the emulator's callbacks", function()
        local cal = calendar("team")
        local sid, other = schedule(cal, "review"), schedule(cal, "standup")
        assert(mirror:follow(cal))
        assert.equal(2, mirror:pull())
        feed.take()

        local _, msgs = act(mirror, { event = "modify_schedule", schedule_id = sid, userid = "zhangsan",
          schedule = { summary = "moved", location = "5楼" } })
        local got = feed.take()
        assert.equal(1, #got)
        assert.equal("changed", got[1].kind)
        assert.equal(sid, got[1].schedule_id)
        assert.equal("moved", got[1].schedule.summary)
        assert.equal("5楼", got[1].schedule.location)
        assert.equal("review", got[1].old.summary)
        assert.equal("event", got[1].source)
        assert.equal("zhangsan", got[1].event.FromUserName)
        assert.equal(msgs[1].CreateTime, got[1].event.CreateTime)

        act(mirror, { event = "respond_schedule", schedule_id = sid, userid = "lisi", response_status = 3 })
        got = feed.take()
        assert.equal(1, #got)
        assert.equal("changed", got[1].kind)
        assert.equal(3, got[1].schedule.attendees[1].response_status)
        assert.equal(0, got[1].old.attendees[1].response_status)
        assert.equal("moved", got[1].schedule.summary)

        local added = act(mirror, { event = "add_schedule", cal_id = cal, userid = "lisi",
          schedule = { start_time = 1800007200, end_time = 1800010800, summary = "added in the client" } })
        got = feed.take()
        assert.equal(1, #got)
        assert.equal("added", got[1].kind)
        assert.equal(added.schedule_id, got[1].schedule_id)
        -- the pull that lists it later has nothing new to say
        assert.equal(0, mirror:pull())

        act(mirror, { event = "delete_schedule", schedule_id = other, userid = "zhangsan" })
        got = feed.take()
        assert.equal(1, #got)
        assert.equal("removed", got[1].kind)
        assert.equal(other, got[1].schedule_id)
        assert.equal("standup", got[1].old.summary)
        assert.equal(1, got[1].schedule.status) -- the API keeps it, cancelled
        local _, held = support.stored(store, cal)
        assert.is_nil(held[other])

        act(mirror, { event = "modify_calendar", cal_id = cal, calendar = { summary = "team (renamed)" } })
        got = feed.take()
        assert.equal(1, #got)
        assert.equal("calendar_changed", got[1].kind)
        assert.equal("team (renamed)", got[1].calendar.summary)
        assert.equal("team", got[1].old.summary)
        assert.equal("team (renamed)", store:calendar(cal).calendar.summary)
        support.assert_mirrors(client, store, cal)

        act(mirror, { event = "delete_calendar", cal_id = cal })
        got = feed.take()
        assert.equal(1, #got)
        assert.equal("calendar_removed", got[1].kind)
        assert.equal("team (renamed)", got[1].old.summary)
        assert.is_false(store:calendar(cal))
        assert.equal(0, #support.stored(store, cal))
        assert.same({}, mirror:followed())
        -- later events of it are ignored, as for any calendar not followed
        assert.is_true(mirror:apply{ MsgType = "event", Event = "modify_schedule", CalId = cal, ScheduleId = sid })
        assert.same({}, feed.list)
      end)

      it("reports a message applied twice once, and ignores what is not its business", function()
        local cal, elsewhere = calendar(), calendar("not followed")
        local sid, foreign = schedule(cal), schedule(elsewhere)
        assert(mirror:follow(cal))
        mirror:pull()
        feed.take()
        -- WeCom delivers again, encrypted afresh: two messages, the same event
        local _, msgs = act(mirror, { event = "modify_schedule", schedule_id = sid, schedule = { summary = "once" },
          deliver = 2 })
        assert.same(msgs[1], msgs[2])
        assert.equal(1, #feed.list)
        assert.is_true(mirror:apply(msgs[1]))
        assert.equal(1, #feed.take())

        local reads = emu:calls("oa/schedule/get")
        act(mirror, { event = "modify_schedule", schedule_id = foreign, schedule = { summary = "elsewhere" } })
        assert.is_true(mirror:apply{ ToUserName = emu.corpid, MsgType = "text", Content = "hello", MsgId = "1" })
        assert.is_true(mirror:apply{ MsgType = "event", Event = "subscribe", FromUserName = "lisi" })
        assert.same({}, feed.list)
        assert.equal(reads, emu:calls("oa/schedule/get")) -- not even a read
      end)

      it("finds with reconcile what changed without an event, compares content, reports each once", function()
        local cal = calendar("team")
        emu:seed(cal, 1200, { cancelled_every = 100 })
        mirror = assert(sync.new{ client = client, store = store, on_change = feed.fn, page_size = 500 })
        assert(mirror:follow(cal))
        local live = support.truth(client, cal)
        assert.equal(#live, mirror:pull())
        feed.take()
        assert.equal(0, mirror:reconcile())

        -- the app's own calls send no callbacks
        local moved, deleted = live[10], live[600]
        assert(client:schedule_update{ schedule = { schedule_id = moved.schedule_id, start_time = moved.start_time,
          end_time = moved.end_time, summary = "changed quietly" } })
        assert(client:schedule_del{ schedule_id = deleted.schedule_id })
        local new = schedule(cal, "added quietly")
        assert(client:calendar_update{ calendar = { cal_id = cal, summary = "team (quietly)", color = "#336699" } })
        -- a copy changed behind the mirror's back, sequence and all the same
        local edited = live[1100]
        assert(store:update(cal, { edited.schedule_id }, function(_, rows)
          local s = rows[edited.schedule_id]
          s.summary = "edited by hand"
          return { put = { s } }
        end))
        -- a copy of a schedule the server never had
        local ghost = {}
        for k, v in pairs(live[5]) do ghost[k] = v end
        ghost.schedule_id = "ghost0000000000000000000000000000"
        assert(store:update(cal, { ghost.schedule_id }, function() return { put = { ghost } } end))

        assert.equal(6, mirror:reconcile())
        local got, by = feed.take(), {}
        for _, c in ipairs(got) do
          assert.equal("reconcile", c.source)
          by[c.schedule_id or c.cal_id] = c
        end
        assert.equal(6, #got)
        assert.equal("calendar_changed", by[cal].kind)
        assert.equal("team (quietly)", by[cal].calendar.summary)
        assert.equal("changed", by[moved.schedule_id].kind)
        assert.equal("changed quietly", by[moved.schedule_id].schedule.summary)
        assert.equal("removed", by[deleted.schedule_id].kind)
        assert.equal("added", by[new].kind)
        assert.equal("changed", by[edited.schedule_id].kind)
        assert.equal("edited by hand", by[edited.schedule_id].old.summary)
        assert.equal(edited.summary, by[edited.schedule_id].schedule.summary)
        assert.equal(edited.sequence, by[edited.schedule_id].schedule.sequence)
        assert.equal("removed", by[ghost.schedule_id].kind)
        assert.is_nil(by[ghost.schedule_id].schedule)
        support.assert_mirrors(client, store, cal)
        assert.equal(1201, store:calendar(cal).offset)
        assert.equal(0, mirror:reconcile())
        assert.equal(0, mirror:pull())
      end)

      it("drops a calendar deleted without an event when a pull finds it gone, once", function()
        local cal, kept = calendar("doomed"), calendar("kept")
        schedule(cal)
        schedule(kept)
        assert(mirror:follow(cal))
        assert(mirror:follow(kept))
        assert.equal(2, mirror:pull())
        feed.take()
        assert(client:calendar_del{ cal_id = cal })
        schedule(kept, "later")
        assert.equal(2, mirror:pull())
        local got = feed.take()
        assert.equal("calendar_removed", got[1].kind)
        assert.equal("doomed", got[1].old.summary)
        assert.equal("added", got[2].kind)
        assert.same({ kept }, mirror:followed())
        assert.equal(0, mirror:pull())
        assert.equal(0, mirror:reconcile())
        -- a deleted calendar can't be followed
        local ok, err = mirror:follow(cal)
        assert.is_nil(ok)
        assert.equal("api", err.kind)
        assert.equal(90459, err.errcode)
      end)

      it("drops a followed calendar deleted since when follow finds it gone, once, and fails the follow", function()
        local cal, kept = calendar("doomed"), calendar("kept")
        schedule(cal)
        assert(mirror:follow(cal))
        assert(mirror:follow(kept))
        assert.equal(1, mirror:pull())
        feed.take()
        assert(client:calendar_del{ cal_id = cal })
        -- a cron loop that follows its list before each pull
        local ok, err = mirror:follow(cal)
        assert.is_nil(ok)
        assert.equal(90459, err.errcode)
        local got = feed.take()
        assert.equal(1, #got)
        assert.equal("calendar_removed", got[1].kind)
        assert.equal("follow", got[1].source)
        assert.equal("doomed", got[1].old.summary)
        assert.same({ kept }, mirror:followed())
        ok, err = mirror:follow(cal)
        assert.is_nil(ok)
        assert.equal(90459, err.errcode)
        assert.same({}, feed.take())
        assert.equal(0, mirror:pull())
      end)

      it("rolls a page back when on_change fails, and reports it again on the next pull", function()
        local cal = calendar()
        emu:seed(cal, 250)
        local seen, fail_at = {}, 130
        mirror = assert(sync.new{ client = client, store = store, page_size = 100, on_change = function(c)
          seen[#seen + 1] = c.schedule_id
          if #seen == fail_at then error("the index is down") end
        end })
        assert(mirror:follow(cal))
        local n, err = mirror:pull()
        assert.is_nil(n)
        assert.equal("sync", err.kind)
        assert.equal("handler", err.reason)
        assert.truthy(err.message:find("the index is down", 1, true), err.message)
        assert.equal(100, err.count) -- the first page went through
        assert.equal(100, store:calendar(cal).offset)
        support.assert_mirrors(client, store, cal, 100)
        fail_at = -1
        assert.equal(150, mirror:pull())
        -- the failed page's changes come again, the first page's don't
        assert.equal(130 + 150, #seen)
        for i = 1, 30 do assert.equal(seen[100 + i], seen[130 + i]) end
        support.assert_mirrors(client, store, cal)
        -- an on_change that returns nil, err fails the same way
        mirror = assert(sync.new{ client = client, store = store, on_change = function() return nil, "nope" end })
        schedule(cal)
        n, err = mirror:pull(cal)
        assert.is_nil(n)
        assert.equal("handler", err.reason)
        assert.equal(250, store:calendar(cal).offset)
      end)

      it("runs one operation of a mirror at a time", function()
        local cal = calendar()
        schedule(cal)
        assert(mirror:follow(cal))
        local inner
        mirror = assert(sync.new{ client = client, store = store, on_change = function()
          inner = { mirror:pull() }
        end })
        assert.equal(1, mirror:pull())
        assert.is_nil(inner[1])
        assert.equal("sync", inner[2].kind)
        assert.equal("busy", inner[2].reason)
        assert.truthy(inner[2].message:find("mirror:pull is still running", 1, true))
        -- and the store's own guard: an update inside an update
        local nested
        assert(store:update(cal, {}, function()
          nested = { store:update(cal, {}, function() return {} end) }
          return {}
        end))
        assert.is_nil(nested[1])
        assert.equal("busy", nested[2].reason)
      end)
    end)
  end

  describe("refuses", function()
    it("bad options of sync.new, naming the field", function()
      local store = sync.memory()
      local cases = {
        { nil, nil },
        { { client = {}, store = store }, "client" },
        { { client = client, store = {} }, "store" },
        { { client = client, store = store, on_change = "print" }, "on_change" },
        { { client = client, store = store, page_size = 0 }, "page_size" },
        { { client = client, store = store, page_size = 1001 }, "page_size" },
        { { client = client, store = store, pagesize = 10 }, "opts.pagesize" },
      }
      for _, case in ipairs(cases) do
        local m, err = sync.new(case[1])
        assert.is_nil(m)
        assert.equal("validation", err.kind)
        assert.equal(case[2], err.field)
      end
    end)

    it("calendars not followed, bad ids and messages that are not messages, without a call", function()
      local mirror = assert(sync.new{ client = client, store = sync.memory() })
      local before = emu:stats().calls
      local cases = {
        { mirror.pull, { "wcnotfollowed" }, "cal_id", "not followed" },
        { mirror.reconcile, { "wcnotfollowed" }, "cal_id", "not followed" },
        { mirror.pull, { 42 }, "cal_id", "expected a string" },
        { mirror.follow, { "" }, "cal_id", "bytes" },
        { mirror.apply, { "<xml/>" }, "msg", "a table" },
        { mirror.apply, { { MsgType = "event", Event = "modify_schedule" } }, "msg.CalId", "expected a string" },
      }
      for _, case in ipairs(cases) do
        local res, err = case[1](mirror, (table.unpack or unpack)(case[2]))
        assert.is_nil(res)
        assert.equal("validation", err.kind)
        assert.equal(case[3], err.field)
        assert.truthy(err.message:find(case[4], 1, true), err.message)
      end
      for s, err in mirror:schedules(7) do
        assert.is_false(s)
        assert.equal("cal_id", err.field)
      end
      assert.same(before, emu:stats().calls)
      assert.error_matches(function() mirror.pull() end, "mirror:pull: call it with a colon")
      assert.error_matches(function() mirror.schedules() end, "mirror:schedules: call it with a colon")
    end)
  end)

  describe("custom stores", function()
    -- The memory store behind a user's store that fails on its n-th update.
    local function failing(n, how)
      local inner, calls = sync.memory(), 0
      local s = setmetatable({}, { __index = function(_, k)
        return function(_, ...) return inner[k](inner, ...) end
      end })
      function s.update(_, ...)
        calls = calls + 1
        if calls == n then
          if how == "raise" then error("disk on fire") end
          return nil, "disk on fire"
        end
        return inner:update(...)
      end
      return s
    end

    for _, how in ipairs{ "return", "raise" } do
      it("that fail mid-pull (" .. how .. ") leave the offset where it was", function()
        local cal = calendar()
        emu:seed(cal, 500)
        local store, feed = failing(4, how), support.feed()
        -- updates: the follow, page 1, page 2, then page 3 fails
        local mirror = assert(sync.new{ client = client, store = store, page_size = 100, on_change = feed.fn })
        assert(mirror:follow(cal))
        local n, err = mirror:pull()
        assert.is_nil(n)
        assert.equal("sync", err.kind)
        assert.equal("store", err.reason)
        assert.equal(cal, err.cal_id)
        assert.equal(200, err.count)
        assert.truthy(err.message:find("disk on fire", 1, true), err.message)
        assert.equal(200, store:calendar(cal).offset)
        assert.equal(200, #feed.list)
        support.assert_mirrors(client, store, cal, 200)
        assert.equal(300, mirror:pull())
        assert.equal(500, #feed.list)
        support.assert_mirrors(client, store, cal)
      end)
    end
  end)

  describe("the SQLite store", function()
    it("keeps the mirror in a WAL-mode file with versioned tables, beside other tables", function()
      local path = dir .. "/shared.db"
      local driver = require("luasql.sqlite3")
      local env = driver.sqlite3()
      local conn = assert(env:connect(path))
      assert(conn:execute("CREATE TABLE bookings (id INTEGER PRIMARY KEY, what TEXT)"))
      assert(conn:execute("INSERT INTO bookings (what) VALUES ('room 5')"))
      local store = assert(sync.sqlite(path))
      local cal = calendar()
      schedule(cal, "kept across opens")
      local mirror = assert(sync.new{ client = client, store = store })
      assert(mirror:follow(cal))
      assert.equal(1, mirror:pull())
      local function one(c, sql)
        local cur = assert(c:execute(sql))
        local v = cur:fetch()
        cur:close()
        return v
      end
      local reader = assert(env:connect(path)) -- WAL is a property of the file, seen by any new connection
      assert.equal("wal", one(reader, "PRAGMA journal_mode"))
      reader:close()
      assert.equal("1", one(conn, "SELECT value FROM wecom_sync_meta WHERE key = 'schema_version'"))
      assert.equal("kept across opens", one(conn, "SELECT json_extract(schedule, '$.summary') FROM wecom_sync_schedules"))
      assert.equal("room 5", one(conn, "SELECT what FROM bookings"))
      store:close()
      local again = assert(sync.sqlite(path))
      assert.equal(1, again:calendar(cal).offset)
      assert.equal(1, #support.stored(again, cal))
      again:close()
      -- a file whose mirror tables are newer than this library is refused
      assert(conn:execute("UPDATE wecom_sync_meta SET value = '99' WHERE key = 'schema_version'"))
      local s, err = sync.sqlite(path)
      assert.is_nil(s)
      assert.equal("store", err.reason)
      assert.truthy(err.message:find("schema version 99", 1, true), err.message)
      conn:close()
      env:close()
    end)

    it("refuses what it can't open, and a closed store", function()
      local s, err = sync.sqlite(dir .. "/no/such/dir/m.db")
      assert.is_nil(s)
      assert.equal("sync", err.kind)
      assert.equal("store", err.reason)
      s, err = sync.sqlite(42)
      assert.is_nil(s)
      assert.equal("path", err.field)
      s, err = sync.sqlite(dir .. "/x.db", { synchronous = "SOMETIMES" })
      assert.is_nil(s)
      assert.equal("opts.synchronous", err.field)
      s = assert(sync.sqlite(dir .. "/closed.db"))
      s:close()
      local ok
      ok, err = s:calendar("wc1")
      assert.is_nil(ok)
      assert.truthy(err.message:find("closed", 1, true))
    end)

    it("tells apart schedules whose ids share a key, and the same id in two calendars", function()
      local sqlite = require("wecom.sync.sqlite")
      assert.equal(sqlite.id_key("heliotropes"), sqlite.id_key("neurospora")) -- djb2 collides on these
      local store = assert(sync.sqlite(dir .. "/keys.db"))
      for _, cal in ipairs{ "wc1", "wc2" } do
        assert(store:update(cal, {}, function() return { follow = true } end))
      end
      local function put(cal, id, summary)
        assert(store:update(cal, { id }, function() return { put = { { schedule_id = id, summary = summary } } } end))
      end
      put("wc1", "heliotropes", "a")
      put("wc1", "neurospora", "b")
      put("wc2", "heliotropes", "c")
      put("wc1", "heliotropes", "a2") -- an update, in place
      local rows
      assert(store:update("wc1", { "heliotropes", "neurospora", "dram" }, function(_, r)
        rows = r
        return { remove = { "neurospora" }, seen = { "heliotropes" }, scan = 7 }
      end))
      assert.equal("a2", rows.heliotropes.summary)
      assert.equal("b", rows.neurospora.summary)
      assert.is_nil(rows.dram)
      local list = store:page("wc1", nil, 10)
      assert.equal(1, #list)
      assert.equal("a2", list[1].summary)
      assert.same({}, store:page("wc1", nil, 10, 7)) -- marked by the scan
      assert.equal("c", store:page("wc2", nil, 10)[1].summary)
      store:close()
    end)

    it("keeps what the API returns exactly: integers, big numbers, control characters", function()
      local store = assert(sync.sqlite(dir .. "/exact.db"))
      local weird = { schedule_id = "s1", summary = "tab\tbell\7nul\0end", sequence = 2 ^ 53 - 1,
        big = 1.2345678901234567e300, attendees = {}, bytes = "\255\254" }
      assert(store:update("wc1", {}, function() return { follow = true } end))
      assert(store:update("wc1", { "s1" }, function() return { put = { weird } } end))
      local got = store:page("wc1", nil, 10)[1]
      assert.is_true(codec.same(weird, got))
      if math.type then assert.equal("integer", math.type(got.sequence)) end
      store:close()
    end)
  end)
end)
