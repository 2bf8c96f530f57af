-- Every schema rule at its boundary, through the public methods: the passing
-- side reaches the emulator, the failing side is refused before anything is
-- sent, with an error that names the field.
local cjson = require("cjson")
local emulator = require("support.emulator")

local function rep_list(n, make)
  local t = {}
  for i = 1, n do t[i] = make(i) end
  return t
end

local function shares(n)
  return rep_list(n, function(i) return { userid = "user" .. i } end)
end

describe("request schemas", function()
  local emu, client

  setup(function()
    emu = emulator.start()
  end)
  teardown(function() emu:stop() end)
  before_each(function()
    emu:reset()
    client = emu:client()
  end)

  local function calendar(fields)
    local c = { summary = "team", color = "#FF3030" }
    for k, v in pairs(fields or {}) do c[k] = v end
    return c
  end

  local function refused(...) return emu:refused(client, ...) end

  local function accepted(...)
    local res = emu:accepted(client, ...)
    assert.equal(0, res.errcode)
    return res
  end

  local function new_calendar(fields)
    return accepted("calendar_add", { calendar = calendar(fields) }).cal_id
  end

  describe("calendar", function()
    it("summary: 128 CJK characters pass, 129 fail, empty fails", function()
      new_calendar{ summary = string.rep("日", 128) }
      refused("calendar_add", { calendar = calendar{ summary = string.rep("日", 129) } },
        "calendar.summary", "expected 1..128 characters, got 129")
      refused("calendar_add", { calendar = calendar{ summary = "" } },
        "calendar.summary", "got an empty string")
    end)

    it("summary and the calendar itself are required", function()
      local c = calendar()
      c.summary = nil
      refused("calendar_add", { calendar = c }, "calendar.summary", "required")
      refused("calendar_add", {}, "calendar", "required")
      refused("calendar_add", { calendar = "x" }, "calendar", "expected an object")
    end)

    it("color: #RRGGBB in either case passes; anything else fails", function()
      new_calendar{ color = "#0000ff" }
      local err = refused("calendar_add", { calendar = calendar{ color = "red" } }, "calendar.color")
      assert.equal('oa/calendar/add: calendar.color: expected "#RRGGBB", got "red"', err.message)
      refused("calendar_add", { calendar = calendar{ color = "#FF303" } }, "calendar.color")
      refused("calendar_add", { calendar = calendar{ color = "#GG3030" } }, "calendar.color")
      refused("calendar_add", { calendar = calendar{ color = "FF3030" } }, "calendar.color")
      local c = calendar()
      c.color = nil
      refused("calendar_add", { calendar = c }, "calendar.color", "required")
    end)

    it("description: 512 characters pass, 513 fail", function()
      new_calendar{ description = string.rep("描", 512) }
      refused("calendar_add", { calendar = calendar{ description = string.rep("描", 513) } },
        "calendar.description", "expected 0..512 characters, got 513")
    end)

    it("shares: 2000 pass, 2001 fail", function()
      new_calendar{ shares = shares(2000) }
      refused("calendar_add", { calendar = calendar{ shares = shares(2001) } },
        "calendar.shares", "expected at most 2000 items, got 2001")
    end)

    it("shares[].userid: required, at most 64 bytes", function()
      new_calendar{ shares = { { userid = string.rep("u", 64) } } }
      local long = { { userid = "a" }, { userid = "b" }, { userid = string.rep("u", 65) } }
      refused("calendar_add", { calendar = calendar{ shares = long } },
        "calendar.shares[3].userid", "expected 1..64 bytes, got 65")
      -- 22 CJK characters are 66 bytes
      refused("calendar_add", { calendar = calendar{ shares = { { userid = string.rep("用", 22) } } } },
        "calendar.shares[1].userid", "got 66")
      refused("calendar_add", { calendar = calendar{ shares = { { readonly = 1 } } } },
        "calendar.shares[1].userid", "required")
      refused("calendar_add", { calendar = calendar{ shares = { "user1" } } },
        "calendar.shares[1]", "expected an object")
    end)

    it("shares[].readonly is 0/1 (or a boolean); permission is 1 or 3", function()
      local cal_id = new_calendar{ shares = { { userid = "a", readonly = 0 }, { userid = "b", readonly = true },
        { userid = "c", permission = 1 }, { userid = "d", permission = 3 } } }
      local cal = accepted("calendar_get", { cal_id_list = { cal_id } }).calendar_list[1]
      assert.equal(0, cal.shares[1].readonly)
      assert.equal(1, cal.shares[2].readonly)
      refused("calendar_add", { calendar = calendar{ shares = { { userid = "a", readonly = 2 } } } },
        "calendar.shares[1].readonly", "expected 0 or 1, got 2")
      refused("calendar_add", { calendar = calendar{ shares = { { userid = "a", permission = 2 } } } },
        "calendar.shares[1].permission", "expected one of 1, 3, got 2")
    end)

    it("admins: at most 3, each also in shares", function()
      new_calendar{ shares = shares(3), admins = { "user1", "user2", "user3" } }
      refused("calendar_add", { calendar = calendar{ shares = shares(4), admins = { "user1", "user2", "user3", "user4" } } },
        "calendar.admins", "expected at most 3 items, got 4")
      refused("calendar_add", { calendar = calendar{ shares = shares(2), admins = { "user1", "boss" } } },
        "calendar.admins[2]", '"boss" must also be in shares')
      refused("calendar_update", { calendar = { cal_id = "c", summary = "s", admins = { "boss" } } },
        "calendar.admins[1]", "must also be in shares")
    end)

    it("public_range: 1000 userids and 100 partyids pass, one more fails", function()
      local users = rep_list(1000, function(i) return "u" .. i end)
      local parties = rep_list(100, function(i) return i end)
      new_calendar{ is_public = 1, public_range = { userids = users, partyids = parties } }
      users[1001] = "extra"
      refused("calendar_add", { calendar = calendar{ is_public = 1, public_range = { userids = users } } },
        "calendar.public_range.userids", "expected at most 1000 items, got 1001")
      parties[101] = 101
      refused("calendar_add", { calendar = calendar{ is_public = 1, public_range = { partyids = parties } } },
        "calendar.public_range.partyids", "expected at most 100 items, got 101")
      refused("calendar_add", { calendar = calendar{ public_range = { partyids = { 0 } } } },
        "calendar.public_range.partyids[1]", "expected an integer in 1..4294967295, got 0")
    end)

    it("an all-staff calendar needs public_range and takes no colour", function()
      local c = calendar{ is_public = 1, is_corp_calendar = 1, public_range = { partyids = { 1 } } }
      c.color = nil
      new_calendar(c)
      c.public_range = nil
      refused("calendar_add", { calendar = c }, "calendar.public_range", "required for an all-staff calendar")
    end)

    it("flags are 0 or 1", function()
      refused("calendar_add", { calendar = calendar{ readonly = 2 } }, "calendar.readonly", "expected 0 or 1")
      refused("calendar_add", { calendar = calendar{ set_as_default = -1 } }, "calendar.set_as_default")
      refused("calendar_add", { calendar = calendar{ is_public = "1" } }, "calendar.is_public")
    end)

    it("agentid is an integer", function()
      accepted("calendar_add", { calendar = calendar(), agentid = 1000014 })
      refused("calendar_add", { calendar = calendar(), agentid = 1.5 }, "agentid", "expected an integer")
    end)

    it("update: cal_id required; organizer, is_public and is_corp_calendar refused", function()
      refused("calendar_update", { calendar = { summary = "s", color = "#000000" } }, "calendar.cal_id", "required")
      refused("calendar_update", { calendar = { cal_id = "c", summary = "s", organizer = "u" } },
        "calendar.organizer", "can't be updated")
      refused("calendar_update", { calendar = { cal_id = "c", summary = "s", is_public = 1 } },
        "calendar.is_public", "can't be updated")
      refused("calendar_update", { calendar = { cal_id = "c", summary = "s", is_corp_calendar = 0 } },
        "calendar.is_corp_calendar", "can't be updated")
      refused("calendar_update", { calendar = { cal_id = "c", summary = "s" }, skip_public_range = 2 },
        "skip_public_range", "expected 0 or 1")
    end)

    it("get: 1 and 1000 ids pass; 0 and 1001 fail", function()
      local cal_id = new_calendar()
      local ids = rep_list(1000, function() return cal_id end)
      accepted("calendar_get", { cal_id_list = { cal_id } })
      accepted("calendar_get", { cal_id_list = ids })
      ids[1001] = cal_id
      refused("calendar_get", { cal_id_list = ids }, "cal_id_list", "expected at most 1000 items, got 1001")
      refused("calendar_get", { cal_id_list = {} }, "cal_id_list", "expected at least 1 item, got 0")
      refused("calendar_get", {}, "cal_id_list", "required")
      refused("calendar_get", { cal_id_list = { string.rep("c", 65) } }, "cal_id_list[1]", "expected 1..64 bytes")
    end)

    it("del: cal_id required, at most 64 bytes", function()
      refused("calendar_del", {}, "cal_id", "required")
      refused("calendar_del", { cal_id = string.rep("c", 65) }, "cal_id", "got 65")
      refused("calendar_del", { cal_id = "" }, "cal_id", "got an empty string")
    end)
  end)

  describe("schedule_get_by_calendar", function()
    it("limit: 1 and 1000 pass; 0 and 1001 fail", function()
      local cal_id = new_calendar()
      accepted("schedule_get_by_calendar", { cal_id = cal_id, limit = 1 })
      accepted("schedule_get_by_calendar", { cal_id = cal_id, limit = 1000 })
      refused("schedule_get_by_calendar", { cal_id = cal_id, limit = 0 }, "limit",
        "expected an integer in 1..1000, got 0")
      refused("schedule_get_by_calendar", { cal_id = cal_id, limit = 1001 }, "limit",
        "expected an integer in 1..1000, got 1001")
    end)

    it("offset: a non-negative integer", function()
      local cal_id = new_calendar()
      accepted("schedule_get_by_calendar", { cal_id = cal_id, offset = 0 })
      refused("schedule_get_by_calendar", { cal_id = cal_id, offset = -1 }, "offset")
      refused("schedule_get_by_calendar", { cal_id = cal_id, offset = 1.5 }, "offset", "got 1.5")
      refused("schedule_get_by_calendar", { offset = 0 }, "cal_id", "required")
    end)
  end)

  describe("encoding", function()
    it("sends text as raw UTF-8, never \\u escapes", function()
      new_calendar{ summary = "团队日历 🗓", description = "第一行\n第二行" }
      local raw = emu:last_request("oa/calendar/add")
      assert.truthy(raw:find("团队日历 🗓", 1, true))
      assert.falsy(raw:find("\\u", 1, true))
    end)

    it("sends known empty lists as []", function()
      new_calendar{ shares = {}, admins = {}, public_range = { userids = {}, partyids = {} } }
      local sent = emu:last_request("oa/calendar/add")
      assert.truthy(sent:find('"shares":[]', 1, true))
      assert.truthy(sent:find('"admins":[]', 1, true))
      assert.truthy(sent:find('"userids":[]', 1, true))
      assert.truthy(sent:find('"partyids":[]', 1, true))
    end)

    it("sends integers as integers", function()
      new_calendar{ readonly = 0.0 }
      local sent = cjson.decode(emu:last_request("oa/calendar/add"))
      assert.equal(0, sent.calendar.readonly)
      assert.truthy(emu:last_request("oa/calendar/add"):find('"readonly":0[,}]'))
    end)

    it("passes unknown fields through unchanged", function()
      new_calendar{ future_field = { nested = { 1, 2, "三" }, flag = true } }
      local sent = cjson.decode(emu:last_request("oa/calendar/add"))
      assert.same({ nested = { 1, 2, "三" }, flag = true }, sent.calendar.future_field)
    end)

    it("refuses invalid UTF-8 and control characters, naming the field", function()
      refused("calendar_add", { calendar = calendar{ summary = "ab\255" } }, "calendar.summary", "invalid UTF-8 at byte 3")
      refused("calendar_add", { calendar = calendar{ summary = "\237\160\128" } }, "calendar.summary", "invalid UTF-8")
      refused("calendar_add", { calendar = calendar{ summary = "\192\175" } }, "calendar.summary", "invalid UTF-8")
      refused("calendar_add", { calendar = calendar{ summary = "a\0b" } }, "calendar.summary", "control character U+0000")
      refused("calendar_add", { calendar = calendar{ x = { "ok", "\1" } } }, "calendar.x[2]", "control character U+0001")
    end)

    it("refuses NaN, infinities, functions and coroutines anywhere", function()
      refused("calendar_add", { calendar = calendar{ x = 0 / 0 } }, "calendar.x", "expected a finite number, got nan")
      refused("calendar_add", { calendar = calendar{ x = math.huge } }, "calendar.x", "got inf")
      refused("calendar_add", { calendar = calendar{ x = -math.huge } }, "calendar.x", "got -inf")
      refused("calendar_add", { calendar = calendar{ x = print } }, "calendar.x", "got a function")
      refused("calendar_add", { calendar = calendar{ x = coroutine.create(function() end) } }, "calendar.x", "got a coroutine")
      refused("calendar_add", { calendar = calendar{ x = io.stdout } }, "calendar.x", "got a userdata")
      refused("schedule_get_by_calendar", { cal_id = "c", limit = 0 / 0 }, "limit", "got nan")
    end)

    it("refuses cycles and absurd nesting", function()
      local t = {}
      t.self = t
      refused("calendar_add", { calendar = calendar{ x = t } }, "calendar.x.self", "cycle")
      local deep = {}
      local cur = deep
      for _ = 1, 5000 do
        cur.d = {}
        cur = cur.d
      end
      local err = refused("calendar_add", { calendar = calendar{ x = deep } }, false, "nested deeper than")
      assert.truthy(err.field:find("^calendar%.x%.d%.d"))
    end)

    it("refuses tables that are neither a list nor an object", function()
      refused("calendar_add", { calendar = calendar{ x = { 1, 2, k = 3 } } }, "calendar.x", "both list items and named fields")
      refused("calendar_add", { calendar = calendar{ x = { [1] = 1, [3] = 3 } } }, "calendar.x", "holes")
      refused("calendar_add", { calendar = calendar{ x = { [true] = 1 } } }, "calendar.x", "not a name or a list index")
      refused("calendar_add", { calendar = calendar{ shares = { userid = "a" } } }, "calendar.shares", "expected a list")
      refused("calendar_add", { calendar = { "summary" } }, "calendar", "expected an object")
    end)

    it("refuses a body that is not a table", function()
      local err = refused("calendar_add", nil, nil)
      assert.equal("oa/calendar/add: expected a table as the request body, got nil", err.message)
      refused("calendar_get", "cal_id_list", nil, 'got "cal_id_list"')
    end)
  end)

  describe("both generations of the calendar API", function()
    it("accepts the seed's request body", function()
      local res = accepted("calendar_add", {
        calendar = {
          organizer = "userid1", readonly = 1, set_as_default = 1, summary = "test_summary",
          color = "#FF3030", description = "test_describe",
          shares = { { userid = "userid2" }, { userid = "userid3", readonly = 1 } },
        },
        agentid = 1000014,
      })
      assert.is_string(res.cal_id)
    end)

    it("accepts the current request body", function()
      local res = accepted("calendar_add", {
        calendar = {
          admins = { "userid2", "userid3" }, set_as_default = 1, summary = "test_summary",
          color = "#FF3030", description = "test_describe",
          shares = { { userid = "userid2", permission = 1 }, { userid = "userid3", permission = 3 } },
          is_public = 1, public_range = { userids = { "abel", "jack" }, partyids = { 1232, 34353 } },
        },
        agentid = 1000014,
      })
      local cal = accepted("calendar_get", { cal_id_list = { res.cal_id } }).calendar_list[1]
      assert.same({ "userid2", "userid3" }, cal.admins)
      assert.same({ userids = { "abel", "jack" }, partyids = { 1232, 34353 } }, cal.public_range)
      assert.equal(1, cal.is_public)
    end)
  end)
end)
