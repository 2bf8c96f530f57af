-- client:export_ical(cal_id, write, opts): a whole calendar as iCalendar,
-- streamed. Pages through the calendar's schedules with the cursor of
-- wecom.paging and writes each page's events as one chunk, so memory stays
-- about one page whatever the calendar's size.
local args = require("wecom.args")
local ical = require("wecom.ical")
local schema = require("wecom.schema")

local LIMIT = schema.field("schedule_get_by_calendar", "limit")

local M = {}

local HELPER = "export_ical"
local EXTRA = { include_cancelled = true, limit = true }

local function check(cal_id, write, opts)
  local err = args.id(HELPER, "cal_id", cal_id)
  if err then return nil, err end
  if type(write) ~= "function" then
    return nil, require("wecom.errors").validation(HELPER, "write", "expected a function(chunk)")
  end
  local o
  o, err = ical.check_options(HELPER, opts, EXTRA)
  if not o then return nil, err end
  if o.include_cancelled ~= nil then
    err = args.boolean(HELPER, "opts.include_cancelled", o.include_cancelled)
    if err then return nil, err end
  end
  if o.limit ~= nil then
    err = args.integer(HELPER, "opts.limit", o.limit, LIMIT.min, LIMIT.max)
    if err then return nil, err end
  end
  return o
end

-- -> summary | nil, err. summary: schedules (events written), cancelled
-- (of them, STATUS:CANCELLED), skipped ({schedule_id, err} of schedules
-- whose data no event can express), pages, bytes, offset (the cursor's,
-- to resume a sync). A failure after the first chunk leaves what was
-- written incomplete (no END:VCALENDAR): write to a temporary file and
-- rename it when this returns a summary.
function M.export_ical(client, cal_id, write, opts)
  local o, err = check(cal_id, write, opts)
  if not o then return nil, err end
  local name, description = o.name, o.description
  if name == nil then -- the calendar's own name and description
    -- calendars() checks the reply's list and ids
    local list
    list, err = client:calendars{ cal_id }
    if not list then return nil, err end
    local cal = list[1] or {}
    name = type(cal.summary) == "string" and cal.summary or nil
    if description == nil and type(cal.description) == "string" then description = cal.description end
  end
  local cursor
  cursor, err = client:schedule_cursor(cal_id, { limit = o.limit, include_cancelled = o.include_cancelled })
  if not cursor then return nil, err end
  local w
  w, err = ical.writer(write, { name = name, description = description, refresh_interval = o.refresh_interval,
    dtstamp = o.dtstamp, address = o.address }, HELPER)
  if not w then return nil, err end

  local summary = { schedules = 0, cancelled = 0, skipped = {}, pages = 0 }
  while true do
    local page
    page, err = cursor:next_page()
    if not page then return nil, err end
    if #page == 0 then break end
    summary.pages = summary.pages + 1
    for i = 1, #page do
      local s = page[i]
      local ok, e = w:add(s)
      if ok then
        if s.status == 1 then summary.cancelled = summary.cancelled + 1 end
      else
        summary.skipped[#summary.skipped + 1] = { schedule_id = s.schedule_id, err = e }
      end
    end
    local ok
    ok, err = w:flush()
    if not ok then return nil, err end
  end
  local ok
  ok, err = w:finish()
  if not ok then return nil, err end
  summary.schedules, summary.bytes, summary.offset = w.count, w.bytes, cursor.offset
  return summary
end

M.methods = { export_ical = M.export_ical }

return M
