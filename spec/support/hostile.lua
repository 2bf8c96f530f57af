-- The hostile-reply matrix shared by spec/hardening_spec.lua (plain Lua,
-- libcurl) and spec/support/ngx_app.lua (nginx, cosockets): every helper and
-- a few endpoint methods against replies that are JSON but not what WeCom
-- sends. Each must answer nil, err of the expected kind, and never raise.
local M = {}

-- The helpers, each run against the ids of a calendar and a schedule that
-- exist: run(client, ids) -> res | nil, err. `paths`: the endpoints it
-- reads; `reads`: the item fields of those replies it looks into.
local CALENDAR_ITEM = { list = true, cal_id = true, shares = true, admins = true }
M.HELPERS = {
  { name = "calendar_get", paths = { "oa/calendar/get" }, reads = {},
    run = function(c, ids) return c:calendar_get{ cal_id_list = { ids.cal_id } } end },
  { name = "calendars", paths = { "oa/calendar/get" }, reads = { list = true, cal_id = true },
    run = function(c, ids) return c:calendars{ ids.cal_id } end },
  { name = "schedules", paths = { "oa/schedule/get" }, reads = { list = true, schedule_id = true },
    run = function(c, ids) return c:schedules({ ids.schedule_id }, { concurrency = 2 }) end },
  { name = "schedule_cursor", paths = { "oa/schedule/get_by_calendar" }, reads = { list = true, status = true },
    run = function(c, ids)
      local cursor, err = c:schedule_cursor(ids.cal_id, { include_cancelled = false })
      if not cursor then return nil, err end
      return cursor:next_page()
    end },
  { name = "each_schedule", paths = { "oa/schedule/get_by_calendar" }, reads = { list = true },
    run = function(c, ids)
      local n = 0
      for s, err in c:each_schedule(ids.cal_id) do
        if s == false then return nil, err end
        n = n + 1
      end
      return n
    end },
  { name = "export_ical", paths = { "oa/schedule/get_by_calendar", "oa/calendar/get" },
    reads = { list = true, cal_id = true },
    run = function(c, ids)
      return c:export_ical(ids.cal_id, function() return true end)
    end },
  { name = "calendar_patch", paths = { "oa/calendar/get" }, reads = CALENDAR_ITEM,
    run = function(c, ids) return c:calendar_patch(ids.cal_id, { description = "patched" }) end },
  { name = "share_calendar", paths = { "oa/calendar/get" }, reads = CALENDAR_ITEM,
    run = function(c, ids) return c:share_calendar(ids.cal_id, { "wangwu" }) end },
  { name = "unshare_calendar", paths = { "oa/calendar/get" }, reads = CALENDAR_ITEM,
    run = function(c, ids) return c:unshare_calendar(ids.cal_id, { "lisi" }) end },
  { name = "share_calendars", paths = { "oa/calendar/get" }, reads = CALENDAR_ITEM,
    run = function(c, ids)
      local results, err = c:share_calendars({ ids.cal_id }, { "wangwu" }, { concurrency = 2 })
      if not results then return nil, err end
      if not results[1].ok then return nil, results[1].err end
      return results
    end },
  { name = "schedule_patch", paths = { "oa/schedule/get" },
    reads = { list = true, schedule_id = true, start_time = true, end_time = true, reminders = true },
    run = function(c, ids) return c:schedule_patch(ids.schedule_id, { location = "Room 5" }) end },
  { name = "remove_attendees", paths = { "oa/schedule/del_attendees" }, reads = {},
    run = function(c, ids) return c:remove_attendees(ids.schedule_id, { "wangwu" }) end },
  { name = "call_many", paths = { "oa/schedule/get" }, reads = {},
    run = function(c, ids)
      local results, err = c:call_many("schedule_get", { { schedule_id_list = { ids.schedule_id } },
        { schedule_id_list = { ids.schedule_id } } }, { concurrency = 2 })
      if not results then return nil, err end
      for _, r in ipairs(results) do
        if not r.ok then return nil, r.err end
      end
      return results
    end },
}

local GET_PATHS = { ["oa/calendar/get"] = "calendar_list", ["oa/schedule/get"] = "schedule_list",
  ["oa/schedule/get_by_calendar"] = "schedule_list" }

-- Reply shapes. `body` may hold {cal_id} and {schedule_id}. `item` names
-- the item field a shape breaks, `list` marks a broken list: only helpers
-- that read it fail (an endpoint method hands the reply over as it is).
-- Other shapes break the reply itself: everything that reads the path fails.
M.SHAPES = {}
local function shape(path, name, body, item, list)
  M.SHAPES[#M.SHAPES + 1] = { path = path, name = name, body = body, item = item, list = list }
end

-- broken for the decoder itself, on every path the helpers use
for _, path in ipairs{ "oa/calendar/get", "oa/schedule/get", "oa/schedule/get_by_calendar",
  "oa/schedule/del_attendees" } do
  shape(path, "a JSON array", "[]")
  shape(path, "a JSON string", '"ok"')
  shape(path, "errcode as a string", '{"errcode":"0","errmsg":"ok"}')
  shape(path, "errcode as a fraction", '{"errcode":0.5}')
  shape(path, "cut short", '{"errcode":0,"errmsg":"ok","x":[')
  shape(path, "nested 500 deep", '{"errcode":0,"x":' .. ("["):rep(500) .. ("]"):rep(500) .. "}")
end

-- broken lists
for path, list in pairs(GET_PATHS) do
  for name, value in pairs{ null = "null", string = '"abcdef"', number = "42", object = '{"k":1}',
    numbers = "[1,2]", nulls = "[null]", strings = '["x"]', boolean = "true" } do
    shape(path, list .. " " .. name, ('{"errcode":0,"errmsg":"ok","%s":%s}'):format(list, value), nil, true)
  end
end

-- broken items: the id, and the fields the patch helpers write back
local CAL = '{"errcode":0,"errmsg":"ok","calendar_list":[{"cal_id":%s,"summary":"s","color":"#000000",' ..
  '"shares":%s,"admins":%s}]}'
local function cal(id, shares, admins) return CAL:format(id, shares, admins) end
shape("oa/calendar/get", "cal_id a number", cal("5", "[]", "[]"), "cal_id")
shape("oa/calendar/get", "cal_id null", cal("null", "[]", "[]"), "cal_id")
shape("oa/calendar/get", "shares null", cal('"{cal_id}"', "null", "[]"), "shares")
shape("oa/calendar/get", "shares a string", cal('"{cal_id}"', '"x"', "[]"), "shares")
shape("oa/calendar/get", "shares of numbers", cal('"{cal_id}"', "[5]", "[]"), "shares")
shape("oa/calendar/get", "a share's userid a number", cal('"{cal_id}"', '[{"userid":5}]', "[]"), "shares")
shape("oa/calendar/get", "admins a string", cal('"{cal_id}"', "[]", '"x"'), "admins")
shape("oa/calendar/get", "admins of tables", cal('"{cal_id}"', "[]", "[{}]"), "admins")

local SCHED = '{"errcode":0,"errmsg":"ok","schedule_list":[{"schedule_id":%s,"cal_id":"{cal_id}",' ..
  '"start_time":%s,"end_time":%s,"reminders":%s,"status":%s}]}'
local function sched(id, start, stop, reminders, status)
  return SCHED:format(id, start, stop, reminders, status)
end
shape("oa/schedule/get", "schedule_id a number", sched("7", "1", "2", "{}", "0"), "schedule_id")
shape("oa/schedule/get", "start_time a string", sched('"{schedule_id}"', '"x"', "2", "{}", "0"), "start_time")
shape("oa/schedule/get", "end_time null", sched('"{schedule_id}"', "1", "null", "{}", "0"), "end_time")
shape("oa/schedule/get", "reminders a string", sched('"{schedule_id}"', "1", "2", '"x"', "0"), "reminders")
shape("oa/schedule/get_by_calendar", "status a string", sched('"{schedule_id}"', "1", "2", "{}", '"x"'), "status")

-- Whether `helper` must fail on `s`, and the error kind it must give.
function M.expect(helper, s)
  local reads_path = false
  for _, p in ipairs(helper.paths) do
    if p == s.path then reads_path = true end
  end
  if not reads_path then return false end
  if s.item then return helper.reads[s.item] == true, "decode" end
  if s.list then return helper.reads.list == true, "decode" end
  return true, "decode"
end

function M.fill(body, ids)
  return (body:gsub("{cal_id}", ids.cal_id):gsub("{schedule_id}", ids.schedule_id))
end

-- Runs a helper, catching a raise: {raised = message} or {ok = bool, kind =,
-- field =, message =}.
function M.run(helper, client, ids)
  local ok, res, err = pcall(helper.run, client, ids)
  if not ok then return { raised = tostring(res) } end
  if res ~= nil and res ~= false then return { ok = true } end
  if type(err) ~= "table" then return { ok = false, kind = "none: " .. type(err) } end
  return { ok = false, kind = err.kind, field = err.field, message = err.message }
end

function M.helper(name)
  for _, h in ipairs(M.HELPERS) do
    if h.name == name then return h end
  end
  error("no helper " .. tostring(name))
end

return M
