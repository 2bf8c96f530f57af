-- The full schedule API: schema rules at their boundaries, the emulator's
-- semantics (overwrite, recurrence op_modes, cancel, attendees) and the
-- schedule helpers.
local cjson = require("cjson")
local core = require("wecom.core")
local emulator = require("support.emulator")

local MONDAY = 1795399200 -- 2026-11-23 10:00 +08:00, a Monday
local HOUR, DAY, WEEK = 3600, 86400, 7 * 86400

local function list_of(n, make)
  local t = {}
  for i = 1, n do t[i] = make(i) end
  return t
end

local function attendees(n, prefix)
  return list_of(n, function(i) return { userid = (prefix or "a") .. i } end)
end

describe("schedules", function()
  local emu, client, cal_id

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function()
    emu:reset()
    client = emu:client()
    cal_id = assert(client:calendar_add{ calendar = { summary = "team", color = "#FF3030" } }).cal_id
  end)

  local function schedule(fields)
    local s = { cal_id = cal_id, start_time = MONDAY, end_time = MONDAY + HOUR, summary = "standup" }
    for k, v in pairs(fields or {}) do s[k] = v end
    return s
  end

  local function add(fields)
    local res, err = client:schedule_add{ schedule = schedule(fields) }
    assert.is_nil(err)
    return res.schedule_id
  end

  local function get(id)
    return assert(client:schedule_get{ schedule_id_list = { id } }).schedule_list[1]
  end

  local function weekly(fields)
    local f = { reminders = { is_repeat = 1, repeat_type = 1, timezone = 8 } }
    for k, v in pairs(fields or {}) do f[k] = v end
    return add(f)
  end

  local function refused(...) emu:refused(client, ...) end

  local function accepted(...) return emu:accepted(client, ...) end

  describe("schemas", function()
    it("are rows of the endpoint table with their idempotency", function()
      local rows = {}
      for _, ep in ipairs(core.endpoints()) do rows[ep.name] = ep end
      for name, idempotent in pairs{ schedule_add = false, schedule_update = true, schedule_get = true,
        schedule_del = true, schedule_add_attendees = false, schedule_del_attendees = true } do
        assert.equal(idempotent, rows[name].idempotent, name)
        assert.equal("oa/schedule/" .. name:gsub("^schedule_", ""), rows[name].path)
        assert.is_function(client[name])
      end
    end)

    it("start_time and end_time are required, end after start", function()
      local s = schedule()
      s.start_time = nil
      refused("schedule_add", { schedule = s }, "schedule.start_time", "required")
      refused("schedule_add", { schedule = schedule{ end_time = MONDAY } }, "schedule.end_time",
        "must be after start_time")
      accepted("schedule_add", { schedule = schedule{ end_time = MONDAY + 1 } })
      refused("schedule_add", {}, "schedule", "required")
    end)

    it("summary 0..128, description up to 1000, location up to 128 characters", function()
      accepted("schedule_add", { schedule = schedule{ summary = "" } })
      accepted("schedule_add", { schedule = schedule{ summary = string.rep("会", 128),
        description = string.rep("述", 1000), location = string.rep("地", 128) } })
      refused("schedule_add", { schedule = schedule{ summary = string.rep("会", 129) } }, "schedule.summary")
      refused("schedule_add", { schedule = schedule{ description = string.rep("述", 1001) } }, "schedule.description",
        "expected 0..1000 characters, got 1001")
      refused("schedule_add", { schedule = schedule{ location = string.rep("地", 129) } }, "schedule.location")
    end)

    it("admins: at most 3, each an attendee", function()
      accepted("schedule_add", { schedule = schedule{ attendees = attendees(3), admins = { "a1", "a2", "a3" } } })
      refused("schedule_add", { schedule = schedule{ attendees = attendees(4), admins = { "a1", "a2", "a3", "a4" } } },
        "schedule.admins", "expected at most 3 items")
      refused("schedule_add", { schedule = schedule{ attendees = attendees(1), admins = { "boss" } } },
        "schedule.admins[1]", '"boss" must also be an attendee')
    end)

    it("attendees: 1000 on add and update, 1000 per add_attendees, 300 per del_attendees", function()
      local id = add{ attendees = attendees(1000) }
      refused("schedule_add", { schedule = schedule{ attendees = attendees(1001) } }, "schedule.attendees",
        "expected at most 1000 items, got 1001")
      accepted("schedule_update", { schedule = { schedule_id = id, start_time = MONDAY, end_time = MONDAY + 60,
        attendees = attendees(1000, "b") } })
      refused("schedule_update", { schedule = { schedule_id = id, start_time = MONDAY, end_time = MONDAY + 60,
        attendees = attendees(1001) } }, "schedule.attendees")
      accepted("schedule_del_attendees", { schedule_id = id, attendees = attendees(300, "b") })
      refused("schedule_del_attendees", { schedule_id = id, attendees = attendees(301) }, "attendees",
        "expected at most 300 items, got 301")
      accepted("schedule_add_attendees", { schedule_id = id, attendees = attendees(300, "c") })
      refused("schedule_add_attendees", { schedule_id = id, attendees = attendees(1001) }, "attendees")
      refused("schedule_add_attendees", { schedule_id = id, attendees = {} }, "attendees", "at least 1")
    end)

    it("userids and ids are at most 64 bytes", function()
      accepted("schedule_add", { schedule = schedule{ attendees = { { userid = string.rep("u", 64) } } } })
      refused("schedule_add", { schedule = schedule{ attendees = { { userid = string.rep("u", 65) } } } },
        "schedule.attendees[1].userid", "expected 1..64 bytes, got 65")
      refused("schedule_get", { schedule_id_list = { string.rep("s", 65) } }, "schedule_id_list[1]")
      refused("schedule_del", { schedule_id = string.rep("s", 65) }, "schedule_id")
    end)

    it("remind_before_event_secs is one of 0, 300, 900, 3600, 86400", function()
      for _, v in ipairs{ 0, 300, 900, 3600, 86400 } do
        accepted("schedule_add", { schedule = schedule{ reminders = { is_remind = 1, remind_before_event_secs = v } } })
      end
      refused("schedule_add", { schedule = schedule{ reminders = { remind_before_event_secs = 60 } } },
        "schedule.reminders.remind_before_event_secs", "expected one of 0, 300, 900, 3600, 86400, got 60")
    end)

    it("remind_time_diffs: 0, -300, -900, -3600, -86400; 32400, -172800, -604800 for whole days", function()
      accepted("schedule_add", { schedule = schedule{ reminders = { remind_time_diffs = { 0, -300, -900, -3600, -86400 } } } })
      for _, v in ipairs{ 32400, -172800, -604800 } do
        refused("schedule_add", { schedule = schedule{ reminders = { remind_time_diffs = { 0, v } } } },
          "schedule.reminders.remind_time_diffs[2]", "only for whole-day schedules")
        accepted("schedule_add", { schedule = schedule{ is_whole_day = 1, reminders = { remind_time_diffs = { v } } } })
      end
      refused("schedule_add", { schedule = schedule{ is_whole_day = 1, reminders = { remind_time_diffs = { -7200 } } } },
        "schedule.reminders.remind_time_diffs[1]", "expected one of")
    end)

    it("repeat_type in {0, 1, 2, 5, 7}; weekdays 1..7; month days 1..31; timezone -12..12", function()
      for _, v in ipairs{ 0, 1, 2, 5, 7 } do
        accepted("schedule_add", { schedule = schedule{ reminders = { is_repeat = 1, repeat_type = v } } })
      end
      refused("schedule_add", { schedule = schedule{ reminders = { repeat_type = 3 } } }, "schedule.reminders.repeat_type")
      accepted("schedule_add", { schedule = schedule{ reminders = { is_custom_repeat = 1, repeat_type = 1,
        repeat_day_of_week = { 1, 7 }, repeat_day_of_month = { 1, 31 }, timezone = -12 } } })
      accepted("schedule_add", { schedule = schedule{ reminders = { timezone = 12 } } })
      refused("schedule_add", { schedule = schedule{ reminders = { repeat_day_of_week = { 0 } } } },
        "schedule.reminders.repeat_day_of_week[1]", "expected an integer in 1..7, got 0")
      refused("schedule_add", { schedule = schedule{ reminders = { repeat_day_of_week = { 1, 8 } } } },
        "schedule.reminders.repeat_day_of_week[2]")
      refused("schedule_add", { schedule = schedule{ reminders = { repeat_day_of_month = { 0 } } } },
        "schedule.reminders.repeat_day_of_month[1]")
      refused("schedule_add", { schedule = schedule{ reminders = { repeat_day_of_month = { 32 } } } },
        "schedule.reminders.repeat_day_of_month[1]")
      refused("schedule_add", { schedule = schedule{ reminders = { timezone = 13 } } }, "schedule.reminders.timezone",
        "expected an integer in -12..12, got 13")
      refused("schedule_add", { schedule = schedule{ reminders = { timezone = -13 } } }, "schedule.reminders.timezone")
    end)

    it("op_mode 0..2, op_start_time required for 1 and 2", function()
      local id = weekly()
      local s = { schedule_id = id, start_time = MONDAY, end_time = MONDAY + HOUR }
      accepted("schedule_update", { schedule = s, op_mode = 0 })
      refused("schedule_update", { schedule = s, op_mode = 3 }, "op_mode", "expected an integer in 0..2, got 3")
      refused("schedule_update", { schedule = s, op_mode = 1 }, "op_start_time", "required with op_mode 1 and 2")
      refused("schedule_del", { schedule_id = id, op_mode = 2 }, "op_start_time", "required with op_mode 1 and 2")
      refused("schedule_del", { schedule_id = id, op_mode = -1 }, "op_mode")
    end)

    it("schedule_id_list: 1 and 1000 pass, 0 and 1001 fail", function()
      local id = add()
      accepted("schedule_get", { schedule_id_list = { id } })
      local ids = list_of(1000, function() return id end)
      accepted("schedule_get", { schedule_id_list = ids })
      ids[1001] = id
      refused("schedule_get", { schedule_id_list = ids }, "schedule_id_list", "expected at most 1000 items, got 1001")
      refused("schedule_get", { schedule_id_list = {} }, "schedule_id_list", "expected at least 1 item")
    end)

    it("update refuses what can't be updated or is read-only", function()
      local base = { schedule_id = "s", start_time = MONDAY, end_time = MONDAY + 60 }
      local function with(k, v)
        local s = {}
        for key, x in pairs(base) do s[key] = x end
        s[k] = v
        return { schedule = s }
      end
      refused("schedule_update", with("cal_id", cal_id), "schedule.cal_id", "can't be updated")
      refused("schedule_update", with("organizer", "u"), "schedule.organizer", "can't be updated")
      refused("schedule_update", with("status", 0), "schedule.status", "read-only")
      refused("schedule_update", with("sequence", 3), "schedule.sequence", "read-only")
      refused("schedule_update", with("reminders", { exclude_time_list = {} }), "schedule.reminders.exclude_time_list",
        "read-only")
      local s = with("summary", "x")
      s.schedule.schedule_id = nil
      refused("schedule_update", s, "schedule.schedule_id", "required")
    end)

    it("add is not retried after HTTP 5xx; update is", function()
      emu:fault{ path = "oa/schedule/add", status = 502 }
      local res, err = client:schedule_add{ schedule = schedule() }
      assert.is_nil(res)
      assert.is_true(err.maybe_applied)
      assert.equal(1, emu:calls("oa/schedule/add"))
      local id = add()
      emu:fault{ path = "oa/schedule/update", status = 502 }
      assert(client:schedule_update{ schedule = { schedule_id = id, start_time = MONDAY, end_time = MONDAY + 60 } })
      assert.equal(2, emu:calls("oa/schedule/update"))
      emu:fault{ path = "oa/schedule/add_attendees", status = 503 }
      res = client:schedule_add_attendees{ schedule_id = id, attendees = { { userid = "x" } } }
      assert.is_nil(res)
      assert.equal(1, emu:calls("oa/schedule/add_attendees"))
    end)
  end)

  describe("emulator", function()
    it("adds, gets and pages schedules; without cal_id they go to the default calendar", function()
      local id = add{ attendees = { { userid = "u1" } }, admins = { "u1" }, location = "room 1",
        reminders = { is_remind = 1, remind_before_event_secs = 900 } }
      local s = get(id)
      assert.equal(cal_id, s.cal_id)
      assert.equal("standup", s.summary)
      assert.equal("room 1", s.location)
      assert.same({ { userid = "u1", response_status = 0 } }, s.attendees)
      assert.same({ "u1" }, s.admins)
      assert.equal(900, s.reminders.remind_before_event_secs)
      assert.equal(0, s.status)
      local page = assert(client:schedule_get_by_calendar{ cal_id = cal_id }).schedule_list
      assert.equal(id, page[1].schedule_id)

      local s2 = schedule()
      s2.cal_id = nil
      local other = assert(client:schedule_add{ schedule = s2 }).schedule_id
      local default = get(other).cal_id
      assert.is_string(default)
      assert.are_not.equal(cal_id, default)
      assert.equal(other, assert(client:schedule_get_by_calendar{ cal_id = default }).schedule_list[1].schedule_id)
    end)

    it("refuses a deleted calendar and answers WeCom's codes", function()
      assert(client:calendar_del{ cal_id = cal_id })
      local _, err = client:schedule_add{ schedule = schedule() }
      assert.equal(90459, err.errcode)
      _, err = client:call("oa/schedule/add", { schedule = { start_time = MONDAY, end_time = MONDAY + 1,
        reminders = { repeat_type = 3 } } })
      assert.equal(90465, err.errcode)
      _, err = client:call("oa/schedule/add", { schedule = { start_time = MONDAY, end_time = MONDAY + 1,
        reminders = { timezone = 14 } } })
      assert.equal(90480, err.errcode)
      _, err = client:call("oa/schedule/add", { schedule = { start_time = MONDAY, end_time = MONDAY + 1,
        reminders = { repeat_day_of_week = { 9 } } } })
      assert.equal(90467, err.errcode)
      _, err = client:call("oa/schedule/add", { schedule = { start_time = MONDAY, end_time = MONDAY + 1,
        reminders = { remind_before_event_secs = 1 } } })
      assert.equal(90471, err.errcode)
    end)

    it("overwrites on update unless skip_attendees = 1, with an increasing sequence", function()
      local id = add{ description = "d", location = "l", attendees = attendees(2) }
      local seq = get(id).sequence
      assert(client:schedule_update{ schedule = { schedule_id = id, start_time = MONDAY, end_time = MONDAY + 60,
        summary = "new" }, skip_attendees = 1 })
      local s = get(id)
      assert.equal("new", s.summary)
      assert.equal("", s.description)
      assert.equal("", s.location)
      assert.equal(2, #s.attendees)
      assert.is_true(s.sequence > seq)
      assert(client:schedule_update{ schedule = { schedule_id = id, start_time = MONDAY, end_time = MONDAY + 60 } })
      assert.same({}, get(id).attendees)
      local sent = emu:last_request("oa/schedule/update")
      assert.falsy(sent:find("attendees", 1, true))
    end)

    it("op_mode 1 moves one occurrence out of a recurring schedule into a new single one", function()
      local id = weekly()
      local second = MONDAY + WEEK
      local res = assert(client:schedule_update{
        schedule = { schedule_id = id, start_time = second + 2 * HOUR, end_time = second + 3 * HOUR, summary = "moved" },
        op_mode = 1, op_start_time = second,
      })
      assert.are_not.equal(id, res.schedule_id)
      local original, moved = get(id), get(res.schedule_id)
      assert.same({ { start_time = second } }, original.reminders.exclude_time_list)
      assert.equal("standup", original.summary)
      assert.equal(1, original.reminders.is_repeat)
      assert.equal("moved", moved.summary)
      assert.equal(second + 2 * HOUR, moved.start_time)
      assert.equal(0, moved.reminders.is_repeat)
      assert.equal(cal_id, moved.cal_id)
    end)

    it("op_mode 2 ends the original with repeat_until and starts a new recurring schedule", function()
      local id = weekly()
      local third = MONDAY + 2 * WEEK
      local res = assert(client:schedule_update{
        schedule = { schedule_id = id, start_time = third + HOUR, end_time = third + 2 * HOUR, summary = "later",
          reminders = { is_repeat = 1, repeat_type = 1 } },
        op_mode = 2, op_start_time = third,
      })
      assert.are_not.equal(id, res.schedule_id)
      assert.equal(third - 1, get(id).reminders.repeat_until)
      local new = get(res.schedule_id)
      assert.equal(1, new.reminders.is_repeat)
      assert.equal("later", new.summary)
      -- from the first occurrence, op_mode 2 is a change of all
      res = assert(client:schedule_update{ schedule = { schedule_id = id, start_time = MONDAY, end_time = MONDAY + 60,
        reminders = { is_repeat = 1, repeat_type = 1 } }, op_mode = 2, op_start_time = MONDAY })
      assert.equal(id, res.schedule_id)
    end)

    it("checks op_start_time (90482), recurring (90485) and single results of op_mode 1 (90484)", function()
      local id = weekly()
      local s = { schedule_id = id, start_time = MONDAY, end_time = MONDAY + 60 }
      local _, err = client:schedule_update{ schedule = s, op_mode = 1, op_start_time = MONDAY + DAY }
      assert.equal(90482, err.errcode)
      _, err = client:schedule_update{ schedule = s, op_mode = 1, op_start_time = MONDAY + WEEK + 1 }
      assert.equal(90482, err.errcode)
      _, err = client:schedule_update{ schedule = { schedule_id = id, start_time = MONDAY, end_time = MONDAY + 60,
        reminders = { is_repeat = 1, repeat_type = 1 } }, op_mode = 1, op_start_time = MONDAY + WEEK }
      assert.equal(90484, err.errcode)
      local single = add()
      _, err = client:schedule_update{ schedule = { schedule_id = single, start_time = MONDAY, end_time = MONDAY + 60 },
        op_mode = 1, op_start_time = MONDAY }
      assert.equal(90485, err.errcode)
      _, err = client:schedule_del{ schedule_id = single, op_mode = 2, op_start_time = MONDAY }
      assert.equal(90485, err.errcode)
    end)

    it("knows the occurrences of daily, monthly, yearly, workday and custom weekly rules", function()
      local function occurs(reminders, at)
        local id = add{ reminders = reminders }
        local _, err = client:schedule_del{ schedule_id = id, op_mode = 1, op_start_time = at }
        return err == nil or err.errcode ~= 90482
      end
      local R = function(t) t.is_repeat = 1 return t end
      assert.is_true(occurs(R{ repeat_type = 0 }, MONDAY + 3 * DAY))
      assert.is_true(occurs(R{ repeat_type = 0, is_custom_repeat = 1, repeat_interval = 2 }, MONDAY + 4 * DAY))
      assert.is_false(occurs(R{ repeat_type = 0, is_custom_repeat = 1, repeat_interval = 2 }, MONDAY + 3 * DAY))
      assert.is_true(occurs(R{ repeat_type = 7 }, MONDAY + 4 * DAY)) -- Friday
      assert.is_false(occurs(R{ repeat_type = 7 }, MONDAY + 5 * DAY)) -- Saturday
      assert.is_true(occurs(R{ repeat_type = 1, is_custom_repeat = 1, repeat_day_of_week = { 1, 3 } }, MONDAY + 2 * DAY))
      assert.is_false(occurs(R{ repeat_type = 1, is_custom_repeat = 1, repeat_day_of_week = { 1, 3 } }, MONDAY + DAY))
      assert.is_true(occurs(R{ repeat_type = 2 }, 1797991200)) -- 2026-12-23 10:00 +08:00
      assert.is_false(occurs(R{ repeat_type = 2 }, 1797991200 + DAY))
      assert.is_true(occurs(R{ repeat_type = 5 }, 1826935200)) -- 2027-11-23 10:00 +08:00
      assert.is_false(occurs(R{ repeat_type = 5 }, MONDAY + 365 * DAY + DAY))
      assert.is_false(occurs(R{ repeat_type = 1, repeat_until = MONDAY + WEEK - 1 }, MONDAY + WEEK))
    end)

    it("cancels with del: status 1, still readable and listed", function()
      local id = add()
      assert(client:schedule_del{ schedule_id = id })
      local s = get(id)
      assert.equal(1, s.status)
      assert.equal(1, assert(client:schedule_get_by_calendar{ cal_id = cal_id }).schedule_list[1].status)
      local _, err = client:schedule_update{ schedule = { schedule_id = id, start_time = MONDAY, end_time = MONDAY + 1 } }
      assert.equal(90460, err.errcode)
      _, err = client:schedule_del{ schedule_id = id }
      assert.equal(90460, err.errcode)
    end)

    it("deletes one occurrence (op_mode 1) or the rest of a series (op_mode 2)", function()
      local id = weekly()
      assert(client:schedule_del{ schedule_id = id, op_mode = 1, op_start_time = MONDAY + WEEK })
      assert.same({ { start_time = MONDAY + WEEK } }, get(id).reminders.exclude_time_list)
      assert(client:schedule_del{ schedule_id = id, op_mode = 2, op_start_time = MONDAY + 3 * WEEK })
      local s = get(id)
      assert.equal(MONDAY + 3 * WEEK - 1, s.reminders.repeat_until)
      assert.equal(0, s.status)
    end)

    it("adds attendees cumulatively up to 1000 (90464) and removes them", function()
      local id = add{ attendees = attendees(600) }
      assert(client:schedule_add_attendees{ schedule_id = id, attendees = attendees(400, "b") })
      assert(client:schedule_add_attendees{ schedule_id = id, attendees = { { userid = "a1" } } }) -- already there
      local _, err = client:schedule_add_attendees{ schedule_id = id, attendees = { { userid = "one-too-many" } } }
      assert.equal(90464, err.errcode)
      assert(client:schedule_del_attendees{ schedule_id = id, attendees = attendees(300) })
      assert(client:schedule_add_attendees{ schedule_id = id, attendees = { { userid = "now-fits" } } })
      _, err = client:call("oa/schedule/del_attendees", { schedule_id = id, attendees = attendees(301, "b") })
      assert.equal(40058, err.errcode)
    end)

    it("returns at most 300 attendees on reads", function()
      local id = add{ attendees = attendees(1000) }
      assert.equal(300, #get(id).attendees)
      assert.equal(300, #assert(client:schedule_get_by_calendar{ cal_id = cal_id }).schedule_list[1].attendees)
    end)
  end)

  describe("helpers", function()
    it("schedules(): any number of ids in batches of 1000, input order", function()
      emu:seed(cal_id, 2500)
      local ids = {}
      for s in client:each_schedule(cal_id) do ids[#ids + 1] = s.schedule_id end
      local reversed = {}
      for i = #ids, 1, -1 do reversed[#reversed + 1] = ids[i] end
      local before = emu:calls("oa/schedule/get")
      local list = assert(client:schedules(reversed))
      assert.equal(3, emu:calls("oa/schedule/get") - before)
      for i, s in ipairs(list) do assert.equal(reversed[i], s.schedule_id) end
      assert.equal("seeded schedule 2500", list[1].summary)
      local _, err = client:schedules{ ids[1], 7 }
      assert.equal("schedule_ids[2]", err.field)
    end)

    it("remove_attendees(): any number, in calls of 300", function()
      local id = add{ attendees = attendees(700) }
      local userids = list_of(650, function(i) return "a" .. i end)
      local res = assert(client:remove_attendees(id, userids))
      assert.same({ userids = 650, requests = 3 }, res)
      assert.equal(3, emu:calls("oa/schedule/del_attendees"))
      -- 50 are left: 350 free places, so 350 fit and the 351st does not
      assert(client:schedule_add_attendees{ schedule_id = id, attendees = attendees(950, "n") })
      local _, err = client:schedule_add_attendees{ schedule_id = id, attendees = { { userid = "x" } } }
      assert.equal(90464, err.errcode)
    end)

    it("remove_attendees() says how many were removed before a failure", function()
      local id = add{ attendees = attendees(700) }
      emu:fault{ path = "oa/schedule/del_attendees", errcode = 45009, after = 1 }
      local res, err = client:remove_attendees(id, list_of(650, function(i) return "a" .. i end))
      assert.is_nil(res)
      assert.equal(45009, err.errcode)
      assert.equal(300, err.removed)
      res, err = client:remove_attendees(id, { "ok", "" })
      assert.is_nil(res)
      assert.equal("userids[2]", err.field)
    end)

    it("schedule_patch(): changes what is named, keeps the rest, leaves attendees alone", function()
      local id = add{ description = "agenda", location = "room 1", attendees = attendees(1000), admins = { "a1" },
        reminders = { is_remind = 1, remind_before_event_secs = 900, is_repeat = 1, repeat_type = 1 } }
      local before = get(id)
      local res = assert(client:schedule_patch(id, { summary = "renamed", reminders = { remind_before_event_secs = 300 } }))
      assert.equal(id, res.schedule_id)
      local after = get(id)
      assert.equal("renamed", after.summary)
      assert.equal(300, after.reminders.remind_before_event_secs)
      for _, k in ipairs{ "description", "location", "start_time", "end_time", "admins", "cal_id" } do
        assert.same(before[k], after[k], k)
      end
      assert.equal(1, after.reminders.is_repeat)
      assert.equal(1, after.reminders.repeat_type)
      local sent = cjson.decode(emu:last_request("oa/schedule/update"))
      assert.equal(1, sent.skip_attendees)
      assert.is_nil(sent.schedule.attendees)
      -- all 1000 attendees are still there: one more does not fit
      local _, err = client:schedule_add_attendees{ schedule_id = id, attendees = { { userid = "x" } } }
      assert.equal(90464, err.errcode)
    end)

    it("schedule_patch(): sends attendees when they are changed", function()
      local id = add{ attendees = attendees(2) }
      assert(client:schedule_patch(id, { attendees = { { userid = "z" } } }))
      assert.same({ { userid = "z", response_status = 0 } }, get(id).attendees)
      assert.is_nil(cjson.decode(emu:last_request("oa/schedule/update")).skip_attendees)
    end)

    it("schedule_patch(): op_mode 1 changes one occurrence and returns the new schedule's id", function()
      local id = weekly{ description = "weekly sync" }
      local second = MONDAY + WEEK
      local res = assert(client:schedule_patch(id, { summary = "special edition" }, { op_mode = 1, op_start_time = second }))
      assert.are_not.equal(id, res.schedule_id)
      local one = get(res.schedule_id)
      assert.equal("special edition", one.summary)
      assert.equal("weekly sync", one.description)
      assert.equal(second, one.start_time)
      assert.equal(second + HOUR, one.end_time)
      assert.equal(0, one.reminders.is_repeat)
      local series = get(id)
      assert.equal("standup", series.summary)
      assert.same({ { start_time = second } }, series.reminders.exclude_time_list)
    end)

    it("schedule_patch(): a new start keeps the duration unless the end is named", function()
      local id = weekly()
      local second = MONDAY + WEEK
      local res = assert(client:schedule_patch(id, { start_time = second + 2 * HOUR }, { op_mode = 1, op_start_time = second }))
      local moved = get(res.schedule_id)
      assert.equal(second + 2 * HOUR, moved.start_time)
      assert.equal(second + 3 * HOUR, moved.end_time)
      local single = add()
      assert(client:schedule_patch(single, { start_time = MONDAY + DAY }))
      assert.equal(MONDAY + DAY + HOUR, get(single).end_time)
      assert(client:schedule_patch(single, { start_time = MONDAY, end_time = MONDAY + 60 }))
      assert.equal(MONDAY + 60, get(single).end_time)
    end)

    it("schedule_patch(): op_mode 2 changes the rest of a series", function()
      local id = weekly()
      local third = MONDAY + 2 * WEEK
      local res = assert(client:schedule_patch(id, { location = "new room" }, { op_mode = 2, op_start_time = third }))
      assert.are_not.equal(id, res.schedule_id)
      local rest = get(res.schedule_id)
      assert.equal("new room", rest.location)
      assert.equal(third, rest.start_time)
      assert.equal(1, rest.reminders.is_repeat)
      assert.equal(third - 1, get(id).reminders.repeat_until)
    end)

    it("schedule_patch(): refuses read-only fields and bad options before sending", function()
      local id = add()
      for _, k in ipairs{ "cal_id", "organizer", "status", "sequence" } do
        local res, err = client:schedule_patch(id, { [k] = 1 })
        assert.is_nil(res)
        assert.equal("changes." .. k, err.field)
      end
      local _, err = client:schedule_patch(id, {}, { op_mode = 1 })
      assert.equal("opts.op_start_time", err.field)
      _, err = client:schedule_patch(id, {}, { op_mode = 4, op_start_time = MONDAY })
      assert.equal("opts.op_mode", err.field)
      _, err = client:schedule_patch(id, {}, { when = 1 })
      assert.equal("opts.when", err.field)
      _, err = client:schedule_patch(id, { summary = string.rep("x", 129) })
      assert.equal("schedule.summary", err.field)
      assert.equal(0, emu:calls("oa/schedule/update"))
    end)
  end)
end)
