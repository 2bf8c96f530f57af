-- How the `wecom` command shows things: times in local time with their
-- offset, aligned columns, repeat rules in words, and JSON documents whose
-- lists stay lists.
local errors = require("wecom.errors")
local recurrence = require("wecom.recurrence")
local schema = require("wecom.schema")
local wecom = require("wecom")

local M = {}

---------------------------------------------------------------------------
-- times

-- A Unix time as the local date and time with its offset:
-- "2026-11-23 10:00 +08:00" (one strftime: listings call this twice a row).
-- Times a date can show (years 1 to 9999); a server may send any number.
local function is_time(t)
  return type(t) == "number" and t == math.floor(t) and t >= -62135596800 and t <= 253402300799
end

function M.time(t)
  if type(t) ~= "number" then return "?" end
  if not is_time(t) then return tostring(t) end
  local text = os.date("%Y-%m-%d %H:%M %z", t)
  local head, sign, hh, mm = text:match("^(.- )([+-])(%d%d)(%d%d)$")
  if not head then return text end
  return head .. sign .. hh .. ":" .. mm
end

-- The date of a Unix time in a fixed offset (hours): whole-day schedules
-- are days of the schedule's own zone, not of the reader's.
local function date_at(t, hours)
  local y, m, d = recurrence.civil_from_days(math.floor((t + hours * 3600) / 86400))
  return ("%04d-%02d-%02d"):format(y, m, d)
end

local function zone_of(schedule)
  local r = type(schedule.reminders) == "table" and schedule.reminders or {}
  local tz = r.timezone
  return type(tz) == "number" and tz == math.floor(tz) and tz >= -12 and tz <= 12 and tz or 8
end

-- The start and end of a schedule as two strings: local times, or for a
-- whole-day schedule its first day and "all day" (or its last day).
function M.span(schedule)
  local s, e = schedule.start_time, schedule.end_time
  if schedule.is_whole_day == 1 and is_time(s) and is_time(e) then
    local tz = zone_of(schedule)
    local first, last = date_at(s, tz), date_at(math.max(s, e - 1), tz)
    return first, first == last and "all day" or last
  end
  local start, finish = M.time(s), M.time(e)
  -- the same day: the end's time is enough
  if is_time(s) and is_time(e) and start:sub(1, 11) == finish:sub(1, 11) and start:sub(-6) == finish:sub(-6) then
    finish = finish:sub(12, 16)
  end
  return start, finish
end

-- "YYYY-MM-DD" -> the local midnight starting that day | nil
function M.parse_date(s)
  local y, m, d = tostring(s):match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if not y or m < 1 or m > 12 or d < 1 or d > 31 then return nil end
  local t = os.time{ year = y, month = m, day = d, hour = 0, min = 0, sec = 0, isdst = nil }
  -- os.time normalises 2026-02-31 to March: such a date does not exist
  if not t or os.date("%Y-%m-%d", t) ~= s then return nil end
  return t
end

---------------------------------------------------------------------------
-- repeat rules

local UNITS = { DAILY = { "daily", "days" }, WEEKLY = { "weekly", "weeks" }, MONTHLY = { "monthly", "months" },
  YEARLY = { "yearly", "years" } }
local DAY_NAMES = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" }

-- A schedule's repeat in a word or two ("weekly", "every 2 weeks",
-- "workdays"), or "" when it doesn't repeat; cheap enough for every row of
-- a listing (no rule is expanded).
function M.repeat_short(schedule)
  local r = type(schedule.reminders) == "table" and schedule.reminders or {}
  if r.is_repeat ~= 1 then return "" end
  if r.repeat_type == 7 then return "workdays" end
  local unit = UNITS[recurrence.REPEAT_TYPES[r.repeat_type] or ""]
  if not unit then return "repeats" end
  local n = r.is_custom_repeat == 1 and tonumber(r.repeat_interval) or 1
  if n and n > 1 then
    return ("every %s %s"):format(n == math.floor(n) and n < 2 ^ 53 and ("%d"):format(n) or tostring(n), unit[2])
  end
  return unit[1]
end

-- The whole rule in words: "every 2 weeks on Mon, Wed until 2027-01-01 00:00
-- +08:00, 2 occurrences removed"; "once" when it doesn't repeat.
function M.repeat_long(schedule)
  local short = M.repeat_short(schedule)
  if short == "" then return "once" end
  local rule = recurrence.rule(schedule)
  if not rule then return short end
  local parts = { short }
  if rule.byday then
    local names = {}
    for i, d in ipairs(rule.byday) do names[i] = DAY_NAMES[d] end
    parts[#parts + 1] = "on " .. table.concat(names, ", ")
  elseif rule.bymonthday then
    parts[#parts + 1] = "on day " .. table.concat(rule.bymonthday, ", ")
  end
  if rule.repeat_until then parts[#parts + 1] = "until " .. M.time(rule.repeat_until) end
  local text = table.concat(parts, " ")
  if rule.exdays and #rule.exdays > 0 then
    text = text .. (", %d occurrence%s removed"):format(#rule.exdays, #rule.exdays == 1 and "" or "s")
  end
  return text
end

---------------------------------------------------------------------------
-- columns

-- Display width of a UTF-8 string: one column per character, two for the
-- wide East Asian ranges (CJK, Hangul, full-width forms), which is what a
-- terminal gives summaries in Chinese.
local function width(s)
  if not s:find("[\128-\255]") then return #s end
  local w = 0
  for ch in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do
    local c = ch:byte(1)
    if c < 0xE0 then
      w = w + 1
    else
      local cp = 0x10000 -- four bytes: emoji and the rare CJK extensions, wide
      if c < 0xF0 then cp = (c % 16) * 4096 + (ch:byte(2) % 64) * 64 + (ch:byte(3) or 128) % 64 end
      local wide = (cp >= 0x1100 and cp <= 0x115F) or (cp >= 0x2E80 and cp <= 0xA4CF) or (cp >= 0xAC00 and cp <= 0xD7A3)
        or (cp >= 0xF900 and cp <= 0xFAFF) or (cp >= 0xFE30 and cp <= 0xFE4F) or (cp >= 0xFF00 and cp <= 0xFF60)
        or (cp >= 0xFFE0 and cp <= 0xFFE6) or cp >= 0x10000
      w = w + (wide and 2 or 1)
    end
  end
  return w
end
M.width = width

-- Text for one cell: a single line, whatever the server sent.
function M.cell(v)
  if v == nil then return "" end
  v = tostring(v)
  if not v:find("%c") then return v end
  return (v:gsub("%c", " "))
end

-- A table printer. titles: the column headers; cells(row) -> the row's
-- texts, one per column. Widths come from the header and the rows of the
-- first batch; later batches (pages of a long listing, written as they
-- arrive) keep them, so a listing streams yet stays aligned. The last column
-- is never padded.
local Table = {}
Table.__index = Table

function M.table(titles, cells, write)
  return setmetatable({ titles = titles, cells = cells, write = write, widths = nil }, Table)
end

-- Writes the rows (and the header, before the first batch); returns what
-- write returned for the batch.
function Table:rows(rows)
  local cols, cells = self.titles, {}
  for i, row in ipairs(rows) do
    local line = self.cells(row)
    for j = 1, #cols do line[j] = M.cell(line[j]) end
    cells[i] = line
  end
  local out = {}
  local function add(line)
    local parts = {}
    for j = 1, #cols do
      local text = line[j]
      if j < #cols then text = text .. (" "):rep(self.widths[j] - width(text)) end
      parts[j] = text
    end
    out[#out + 1] = (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  if not self.widths then
    self.widths = {}
    for j, title in ipairs(cols) do
      self.widths[j] = width(title)
      for _, line in ipairs(cells) do self.widths[j] = math.max(self.widths[j], width(line[j])) end
    end
    add(cols)
  end
  for _, line in ipairs(cells) do add(line) end
  if #out == 0 then return true end
  return self.write(table.concat(out, "\n") .. "\n")
end

-- The entries of a list a server sent, joined by ", ", each on one line
-- without control characters: show(entry) for each object (a share, an
-- attendee), anything else as it is; and how many there are.
function M.entries(list, show)
  local out = {}
  for i, v in ipairs(type(list) == "table" and list or {}) do
    out[i] = M.cell(show and type(v) == "table" and show(v) or v)
  end
  return table.concat(out, ", "), #out
end

-- "name   value" lines with the names aligned, for one record.
function M.fields(pairs_list)
  local w = 0
  for _, p in ipairs(pairs_list) do w = math.max(w, #p[1]) end
  local out = {}
  for _, p in ipairs(pairs_list) do
    out[#out + 1] = (p[1] .. (" "):rep(w - #p[1] + 2) .. M.cell(p[2])):gsub("%s+$", "")
  end
  return table.concat(out, "\n") .. "\n"
end

---------------------------------------------------------------------------
-- JSON

-- The shapes of what the API returns, from the request schemas: a reply's
-- calendar or schedule has the fields a write takes (and a few more).
M.SHAPES = {
  calendar = schema.field("calendar_add", "calendar"),
  schedule = schema.field("schedule_add", "schedule"),
}

-- Marks the lists of a decoded reply so they are written as lists: the
-- decoder can't tell [] from {}, the schema can. An empty table the schema
-- doesn't know is a list: WeCom's replies have empty lists, not objects.
local function mark(v, shape)
  if type(v) ~= "table" then return v end
  if next(v) == nil then
    if shape and shape.type == "object" then return v end
    return wecom.array(v)
  end
  if v[1] ~= nil or (shape and shape.type == "array") then
    local elem = shape and shape.elem
    for i = 1, #v do v[i] = mark(v[i], elem) end
    return wecom.array(v)
  end
  local fields = shape and shape.fields
  for k, x in pairs(v) do v[k] = mark(x, fields and fields[k]) end
  return v
end

-- A string the JSON encoder refuses (it takes what WeCom takes: UTF-8, no
-- control characters but tab and newlines) made printable: what a server
-- sent is shown, not dropped.
local function printable_strings(v)
  for k, x in pairs(v) do
    if type(x) == "table" then
      printable_strings(x)
    elseif type(x) == "string" and not wecom.encode_json{ x } then
      v[k] = errors.printable(x)
    end
  end
  return v
end

-- value as JSON (lists marked by `shape`, a schema field or nil): a string,
-- or nil, err.
function M.json(value, shape)
  value = mark(value, shape)
  local text = wecom.encode_json(value)
  if text then return text end
  return wecom.encode_json(printable_strings(value))
end

-- A list of calendars or schedules as JSON array elements joined by commas.
function M.json_items(list, shape)
  local out = {}
  for i, item in ipairs(list) do
    local text, err = M.json(item, shape)
    if not text then return nil, err end
    out[i] = text
  end
  return table.concat(out, ",")
end

-- An error as a JSON-able table: its kind, message and whatever it names.
function M.error_doc(err)
  if type(err) ~= "table" then return { kind = "error", message = tostring(err) } end
  local doc = {}
  for _, k in ipairs{ "kind", "message", "endpoint", "field", "errcode", "errmsg", "status", "reason" } do
    local v = err[k]
    if type(v) == "string" or type(v) == "number" then doc[k] = v end
  end
  doc.message = doc.message or tostring(err)
  return doc
end

return M
