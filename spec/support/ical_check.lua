-- What the iCalendar specs check exported calendars with: libical (a C
-- checker built from spec/checkers/icalcheck.c), ical.js (npm, installed
-- from spec/checkers/package-lock.json) and Python's recurring-ical-events
-- (Debian's, run with /usr/bin/python3). `make checkers` builds and installs
-- them; ensure() runs it, so a single spec file runs on its own too.
local cjson = require("cjson")
local shell = require("support.shell")

local M = {}

local q = shell.quote

-- Runs another's program (a checker, curl): never under the sanitizer
-- runtime that `make asan` preloads into the suite (curl hangs under it).
function M.run(cmd) return shell.run("unset LD_PRELOAD; " .. cmd) end

local ensured
function M.ensure()
  if ensured then return end
  local rc, out = M.run("make --no-print-directory -s checkers")
  assert(rc == 0, "make checkers failed (it needs libical-dev, node and npm; `make deps` as root installs them):\n" .. out)
  ensured = true
end

-- Writes text to a new temporary file; returns its path.
function M.file(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- libical: true, its output | false, its output.
function M.libical(path)
  M.ensure()
  local rc, out = M.run("build/checkers/icalcheck " .. q(path))
  return rc == 0, out
end

local function json_of(rc, out, who)
  local ok, decoded = pcall(cjson.decode, out)
  if rc ~= 0 or not ok or decoded.error then
    return nil, ("%s failed (exit %s): %s"):format(who, tostring(rc), out)
  end
  return decoded
end

-- ical.js parses (and with from/to expands) -> {events =, expanded = {uid = {status, starts}}} | nil, err
function M.icaljs(path, from, to)
  M.ensure()
  local range = from and (" %d %d"):format(from, to) or ""
  local rc, out = M.run(("node spec/checkers/icaljs.mjs %s%s"):format(q(path), range))
  return json_of(rc, out, "ical.js")
end

-- recurring-ical-events expands -> the same form as icaljs() | nil, err
function M.python(path, from, to)
  local rc, out = M.run(("/usr/bin/python3 spec/checkers/expand.py %s %d %d"):format(q(path), from, to))
  return json_of(rc, out, "recurring-ical-events")
end

-- Every line ends in CRLF and has at most 75 octets; continuation lines
-- never start inside a UTF-8 character. -> true | nil, what is wrong
function M.lines_ok(text)
  if text:sub(-2) ~= "\r\n" then return nil, "does not end in CRLF" end
  local n = 0
  for line in text:gmatch("(.-)\r\n") do
    n = n + 1
    if line:find("[\r\n]") then return nil, ("line %d: a bare CR or LF"):format(n) end
    if #line > 75 then return nil, ("line %d: %d octets"):format(n, #line) end
    local first = line:byte(2)
    if line:sub(1, 1) == " " and first and first >= 0x80 and first < 0xC0 then
      return nil, ("line %d: starts inside a UTF-8 character"):format(n)
    end
  end
  return true
end

-- The logical lines of a calendar (unfolded).
function M.unfold(text)
  local lines = {}
  for line in text:gsub("\r\n ", ""):gmatch("(.-)\r\n") do lines[#lines + 1] = line end
  return lines
end

return M
