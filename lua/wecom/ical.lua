-- WeCom schedules as an RFC 5545 calendar (a published calendar: no METHOD).
--
--   ical.vcalendar(schedules, opts)   -> string | nil, err
--   ical.writer(write, opts)          -> w: w:add(schedule), w:flush(), w:finish()
--
-- The repeat rules come from wecom.recurrence, so the RRULE a reader expands
-- gives exactly recurrence.occurrences(). Timed schedules are written in a
-- fixed-offset VTIMEZONE per offset (named Etc/GMT-8 for +08:00, the IANA
-- zone of that fixed offset, so a reader that prefers its own database gets
-- the same times); each VTIMEZONE is written before the first event using
-- it, which lets a stream write events as they come. Whole-day schedules
-- are DATE values in the schedule's own calendar date.
local args = require("wecom.args")
local errors = require("wecom.errors")
local ypcall = require("wecom.compat").pcall -- write may yield (a socket of a coroutine-based server)
local recurrence = require("wecom.recurrence")

local M = {}

local DAY = 86400
local floor = math.floor
local concat = table.concat
local civil_from_days = recurrence.civil_from_days

M.PRODID = "-//wecom//wecom Lua client//EN"
local MAX_INTEGER = 2147483647 -- RFC 5545's INTEGER
local WEEKDAYS = { "MO", "TU", "WE", "TH", "FR", "SA", "SU" }
-- response_status: 0 none, 1 tentative, 2 accepted all, 3 accepted once, 4 declined
local PARTSTAT = { [0] = "NEEDS-ACTION", "TENTATIVE", "ACCEPTED", "ACCEPTED", "DECLINED" }

---------------------------------------------------------------------------
-- values

-- Control characters other than HTAB are not allowed in any value.
local CONTROLS = "[%z\1-\8\10-\31\127]" -- %z: NUL in a pattern, on 5.1 and LuaJIT too
local TEXT_ESCAPES = { ["\\"] = "\\\\", [";"] = "\\;", [","] = "\\,", ["\n"] = "\\n" }

-- Bytes that are not UTF-8 become U+FFFD, so folding and readers never
-- meet a broken character.
local function repair_utf8(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF and 2) or (c >= 0xE0 and c <= 0xEF and 3)
      or (c >= 0xF0 and c <= 0xF4 and 4) or 0
    local ok = len > 0 and i + len - 1 <= n
    for k = i + 1, ok and i + len - 1 or 0 do
      local b = s:byte(k)
      if b < 0x80 or b > 0xBF then ok = false end
    end
    if ok then
      out[#out + 1] = s:sub(i, i + len - 1)
      i = i + len
    else
      out[#out + 1] = "\239\191\189"
      i = i + 1
    end
  end
  return concat(out)
end

local utf8_len = utf8 and utf8.len -- luacheck: ignore 143 (Lua 5.3+)

local function valid_utf8(s)
  if not s:find("[\128-\255]") then return true end
  if utf8_len then return utf8_len(s) ~= nil end
  local rest = s:gsub("[\194-\223][\128-\191]", ""):gsub("[\224-\239][\128-\191][\128-\191]", "")
    :gsub("[\240-\244][\128-\191][\128-\191][\128-\191]", "")
  return not rest:find("[\128-\255]")
end

local function clean(s)
  if not valid_utf8(s) then s = repair_utf8(s) end
  return s
end

-- A TEXT value: backslash, semicolon, comma and newlines escaped.
local function text(s)
  if not s:find("[%c\\;,\128-\255]") then return s end -- most text: nothing to do
  s = clean(s):gsub("\r\n", "\n"):gsub("\r", "\n"):gsub("[\\;,\n]", TEXT_ESCAPES):gsub(CONTROLS, "")
  return s
end

-- A parameter value: quoted when it holds ; : or , (a quoted one can't hold
-- a double quote).
local function param(s)
  if not s:find("[%c\";:,\128-\255]") then return s end
  s = clean(s):gsub(CONTROLS, ""):gsub("[\r\n\"]", "")
  if s:find("[;:,]") then return '"' .. s .. '"' end
  return s
end

-- Lines longer than 75 octets continue on lines starting with a space,
-- never splitting a UTF-8 character.
local function fold(line)
  local n = #line
  if n <= 75 then return line end
  local parts, i, limit = {}, 1, 75
  while n - i + 1 > limit do
    local j = i + limit -- the first byte of the next line
    while j > i do
      local b = line:byte(j)
      if b < 0x80 or b >= 0xC0 then break end
      j = j - 1
    end
    -- no character starts in the line's reach (bytes that are not UTF-8):
    -- cut at the limit, so the line gets shorter
    if j == i then j = i + limit end
    parts[#parts + 1] = line:sub(i, j - 1)
    i, limit = j, 74
  end
  parts[#parts + 1] = line:sub(i)
  return concat(parts, "\r\n ")
end

M.text, M.fold = text, fold

local function date(day)
  local y, m, d = civil_from_days(day)
  return ("%04d%02d%02d"):format(y, m, d)
end

local function clock(sod)
  return ("%02d%02d%02d"):format(floor(sod / 3600), floor(sod % 3600 / 60), sod % 60)
end

local function utc(t)
  local day = floor(t / DAY)
  return date(day) .. "T" .. clock(t - day * DAY) .. "Z"
end

-- A DURATION: -PT15M, PT9H, -P1D, -P1DT2H0M5S.
local function duration(secs)
  local sign = secs < 0 and "-" or ""
  -- whole seconds, but maybe a float (3605.0): "5S", not Lua 5.4's "5.0S"
  secs = math.abs(secs)
  secs = math.tointeger and math.tointeger(secs) or secs
  local days = floor(secs / DAY)
  local rest = secs - days * DAY
  local h, m, s = floor(rest / 3600), floor(rest % 3600 / 60), rest % 60
  local out = sign .. "P" .. (days > 0 and (days .. "D") or "")
  if rest > 0 or days == 0 then
    out = out .. "T"
    if h > 0 then out = out .. h .. "H" end
    if m > 0 or (h > 0 and s > 0) then out = out .. m .. "M" end
    if s > 0 or rest == 0 then out = out .. s .. "S" end
  end
  return out
end
M.duration = duration

-- The IANA name of a fixed offset: Etc/GMT-8 is UTC+08:00 (POSIX signs).
local function tzid(tz)
  if tz == 0 then return "Etc/GMT" end
  return ("Etc/GMT%s%d"):format(tz > 0 and "-" or "+", math.abs(tz))
end

local function vtimezone(tz)
  local offset = ("%s%02d00"):format(tz < 0 and "-" or "+", math.abs(tz))
  local name = tz == 0 and "UTC" or ("%s%02d"):format(tz < 0 and "-" or "+", math.abs(tz))
  return concat({
    "BEGIN:VTIMEZONE", "TZID:" .. tzid(tz), "BEGIN:STANDARD", "DTSTART:16010101T000000",
    "TZOFFSETFROM:" .. offset, "TZOFFSETTO:" .. offset, "TZNAME:" .. name, "END:STANDARD", "END:VTIMEZONE", "",
  }, "\r\n")
end

local function percent(s)
  return (s:gsub("[^%w%-%._~@]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- The calendar user address of a userid: WeCom users have no e-mail
-- address in the API, so a URN names them unless opts.address does better.
function M.address(userid) return "urn:x-wecom:userid:" .. percent(userid) end

---------------------------------------------------------------------------
-- one schedule

local function absent(v) return v == nil or type(v) == "userdata" end

local function bad(helper, field, text_)
  return nil, errors.validation(helper, field, text_)
end

local function optional_string(helper, field, v)
  if absent(v) then return "" end
  if type(v) ~= "string" then return bad(helper, field, "expected a string, got " .. type(v)) end
  return v
end

-- What the VALARMs need: the trigger offsets (seconds from the start),
-- each once.
local function alarms(helper, name, r)
  if absent(r) or r.is_remind ~= 1 then return {} end
  local diffs = r.remind_time_diffs
  local list = {}
  if not absent(diffs) and type(diffs) == "table" and #diffs > 0 then
    local seen = {}
    for i = 1, #diffs do
      local d = diffs[i]
      if type(d) ~= "number" or d ~= floor(d) or math.abs(d) > 366 * DAY then
        return bad(helper, ("%s.reminders.remind_time_diffs[%d]"):format(name, i),
          "expected seconds from the start (an integer), got " .. tostring(d))
      end
      if not seen[d] then list[#list + 1] = d end
      seen[d] = true
    end
  elseif not absent(diffs) and type(diffs) ~= "table" then
    return bad(helper, name .. ".reminders.remind_time_diffs", "expected a list, got " .. type(diffs))
  else
    local before = r.remind_before_event_secs
    if absent(before) then before = 0 end
    if type(before) ~= "number" or before ~= floor(before) or before < 0 or before > 366 * DAY then
      return bad(helper, name .. ".reminders.remind_before_event_secs",
        "expected seconds before the start (an integer >= 0), got " .. tostring(before))
    end
    list[1] = -before
  end
  return list
end

local function people(helper, name, s)
  local attendees, admins, organizer = s.attendees, s.admins, s.organizer
  if absent(attendees) then attendees = {} end
  if absent(admins) then admins = {} end
  if type(attendees) ~= "table" then return bad(helper, name .. ".attendees", "expected a list, got " .. type(attendees)) end
  if type(admins) ~= "table" then return bad(helper, name .. ".admins", "expected a list, got " .. type(admins)) end
  local is_admin = {}
  for i = 1, #admins do
    if type(admins[i]) ~= "string" or admins[i] == "" then
      return bad(helper, ("%s.admins[%d]"):format(name, i), "expected a userid")
    end
    is_admin[admins[i]] = true
  end
  for i = 1, #attendees do
    local a = attendees[i]
    if type(a) ~= "table" or type(a.userid) ~= "string" or a.userid == "" then
      return bad(helper, ("%s.attendees[%d].userid"):format(name, i), "expected a userid")
    end
  end
  if absent(organizer) or organizer == "" then organizer = admins[1] end
  if organizer ~= nil and type(organizer) ~= "string" then
    return bad(helper, name .. ".organizer", "expected a userid, got " .. type(organizer))
  end
  return attendees, is_admin, organizer
end

-- The lines of one VEVENT (and the offset whose VTIMEZONE it needs, or nil),
-- or nil, err. Nothing is written for a schedule that fails a check.
local function vevent(s, helper, name, o)
  local rule, err = recurrence.rule(s, helper, name)
  if not rule then return nil, err end
  local uid = s.schedule_id
  if type(uid) ~= "string" or uid == "" then
    return bad(helper, name .. ".schedule_id", "expected a string (it is the event's UID)")
  end
  local summary, description, location
  summary, err = optional_string(helper, name .. ".summary", s.summary)
  if not summary then return nil, err end
  description, err = optional_string(helper, name .. ".description", s.description)
  if not description then return nil, err end
  location, err = optional_string(helper, name .. ".location", s.location)
  if not location then return nil, err end
  local triggers
  triggers, err = alarms(helper, name, s.reminders)
  if not triggers then return nil, err end
  local attendees, is_admin, organizer = people(helper, name, s)
  if not attendees then return nil, is_admin end

  local L = { "BEGIN:VEVENT", "UID:" .. text(uid), "DTSTAMP:" .. o.dtstamp }
  local seq = s.sequence
  if type(seq) == "number" and seq == seq then
    L[#L + 1] = ("SEQUENCE:%d"):format(math.max(0, math.min(MAX_INTEGER, floor(seq))))
  end

  -- DTSTART is the first occurrence the rule gives (see wecom.recurrence)
  local first = rule.recurring and rule.first_day or rule.day0
  local span, sod = rule.duration, rule.sod
  local day_of, time_of = o.day_of, o.time_of
  local tz, zone
  if rule.whole_day then
    local last = floor((rule.start + math.max(span, 1) - 1 + rule.offset) / DAY) -- the last day it covers
    L[#L + 1] = "DTSTART;VALUE=DATE:" .. day_of(first)
    L[#L + 1] = "DTEND;VALUE=DATE:" .. day_of(first + last - rule.day0 + 1)
  else
    tz = rule.tz
    zone = ";TZID=" .. tzid(tz) .. ":"
    local finish = first * DAY + sod + span -- local seconds
    local end_day = floor(finish / DAY)
    L[#L + 1] = "DTSTART" .. zone .. day_of(first) .. time_of(sod)
    -- no DTEND for a moment: RFC 5545 wants DTEND after DTSTART, and without it the event ends as it starts
    if span > 0 then L[#L + 1] = "DTEND" .. zone .. day_of(end_day) .. time_of(finish - end_day * DAY) end
  end

  if rule.recurring then
    local parts = { "FREQ=" .. rule.freq }
    if rule.interval > 1 then parts[#parts + 1] = "INTERVAL=" .. rule.interval end
    local byday = rule.byday -- workdays: MO..FR
    if byday then
      local names = {}
      for i, d in ipairs(byday) do names[i] = WEEKDAYS[d] end
      parts[#parts + 1] = "BYDAY=" .. concat(names, ",")
    end
    if rule.bymonthday then parts[#parts + 1] = "BYMONTHDAY=" .. concat(rule.bymonthday, ",") end
    if rule.freq == "YEARLY" then
      -- RFC 5545 skips 29 February in common years, but ical.js moves it to
      -- 1 March unless the rule says the day: spelled out, every reader agrees
      local _, m, d = civil_from_days(rule.day0)
      if m == 2 and d == 29 then parts[#parts + 1] = "BYMONTH=2;BYMONTHDAY=29" end
    end
    if rule.freq == "WEEKLY" then parts[#parts + 1] = "WKST=MO" end
    if rule.repeat_until then
      parts[#parts + 1] = "UNTIL=" .. (rule.whole_day and date(rule.last_day) or utc(rule.repeat_until))
    end
    L[#L + 1] = "RRULE:" .. concat(parts, ";")
    local ex = {}
    for i, d in ipairs(rule.exdays) do ex[i] = d end
    -- until before the first occurrence: nothing is left, which only an
    -- EXDATE of DTSTART says to every reader (RFC 5545 counts DTSTART)
    if rule.last_day and rule.last_day < first and not rule.excluded[first] then table.insert(ex, 1, first) end
    if #ex > 0 then
      for i = 1, #ex do ex[i] = zone and day_of(ex[i]) .. time_of(sod) or day_of(ex[i]) end
      L[#L + 1] = "EXDATE" .. (zone or ";VALUE=DATE:") .. concat(ex, ",")
    end
  end

  if summary ~= "" then L[#L + 1] = "SUMMARY:" .. text(summary) end
  if location ~= "" then L[#L + 1] = "LOCATION:" .. text(location) end
  if description ~= "" then L[#L + 1] = "DESCRIPTION:" .. text(description) end
  if rule.cancelled then L[#L + 1] = "STATUS:CANCELLED" end
  local who, person = o.who
  if organizer then
    person, err = who(organizer)
    if not person then return bad(helper, "opts.address", err) end
    L[#L + 1] = "ORGANIZER;CN=" .. person
  end
  for i = 1, #attendees do
    local a = attendees[i]
    person, err = who(a.userid, is_admin[a.userid] and ";ROLE=CHAIR;PARTSTAT=" or
      ";ROLE=REQ-PARTICIPANT;PARTSTAT=", PARTSTAT[a.response_status] or "NEEDS-ACTION")
    if not person then return bad(helper, "opts.address", err) end
    L[#L + 1] = "ATTENDEE;CN=" .. person
  end
  local alarm_text = summary ~= "" and text(summary) or "Reminder"
  for _, d in ipairs(triggers) do
    L[#L + 1] = "BEGIN:VALARM"
    L[#L + 1] = "ACTION:DISPLAY"
    L[#L + 1] = "DESCRIPTION:" .. alarm_text
    L[#L + 1] = "TRIGGER:" .. duration(d)
    L[#L + 1] = "END:VALARM"
  end
  L[#L + 1] = "END:VEVENT"
  L[#L + 1] = ""
  for i = 1, #L do
    if #L[i] > 75 then L[i] = fold(L[i]) end
  end
  return concat(L, "\r\n"), tz
end

---------------------------------------------------------------------------
-- options

local OPTIONS = { name = true, description = true, refresh_interval = true, dtstamp = true, address = true }

local function check_options(helper, opts, extra)
  local allowed = OPTIONS
  if extra then
    allowed = {}
    for k in pairs(OPTIONS) do allowed[k] = true end
    for k in pairs(extra) do allowed[k] = true end
  end
  local err = args.options(helper, opts, allowed)
  if err then return nil, err end
  opts = args.copy(opts) -- read raw, as every helper reads the caller's tables
  for _, k in ipairs{ "name", "description" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      return bad(helper, "opts." .. k, "expected a string, got " .. type(opts[k]))
    end
  end
  if opts.refresh_interval ~= nil then
    err = args.integer(helper, "opts.refresh_interval", opts.refresh_interval, 60, 366 * DAY)
    if err then return nil, err end
  end
  if opts.dtstamp ~= nil then
    err = args.integer(helper, "opts.dtstamp", opts.dtstamp, 0, 253402300799)
    if err then return nil, err end
  end
  if opts.address ~= nil and type(opts.address) ~= "function" then
    return bad(helper, "opts.address", "expected a function(userid) returning a URI")
  end
  return opts
end

local function header(opts)
  local L = { "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:" .. M.PRODID, "CALSCALE:GREGORIAN" }
  if opts.name and opts.name ~= "" then
    L[#L + 1] = "NAME:" .. text(opts.name)
    L[#L + 1] = "X-WR-CALNAME:" .. text(opts.name)
  end
  if opts.description and opts.description ~= "" then
    L[#L + 1] = "DESCRIPTION:" .. text(opts.description)
    L[#L + 1] = "X-WR-CALDESC:" .. text(opts.description)
  end
  if opts.refresh_interval then
    L[#L + 1] = "REFRESH-INTERVAL;VALUE=DURATION:" .. duration(opts.refresh_interval)
    L[#L + 1] = "X-PUBLISHED-TTL:" .. duration(opts.refresh_interval)
  end
  L[#L + 1] = ""
  for i = 1, #L do L[i] = fold(L[i]) end
  return concat(L, "\r\n")
end

---------------------------------------------------------------------------
-- the stream

-- Memos of a writer: a calendar repeats its days, times of day and people
-- thousands of times. Each is emptied when it grows past a few thousand.
local function memo(fn)
  local cache, n = {}, 0
  return function(k)
    local v = cache[k]
    if v == nil then
      if n >= 4096 then cache, n = {}, 0 end
      v = fn(k)
      cache[k], n = v, n + 1
    end
    return v
  end
end

local function context(o)
  local address = o.address or M.address
  -- {CN, ":<address>"} of a userid, or {false, why opts.address gave none}.
  -- The address is the caller's text around a userid from the server: one
  -- line of UTF-8, whatever that userid holds.
  local person = memo(function(userid)
    local ok, uri = ypcall(address, userid)
    if not ok or type(uri) ~= "string" or uri == "" then
      return { false, ("expected a URI (a string) for userid %s, %s"):format(args.describe(userid),
        ok and "got " .. type(uri) or "raised: " .. errors.clean(tostring(uri), errors.TEXT)) }
    end
    return { param(userid), ":" .. clean(uri):gsub(CONTROLS, "") }
  end)
  return {
    dtstamp = utc(o.dtstamp or os.time()),
    day_of = memo(date),
    time_of = memo(function(sod) return "T" .. clock(sod) end),
    -- "<CN>:<address>"; with role and partstat, "<CN><role><partstat>:<address>"; or nil, why
    who = function(userid, role, partstat)
      local p = person(userid)
      if not p[1] then return nil, p[2] end
      if role then return p[1] .. role .. partstat .. p[2] end
      return p[1] .. p[2]
    end,
  }
end

local Writer = {}
Writer.__index = Writer
Writer.__name = "wecom.ical_writer"

-- write(chunk) is called by flush() and finish(); it fails by returning
-- false, or nil and an error (as file:write does), or by raising.
function M.writer(write, opts, helper)
  helper = helper or "ical.writer"
  if type(write) ~= "function" then return bad(helper, "write", "expected a function(chunk)") end
  local o, err = check_options(helper, opts)
  if not o then return nil, err end
  return setmetatable({
    helper = helper,
    write = write,
    ctx = context(o),
    zones = {},
    buffer = { header(o) },
    count = 0,
    bytes = 0,
  }, Writer)
end

-- Adds a schedule (as the API returns it) to the buffer; name is how
-- errors call it ("schedule" by default). -> true | nil, err
function Writer:add(schedule, name)
  if self.finished then return bad(self.helper, "add", "the calendar is already finished") end
  local event, tz = vevent(schedule, self.helper, name or "schedule", self.ctx)
  if not event then return nil, tz end
  local buffer = self.buffer
  if tz and not self.zones[tz] then
    self.zones[tz] = true
    buffer[#buffer + 1] = vtimezone(tz)
  end
  buffer[#buffer + 1] = event
  self.count = self.count + 1
  return true
end

-- Writes what is buffered as one chunk. -> true | nil, err
function Writer:flush()
  if #self.buffer == 0 then return true end
  local chunk = concat(self.buffer)
  self.buffer = {}
  local ok, res, err = ypcall(self.write, chunk)
  if not ok or res == false or (res == nil and err ~= nil) then
    return nil, errors.write(self.helper, not ok and res or err)
  end
  self.bytes = self.bytes + #chunk
  return true
end

-- Ends the calendar and writes the rest. -> true | nil, err
function Writer:finish()
  if self.finished then return true end
  self.buffer[#self.buffer + 1] = "END:VCALENDAR\r\n"
  self.finished = true
  return self:flush()
end

-- ical.vcalendar(schedules, opts) -> the calendar as a string | nil, err
function M.vcalendar(schedules, opts)
  local helper = "ical.vcalendar"
  if type(schedules) ~= "table" then return bad(helper, "schedules", "expected a list of schedules") end
  local parts = {}
  local w, err = M.writer(function(chunk) parts[#parts + 1] = chunk end, opts, helper)
  if not w then return nil, err end
  for i = 1, #schedules do
    local ok
    ok, err = w:add(schedules[i], ("schedules[%d]"):format(i))
    if not ok then return nil, err end
  end
  w:finish()
  return concat(parts)
end

M.check_options = check_options

return M
