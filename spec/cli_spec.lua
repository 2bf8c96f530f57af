-- bin/wecom, the command line, run as a user runs it (a process of the Lua
-- running this spec, against the emulator), and in-process through
-- wecom.cli.main for what a process can't show (the dispatch of a new
-- subcommand). Every output of every run is kept and checked for the secret
-- and the tokens at the end.
local check = require("support.ical_check")
local cjson = require("cjson")
local core = require("wecom.core")
local emulator = require("support.emulator")
local recurrence = require("wecom.recurrence")
local shell = require("support.shell")

local q = shell.quote
local DAY, HOUR = 86400, 3600
local MON = 1795399200 -- 2026-11-23 10:00 +08:00, a Monday

local SECRET = "cli-Secr3t-Zq7Wv9Xk2Lm4"
local TOKEN_MARK = "Tok3nMarkQ8"

-- everything any run printed: checked for secrets at the end
local outputs = {}

local read = shell.read

local function exists(path) return read(path) ~= nil end

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. q(dir)))
  return dir
end

local function sleep(s) core.sleep(s) end

-- Polls fn() every 50 ms for up to `seconds`: its first true result, or nil.
local function wait_for(seconds, fn)
  local deadline = core.monotime() + seconds
  repeat
    local v = fn()
    if v then return v end
    sleep(0.05)
  until core.monotime() > deadline
  return nil
end

describe("wecom (bin/wecom)", function()
  local emu, client
  local BASE_ENV

  -- The command line of `wecom args` with env (a table; false removes a
  -- variable the defaults set): no WECOM_* of the caller's, TZ as given.
  local function command(args, env)
    local vars = { TZ = "UTC0", WECOM_BASE_URL = emu.base_url, WECOM_CORPID = emu.corpid, WECOM_CORPSECRET = SECRET }
    for k, v in pairs(env or {}) do vars[k] = v or nil end
    local list = {}
    for k, v in pairs(vars) do list[#list + 1] = k .. "=" .. q(v) end
    table.sort(list)
    return ("env -u WECOM_CORPID -u WECOM_CORPSECRET -u WECOM_ACCESS_TOKEN -u WECOM_BASE_URL %s %s %s bin/wecom %s")
      :format(BASE_ENV, table.concat(list, " "), q(shell.lua), args)
  end

  -- -> exit status, stdout, stderr
  local function wecom(args, env)
    local out, err = os.tmpname(), os.tmpname()
    local rc = shell.run(("%s >%s 2>%s"):format(command(args, env), q(out), q(err)))
    local stdout, stderr = read(out), read(err)
    os.remove(out)
    os.remove(err)
    outputs[#outputs + 1] = stdout
    outputs[#outputs + 1] = stderr
    return rc, stdout, stderr
  end

  -- A run that must work: stdout, stderr.
  local function ok(args, env)
    local rc, out, err = wecom(args, env)
    assert.equal(0, rc, ("wecom %s\nstdout: %s\nstderr: %s"):format(args, out, err))
    return out, err
  end

  -- A --json run: the one document on stdout, decoded; exit status; stderr.
  local function json(args, env)
    local rc, out, err = wecom("--json " .. args, env)
    local decoded = cjson.decode(out)
    local _, lines = out:gsub("\n", "")
    assert.equal(1, lines, "one document on one line: " .. out)
    return decoded, rc, err
  end

  local function lines(text)
    local list = {}
    for line in text:gmatch("([^\n]*)\n") do list[#list + 1] = line end
    return list
  end

  setup(function()
    emu = emulator.start{ corpid = "wwclitest", corpsecret = SECRET }
    BASE_ENV = shell.lua_env(package.path, package.cpath):gsub("^env ", "")
  end)
  teardown(function() emu:stop() end)
  before_each(function()
    emu:reset()
    emu:configure{ token_suffix = TOKEN_MARK }
    client = emu:client()
  end)

  local function calendar(extra)
    local cal = { summary = "Team", color = "#FF3030", description = "releases" }
    for k, v in pairs(extra or {}) do cal[k] = v end
    return assert(client:calendar_add{ calendar = cal }).cal_id
  end

  local function weekly(cal_id)
    return assert(client:schedule_add{ schedule = { cal_id = cal_id, summary = "weekly sync", start_time = MON,
      end_time = MON + HOUR, location = "Room 5", attendees = { { userid = "zhangsan" }, { userid = "lisi" } },
      admins = { "zhangsan" }, reminders = { is_remind = 1, remind_before_event_secs = 900, is_repeat = 1,
      repeat_type = 1, is_custom_repeat = 1, repeat_day_of_week = { 1, 3 }, timezone = 8 } } }).schedule_id
  end

  describe("help", function()
    it("wecom --help lists the global options and every command; exit 0", function()
      local out, err = ok("--help")
      assert.equal("", err)
      for _, text in ipairs{ "Usage: wecom [-h] [--json] [--base-url URL]", "--corpid ID", "--corpsecret SECRET",
        "--access-token TOKEN", "--verbose", "WECOM_CORPID and WECOM_CORPSECRET", "WECOM_ACCESS_TOKEN",
        "WECOM_BASE_URL", "calendar ", "schedule ", "export ", "occurrences " } do
        assert.truthy(out:find(text, 1, true), text .. "\n" .. out)
      end
    end)

    it("each command has its own, with its usage as DESIGN.md spells it", function()
      for args, usage in pairs{
        ["calendar"] = "Usage: wecom calendar [-h] <command> ...",
        ["calendar add"] = "Usage: wecom calendar add [-h] --summary S --color #RRGGBB",
        ["calendar get"] = "Usage: wecom calendar get [-h] CAL_ID [CAL_ID] ...",
        ["calendar del"] = "Usage: wecom calendar del [-h] CAL_ID",
        ["calendar share"] = "Usage: wecom calendar share [-h] CAL_ID USER [USER] ...",
        ["calendar unshare"] = "Usage: wecom calendar unshare [-h] CAL_ID USER [USER] ...",
        ["schedule"] = "Usage: wecom schedule [-h] <command> ...",
        ["schedule list"] = "Usage: wecom schedule list [-h] [--offset N] CAL_ID",
        ["schedule get"] = "Usage: wecom schedule get [-h] SCHEDULE_ID [SCHEDULE_ID] ...",
        ["export"] = "Usage: wecom export [-h] [-o FILE] CAL_ID",
        ["occurrences"] = "Usage: wecom occurrences [-h] --from YYYY-MM-DD --to YYYY-MM-DD",
      } do
        local out = ok(args .. " --help", { WECOM_CORPSECRET = false })
        assert.truthy(out:find(usage, 1, true), args .. ":\n" .. out)
      end
      assert.truthy(ok("calendar add --help"):find("[--description D] [--share USER[:ro|:rw]]", 1, true))
    end)
  end)

  it("finds lua-argparse installed for another Lua version than the one running it", function()
    -- no default path: argparse.lua is not on this Lua's own path
    local rc, out = shell.run(("env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH='./?.lua' LUA_CPATH=%s %s bin/wecom --help")
      :format(q(package.cpath), q(shell.lua)))
    assert.equal(0, rc, out)
    assert.truthy(out:find("Usage: wecom [-h]", 1, true), out)
  end)

  describe("usage errors: exit 2, the usage on stderr, nothing on stdout", function()
    for _, case in ipairs{
      { "unknown subcommand", "calendar bogus", "unknown command 'bogus'", "Usage: wecom calendar" },
      { "unknown command", "bogus", "unknown command 'bogus'", "Usage: wecom [-h]" },
      { "unknown flag", "calendar get --bogus x", "unknown option '--bogus'", "Usage: wecom calendar get" },
      { "unknown global flag", "--bogus calendar get x", "unknown option '--bogus'", "Usage: wecom [-h]" },
      { "missing argument", "calendar get", "missing argument 'cal_id'", "Usage: wecom calendar get" },
      { "missing command", "", "a command is required", "Usage: wecom [-h]" },
      { "missing option", "calendar add --summary x", "missing option '--color'", "Usage: wecom calendar add" },
      { "option without its value", "schedule list x --offset", "option '--offset' requires an argument",
        "schedule list" },
      { "bad offset", "schedule list x --offset 1.5", "--offset: expected a whole number", "schedule list" },
      { "bad date", "occurrences s --from 2026-02-30 --to 2026-03-01", "--from: expected a date, YYYY-MM-DD",
        "Usage: wecom occurrences" },
      { "dates the wrong way round", "occurrences s --from 2026-03-02 --to 2026-03-01", "--to is before --from",
        "Usage: wecom occurrences" },
      { "a value WeCom can't take", "calendar add --summary x --color red",
        'oa/calendar/add: calendar.color: expected "#RRGGBB", got "red"', "Usage: wecom calendar add" },
      { "--json export to stdout", "--json export wcX", "--json with export needs -o FILE", "Usage: wecom export" },
    } do
      it(case[1], function()
        local rc, out, err = wecom(case[2])
        assert.equal(2, rc, err)
        assert.truthy(err:find(case[3], 1, true), err)
        assert.truthy(err:find(case[4], 1, true), err)
        if case[1] ~= "--json export to stdout" then assert.equal("", out) end
        assert.falsy(err:find("traceback", 1, true))
      end)
    end
  end)

  describe("credentials", function()
    it("none: a message that says which variables to set; exit 2; nothing sent", function()
      local before = emu:stats().calls
      local rc, out, err = wecom("calendar get wcX", { WECOM_CORPID = false, WECOM_CORPSECRET = false })
      local _
      assert.equal(2, rc)
      assert.equal("", out)
      assert.truthy(err:find("no credentials: set WECOM_CORPID and WECOM_CORPSECRET (or WECOM_ACCESS_TOKEN)", 1, true),
        err)
      rc, _, err = wecom("calendar get wcX", { WECOM_CORPSECRET = false })
      assert.equal(2, rc)
      assert.truthy(err:find("WECOM_CORPSECRET is not set", 1, true), err)
      rc, _, err = wecom("calendar get wcX", { WECOM_CORPID = false })
      assert.equal(2, rc)
      assert.truthy(err:find("WECOM_CORPID is not set", 1, true), err)
      rc, _, err = wecom("calendar get wcX", { WECOM_BASE_URL = "ftp://example.invalid" })
      assert.equal(2, rc)
      assert.truthy(err:find("--base-url (or WECOM_BASE_URL): expected an http(s) URL", 1, true), err)
      assert.same(before, emu:stats().calls)
    end)

    it("from flags, and a fixed access token from WECOM_ACCESS_TOKEN or --access-token", function()
      local cal_id = calendar()
      local env = { WECOM_CORPID = false, WECOM_CORPSECRET = false, WECOM_BASE_URL = false }
      local out = ok(("--base-url %s --corpid %s --corpsecret %s calendar get %s"):format(emu.base_url, emu.corpid,
        SECRET, cal_id), env)
      assert.truthy(out:find("summary      Team", 1, true), out)
      local token = emu:issue_token(SECRET)
      outputs.token = token
      local gets = emu:calls("gettoken")
      out = ok("calendar get " .. cal_id, { WECOM_CORPID = false, WECOM_CORPSECRET = false, WECOM_ACCESS_TOKEN = token })
      assert.truthy(out:find(cal_id, 1, true))
      out = ok(("--access-token %s calendar get %s"):format(token, cal_id), { WECOM_CORPID = false,
        WECOM_CORPSECRET = false })
      assert.truthy(out:find(cal_id, 1, true))
      assert.equal(gets, emu:calls("gettoken")) -- a fixed token is never fetched
      local rc, _, err = wecom(("--access-token %s --corpid x calendar get %s"):format(token, cal_id))
      assert.equal(2, rc)
      assert.truthy(err:find("not both", 1, true), err)
    end)
  end)

  describe("calendar", function()
    it("add prints the new cal_id; get shows it in aligned fields; del deletes it", function()
      local out = ok("calendar add --summary 'Team 日历' --color '#3F7FBF' --description 'sprints, releases' "
        .. "--share zhangsan:ro --share lisi:rw --share wangwu")
      local cal_id = out:match("^(%S+)\n$")
      assert.truthy(cal_id, out)
      local cal = assert(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1]
      assert.equal("Team 日历", cal.summary)
      assert.equal("#3F7FBF", cal.color)
      assert.equal("sprints, releases", cal.description)
      assert.same({ { userid = "zhangsan", readonly = 1 }, { userid = "lisi", readonly = 0 },
        { userid = "wangwu", readonly = 1 } }, cal.shares)

      out = ok("calendar get " .. cal_id)
      assert.equal(table.concat({
        "cal_id       " .. cal_id,
        "summary      Team 日历",
        "color        #3F7FBF",
        "description  sprints, releases",
        "readonly     1",
        "shares       3: zhangsan (read-only), lisi (read-write), wangwu (read-only)",
      }, "\n") .. "\n", out)

      out = ok("calendar del " .. cal_id)
      assert.equal("deleted " .. cal_id .. "\n", out)
      local _, err = client:calendar_get{ cal_id_list = { cal_id } }
      assert.equal(90459, err.errcode)
    end)

    it("get shows several calendars, in the order asked", function()
      local a, b = calendar{ summary = "A" }, calendar{ summary = "B" }
      local out = ok(("calendar get %s %s"):format(b, a))
      local first, second = out:find("summary      B", 1, true), out:find("summary      A", 1, true)
      assert.truthy(first and second and first < second, out)
      local doc = json(("calendar get %s %s"):format(b, a))
      assert.equal(b, doc.calendar_list[1].cal_id)
      assert.equal(a, doc.calendar_list[2].cal_id)
      -- lists stay lists, even empty ones
      assert.truthy(select(2, wecom("--json calendar get " .. a)):find('"admins":[]', 1, true))
    end)

    it("--json: add, get, del as one document each", function()
      local doc, rc = json("calendar add --summary S --color '#00AA00' --share a:rw")
      assert.equal(0, rc)
      local cal_id = doc.cal_id
      assert.is_string(cal_id)
      doc = json("calendar get " .. cal_id)
      assert.same({ { userid = "a", readonly = 0 } }, doc.calendar_list[1].shares)
      assert.equal("S", doc.calendar_list[1].summary)
      doc = json("calendar del " .. cal_id)
      assert.same({ cal_id = cal_id, deleted = true }, doc)
    end)

    it("share and unshare keep everything else of the calendar (the safe patch helpers)", function()
      local cal_id = calendar{ readonly = 0, admins = { "boss" }, shares = { { userid = "boss", readonly = 0 },
        { userid = "zhangsan", readonly = 0 }, { userid = "lisi" } } }
      local before = assert(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1]
      local out = ok(("calendar share %s wangwu lisi:rw zhangsan:ro"):format(cal_id))
      assert.equal(("shared %s with wangwu, lisi (read-write), zhangsan (read-only)\n"):format(cal_id), out)
      local after = assert(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1]
      assert.same({ { userid = "boss", readonly = 0 }, { userid = "zhangsan", readonly = 1 },
        { userid = "lisi", readonly = 0 }, { userid = "wangwu", readonly = 1 } }, after.shares)
      for _, field in ipairs{ "summary", "color", "description", "readonly", "admins" } do
        assert.same(before[field], after[field], field)
      end

      out = ok(("calendar unshare %s zhangsan wangwu"):format(cal_id))
      assert.equal(("unshared %s from zhangsan, wangwu\n"):format(cal_id), out)
      after = assert(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1]
      assert.same({ { userid = "boss", readonly = 0 }, { userid = "lisi", readonly = 0 } }, after.shares)
      for _, field in ipairs{ "summary", "color", "description", "readonly", "admins" } do
        assert.same(before[field], after[field], field)
      end
      -- the write told WeCom to leave public_range alone, as the helpers do
      assert.equal(1, cjson.decode(emu:last_request("oa/calendar/update")).skip_public_range)

      local doc = json(("calendar share %s zhaoliu:rw"):format(cal_id))
      assert.same({ { userid = "zhaoliu", readonly = 0 } }, doc.members)
      assert.equal(cal_id, doc.cal_id)
      doc = json(("calendar unshare %s zhaoliu"):format(cal_id))
      assert.same({ "zhaoliu" }, doc.userids)
    end)

    it("members WeCom refuses: named on stderr, exit 1, what was done still printed", function()
      local cal_id = calendar()
      local rc, out, err = wecom(("calendar share %s wangwu unknown-intern"):format(cal_id))
      assert.equal(1, rc)
      assert.truthy(out:find("shared " .. cal_id, 1, true))
      assert.truthy(err:find("WeCom refused to share with unknown-intern (errcode 40001", 1, true), err)
      local shares = assert(client:calendar_get{ cal_id_list = { cal_id } }).calendar_list[1].shares
      assert.same({ { userid = "wangwu", readonly = 1 } }, shares)
      local doc
      doc, rc = json("calendar add --summary S --color '#00AA00' --share unknown-x")
      assert.equal(1, rc)
      assert.equal("unknown-x", doc.fail_result.shares[1].userid)
      assert.is_string(doc.cal_id)
    end)
  end)

  describe("schedule list", function()
    local cal_id
    before_each(function()
      cal_id = calendar()
      emu:seed(cal_id, 2345, { cancelled_every = 7, start_time = MON, summary = "seeded" })
    end)

    it("pages through 2345 schedules: aligned columns, local times with their offset, cancelled marked", function()
      local before = emu:calls("oa/schedule/get_by_calendar")
      local out, err = ok("schedule list " .. cal_id, { TZ = "XST-8" })
      assert.equal(4, emu:calls("oa/schedule/get_by_calendar") - before) -- 3 pages, then the empty one
      local rows = lines(out)
      assert.equal(2346, #rows)
      assert.truthy(rows[1]:find("^SCHEDULE_ID%s+START%s+END%s+REPEAT%s+STATUS%s+SUMMARY$"), rows[1])
      local start_col = rows[1]:find("START", 1, true)
      local summary_col = rows[1]:find("SUMMARY", 1, true)
      local cancelled = 0
      for i = 2, #rows do
        assert.equal("2", rows[i]:sub(start_col, start_col), rows[i]) -- every row aligned under its header
        assert.equal("seeded " .. (i - 1), rows[i]:sub(summary_col))
        if rows[i]:find(" cancelled ", 1, true) then cancelled = cancelled + 1 end
      end
      assert.equal(335, cancelled)
      assert.truthy(rows[2]:find("  2026-11-23 10:00 +08:00  10:30  ", 1, true), rows[2])
      assert.truthy(rows[8]:find("cancelled  seeded 7$"), rows[8])
      assert.equal("2345 schedules (335 cancelled) from offset 0; next offset 2345 (--offset 2345: only newer ones)\n",
        err)
      -- the same in another zone
      out = ok("schedule list " .. cal_id, { TZ = "EST5" })
      assert.truthy(lines(out)[2]:find("  2026-11-22 21:00 -05:00  21:30  ", 1, true))
    end)

    it("--offset starts there: only what was added since", function()
      local out, err = ok("schedule list --offset 2340 " .. cal_id)
      local rows = lines(out)
      assert.equal(6, #rows)
      assert.truthy(rows[6]:find("seeded 2345$"))
      assert.truthy(err:find("5 schedules (1 cancelled) from offset 2340; next offset 2345", 1, true), err)
      emu:seed(cal_id, 2, { summary = "added later" })
      rows = lines(ok("schedule list --offset 2345 " .. cal_id))
      assert.equal(3, #rows)
      assert.truthy(rows[2]:find("added later 1$"))
      rows = lines(ok("schedule list --offset 5000 " .. cal_id))
      assert.equal(1, #rows) -- caught up: the header alone
    end)

    it("--json: one document with every schedule, lists kept as lists, and where to resume", function()
      local doc, rc, err = json("schedule list " .. cal_id)
      assert.equal(0, rc, err)
      assert.equal(2345, #doc.schedule_list)
      assert.equal(2345, doc.schedules)
      assert.equal(335, doc.cancelled)
      assert.equal(0, doc.offset)
      assert.equal(2345, doc.next_offset)
      assert.equal(cal_id, doc.cal_id)
      assert.equal("seeded 1", doc.schedule_list[1].summary)
      assert.equal(1, doc.schedule_list[7].status)
      assert.equal(MON, doc.schedule_list[1].start_time)
      assert.equal("", err) -- no talk on stderr either when it's not a terminal
      local _, out = wecom("--json schedule list --offset 2344 " .. cal_id)
      assert.truthy(out:find('"attendees":[]', 1, true), out)
      assert.truthy(out:find('"exclude_time_list":[]', 1, true), out)
    end)

    it("a failure midway: what was listed stays, the error says where to resume; exit 1", function()
      emu:fault{ path = "oa/schedule/get_by_calendar", after = 1, errcode = 48002, times = 1 }
      local rc, out, err = wecom("schedule list " .. cal_id)
      assert.equal(1, rc)
      assert.equal(1001, #lines(out))
      assert.truthy(err:find("stopped after 1000 schedules: resume with --offset 1000", 1, true), err)
      assert.truthy(err:find("WeCom error 48002", 1, true), err)
      emu:fault{ path = "oa/schedule/get_by_calendar", after = 1, errcode = 48002, times = 1 }
      local doc
      doc, rc = json("schedule list " .. cal_id)
      assert.equal(1, rc)
      assert.equal(1000, #doc.schedule_list)
      assert.equal(1000, doc.next_offset)
      assert.equal(48002, doc.error.errcode)
    end)
  end)

  describe("schedule get", function()
    it("shows each schedule's fields: times, repeat rule, attendees, status", function()
      local cal_id = calendar()
      local id = weekly(cal_id)
      local out = ok("schedule get " .. id, { TZ = "XST-8" })
      for _, line in ipairs{
        "schedule_id  " .. id, "cal_id       " .. cal_id, "summary      weekly sync", "status       active",
        "start        2026-11-23 10:00 +08:00", "end          11:00", "repeat       weekly on Mon, Wed",
        "location     Room 5", "admins       zhangsan", "attendees    2: zhangsan (no reply), lisi (no reply)",
        "reminder     15 min before",
      } do
        assert.truthy(out:find(line, 1, true), line .. "\n" .. out)
      end
      local doc = json("schedule get " .. id)
      assert.equal(id, doc.schedule_list[1].schedule_id)
      assert.same({ 1, 3 }, doc.schedule_list[1].reminders.repeat_day_of_week)
      local rc, _, err = wecom("schedule get nosuchschedule")
      assert.equal(1, rc)
      assert.truthy(err:find("WeCom error 40058", 1, true), err)
    end)

    it("names the attendees' answers as API.md does", function()
      local id = assert(client:schedule_add{ schedule = { cal_id = calendar(), summary = "answers", start_time = MON,
        end_time = MON + HOUR, attendees = { { userid = "u0" }, { userid = "u1", response_status = 1 },
          { userid = "u2", response_status = 2 }, { userid = "u3", response_status = 3 },
          { userid = "u4", response_status = 4 } } } }).schedule_id
      local out = ok("schedule get " .. id)
      local line = "attendees    5: u0 (no reply), u1 (tentative), u2 (accepted), u3 (accepted once), u4 (declined)\n"
      assert.truthy(out:find(line, 1, true), out)
    end)

    it("shows the reminders of remind_time_diffs, which win over remind_before_event_secs", function()
      local id = assert(client:schedule_add{ schedule = { cal_id = calendar(), summary = "reminded", start_time = MON,
        end_time = MON + HOUR, reminders = { is_remind = 1, remind_time_diffs = { -3600, -900, 0 } } } }).schedule_id
      local out = ok("schedule get " .. id)
      assert.truthy(out:find("reminder     1 h before, 15 min before, at the start\n", 1, true), out)
      local day = MON - 10 * HOUR
      id = assert(client:schedule_add{ schedule = { cal_id = calendar(), summary = "whole day", is_whole_day = 1,
        start_time = day, end_time = day + DAY, reminders = { is_remind = 1, remind_time_diffs = { 32400, -86400 } } } })
        .schedule_id
      out = ok("schedule get " .. id)
      assert.truthy(out:find("reminder     9 h after the start, 1 day before\n", 1, true), out)
    end)

    it("a whole-day schedule shows its day, in its own zone", function()
      local cal_id = calendar()
      local day = MON - 10 * HOUR -- 2026-11-23 00:00 +08:00
      local id = assert(client:schedule_add{ schedule = { cal_id = cal_id, summary = "offsite", is_whole_day = 1,
        start_time = day, end_time = day + DAY } }).schedule_id
      local out = ok("schedule get " .. id, { TZ = "EST5" })
      assert.truthy(out:find("start        2026-11-23\n", 1, true), out)
      assert.truthy(out:find("end          all day\n", 1, true), out)
    end)
  end)

  describe("occurrences", function()
    it("lists when a schedule happens between two days, both included, as recurrence.occurrences does", function()
      local cal_id = calendar()
      local id = weekly(cal_id)
      local out, err = ok(("occurrences %s --from 2026-11-23 --to 2026-12-07"):format(id), { TZ = "XST-8" })
      assert.equal(table.concat({
        "START                    END",
        "2026-11-23 10:00 +08:00  2026-11-23 11:00 +08:00",
        "2026-11-25 10:00 +08:00  2026-11-25 11:00 +08:00",
        "2026-11-30 10:00 +08:00  2026-11-30 11:00 +08:00",
        "2026-12-02 10:00 +08:00  2026-12-02 11:00 +08:00",
        "2026-12-07 10:00 +08:00  2026-12-07 11:00 +08:00",
      }, "\n") .. "\n", out)
      assert.truthy(err:find('5 occurrences of "weekly sync" from 2026-11-23 to 2026-12-07; it repeats: weekly on Mon, Wed',
        1, true), err)
      local doc = json(("occurrences %s --from 2026-11-23 --to 2026-12-31"):format(id), { TZ = "XST-8" })
      local schedule = assert(client:schedules{ id })[1]
      local from, to = MON - 10 * HOUR, MON - 10 * HOUR + 39 * DAY
      assert.equal(from, doc.from)
      assert.equal(to, doc.to)
      assert.same(assert(recurrence.occurrences(schedule, from, to)), doc.occurrences)
      assert.equal(12, #doc.occurrences)
      doc = json(("occurrences %s --from 2027-01-01 --to 2027-01-01"):format(id))
      assert.same({}, doc.occurrences)
    end)
  end)

  describe("occurrences of a schedule the engine refuses", function()
    it("is a failure (exit 1, no usage), not bad usage", function()
      -- monthly on the 30th, every 12 months from February: WeCom takes it, it never occurs
      local feb = 1802224800 -- 2027-02-10 10:00 +08:00
      local id = assert(client:schedule_add{ schedule = { cal_id = calendar(), summary = "never", start_time = feb,
        end_time = feb + HOUR, reminders = { is_repeat = 1, repeat_type = 2, is_custom_repeat = 1,
          repeat_interval = 12, repeat_day_of_month = { 30 } } } }).schedule_id
      local rc, out, err = wecom(("occurrences %s --from 2027-01-01 --to 2027-12-31"):format(id))
      assert.equal(1, rc, err)
      assert.equal("", out)
      assert.truthy(err:find("repeat_day_of_month", 1, true), err)
      assert.is_nil(err:find("Usage:", 1, true), err)
      -- a window over 100 years is the caller's: bad usage
      local _
      rc, _, err = wecom(("occurrences %s --from 1990-01-01 --to 2099-01-01"):format(id))
      assert.equal(2, rc, err)
    end)
  end)

  describe("export", function()
    local dir
    before_each(function() dir = tmpdir() end)
    after_each(function() os.execute("rm -rf " .. q(dir)) end)

    -- a file that an export must replace whole, or not at all
    local function old_file(name)
      local file = dir .. "/" .. name
      local f = assert(io.open(file, "wb"))
      f:write("the old calendar\n")
      f:close()
      return file
    end

    local function leftovers()
      local p = io.popen("ls -A " .. q(dir))
      local names = p:read("*a")
      p:close()
      return names
    end

    -- `wecom export CAL_ID -o FILE` in the background: the file its exit status goes to
    local function export_in_background(cal_id, file)
      local done = dir .. "/rc"
      assert(os.execute(("sh -c %s &"):format(q(("%s >/dev/null 2>&1; echo $? >%s"):format(
        command(("export %s -o %s"):format(cal_id, q(file))), q(done))))))
      return done
    end

    -- The name of the export's temporary file once it holds an event, or nil.
    local function growing_part()
      return wait_for(30, function()
        local name = leftovers():match("(%.team%.ics%.%x+%.part)")
        local text = name and read(dir .. "/" .. name)
        return text and text:find("BEGIN:VEVENT", 1, true) and name
      end)
    end

    it("writes a calendar with recurring schedules that the external checkers read back exactly", function()
      local cal_id = calendar{ summary = "Team, releases" }
      local id = weekly(cal_id)
      local moved = assert(client:schedule_update{ schedule = { schedule_id = id, summary = "moved",
        start_time = MON + 7 * DAY + 5 * HOUR, end_time = MON + 7 * DAY + 6 * HOUR }, op_mode = 1,
        op_start_time = MON + 7 * DAY }).schedule_id
      local daily = assert(client:schedule_add{ schedule = { cal_id = cal_id, summary = "standup", start_time = MON,
        end_time = MON + 900, reminders = { is_repeat = 1, repeat_type = 0, repeat_until = MON + 20 * DAY,
        timezone = 8 } } }).schedule_id
      emu:seed(cal_id, 2345, { cancelled_every = 7 })
      local file = dir .. "/team.ics"
      local out, err = ok(("export %s -o %s"):format(cal_id, q(file)))
      assert.equal("", out)
      assert.equal(("wecom: wrote %s: 2348 events (335 cancelled, 0 left out), %d bytes\n"):format(file, #read(file)),
        err)
      assert.equal("team.ics\n", leftovers())

      local text = read(file)
      assert.is_true(check.lines_ok(text))
      local good, checked = check.libical(file)
      assert.is_true(good, checked)
      assert.truthy(checked:find("ok, 2348 events", 1, true), checked)
      local from, to = MON, MON + 30 * DAY
      local js = assert(check.icaljs(file, from, to))
      local py = assert(check.python(file, from, to))
      assert.equal(2348, js.events)
      assert.equal(2348, py.events)
      for _, s in ipairs(assert(client:schedules{ id, moved, daily })) do
        local want = {}
        for i, o in ipairs(assert(recurrence.occurrences(s, from, to))) do want[i] = o.start_time end
        for engine, result in pairs{ ["ical.js"] = js, ["recurring-ical-events"] = py } do
          local got = {}
          for _, t in ipairs(result.expanded[s.schedule_id].starts) do
            if t >= from and t < to then got[#got + 1] = t end
          end
          table.sort(got)
          assert.same(want, got, engine .. ": " .. s.summary)
        end
        assert.is_true(#want > 0, s.summary)
      end
    end)

    it("--json prints the summary; without -o the calendar goes to stdout", function()
      local cal_id = calendar()
      weekly(cal_id)
      emu:seed(cal_id, 10, { cancelled_every = 5 })
      local file = dir .. "/out.ics"
      local doc = json(("export %s -o %s"):format(cal_id, q(file)))
      assert.same({ file = file, cal_id = cal_id, schedules = 11, cancelled = 2, skipped = {}, pages = 1,
        bytes = #read(file), offset = 11 }, doc)
      local out, err = ok("export " .. cal_id)
      assert.truthy(out:find("^BEGIN:VCALENDAR\r\n"))
      assert.equal(out, read(file):gsub("DTSTAMP:%d+T%d+Z", function() return out:match("DTSTAMP:%d+T%d+Z") end))
      assert.truthy(out:find("END:VCALENDAR\r\n$"))
      assert.equal(11, select(2, out:gsub("BEGIN:VEVENT", "")))
      assert.equal("wecom: 11 events (2 cancelled, 0 left out), " .. #out .. " bytes\n", err)
    end)

    it("replaces the file only once the whole calendar is written: the old one stays until then", function()
      local cal_id = calendar()
      emu:seed(cal_id, 3000)
      local file = old_file("team.ics")
      emu:fault{ path = "oa/schedule/get_by_calendar", latency_ms = 400, times = -1 }
      local done = export_in_background(cal_id, file)
      -- midway: a temporary file next to it grows, the old file is untouched
      local part = growing_part()
      assert.truthy(part, "no growing temporary file: " .. leftovers())
      assert.equal("the old calendar\n", read(file))
      assert.truthy(wait_for(60, function() return read(done) end))
      emu:clear_faults()
      assert.equal("0\n", read(done))
      assert.equal(3000, select(2, read(file):gsub("BEGIN:VEVENT", "")))
      assert.equal("rc\nteam.ics\n", leftovers())
    end)

    it("keeps the mode of the file it replaces: a private calendar stays private, midway too", function()
      local cal_id = calendar()
      emu:seed(cal_id, 1500) -- a first page past stdio's buffer: on disk while the second is awaited
      local file = old_file("team.ics")
      assert(os.execute("chmod 600 " .. q(file)))
      local function mode(path)
        local p = io.popen("stat -c %a " .. q(path))
        local m = p:read("*l")
        p:close()
        return m
      end
      -- the temporary file, seen from inside the write of the first page
      emu:fault{ path = "oa/schedule/get_by_calendar", after = 1, latency_ms = 600, times = 1 }
      local done = export_in_background(cal_id, file)
      local part = growing_part()
      assert.truthy(part, "no temporary file: " .. leftovers())
      assert.equal("600", mode(dir .. "/" .. part))
      assert.truthy(wait_for(60, function() return read(done) end))
      assert.equal("0\n", read(done))
      assert.equal("600", mode(file))
      assert.equal(1500, select(2, read(file):gsub("BEGIN:VEVENT", "")))
    end)

    it("writes a FIFO in place (a device is never replaced); follows a symbolic link to its file", function()
      local cal_id = calendar()
      emu:seed(cal_id, 5)
      local fifo, got = dir .. "/fifo", dir .. "/got"
      assert(os.execute("mkfifo " .. q(fifo)))
      assert(os.execute(("cat %s >%s &"):format(q(fifo), q(got))))
      local _, err = ok(("export %s -o %s"):format(cal_id, q(fifo)))
      assert.truthy(err:find("wrote " .. fifo .. ": 5 events", 1, true), err)
      assert.truthy(wait_for(10, function()
        local text = read(got)
        return text and text:find("END:VCALENDAR\r\n$")
      end))
      assert.is_true(os.execute("test -p " .. q(fifo)) == true or os.execute("test -p " .. q(fifo)) == 0)
      assert.equal(5, select(2, read(got):gsub("BEGIN:VEVENT", "")))

      local real, link = old_file("real.ics"), dir .. "/link.ics"
      assert(os.execute(("ln -s real.ics %s"):format(q(link))))
      ok(("export %s -o %s"):format(cal_id, q(link)))
      assert.is_true(os.execute("test -h " .. q(link)) == true or os.execute("test -h " .. q(link)) == 0)
      assert.equal(5, select(2, read(real):gsub("BEGIN:VEVENT", "")))
      assert.equal("fifo\ngot\nlink.ics\nreal.ics\n", leftovers())

      local rc
      rc, _, err = wecom(("export %s -o %s"):format(cal_id, q(dir)))
      assert.equal(2, rc)
      assert.truthy(err:find("-o: " .. dir .. " is a directory", 1, true), err)
    end)

    it("a failure midway leaves the old file and no temporary one; exit 1", function()
      local cal_id = calendar()
      emu:seed(cal_id, 2500)
      local file = old_file("team.ics")
      emu:fault{ path = "oa/schedule/get_by_calendar", after = 1, errcode = 48002, times = 1 }
      local rc, out, err = wecom(("export %s -o %s"):format(cal_id, q(file)))
      assert.equal(1, rc)
      assert.equal("", out)
      assert.truthy(err:find("WeCom error 48002", 1, true), err)
      assert.equal("the old calendar\n", read(file))
      assert.equal("team.ics\n", leftovers())
      rc, out, err = wecom(("export %s -o %s"):format(cal_id, q(dir .. "/no/such/dir/x.ics")))
      assert.equal(1, rc)
      assert.equal("", out)
      assert.truthy(err:find("can't write " .. dir .. "/no/such/dir/x.ics", 1, true), err)
    end)
  end)

  describe("what a server sends", function()
    it("can't drive the terminal, and stays valid JSON", function()
      local reply = '{"errcode":0,"errmsg":"ok","calendar_list":[{"cal_id":"wcX","summary":"a\\u001b[2Jb\\u0007",'
        .. '"description":"two\\nlines","shares":[]}]}'
      emu:fault{ path = "oa/calendar/get", status = 200, body = reply, times = 2 }
      local out = ok("calendar get wcX")
      assert.truthy(out:find("summary      a [2Jb\n", 1, true), out)
      assert.truthy(out:find("description  two lines\n", 1, true), out)
      local doc = json("calendar get wcX")
      assert.equal("a\\x1B[2Jb\\x07", doc.calendar_list[1].summary)
      assert.equal("two\nlines", doc.calendar_list[1].description)
      assert.same({}, doc.calendar_list[1].shares)
    end)

    it("shows numbers no schedule has (a fractional interval, a time past any date) as they are", function()
      local reply = '{"errcode":0,"errmsg":"ok","schedule_list":[{"schedule_id":"sX","summary":"odd",'
        .. '"start_time":1e300,"end_time":-1e300,"reminders":{"is_repeat":1,"repeat_type":1,'
        .. '"is_custom_repeat":1,"repeat_interval":2.5}}]}'
      emu:fault{ path = "oa/schedule/get", status = 200, body = reply, times = 1 }
      local out = ok("schedule get sX")
      assert.truthy(out:find("start        1e+300\n", 1, true), out)
      assert.truthy(out:find("end          -1e+300\n", 1, true), out)
      assert.truthy(out:find("repeat       every 2.5 weeks\n", 1, true), out)
    end)

    it("can't drive the terminal through a new cal_id or the id of a schedule export leaves out", function()
      emu:fault{ path = "oa/calendar/add", status = 200, times = 1,
        body = '{"errcode":0,"errmsg":"ok","cal_id":"wc\\u001b[2Jx"}' }
      local out = ok("calendar add --summary S --color '#112233'")
      assert.equal("wc [2Jx\n", out)
      local cal_id = calendar()
      emu:fault{ path = "oa/schedule/get_by_calendar", status = 200, times = 1,
        body = '{"errcode":0,"errmsg":"ok","schedule_list":[{"schedule_id":"s\\u001b[2Jy","summary":"no times"}]}' }
      local _, err = ok("export " .. cal_id .. " -o /dev/null")
      assert.truthy(err:find("left out schedule s [2Jy: ", 1, true), err)
      assert.is_nil(err:find("\27", 1, true), err)
    end)

    it("shows members that are no userid or no object as they are", function()
      emu:fault{ path = "oa/calendar/get", status = 200, times = 1, body = '{"errcode":0,"errmsg":"ok","calendar_list":'
        .. '[{"cal_id":"wcX","summary":"odd","admins":[{"x":1},"b"],"shares":[5,{"userid":"a","readonly":1}]}]}' }
      local out = ok("calendar get wcX")
      assert.truthy(out:find("\nadmins       table: 0x%x+, b\n"), out)
      assert.truthy(out:find("shares       2: 5, a (read-only)\n", 1, true), out)
      emu:fault{ path = "oa/schedule/get", status = 200, times = 1, body = '{"errcode":0,"errmsg":"ok","schedule_list":'
        .. '[{"schedule_id":"sX","summary":"odd","admins":[[1]],"attendees":[7,{"userid":"u","response_status":4}]}]}' }
      out = ok("schedule get sX")
      assert.truthy(out:find("\nadmins       table: 0x%x+\n"), out)
      assert.truthy(out:find("attendees    2: 7, u (declined)\n", 1, true), out)
      emu:fault{ path = "oa/calendar/add", status = 200, times = 1, body = '{"errcode":0,"errmsg":"ok","cal_id":"wcY",'
        .. '"fail_result":{"shares":[5,{"userid":"x","errcode":40001,"errmsg":"no\\u001b[2J"}]}}' }
      local rc, err
      rc, out, err = wecom("calendar add --summary S --color '#112233' --share x")
      assert.equal(1, rc, err)
      assert.equal("wcY\n", out)
      assert.truthy(err:find("WeCom refused to share with 5, x (errcode 40001: no [2J)\n", 1, true), err)
    end)
  end)

  describe("failures", function()
    it("API errors: exit 1, the one-line message with its errcode on stderr", function()
      local rc, out, err = wecom("calendar get wcNoSuchCalendar")
      assert.equal(1, rc)
      assert.equal("", out)
      assert.equal("wecom: oa/calendar/get: WeCom error 90457: invalid cal_id\n", err)
      local doc
      doc, rc = json("calendar get wcNoSuchCalendar")
      assert.equal(1, rc)
      assert.same({ kind = "api", errcode = 90457, errmsg = "invalid cal_id", endpoint = "oa/calendar/get", status = 200,
        message = "oa/calendar/get: WeCom error 90457: invalid cal_id" }, doc.error)
      rc, out, err = wecom("calendar get x", { WECOM_CORPSECRET = "wrong-secret-value" })
      assert.equal("", out)
      assert.equal(1, rc)
      assert.truthy(err:find("^wecom: gettoken: WeCom error 40001"), err)
    end)

    it("transport and HTTP errors: exit 1", function()
      local cal_id = calendar()
      -- not idempotent, so not sent again: it may have been applied
      emu:fault{ path = "oa/calendar/add", close = true, times = 1 }
      local rc, _, err = wecom("calendar add --summary S --color '#FF0000'")
      assert.equal(1, rc)
      assert.truthy(err:find("^wecom: oa/calendar/add: transport error %(empty%)"), err)
      emu:fault{ path = "oa/calendar/get", status = 403, times = 1 }
      rc, _, err = wecom("calendar get " .. cal_id)
      assert.equal(1, rc)
      assert.truthy(err:find("^wecom: oa/calendar/get: HTTP 403"), err)
      -- nothing listens there: connection refused
      local doc
      doc, rc = json("calendar get " .. cal_id, { WECOM_BASE_URL = "http://127.0.0.1:1" })
      assert.equal(1, rc)
      assert.equal("transport", doc.error.kind)
      assert.equal("connect", doc.error.reason)
    end)
  end)

  describe("progress and Ctrl-C", function()
    local dir, cal_id, sock
    before_each(function()
      dir = tmpdir()
      sock = dir .. "/tmux.sock"
      cal_id = calendar()
      emu:seed(cal_id, 5000, { cancelled_every = 10 })
      -- slow pages: the listing takes a few seconds, time to look at it
      emu:fault{ path = "oa/schedule/get_by_calendar", latency_ms = 300, times = -1 }
    end)
    after_each(function()
      os.execute(("env -u TMUX tmux -S %s kill-server >/dev/null 2>&1"):format(q(sock)))
      emu:clear_faults()
      os.execute("rm -rf " .. q(dir))
    end)

    -- Runs a command line in a real terminal (a tmux pane, 160x20) and
    -- leaves the pane open with "exit status N" under its output.
    local function in_terminal(cmdline)
      assert(os.execute(("env -u TMUX tmux -S %s new-session -d -x 160 -y 20 %s"):format(q(sock),
        q(cmdline .. '; echo "exit status $?"; sleep 600'))))
    end
    local function screen()
      local p = io.popen(("env -u TMUX tmux -S %s capture-pane -p"):format(q(sock)))
      local text = p:read("*a")
      p:close()
      return text
    end
    local PROGRESS = "(%d+) schedules, (%d+) pages?, (%d+)/s"

    it("a terminal sees pages, schedules so far and the rate on stderr, redrawn in place, gone at the end", function()
      local list = dir .. "/list.txt"
      in_terminal(("%s >%s"):format(command("schedule list " .. cal_id), q(list)))
      local seen = wait_for(30, function()
        local n, pages, rate = screen():match(PROGRESS)
        return n and tonumber(n) >= 1000 and tonumber(n) < 5000 and { tonumber(n), tonumber(pages), tonumber(rate) }
      end)
      assert.truthy(seen, "no progress on the terminal: " .. screen())
      assert.equal(seen[1], seen[2] * 1000)
      assert.is_true(seen[3] > 0)
      local final = wait_for(60, function()
        local text = screen()
        return text:find("exit status", 1, true) and text
      end)
      assert.truthy(final, screen())
      assert.truthy(final:find("exit status 0", 1, true), final)
      assert.truthy(final:find("^5000 schedules %(500 cancelled%) from offset 0; next offset 5000"), final)
      assert.falsy(final:find("/s", 1, true), "the progress line stayed: " .. final)
      -- stdout, a file, has the rows only
      local text = read(list)
      assert.equal(5001, select(2, text:gsub("\n", "")))
      assert.falsy(text:find("\27", 1, true))
    end)

    it("export shows it too, with the bytes written", function()
      in_terminal(command(("export %s -o %s"):format(cal_id, q(dir .. "/x.ics"))))
      local seen = wait_for(30, function()
        local line = screen():match("%d+ schedules, %d+ pages?, %d+/s, %d+ KB")
        return line
      end)
      assert.truthy(seen, screen())
      local final = wait_for(60, function()
        local text = screen()
        return text:find("exit status", 1, true) and text
      end)
      assert.truthy(final:find("wrote " .. dir .. "/x.ics: 5000 events", 1, true), final)
      assert.falsy(final:find("/s", 1, true), final)
    end)

    it("nothing of it when stderr is a pipe or a file", function()
      local rc, out, err = wecom("schedule list " .. cal_id)
      assert.equal(0, rc)
      assert.equal(5001, select(2, out:gsub("\n", "")))
      assert.equal("5000 schedules (500 cancelled) from offset 0; next offset 5000 (--offset 5000: only newer ones)\n",
        err)
      local done = dir .. "/piped"
      assert(os.execute(("%s 2>&1 | cat >%s"):format(command("schedule list " .. cal_id), q(done))))
      local text = read(done)
      assert.falsy(text:find("/s", 1, true))
      assert.falsy(text:find("\r", 1, true))
    end)

    it("Ctrl-C in a terminal stops a listing cleanly: exit 130, no traceback, the progress line gone", function()
      in_terminal(("%s >%s"):format(command("schedule list " .. cal_id), q(dir .. "/list.txt")))
      assert.truthy(wait_for(30, function() return screen():match(PROGRESS) end), screen())
      os.execute(("env -u TMUX tmux -S %s send-keys C-c"):format(q(sock)))
      local final = wait_for(30, function()
        local text = screen()
        return text:find("exit status", 1, true) and text
      end)
      assert.truthy(final, screen())
      assert.truthy(final:find("exit status 130", 1, true), final)
      assert.truthy(final:find("wecom: interrupted", 1, true), final)
      assert.falsy(final:find("traceback", 1, true), final)
      assert.falsy(final:find("/s", 1, true), final)
    end)

    it("SIGINT during an export: exit 130, no file under the name given, no temporary file", function()
      local file, rcfile, errfile, outfile = dir .. "/team.ics", dir .. "/rc", dir .. "/err", dir .. "/out"
      assert(os.execute(("sh -c %s &"):format(q(("%s >%s 2>%s & echo $! >%s.pid; wait $!; echo $? >%s"):format(
        command(("--json export %s -o %s"):format(cal_id, q(file))), q(outfile), q(errfile), q(rcfile), q(rcfile))))))
      -- once the first page is in the temporary file
      assert.truthy(wait_for(30, function()
        local p = io.popen("cat " .. q(dir) .. "/.team.ics.*.part 2>/dev/null")
        local text = p:read("*a")
        p:close()
        return text:find("BEGIN:VEVENT", 1, true)
      end))
      local pid = assert(wait_for(5, function() return read(rcfile .. ".pid") end)):match("%d+")
      assert(os.execute("kill -INT " .. pid))
      assert.truthy(wait_for(30, function() return read(rcfile) end))
      assert.equal("130\n", read(rcfile))
      assert.equal("wecom: interrupted\n", read(errfile))
      assert.same({ error = { kind = "interrupted", message = "interrupted" } }, cjson.decode(read(outfile)))
      assert.is_false(exists(file))
      local p = io.popen("ls -A " .. q(dir))
      local names = p:read("*a")
      p:close()
      assert.equal("err\nout\nrc\nrc.pid\n", names)
    end)
  end)

  describe("in-process (wecom.cli.main)", function()
    local cli = require("wecom.cli")

    -- stdout and stderr as strings; the environment of the emulator
    local function run(argv, tty)
      local out, err = {}, {}
      local function sink(list)
        local f = {}
        function f.write(self, ...)
          for i = 1, select("#", ...) do list[#list + 1] = select(i, ...) end
          return self
        end
        function f.flush() return true end
        return f
      end
      local env = { WECOM_BASE_URL = emu.base_url, WECOM_CORPID = emu.corpid, WECOM_CORPSECRET = SECRET }
      local status = cli.main(argv, { stdout = sink(out), stderr = sink(err), getenv = function(k) return env[k] end,
        isatty = function() return tty or false end })
      out, err = table.concat(out), table.concat(err)
      outputs[#outputs + 1] = out
      outputs[#outputs + 1] = err
      return status, out, err
    end

    it("returns the exit status instead of exiting: help, usage, a call", function()
      local status, out = run{ "--help" }
      assert.equal(0, status)
      assert.truthy(out:find("Usage: wecom", 1, true))
      local err
      status, out, err = run{ "calendar", "get" }
      assert.equal(2, status)
      assert.equal("", out)
      assert.truthy(err:find("missing argument 'cal_id'", 1, true))
      local cal_id = calendar()
      status, out = run{ "--json", "calendar", "get", cal_id }
      assert.equal(0, status)
      assert.equal(cal_id, cjson.decode(out).calendar_list[1].cal_id)
    end)

    it("redraws the progress line in place on a terminal, and takes it away at the end", function()
      local cal_id = calendar()
      emu:seed(cal_id, 2500)
      local status, out, err = run({ "schedule", "list", cal_id }, true)
      assert.equal(0, status)
      assert.equal(2501, select(2, out:gsub("\n", "")))
      local shown = {}
      for n, pages in err:gmatch("\r\27%[K(%d+) schedules, (%d+) pages?, %d+/s") do
        shown[#shown + 1] = n .. "/" .. pages
      end
      assert.same({ "1000/1", "2000/2", "2500/3" }, shown)
      -- cleared before the summary, which starts a line of its own
      assert.truthy(err:find("\r\27%[K2500 schedules %(0 cancelled%) from offset 0"), err)
    end)

    it("runs a subcommand of another module added to wecom.cli.COMMANDS", function()
      -- what a module such as `wecom mirror` provides: name, configure, run
      package.loaded["spec_cli_count"] = {
        name = "count",
        configure = function(parser)
          parser:command("count", "Count a calendar's schedules."):argument("cal_id"):argname("CAL_ID")
        end,
        run = function(args, ctx)
          local c, err = ctx:client()
          if not c then return nil, err end
          local n = 0
          for s, e in c:each_schedule(args.cal_id) do
            if not s then return nil, e end
            n = n + 1
          end
          if ctx.json then return ctx:document{ cal_id = args.cal_id, schedules = n } end
          return ctx:out(("%d\n"):format(n))
        end,
      }
      table.insert(cli.COMMANDS, "spec_cli_count")
      local ok_, e = pcall(function()
        local cal_id = calendar()
        emu:seed(cal_id, 1234)
        local status, out = run{ "count", cal_id }
        assert.equal(0, status)
        assert.equal("1234\n", out)
        status, out = run{ "--json", "count", cal_id }
        assert.equal(0, status)
        assert.same({ cal_id = cal_id, schedules = 1234 }, cjson.decode(out))
        status, out = run{ "count", "--help" }
        assert.equal(0, status)
        assert.truthy(out:find("Usage: wecom count [-h] CAL_ID", 1, true), out)
        local err
        status, out, err = run{ "count", "wcNoSuchCalendar" }
        assert.equal(1, status)
        assert.equal("", out)
        assert.truthy(err:find("WeCom error", 1, true), err)
        status = run{ "--help" }
        assert.equal(0, status)
      end)
      table.remove(cli.COMMANDS)
      package.loaded["spec_cli_count"] = nil
      assert(ok_, e)
    end)
  end)

  describe("secrets", function()
    it("neither the secret nor a token is printed, even with --verbose and by a server that echoes them", function()
      local cal_id = calendar()
      local out, err = ok("--verbose calendar get " .. cal_id)
      assert.truthy(err:find("wecom: GET " .. emu.base_url .. "/cgi-bin/gettoken?corpid=wwclitest&corpsecret=*** -> 200",
        1, true), err)
      assert.truthy(err:find("wecom: POST " .. emu.base_url .. "/cgi-bin/oa/calendar/get?access_token=*** -> 200", 1, true),
        err)
      assert.truthy(out:find(cal_id, 1, true))
      emu:fault{ path = "oa/calendar/get", errcode = 40013, errmsg = "bad: {access_token} {corpsecret}", times = 1 }
      local rc
      rc, out, err = wecom("--verbose calendar get " .. cal_id)
      assert.equal("", out)
      assert.equal(1, rc)
      assert.truthy(err:find("WeCom error 40013: bad: ***", 1, true), err)
      emu:fault{ path = "gettoken", status = 502, body = "proxy: {corpsecret}", times = 1 }
      emu:fault{ path = "oa/calendar/get", status = 500, body = "<p>{access_token}</p>", times = -1 }
      rc = wecom("--json --verbose calendar get " .. cal_id)
      assert.equal(1, rc)
      emu:clear_faults()
      wecom("--corpsecret " .. SECRET .. " " .. SECRET) -- a secret where a command goes
      wecom("--verbose --json export " .. cal_id)
    end)

    -- last: every output of every run of this file
    it("is in no output of any run above", function()
      assert.is_true(#outputs > 100)
      local pieces = {}
      for i = 1, #SECRET - 7 do pieces[#pieces + 1] = SECRET:sub(i, i + 7) end
      for _, text in ipairs(outputs) do
        for _, piece in ipairs(pieces) do
          assert.falsy(text:find(piece, 1, true), "a piece of the secret: " .. text)
        end
        assert.falsy(text:find(TOKEN_MARK, 1, true), "a token: " .. text)
        -- tokens are 64 random characters and the mark; ids are at most 32
        assert.falsy(text:find(("[%w]"):rep(40)), "something like a token: " .. text)
        if outputs.token then assert.falsy(text:find(outputs.token:sub(1, 8), 1, true)) end
      end
    end)
  end)
end)
