-- Random Lua values of every type into every endpoint method and helper,
-- with a fixed seed: never a raise, never a crash; always a result or
-- nil, err with a wecom error. (`make fuzz` runs libFuzzer on the C encoder
-- and decoder for longer.)
local emulator = require("support.emulator")
local wecom = require("wecom")

local CASES = tonumber(os.getenv("WECOM_FUZZ_CASES") or "") or 3000

-- Park-Miller: the same sequence on every Lua (the products stay exact in doubles).
local function generator(seed)
  local state = seed
  local function int(n)
    state = state * 16807 % 2147483647
    return state % n + 1
  end
  return int
end

local NAMES = {
  "calendar", "schedule", "summary", "color", "description", "shares", "userid", "readonly", "permission",
  "admins", "organizer", "is_public", "public_range", "userids", "partyids", "is_corp_calendar", "cal_id",
  "cal_id_list", "offset", "limit", "agentid", "schedule_id", "start_time", "end_time", "attendees",
  "reminders", "remind_time_diffs", "remind_before_event_secs", "is_whole_day", "repeat_type",
  "repeat_day_of_week", "repeat_day_of_month", "timezone", "op_mode", "op_start_time", "skip_attendees",
  "schedule_id_list", "exclude_time_list", "status", "sequence", "location", "is_repeat", "response_status",
}

local NUMBERS = {
  0, 1, -1, 2, 3, 7, 12, -12, 13, 31, 32, 64, 65, 128, 129, 300, 301, 512, 513, 1000, 1001, 2000, 2001,
  86400, -604800, 32400, 2 ^ 31, 2 ^ 32, 2 ^ 53, 2 ^ 53 + 1, 2 ^ 63, -2 ^ 63, 1e300, -1e300, 0.5, -0.0,
  1 / 0, -1 / 0, 0 / 0, 1571274600, 1795399200,
}

local STRINGS = {
  "", "x", "#FF3030", "#ff3030", "red", "#GG0000", "日历", string.rep("日", 128), string.rep("日", 129),
  string.rep("u", 64), string.rep("u", 65), "a\0b", "line\r\nX-Injected: 1", "\255\254", "\237\160\128",
  "\192\175", "🗓", "tab\there", '"quoted"', "back\\slash", "%00%0d", "unknown-user",
  string.rep("x", 10000),
}

local function value(int, depth)
  local kind = int(depth > 4 and 9 or 13)
  if kind == 1 then return nil end
  if kind == 2 then return int(2) == 1 end
  if kind == 3 or kind == 4 then return NUMBERS[int(#NUMBERS)] end
  if kind == 5 or kind == 6 then return STRINGS[int(#STRINGS)] end
  if kind == 7 then return NAMES[int(#NAMES)] end
  if kind == 8 then
    local r = int(5)
    if r == 1 then return print end
    if r == 2 then return io.stdout end
    if r == 3 then return coroutine.create(function() end) end
    if r == 4 then return wecom.array() end
    return require("cjson").null
  end
  if kind == 9 then -- a list
    local t = {}
    for i = 1, int(4) - 1 do t[i] = value(int, depth + 1) end
    return t
  end
  if kind == 10 or kind == 11 then -- an object with the schemas' names
    local t = {}
    for _ = 1, int(6) do t[NAMES[int(#NAMES)]] = value(int, depth + 1) end
    return t
  end
  if kind == 12 then -- odd tables: cycles, mixed and sparse keys, absurd nesting
    local r = int(5)
    local t = { [1] = "a" }
    if r == 1 then t.self = t end
    if r == 2 then t.k = 1 end
    if r == 3 then t[3] = 3 end
    if r == 4 then t[true] = 1 end
    if r == 5 then
      t = {}
      local cur = t
      for _ = 1, 5000 do
        cur.d = {}
        cur = cur.d
      end
    end
    return t
  end
  -- a body shaped like the endpoint's, with random values inside
  return { calendar = value(int, depth + 1), schedule = value(int, depth + 1), cal_id = value(int, depth + 1) }
end

-- A valid body for each endpoint, to be mutated: it reaches the emulator
-- and WeCom's own checks, not only ours.
local function templates(cal_id, schedule_id)
  local t0 = 1795399200
  return {
    calendar_add = { calendar = { summary = "s", color = "#000000", shares = { { userid = "u1" } } } },
    calendar_update = { calendar = { cal_id = cal_id, summary = "s", color = "#000000" } },
    calendar_get = { cal_id_list = { cal_id } },
    calendar_del = { cal_id = "wcNoSuchCalendar" },
    schedule_get_by_calendar = { cal_id = cal_id, limit = 10 },
    schedule_add = { schedule = { cal_id = cal_id, start_time = t0, end_time = t0 + 3600, summary = "x",
      attendees = { { userid = "a" } }, reminders = { is_remind = 1, remind_before_event_secs = 900 } } },
    schedule_update = { schedule = { schedule_id = schedule_id, start_time = t0, end_time = t0 + 60 },
      skip_attendees = 1 },
    schedule_get = { schedule_id_list = { schedule_id } },
    schedule_del = { schedule_id = "NoSuchSchedule" },
    schedule_add_attendees = { schedule_id = schedule_id, attendees = { { userid = "b" } } },
    schedule_del_attendees = { schedule_id = schedule_id, attendees = { { userid = "b" } } },
  }
end

-- A copy of a template with one field (at depth 1 or 2) replaced or removed.
local function mutate(int, body)
  local copy = {}
  for k, v in pairs(body) do
    if type(v) == "table" then
      local inner = {}
      for k2, v2 in pairs(v) do inner[k2] = v2 end
      copy[k] = inner
    else
      copy[k] = v
    end
  end
  local keys = {}
  for k in pairs(copy) do keys[#keys + 1] = k end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  local target, key = copy, keys[int(#keys)]
  if type(copy[key]) == "table" and int(2) == 1 then
    target = copy[key]
    local inner = {}
    for k in pairs(target) do inner[#inner + 1] = k end
    table.sort(inner, function(x, y) return tostring(x) < tostring(y) end)
    key = int(3) == 1 and NAMES[int(#NAMES)] or inner[int(#inner)]
  end
  target[key] = value(int, 1)
  return copy
end

describe("fuzzing the public API", function()
  local emu, client, bodies

  setup(function()
    emu = emulator.start()
    client = emu:client{ max_retries = 0, timeout = 2 }
    local cal_id = assert(client:calendar_add{ calendar = { summary = "fuzz", color = "#000000" } }).cal_id
    local schedule_id = assert(client:schedule_add{ schedule = { cal_id = cal_id, start_time = 1795399200,
      end_time = 1795402800 } }).schedule_id
    bodies = templates(cal_id, schedule_id)
  end)
  teardown(function() emu:stop() end)

  local KINDS = { validation = true, transport = true, http = true, decode = true, api = true }

  local function check_outcome(name, ok, res, err)
    assert.is_true(ok, name .. " raised: " .. tostring(res))
    if res == nil then
      assert.is_true(wecom.errors.is(err), name .. " returned nil without an error")
      assert.is_true(KINDS[err.kind], name .. ": kind " .. tostring(err.kind))
      assert.is_string(err.message)
    end
  end

  it(("survives %d random calls of every method"):format(CASES), function()
    local int = generator(20261120)
    local methods = {}
    for _, ep in ipairs(wecom.endpoints) do methods[#methods + 1] = ep.name end
    for _, helper in ipairs{ "calendars", "schedules", "calendar_patch", "schedule_patch", "share_calendar",
      "unshare_calendar", "share_calendars", "remove_attendees", "schedule_cursor", "call" } do
      methods[#methods + 1] = helper
    end
    local counts = { ok = 0, validation = 0, other = 0 }
    for _ = 1, CASES do
      local name = methods[int(#methods)]
      local a, b, c = value(int, 0), value(int, 0), value(int, 0)
      if bodies[name] then -- a quarter random, half mutated, a quarter valid
        local r = int(4)
        if r == 2 or r == 3 then a = mutate(int, bodies[name]) elseif r == 4 then a = bodies[name] end
      end
      if name == "call" and int(2) == 1 then a = "oa/calendar/get" end
      local ok, res, err = pcall(client[name], client, a, b, c)
      check_outcome(name, ok, res, err)
      if name == "schedule_cursor" and res then
        ok, res, err = pcall(res.next_page, res)
        check_outcome("next_page", ok, res, err)
      end
      if res ~= nil then counts.ok = counts.ok + 1
      elseif err.kind == "validation" then counts.validation = counts.validation + 1
      else counts.other = counts.other + 1 end
    end
    -- every outcome was reached, and often: the generator is not stuck in one corner
    assert.is_true(counts.ok > CASES / 50 and counts.validation > CASES / 4 and counts.other > CASES / 50,
      ("%d ok, %d refused, %d other"):format(counts.ok, counts.validation, counts.other))

    -- each_schedule yields schedules, or false, err once
    for _ = 1, 50 do
      local ok, iter = pcall(client.each_schedule, client, value(int, 0), value(int, 0))
      assert.is_true(ok)
      local n = 0
      for s, err in iter do
        n = n + 1
        if s == false then assert.is_true(wecom.errors.is(err)) end
        if n > 3 then break end
      end
    end
    -- and the client still works
    assert(client:calendar_add{ calendar = { summary = "still fine", color = "#000000" } })
  end)

  it("survives random options for wecom.new", function()
    local int = generator(7)
    local keys = { "corpid", "corpsecret", "access_token", "token", "base_url", "timeout", "connect_timeout",
      "max_retries", "ca_file", "token_cache", "max_response_bytes", "user_agent", "transport", "bogus" }
    for _ = 1, 500 do
      local opts = {}
      for _ = 1, int(4) do opts[keys[int(#keys)]] = value(int, 3) end
      local ok, c, err = pcall(wecom.new, opts)
      assert.is_true(ok, tostring(c))
      if not c then assert.equal("validation", err.kind) end
    end
  end)
end)
