-- wecom schedule list|get
local context = require("wecom.cli.context")
local output = require("wecom.cli.output")

local M = { name = "schedule" }

function M.configure(parser)
  local schedule = parser:command("schedule", "List and read schedules.")
  schedule:command_target("schedule_command")
  local list = schedule:command("list",
    "Every schedule of a calendar, page by page as they arrive (progress on stderr when it is a terminal).")
  list:argument("cal_id", "The calendar's id."):argname("CAL_ID")
  list:option("--offset", "Start here: the next offset a previous listing gave, for only what was added since.")
    :argname("N"):default("0"):convert(function(s)
      local n = tonumber(s)
      if not n or n < 0 or n ~= math.floor(n) or not s:match("^%d+$") then
        return nil, "--offset: expected a whole number, 0 or more"
      end
      return n
    end)
  schedule:command("get", "Show schedules."):argument("schedule_id", "Schedule ids."):argname("SCHEDULE_ID"):args("+")
end

local function status(s) return s.status == 1 and "cancelled" or "" end

local TITLES = { "SCHEDULE_ID", "START", "END", "REPEAT", "STATUS", "SUMMARY" }

local function cells(s)
  local start, finish = output.span(s)
  return { s.schedule_id, start, finish, output.repeat_short(s), status(s), s.summary }
end

local LIST_SHAPE = output.SHAPES.schedule

-- The end of the --json document: the list closed, then what the listing
-- came to (and the error it stopped at).
local function json_tail(ctx, cal_id, offset, cursor, count, cancelled, err)
  local tail = { cal_id = cal_id, offset = offset, next_offset = cursor.offset, schedules = count, cancelled = cancelled }
  if err then tail.error = output.error_doc(err) end
  local text = assert(output.json(tail))
  return ctx:out("]," .. text:sub(2) .. "\n")
end

local function list(args, ctx, client)
  local cal_id, offset = args.cal_id, args.offset
  local cursor, err = client:schedule_cursor(cal_id, { offset = offset })
  if not cursor then return nil, err end
  local progress = ctx:progress("schedules")
  ctx:on_exit(function() progress:clear() end)
  local printer = output.table(TITLES, cells, function(text) return ctx:out(text) end)
  local pages, count, cancelled = 0, 0, 0
  local ok
  if ctx.json then
    ok, err = ctx:out('{"schedule_list":[')
    if not ok then return nil, err end
  end
  while true do
    local page
    ok, err = ctx:check_interrupt()
    if ok then page, err = cursor:next_page() end
    if not page then break end
    if #page == 0 then
      -- an empty calendar still gets its header
      if not ctx.json and pages == 0 then printer:rows({}) end
      break
    end
    pages, count = pages + 1, count + #page
    for _, s in ipairs(page) do
      if s.status == 1 then cancelled = cancelled + 1 end
    end
    progress:pause()
    if ctx.json then
      local items
      items, err = output.json_items(page, LIST_SHAPE)
      if items then
        ok, err = ctx:out((pages > 1 and "," or "") .. items)
      else
        ok, err = nil, context.error("failed", "can't write it as JSON: " .. tostring(err))
      end
    else
      ok, err = printer:rows(page)
    end
    if not ok then break end
    ctx.io.stdout:flush()
    progress:update(pages, count)
  end
  progress:clear()
  if err and ctx.interrupted then err = context.error("interrupted", "interrupted") end
  if ctx.json then
    local wrote, werr = json_tail(ctx, cal_id, offset, cursor, count, cancelled, err)
    if not wrote then return nil, werr end
  end
  if err then
    if count > 0 and not context.is_interrupt(err) then
      ctx:warn(("stopped after %d schedules: resume with --offset %d"):format(count, cursor.offset))
    end
    return nil, err
  end
  if not ctx.json then
    ctx:say(("%d schedule%s (%d cancelled) from offset %d; next offset %d (--offset %d: only newer ones)\n")
      :format(count, count == 1 and "" or "s", cancelled, offset, cursor.offset, cursor.offset, cursor.offset))
  end
  return true
end

-- response_status (API.md): 0 none, 1 tentative, 2 accepted all, 3 accepted once, 4 declined
local ANSWERS = { [0] = "no reply", "tentative", "accepted", "accepted once", "declined" }

local function attendee(a)
  local state = ANSWERS[a.response_status]
  return state and ("%s (%s)"):format(tostring(a.userid), state) or tostring(a.userid)
end

-- "1 h", "15 min", "2 days": a reminder's distance from the start.
local function distance(secs)
  for _, unit in ipairs{ { 86400, " day", " days" }, { 3600, " h", " h" } } do
    if secs % unit[1] == 0 then
      local n = secs / unit[1]
      return ("%d%s"):format(n, n == 1 and unit[2] or unit[3])
    end
  end
  return ("%d min"):format(math.floor(secs / 60))
end

-- The reminders in words: remind_time_diffs (seconds from the start) when
-- it has any, as they win over remind_before_event_secs (API.md).
local function reminders(r)
  local diffs = r.remind_time_diffs
  if type(diffs) ~= "table" or #diffs == 0 then diffs = { -(tonumber(r.remind_before_event_secs) or 0) } end
  local out = {}
  for i, d in ipairs(diffs) do
    if type(d) ~= "number" or d ~= math.floor(d) or math.abs(d) > 2 ^ 31 then -- what a server sent, shown as sent
      out[i] = output.cell(d)
    elseif d == 0 then
      out[i] = "at the start"
    else
      out[i] = distance(math.abs(d)) .. (d < 0 and " before" or " after the start")
    end
  end
  return table.concat(out, ", ")
end

local function show_schedule(s)
  local start, finish = output.span(s)
  local attendees, n = output.entries(s.attendees, attendee)
  local admins, admin_count = output.entries(s.admins)
  local r = type(s.reminders) == "table" and s.reminders or {}
  local fields = {
    { "schedule_id", s.schedule_id },
    { "cal_id", s.cal_id },
    { "summary", s.summary },
    { "status", s.status == 1 and "cancelled" or "active" },
    { "start", start },
    { "end", finish },
    { "repeat", output.repeat_long(s) },
    { "location", s.location },
    { "description", s.description },
  }
  if s.organizer ~= nil then fields[#fields + 1] = { "organizer", s.organizer } end
  if admin_count > 0 then fields[#fields + 1] = { "admins", admins } end
  fields[#fields + 1] = { "attendees", n > 0 and ("%d: %s"):format(n, attendees) or "none" }
  if r.is_remind == 1 then fields[#fields + 1] = { "reminder", reminders(r) } end
  return output.fields(fields)
end

local function get(args, ctx, client)
  local list_, err = client:schedules(args.schedule_id)
  if not list_ then return nil, err end
  return ctx:found(args.schedule_id, list_, { list = "schedule_list", shape = LIST_SHAPE, show = show_schedule,
    noun = "schedule" })
end

function M.run(args, ctx)
  local client, err = ctx:client()
  if not client then return nil, err end
  if args.schedule_command == "list" then return list(args, ctx, client) end
  return get(args, ctx, client)
end

return M
