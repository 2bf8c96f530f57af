-- Schedules: oa/schedule/get_by_calendar (the seed's paging semantics) and
-- the control endpoint that seeds many schedules at once.
local calendar = require("wecom.emulator.calendar")
local check = require("wecom.emulator.check")
local json = require("wecom.emulator.json")
local state = require("wecom.emulator.state")

local absent = check.absent

local M = {}

local INVALID = 40058

-- Stores a new schedule on its calendar and returns it.
function M.store(s)
  s.schedule_id = s.schedule_id or state.random_id("", 32)
  s.status = s.status or 0
  s.sequence = state.next_sequence()
  state.schedules[s.schedule_id] = s
  local list = state.calendar_schedules[s.cal_id]
  list[#list + 1] = s.schedule_id
  return s
end

local function get_by_calendar(body)
  local cal, code, msg = calendar.find(body.cal_id)
  if not cal then return nil, code, msg end
  local offset = absent(body.offset) and 0 or body.offset
  local limit = absent(body.limit) and 500 or body.limit
  if not check.int(offset, 0, 2 ^ 31 - 1) then return nil, INVALID, "invalid offset" end
  if not check.int(limit, 1, 2 ^ 31 - 1) then return nil, INVALID, "invalid limit" end
  if limit > 1000 then return nil, 90469, "page size over limit" end
  local ids = state.calendar_schedules[cal.cal_id]
  local list = json.array()
  for i = offset + 1, math.min(#ids, offset + limit) do
    list[#list + 1] = state.schedules[ids[i]]
  end
  return { schedule_list = list }
end

-- Control: {cal_id, count, start_time?, step?, duration?, cancelled_every?,
-- summary?, attendees?} -> {count, first_id, last_id}
function M.seed(body)
  local cal = calendar.find(body.cal_id)
  if not cal then return nil, "seed_schedules: no such calendar" end
  local count = body.count
  if not check.int(count, 1, 10000000) then return nil, "seed_schedules: count must be 1..10000000" end
  local start = body.start_time or 1700000000
  local step = body.step or 3600
  local duration = body.duration or 1800
  local every = body.cancelled_every or 0
  local prefix = body.summary or "seeded schedule"
  local first, last
  for i = 1, count do
    local attendees = json.array()
    for j, userid in ipairs(body.attendees or {}) do
      attendees[j] = { userid = userid, response_status = 0 }
    end
    local s = M.store{
      cal_id = cal.cal_id,
      summary = ("%s %d"):format(prefix, i),
      description = "",
      location = "",
      start_time = start + (i - 1) * step,
      end_time = start + (i - 1) * step + duration,
      admins = json.array(),
      attendees = attendees,
      reminders = { is_remind = 0, is_repeat = 0, timezone = 8 },
      status = (every > 0 and i % every == 0) and 1 or 0,
    }
    first = first or s.schedule_id
    last = s.schedule_id
  end
  return { count = count, first_id = first, last_id = last }
end

function M.register(route)
  route("oa/schedule/get_by_calendar", get_by_calendar)
end

return M
