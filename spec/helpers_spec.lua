-- The Lua helpers against the emulator: resumable paging, bulk reads, safe
-- partial updates and sharing.
local cjson = require("cjson")
local emulator = require("support.emulator")

describe("helpers", function()
  local emu, client

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function()
    emu:reset()
    client = emu:client()
  end)

  local function new_calendar(fields)
    local c = { summary = "team", color = "#FF3030" }
    for k, v in pairs(fields or {}) do c[k] = v end
    return assert(client:calendar_add{ calendar = c }).cal_id
  end

  local function get_calendar(cal_id)
    return assert(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1]
  end

  local function summaries(list)
    local out = {}
    for i, s in ipairs(list) do out[i] = s.summary end
    return out
  end

  local function expected(prefix, from, to)
    local out = {}
    for i = from, to do out[#out + 1] = ("%s %d"):format(prefix, i) end
    return out
  end

  describe("schedule_cursor", function()
    it("pages 2345 schedules: full pages, then the empty one, each schedule once, in order", function()
      local cal_id = new_calendar()
      emu:seed(cal_id, 2345)
      local cursor = assert(client:schedule_cursor(cal_id))
      local sizes, all = {}, {}
      while true do
        local page = assert(cursor:next_page())
        sizes[#sizes + 1] = #page
        if #page == 0 then break end
        for _, s in ipairs(page) do all[#all + 1] = s end
      end
      assert.same({ 1000, 1000, 345, 0 }, sizes)
      assert.equal(4, emu:calls("oa/schedule/get_by_calendar"))
      assert.same(expected("seeded schedule", 1, 2345), summaries(all))
      local ids = {}
      for _, s in ipairs(all) do
        assert.is_nil(ids[s.schedule_id])
        ids[s.schedule_id] = true
      end
      assert.equal(2345, cursor.offset)
    end)

    it("resumes from a saved offset, in another process, with exactly what was added since", function()
      local cal_id = new_calendar()
      emu:seed(cal_id, 1500)
      local cursor = assert(client:schedule_cursor(cal_id))
      repeat local page = assert(cursor:next_page()) until #page == 0
      local saved = cursor.offset
      assert.equal(1500, saved)
      emu:seed(cal_id, 7, { summary = "added later" })

      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(([[
        local wecom = require("wecom")
        local client = assert(wecom.new{ corpid = %q, corpsecret = %q, base_url = %q })
        local cursor = assert(client:schedule_cursor(%q, { offset = %d }))
        local page = assert(cursor:next_page())
        for _, s in ipairs(page) do print(s.summary) end
        assert(#assert(cursor:next_page()) == 0)
        print("offset " .. cursor.offset)
      ]]):format(emu.corpid, emu.corpsecret, emu.base_url, cal_id, saved))
      f:close()
      local shell = require("support.shell")
      local rc, out = shell.run(("%s %s %s"):format(shell.lua_env(package.path, package.cpath), shell.lua, script))
      assert.equal(0, rc, out)
      os.remove(script)
      local expect = table.concat(expected("added later", 1, 7), "\n") .. "\noffset 1507\n"
      assert.equal(expect, out)
    end)

    it("keeps cancelled schedules by default, with status 1", function()
      local cal_id = new_calendar()
      emu:seed(cal_id, 30, { cancelled_every = 3 })
      local page = assert(assert(client:schedule_cursor(cal_id)):next_page())
      assert.equal(30, #page)
      assert.equal(1, page[3].status)
      assert.equal(0, page[4].status)
    end)

    it("filters cancelled schedules out on request, still counting them in the offset", function()
      local cal_id = new_calendar()
      emu:seed(cal_id, 30, { cancelled_every = 3 })
      local cursor = assert(client:schedule_cursor(cal_id, { include_cancelled = false }))
      local page = assert(cursor:next_page())
      assert.equal(20, #page)
      for _, s in ipairs(page) do assert.equal(0, s.status) end
      assert.equal(30, cursor.offset)
      assert.same({}, assert(cursor:next_page()))
    end)

    it("does not mistake a page of only cancelled schedules for the end", function()
      local cal_id = new_calendar()
      emu:seed(cal_id, 5, { cancelled_every = 1, summary = "gone" })
      emu:seed(cal_id, 3, { summary = "live" })
      local cursor = assert(client:schedule_cursor(cal_id, { include_cancelled = false, limit = 2 }))
      assert.same({ "live 1" }, summaries(assert(cursor:next_page())))
      assert.same({ "live 2", "live 3" }, summaries(assert(cursor:next_page())))
      assert.same({}, assert(cursor:next_page()))
      assert.equal(8, cursor.offset)
    end)

    it("uses limit 1000 and offset 0 by default, and takes others", function()
      local cal_id = new_calendar()
      emu:seed(cal_id, 12)
      local cursor = assert(client:schedule_cursor(cal_id, { offset = 10, limit = 1 }))
      assert.same({ "seeded schedule 11" }, summaries(assert(cursor:next_page())))
      local sent = cjson.decode(emu:last_request("oa/schedule/get_by_calendar"))
      assert.same({ cal_id = cal_id, offset = 10, limit = 1 }, sent)
      assert(assert(client:schedule_cursor(cal_id)):next_page())
      sent = cjson.decode(emu:last_request("oa/schedule/get_by_calendar"))
      assert.same({ cal_id = cal_id, offset = 0, limit = 1000 }, sent)
    end)

    it("refuses bad arguments with errors naming them", function()
      local cases = {
        { { nil }, "cal_id" },
        { { "c", { limit = 0 } }, "opts.limit" },
        { { "c", { limit = 1001 } }, "opts.limit" },
        { { "c", { offset = -1 } }, "opts.offset" },
        { { "c", { include_cancelled = "no" } }, "opts.include_cancelled" },
        { { "c", { pagesize = 5 } }, "opts.pagesize" },
        { { "c", 5 }, "opts" },
      }
      for _, case in ipairs(cases) do
        local cursor, err = client:schedule_cursor(case[1][1], case[1][2])
        assert.is_nil(cursor)
        assert.equal("validation", err.kind)
        assert.equal(case[2], err.field)
        assert.truthy(err.message:find("^schedule_cursor: "))
      end
      assert.equal(0, emu:calls("oa/schedule/get_by_calendar"))
    end)

    it("returns nil, err when a page fails, and can go on afterwards", function()
      local cal_id = new_calendar()
      emu:seed(cal_id, 10)
      local cursor = assert(client:schedule_cursor(cal_id, { limit = 4 }))
      assert(cursor:next_page())
      emu:fault{ path = "oa/schedule/get_by_calendar", errcode = 45009 }
      local page, err = cursor:next_page()
      assert.is_nil(page)
      assert.equal(45009, err.errcode)
      assert.equal(4, cursor.offset)
      assert.same(expected("seeded schedule", 5, 8), summaries(assert(cursor:next_page())))
    end)
  end)

  describe("each_schedule", function()
    it("iterates every schedule once, in order, with a for loop", function()
      local cal_id = new_calendar()
      emu:seed(cal_id, 2345)
      local seen = {}
      for s, err in client:each_schedule(cal_id) do
        assert.is_nil(err)
        seen[#seen + 1] = s.summary
      end
      assert.same(expected("seeded schedule", 1, 2345), seen)
      assert.equal(4, emu:calls("oa/schedule/get_by_calendar"))
    end)

    it("holds one page at most", function()
      local cal_id = new_calendar()
      emu:seed(cal_id, 25)
      local weak = setmetatable({}, { __mode = "k" })
      local n = 0
      for s in client:each_schedule(cal_id, { limit = 10 }) do
        n = n + 1
        if n <= 10 then weak[s] = true end
        if n == 21 then
          -- on the third page: the first is no longer referenced
          collectgarbage()
          collectgarbage()
          assert.is_nil(next(weak))
        end
      end
      assert.equal(25, n)
    end)

    it("yields false, err once on a failure mid-way and stops; the cursor resumes", function()
      local cal_id = new_calendar()
      emu:seed(cal_id, 2345)
      emu:fault{ path = "oa/schedule/get_by_calendar", errcode = 45009, after = 2, times = -1 }
      local iter, cursor = client:each_schedule(cal_id)
      local n, failures, failure = 0, 0, nil
      for s, err in iter, cursor do
        if s == false then
          failures = failures + 1
          failure = err
        else
          n = n + 1
        end
      end
      assert.equal(2000, n)
      assert.equal(1, failures)
      assert.equal("api", failure.kind)
      assert.equal(45009, failure.errcode)
      assert.is_nil(iter())
      assert.equal(2000, cursor.offset)

      emu:clear_faults()
      local rest = {}
      for s in client:each_schedule(cal_id, { offset = cursor.offset }) do rest[#rest + 1] = s.summary end
      assert.same(expected("seeded schedule", 2001, 2345), rest)
    end)

    it("yields false, err for bad arguments", function()
      local results = {}
      for s, err in client:each_schedule(nil) do results[#results + 1] = { s, err } end
      assert.equal(1, #results)
      assert.is_false(results[1][1])
      assert.equal("cal_id", results[1][2].field)
    end)
  end)

  describe("calendars", function()
    it("reads 2500 ids in 3 requests, in input order", function()
      local ids = emu:seed_calendars(2500)
      local before = emu:calls("oa/calendar/get")
      local list = assert(client:calendars(ids))
      assert.equal(3, emu:calls("oa/calendar/get") - before)
      assert.equal(2500, #list)
      for i, cal in ipairs(list) do assert.equal(ids[i], cal.cal_id) end
      assert.equal("seeded calendar 2500", list[2500].summary)
    end)

    it("answers duplicates and any order, one entry per input id", function()
      local ids = emu:seed_calendars(3)
      local input = { ids[3], ids[1], ids[3], ids[2], ids[1] }
      local list = assert(client:calendars(input))
      assert.equal(5, #list)
      for i, cal in ipairs(list) do assert.equal(input[i], cal.cal_id) end
      assert.equal(1, emu:calls("oa/calendar/get"))
    end)

    it("returns nil, err when a batch fails", function()
      local ids = emu:seed_calendars(1500)
      emu:fault{ path = "oa/calendar/get", errcode = 45009, after = 1 }
      local list, err = client:calendars(ids)
      assert.is_nil(list)
      assert.equal(45009, err.errcode)
    end)

    it("checks every id before sending anything", function()
      local ids = emu:seed_calendars(3)
      ids[1200] = 5
      local list, err = client:calendars(ids)
      assert.is_nil(list)
      assert.equal("cal_ids", err.field) -- a hole at 4..1199
      list, err = client:calendars{ "a", 5 }
      assert.is_nil(list)
      assert.equal("cal_ids[2]", err.field)
      assert.equal(0, emu:calls("oa/calendar/get"))
      assert.same({}, assert(client:calendars{}))
      assert.equal(0, emu:calls("oa/calendar/get"))
    end)
  end)

  describe("calendar_patch", function()
    local FULL = {
      organizer = "boss", readonly = 0, summary = "team", color = "#FF3030", description = "all of it",
      shares = { { userid = "u1", readonly = 0 }, { userid = "u2", permission = 3 }, { userid = "u3" } },
      admins = { "u1" }, is_public = 1, public_range = { userids = { "x" }, partyids = { 7 } },
    }

    it("changes what is named and keeps every other field", function()
      local cal_id = new_calendar(FULL)
      local before = get_calendar(cal_id)
      local res = assert(client:calendar_patch(cal_id, { summary = "renamed" }))
      assert.equal(0, res.errcode)
      local after = get_calendar(cal_id)
      before.summary = "renamed"
      assert.same(before, after)
      -- what was sent: no fields update refuses, public_range left alone
      local sent = cjson.decode(emu:last_request("oa/calendar/update"))
      assert.is_nil(sent.calendar.organizer)
      assert.is_nil(sent.calendar.is_public)
      assert.is_nil(sent.calendar.public_range)
      assert.equal(1, sent.skip_public_range)
    end)

    it("replaces lists and public_range when they are named", function()
      local cal_id = new_calendar(FULL)
      assert(client:calendar_patch(cal_id, { public_range = { partyids = { 9 } }, admins = {} }))
      local cal = get_calendar(cal_id)
      assert.same({ userids = {}, partyids = { 9 } }, cal.public_range)
      assert.same({}, cal.admins)
      assert.equal("all of it", cal.description)
    end)

    it("refuses fields update can't take, and bad values, writing nothing", function()
      local cal_id = new_calendar(FULL)
      for _, k in ipairs{ "organizer", "is_public", "is_corp_calendar" } do
        local res, err = client:calendar_patch(cal_id, { [k] = 1 })
        assert.is_nil(res)
        assert.equal("changes." .. k, err.field)
      end
      local res, err = client:calendar_patch(cal_id, { color = "red" })
      assert.is_nil(res)
      assert.equal("calendar.color", err.field)
      res, err = client:calendar_patch(cal_id, "x")
      assert.is_nil(res)
      assert.equal("changes", err.field)
      res, err = client:calendar_patch(nil, {})
      assert.is_nil(res)
      assert.equal("cal_id", err.field)
      assert.equal(0, emu:calls("oa/calendar/update"))
      assert.equal("#FF3030", get_calendar(cal_id).color)
    end)

    it("reports an unknown calendar", function()
      local res, err = client:calendar_patch("nope", { summary = "x" })
      assert.is_nil(res)
      assert.equal(90457, err.errcode)
    end)
  end)

  describe("share_calendar / unshare_calendar", function()
    it("adds members, changes existing ones in place, keeps the rest", function()
      local cal_id = new_calendar{ description = "keep me", readonly = 0,
        shares = { { userid = "u1" }, { userid = "u2", readonly = 0 } }, admins = { "u2" } }
      local res = assert(client:share_calendar(cal_id, {
        "u3", { userid = "u1", readonly = 0 }, { userid = "u4", permission = 3 }, "u2",
      }))
      assert.equal(0, res.errcode)
      local cal = get_calendar(cal_id)
      assert.same({
        { userid = "u1", readonly = 0 }, { userid = "u2", readonly = 0 },
        { userid = "u3", readonly = 1 }, { userid = "u4", permission = 3 },
      }, cal.shares)
      assert.same({ "u2" }, cal.admins)
      assert.equal("keep me", cal.description)
      assert.equal(0, cal.readonly)
    end)

    it("shows members WeCom refused in fail_result", function()
      local cal_id = new_calendar()
      local res = assert(client:share_calendar(cal_id, { "u1", "unknown-person" }))
      assert.same({ { userid = "unknown-person", errcode = 40001, errmsg = "not found" } }, res.fail_result.shares)
      assert.same({ { userid = "u1", readonly = 1 } }, get_calendar(cal_id).shares)
    end)

    it("refuses going over 2000 members and writes nothing", function()
      local shares = {}
      for i = 1, 1999 do shares[i] = { userid = "m" .. i } end
      local cal_id = new_calendar{ shares = shares }
      assert(client:share_calendar(cal_id, { "m1", "m2", "new1" })) -- 2000: fine
      local res, err = client:share_calendar(cal_id, { "new2", "new3" })
      assert.is_nil(res)
      assert.equal("validation", err.kind)
      assert.equal("members", err.field)
      assert.truthy(err.message:find("would have 2002 members; at most 2000", 1, true))
      assert.equal(1, emu:calls("oa/calendar/update"))
      assert.equal(2000, #get_calendar(cal_id).shares)
    end)

    it("checks the members", function()
      local cal_id = new_calendar()
      local cases = {
        { {}, "members" },
        { "u1", "members" },
        { { 5 }, "members[1]" },
        { { { readonly = 1 } }, "members[1].userid" },
        { { { userid = "u", readonly = 2 } }, "members[1].readonly" },
        { { "ok", { userid = "u", permission = 2 } }, "members[2].permission" },
      }
      for _, case in ipairs(cases) do
        local res, err = client:share_calendar(cal_id, case[1])
        assert.is_nil(res)
        assert.equal(case[2], err.field)
      end
      assert.equal(0, emu:calls("oa/calendar/update"))
    end)

    it("unshares members, and their admin role with them", function()
      local cal_id = new_calendar{ description = "d",
        shares = { { userid = "u1" }, { userid = "u2" }, { userid = "u3" } }, admins = { "u1", "u3" } }
      assert(client:unshare_calendar(cal_id, { "u1", "nobody" }))
      local cal = get_calendar(cal_id)
      assert.same({ { userid = "u2", readonly = 1 }, { userid = "u3", readonly = 1 } }, cal.shares)
      assert.same({ "u3" }, cal.admins)
      assert.equal("d", cal.description)
    end)
  end)

  describe("share_calendars", function()
    it("shares with many calendars, goes on past failures, one result each", function()
      local a, b, c = new_calendar(), new_calendar(), new_calendar()
      assert(client:calendar_del{ cal_id = b })
      local results = assert(client:share_calendars({ a, b, c }, { "u9", { userid = "u8", readonly = 0 } }))
      assert.equal(3, #results)
      assert.same({ a, true }, { results[1].cal_id, results[1].ok })
      assert.equal(0, results[1].result.errcode)
      assert.same({ b, false }, { results[2].cal_id, results[2].ok })
      assert.equal(90459, results[2].err.errcode)
      assert.is_true(results[3].ok)
      for _, id in ipairs{ a, c } do
        assert.same({ { userid = "u9", readonly = 1 }, { userid = "u8", readonly = 0 } }, get_calendar(id).shares)
      end
    end)

    it("checks its arguments before touching any calendar", function()
      local a = new_calendar()
      local res, err = client:share_calendars({ a }, { { userid = "" } })
      assert.is_nil(res)
      assert.equal("members[1].userid", err.field)
      res, err = client:share_calendars("x", { "u" })
      assert.is_nil(res)
      assert.equal("cal_ids", err.field)
      assert.equal(0, emu:calls("oa/calendar/get"))
    end)
  end)

  it("helpers raise when called without the colon", function()
    assert.has_error(function() client.calendars({ "x" }) end)
    assert.has_error(function() client.each_schedule("x") end)
  end)
end)
