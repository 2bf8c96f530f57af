-- wecom occurrences SCHEDULE_ID --from YYYY-MM-DD --to YYYY-MM-DD
local context = require("wecom.cli.context")
local output = require("wecom.cli.output")
local recurrence = require("wecom.recurrence")

local M = { name = "occurrences" }

local function date(flag)
  return function(s)
    if not output.parse_date(s) then return nil, ("%s: expected a date, YYYY-MM-DD"):format(flag) end
    return s
  end
end

function M.configure(parser)
  local occ = parser:command("occurrences",
    "When a schedule happens between two days (local time, both days included).")
  occ:argument("schedule_id", "The schedule's id."):argname("SCHEDULE_ID")
  occ:option("--from", "The first day."):argname("YYYY-MM-DD"):count(1):convert(date("--from"))
  occ:option("--to", "The last day."):argname("YYYY-MM-DD"):count(1):convert(date("--to"))
end

local TITLES = { "START", "END" }

local function cells(o) return { output.time(o.start_time), output.time(o.end_time) } end

function M.run(args, ctx)
  local from, last = output.parse_date(args.from), output.parse_date(args.to)
  if last < from then return nil, context.error("usage", "--to is before --from") end
  -- the end of the last day: the next local midnight (a day may be 23 or 25 hours)
  local d = os.date("*t", last)
  local to = os.time{ year = d.year, month = d.month, day = d.day + 1, hour = 0, min = 0, sec = 0 }

  local client, err = ctx:client()
  if not client then return nil, err end
  local res
  res, err = client:schedule_get{ schedule_id_list = { args.schedule_id } }
  if not res then return nil, err end
  local schedule = type(res.schedule_list) == "table" and res.schedule_list[1]
  if type(schedule) ~= "table" then return nil, context.error("failed", "no such schedule: " .. args.schedule_id) end
  local list
  list, err = recurrence.occurrences(schedule, from, to)
  if not list then
    -- the window is the caller's (bad usage); a refused rule is WeCom's schedule: a failure
    if err.field ~= "from" and err.field ~= "to" then err = context.error("failed", err.message) end
    return nil, err
  end

  if ctx.json then
    return ctx:document({ schedule_id = args.schedule_id, summary = schedule.summary, from = from, to = to,
      cancelled = schedule.status == 1, occurrences = list }, { type = "object", fields = { occurrences = { type = "array" } } })
  end
  local ok
  ok, err = output.table(TITLES, cells, function(text) return ctx:out(text) end):rows(list)
  if not ok then return nil, err end
  return ctx:say(("%d occurrence%s of %q from %s to %s; it repeats: %s%s\n"):format(#list, #list == 1 and "" or "s",
    output.cell(schedule.summary), args.from, args.to, output.repeat_long(schedule),
    schedule.status == 1 and "; the schedule is cancelled" or ""))
end

return M
