-- wecom export CAL_ID [-o FILE]: the calendar as iCalendar (RFC 5545).
--
-- The file is written under a temporary name in the same directory and
-- renamed over FILE once complete, so FILE is either the old file or the
-- whole new calendar: a failure or Ctrl-C midway removes the temporary
-- file, and even a kill that leaves it behind never leaves half a calendar
-- under FILE. A FILE that is a device or a FIFO (/dev/stdout, a pipe) is
-- written in place: replacing it would put a regular file where the device
-- was. Pages are written as they arrive (memory about one page).
local context = require("wecom.cli.context")
local core = require("wecom.core")
local output = require("wecom.cli.output")

local M = { name = "export" }

function M.configure(parser)
  local export = parser:command("export", "Export a calendar as iCalendar (RFC 5545), written atomically to FILE.")
  export:argument("cal_id", "The calendar's id."):argname("CAL_ID")
  export:option("-o --output", "The .ics file to write (default: stdout)."):argname("FILE")
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- What `path` is: "none", "file", "dir", "other" (a device such as
-- /dev/null or /dev/stdout, a FIFO: written in place, never replaced), and
-- for a symbolic link what it points to, for the calendar to replace the
-- file it names rather than the link. Plain Lua can't stat: test(1) can.
local function kind_of(path)
  local p = io.popen(([[sh -c 'if [ -d "$1" ]; then echo dir; elif [ -e "$1" ] && [ ! -f "$1" ]; then echo other;
elif [ -h "$1" ]; then echo link; readlink -f -- "$1"; elif [ -e "$1" ]; then echo file; else echo none; fi' sh %s]])
    :format(quote(path)))
  local kind, target = p:read("*l"), p:read("*l")
  p:close()
  if kind == "link" then
    -- to a regular file, or to none yet: the calendar goes there
    if target and target ~= "" then return "file", target end
    return "none"
  end
  return kind or "none"
end

-- A name next to `path` that nothing has (same directory: rename stays
-- within one file system).
local function temporary(path)
  local dir, base = path:match("^(.*/)([^/]*)$")
  if not dir then dir, base = "", path end
  for _ = 1, 100 do
    local name = ("%s.%s.%08x.part"):format(dir, base, math.floor(core.random() * 0x100000000))
    local f = io.open(name, "rb")
    if not f then return name end
    f:close()
  end
  return nil
end

-- How many events a chunk of the writer holds.
local function events_in(chunk)
  local n, at = 0, 1
  while true do
    local i = chunk:find("BEGIN:VEVENT\r\n", at, true)
    if not i then return n end
    n, at = n + 1, i + 14
  end
end

local function fail(text) return nil, context.error("failed", text) end

function M.run(args, ctx)
  local path = args.output
  if ctx.json and not path then
    return nil, context.error("usage", "--json with export needs -o FILE: the calendar and the JSON would share stdout")
  end
  local client, err = ctx:client()
  if not client then return nil, err end

  local sink, part, target
  if path then
    if path == "" or path:sub(-1) == "/" then return nil, context.error("usage", "-o: expected a file name") end
    local kind, resolved = kind_of(path)
    if kind == "dir" then return nil, context.error("usage", ("-o: %s is a directory"):format(path)) end
    target = resolved or path
    if kind ~= "other" then
      part = temporary(target)
      if not part then return fail("can't find a temporary name next to " .. target) end
    end
    local open_err
    sink, open_err = io.open(part or target, "wb")
    if not sink then return fail(("can't write %s: %s"):format(path, tostring(open_err))) end
    ctx:on_exit(function()
      if sink then sink:close() end
      if part then os.remove(part) end
    end)
    -- the new file gets the old one's mode before anything is written to
    -- it: a calendar kept private (chmod 600) must not become readable
    if part and kind == "file" then
      local done = os.execute(("chmod --reference=%s -- %s"):format(quote(target), quote(part)))
      if done ~= true and done ~= 0 then return fail(("can't give %s the mode of %s"):format(part, target)) end
    end
  end

  local progress = ctx:progress("schedules")
  ctx:on_exit(function() progress:clear() end)
  local pages, events, bytes = 0, 0, 0
  local function write(chunk)
    return ctx:guard(function()
      if ctx.interrupted then return nil, "interrupted" end
      local ok, werr
      if sink then
        ok, werr = sink:write(chunk)
      else
        progress:pause()
        ok, werr = ctx:out(chunk)
        werr = werr and werr.message
      end
      if not ok then return nil, werr end
      pages, events, bytes = pages + 1, events + events_in(chunk), bytes + #chunk
      progress:update(pages, events, ("%.0f KB"):format(bytes / 1024))
      return true
    end)
  end
  local summary
  summary, err = client:export_ical(args.cal_id, write)
  progress:clear()
  if not summary then
    if ctx.interrupted then return nil, context.error("interrupted", "interrupted") end
    return nil, err
  end

  if sink then
    local ok, cerr = sink:close()
    sink = nil
    if not ok then return fail(("can't write %s: %s"):format(path, tostring(cerr))) end
    if part then
      local renamed, rerr = os.rename(part, target)
      if not renamed then return fail(("can't write %s: %s"):format(path, tostring(rerr))) end
      part = nil
    end
  end

  for _, s in ipairs(summary.skipped) do
    ctx:warn(("left out schedule %s: %s"):format(output.cell(s.schedule_id), output.cell(s.err)))
  end
  local skipped = {}
  for i, s in ipairs(summary.skipped) do skipped[i] = { schedule_id = s.schedule_id, message = tostring(s.err) } end
  if ctx.json then
    return ctx:document{ file = path, cal_id = args.cal_id, schedules = summary.schedules,
      cancelled = summary.cancelled, skipped = skipped, pages = summary.pages, bytes = summary.bytes,
      offset = summary.offset }
  end
  -- talk, on stderr: stdout may be where the calendar went (-o /dev/stdout)
  local text = ("%d event%s (%d cancelled, %d left out), %d bytes"):format(summary.schedules,
    summary.schedules == 1 and "" or "s", summary.cancelled, #skipped, summary.bytes)
  if path then text = ("wrote %s: %s"):format(path, text) end
  return ctx:warn(text)
end

return M
