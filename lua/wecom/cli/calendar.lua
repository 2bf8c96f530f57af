-- wecom calendar add|get|del|share|unshare
local context = require("wecom.cli.context")
local output = require("wecom.cli.output")

local M = { name = "calendar" }

function M.configure(parser)
  local calendar = parser:command("calendar", "Create, read, delete and share calendars.")
  calendar:command_target("calendar_command")

  local add = calendar:command("add", "Create a calendar; prints its cal_id.")
  add:option("--summary", "Its name."):argname("S"):count(1)
  add:option("--color", "Its colour, '#RRGGBB'."):argname("#RRGGBB"):count(1)
  add:option("--description", "What it is for."):argname("D")
  add:option("--share", "Share it with USER: read-only with :ro, read-write with :rw (default: WeCom's, read-only). "
    .. "Repeat for more members."):argname("USER[:ro|:rw]"):count("*")

  calendar:command("get", "Show calendars."):argument("cal_id", "Calendar ids."):argname("CAL_ID"):args("+")
  calendar:command("del", "Delete a calendar."):argument("cal_id", "The calendar's id."):argname("CAL_ID")

  local share = calendar:command("share",
    "Share a calendar with members, keeping everything else of it; a member already there gets the new flag.")
  share:argument("cal_id", "The calendar's id."):argname("CAL_ID")
  share:argument("user", "Members: USER, USER:ro (read-only) or USER:rw (read-write)."):argname("USER"):args("+")

  local unshare = calendar:command("unshare", "Stop sharing a calendar with members, keeping everything else of it.")
  unshare:argument("cal_id", "The calendar's id."):argname("CAL_ID")
  unshare:argument("user", "Members' userids."):argname("USER"):args("+")
end

-- "USER", "USER:ro", "USER:rw" -> a share entry (readonly 1 / 0 / WeCom's)
local function member(spec)
  local userid, flag = spec:match("^(.+):(r[ow])$")
  if not userid then return { userid = spec } end
  return { userid = userid, readonly = flag == "ro" and 1 or 0 }
end

local function members_of(specs)
  local list = {}
  for i, spec in ipairs(specs) do list[i] = member(spec) end
  return list
end

local function access(entry)
  if entry.permission ~= nil then return "permission " .. tostring(entry.permission) end
  if entry.readonly == 0 then return "read-write" end
  if entry.readonly == 1 then return "read-only" end
  return nil
end

local function describe_members(list)
  local out = {}
  for i, m in ipairs(list) do
    local a = access(m)
    out[i] = a and ("%s (%s)"):format(m.userid, a) or m.userid
  end
  return table.concat(out, ", ")
end

-- Members WeCom refused (fail_result.shares): reported on stderr; the
-- command then fails (exit 1), after printing what was done.
local function refused(res)
  local fails = type(res.fail_result) == "table" and res.fail_result.shares
  if type(fails) ~= "table" or #fails == 0 then return true end
  local names = output.entries(fails, function(f)
    return ("%s (errcode %s%s)"):format(tostring(f.userid), tostring(f.errcode),
      type(f.errmsg) == "string" and f.errmsg ~= "" and ": " .. f.errmsg or "")
  end)
  return nil, context.error("failed", "WeCom refused to share with " .. names)
end

-- The reply without errcode and errmsg, with cal_id.
local function result_doc(res, cal_id)
  local doc = { cal_id = cal_id }
  for k, v in pairs(res) do
    if k ~= "errcode" and k ~= "errmsg" then doc[k] = v end
  end
  return doc
end

local run = {}

function run.add(args, ctx, client)
  local cal = { summary = args.summary, color = args.color, description = args.description }
  if #args.share > 0 then cal.shares = members_of(args.share) end
  local res, err = client:calendar_add{ calendar = cal }
  if not res then return nil, err end
  local ok
  if ctx.json then
    ok, err = ctx:document(result_doc(res, res.cal_id))
  else
    ok, err = ctx:out(output.cell(res.cal_id) .. "\n")
  end
  if not ok then return nil, err end
  return refused(res)
end

local function share_entry(s)
  local a = access(s)
  return a and ("%s (%s)"):format(tostring(s.userid), a) or tostring(s.userid)
end

local function show_calendar(cal)
  local shares, n = output.entries(cal.shares, share_entry)
  local admins, admin_count = output.entries(cal.admins)
  local fields = {
    { "cal_id", cal.cal_id },
    { "summary", cal.summary },
    { "color", cal.color },
    { "description", cal.description },
    { "readonly", cal.readonly },
  }
  if cal.organizer ~= nil then fields[#fields + 1] = { "organizer", cal.organizer } end
  if admin_count > 0 then fields[#fields + 1] = { "admins", admins } end
  if cal.is_public ~= nil then fields[#fields + 1] = { "is_public", cal.is_public } end
  if cal.is_corp_calendar ~= nil then fields[#fields + 1] = { "is_corp_calendar", cal.is_corp_calendar } end
  fields[#fields + 1] = { "shares", n > 0 and ("%d: %s"):format(n, shares) or "none" }
  return output.fields(fields)
end

function run.get(args, ctx, client)
  local list, err = client:calendars(args.cal_id)
  if not list then return nil, err end
  return ctx:found(args.cal_id, list, { list = "calendar_list", shape = output.SHAPES.calendar, show = show_calendar,
    noun = "calendar" })
end

function run.del(args, ctx, client)
  local res, err = client:calendar_del{ cal_id = args.cal_id }
  if not res then return nil, err end
  if ctx.json then return ctx:document{ cal_id = args.cal_id, deleted = true } end
  return ctx:out(("deleted %s\n"):format(args.cal_id))
end

function run.share(args, ctx, client)
  local members = members_of(args.user)
  local res, err = client:share_calendar(args.cal_id, members)
  if not res then return nil, err end
  local ok
  if ctx.json then
    local doc = result_doc(res, args.cal_id)
    doc.members = members
    ok, err = ctx:document(doc)
  else
    ok, err = ctx:out(("shared %s with %s\n"):format(args.cal_id, describe_members(members)))
  end
  if not ok then return nil, err end
  return refused(res)
end

function run.unshare(args, ctx, client)
  local res, err = client:unshare_calendar(args.cal_id, args.user)
  if not res then return nil, err end
  if ctx.json then
    local doc = result_doc(res, args.cal_id)
    doc.userids = args.user
    return ctx:document(doc)
  end
  return ctx:out(("unshared %s from %s\n"):format(args.cal_id, table.concat(args.user, ", ")))
end

function M.run(args, ctx)
  local client, err = ctx:client()
  if not client then return nil, err end
  return run[args.calendar_command](args, ctx, client)
end

return M
