-- Paging a calendar's schedules (oa/schedule/get_by_calendar).
--
-- The seed document: offset starts at 0; an empty schedule_list means the
-- offset is past the end; schedules added later are fetched by continuing
-- from that same offset. Cancelled schedules stay in the list (status 1).
local args = require("wecom.args")
local reply = require("wecom.reply")
local schema = require("wecom.schema")

local M = {}

local PATH = schema.by_name.schedule_get_by_calendar.path
local OFFSET = schema.field("schedule_get_by_calendar", "offset")
local LIMIT = schema.field("schedule_get_by_calendar", "limit")

local Cursor = {}
Cursor.__index = Cursor
Cursor.__name = "wecom.schedule_cursor"

local OPTIONS = { offset = true, limit = true, include_cancelled = true }

-- opts checked and copied raw: the copy, or nil, err.
local function check(cal_id, opts)
  local helper = "schedule_cursor"
  local err = args.id(helper, "cal_id", cal_id) or args.options(helper, opts, OPTIONS)
  if err then return nil, err end
  opts = args.copy(opts)
  if opts.offset ~= nil then
    err = args.integer(helper, "opts.offset", opts.offset, OFFSET.min, OFFSET.max)
    if err then return nil, err end
  end
  if opts.limit ~= nil then
    err = args.integer(helper, "opts.limit", opts.limit, LIMIT.min, LIMIT.max)
    if err then return nil, err end
  end
  if opts.include_cancelled ~= nil then
    err = args.boolean(helper, "opts.include_cancelled", opts.include_cancelled)
    if err then return nil, err end
  end
  return opts
end

-- client:schedule_cursor(cal_id, {offset = 0, limit = 1000, include_cancelled = true})
-- (limit defaults to the most get_by_calendar returns)
function M.schedule_cursor(client, cal_id, opts)
  local err
  opts, err = check(cal_id, opts)
  if not opts then return nil, err end
  return setmetatable({
    client = client,
    cal_id = cal_id,
    offset = opts.offset or 0,
    limit = opts.limit or LIMIT.max,
    include_cancelled = opts.include_cancelled ~= false,
  }, Cursor)
end

-- The next page: an array of schedules, an empty array once caught up (call
-- again later for what was added since), or nil, err. cursor.offset moves
-- past every schedule returned by the API, cancelled ones included, so a
-- cursor made later with {offset = cursor.offset} resumes exactly here.
function Cursor:next_page()
  while true do
    local res, err = self.client:schedule_get_by_calendar{
      cal_id = self.cal_id, offset = self.offset, limit = self.limit,
    }
    if not res then return nil, err end
    local list
    list, err = reply.objects(PATH, res, "schedule_list")
    if not list then return nil, err end
    self.offset = self.offset + #list
    if self.include_cancelled or #list == 0 then return list end
    local kept = {}
    for i, s in ipairs(list) do
      err = reply.field(PATH, s, ("schedule_list[%d]"):format(i), "status", "number", true)
      if err then return nil, err end
      if s.status ~= 1 then kept[#kept + 1] = s end
    end
    -- a page of only cancelled schedules is not "caught up": fetch on
    if #kept > 0 then return kept end
  end
end

-- for schedule, err in client:each_schedule(cal_id, opts) do ... end
--
-- Pages as it goes, holding one page at most. On a failure it yields
-- false, err once and stops. The second value it returns is the cursor, so
-- `local iter, cursor = client:each_schedule(...)` gives the resume offset.
function M.each_schedule(client, cal_id, opts)
  local cursor, err = M.schedule_cursor(client, cal_id, opts)
  local page, i, done = nil, 0, false
  local function iter()
    if done then return nil end
    if not cursor then
      done = true
      return false, err
    end
    if page and i < #page then
      i = i + 1
      return page[i]
    end
    page = nil -- let the previous page go before the next one arrives
    local next_page, perr = cursor:next_page()
    if not next_page then
      done = true
      return false, perr
    end
    if #next_page == 0 then
      done = true
      return nil
    end
    page, i = next_page, 1
    return page[1]
  end
  return iter, cursor
end

M.methods = {
  schedule_cursor = M.schedule_cursor,
  each_schedule = M.each_schedule,
}

return M
