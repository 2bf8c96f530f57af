-- examples/demo.lua runs against the emulator and says what the README shows.
local check = require("support.ical_check")
local emulator = require("support.emulator")
local shell = require("support.shell")

describe("examples/demo.lua", function()
  local emu
  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)

  local function run(env)
    local rc, out = shell.run(("%s %s %s examples/demo.lua"):format(
      shell.lua_env("lua/?.lua;lua/?/init.lua;emulator/?.lua;;", package.cpath), env, shell.lua))
    return out, rc
  end

  local function cal_id_of(out) return out:match("cal_id = (%S+)") end

  it("walks the calendar from creation to deletion", function()
    local ics = os.tmpname()
    -- the command line shows local times: these are +08:00 (a POSIX zone, no tzdata needed)
    local out, rc = run(("TZ=CST-8 WECOM_BASE_URL=%s WECOM_CORPID=%s WECOM_CORPSECRET=%s WECOM_EMULATOR_DIR=x "
      .. "WECOM_DEMO_ICS=%s"):format(emu.base_url, emu.corpid, emu.corpsecret, ics))
    assert.equal(0, rc, out)
    for _, line in ipairs{
      'summary "test_summary", color #FF3030, readonly 1, description "test_describe"',
      "shares: userid2 (readonly 1), userid3 (readonly 1)",
      'description "test_describe_1"',
      'description "patched: only this field changed"',
      "WeCom refused to share with unknown-intern (errcode 40001)",
      "shares: userid1 (readonly 1), userid2 (readonly 0), userid4 (readonly 1)",
      '"weekly sync" Mon 2026-11-23 10:00 +08:00, weekly except Mon 2026-11-30 10:00 +08:00, 2 attendees',
      '"weekly sync (moved to the afternoon)" Mon 2026-11-30 15:00 +08:00, once, 2 attendees',
      '"weekly sync", the next five weeks: Mon 2026-11-23 10:00 +08:00, Mon 2026-12-07 10:00 +08:00, '
        .. "Mon 2026-12-14 10:00 +08:00, Mon 2026-12-21 10:00 +08:00",
      "wrote " .. ics .. ": 2 events, for any calendar application (RFC 5545)",
      '2347 schedules ("weekly sync" .. "seeded schedule 2345"), 335 cancelled (status 1), in 3 pages',
      "later: 3 new (added later 1, added later 2, added later 3); offset now 2350",
      'oa/calendar/add: calendar.color: expected "#RRGGBB", got "red"',
      "oa/calendar/get: WeCom error 90457: invalid cal_id",
      "oa/calendar/get: WeCom error 90459",
      -- the same from the command line
      "   $ wecom calendar get ",
      "     shares       3: userid1 (read-only), userid2 (read-write), userid4 (read-only)",
      "     shared " .. cal_id_of(out) .. " with userid5 (read-write)",
      "     SCHEDULE_ID                       START                    END    REPEAT  STATUS  SUMMARY",
      "  2023-11-15 08:13 +08:00  08:43                  added later 3",
      "     3 schedules (0 cancelled) from offset 2347; next offset 2350",
      "     START                    END",
      "     2026-12-07 10:00 +08:00  2026-12-07 11:00 +08:00",
      '     2 occurrences of "weekly sync" from 2026-11-23 to 2026-12-13; it repeats: weekly, 1 occurrence removed',
      "     wecom: wrote " .. ics .. ": 2350 events (335 cancelled, 0 left out)",
      '     {"error":{',
      "     exit status 1",
      "done",
    } do
      assert.truthy(out:find(line, 1, true), "missing: " .. line .. "\n" .. out)
    end
    -- one token for the demo's client, and one for each wecom command (a process of its own)
    local _, commands = out:gsub("\n   %$ wecom ", "")
    assert.equal(6, commands)
    assert.equal(1 + commands, emu:calls("gettoken"))
    -- the .ics it wrote: the series with its removed occurrence, and the moved one
    local ok, checked = check.libical(ics)
    assert.is_true(ok, checked)
    local f = assert(io.open(ics, "rb"))
    local text = f:read("*a")
    f:close()
    os.remove(ics)
    assert.truthy(text:find("\r\nRRULE:FREQ=WEEKLY;WKST=MO\r\nEXDATE;TZID=Etc/GMT-8:20261130T100000\r\n", 1, true), text)
    assert.truthy(text:find("\r\nSUMMARY:weekly sync (moved to the afternoon)\r\n", 1, true), text)
  end)

  it("starts and stops its own emulator when none is given", function()
    local out, rc = run("WECOM_BASE_URL=")
    assert.equal(0, rc, out)
    assert.truthy(out:find("(the local emulator)", 1, true), out)
    assert.truthy(out:find("done", 1, true), out)
  end)
end)
