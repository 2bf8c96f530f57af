-- What the stores share. They keep schedules and calendars as JSON text, so that what
-- comes back from a store is a fresh table (a handler that changes
-- change.schedule can't change the mirror) typed exactly as the client's
-- replies are (integers restored on Lua 5.3+ by the same decoder), and so
-- that two copies are compared by their content.
local core = require("wecom.core")
local decode_reply = require("wecom.request").decode_reply

local M = {}

-- JSON for what core.encode refuses in strings from the server (control
-- characters, bytes that are not UTF-8): every number with 17 digits, so a
-- uint64 `sequence` survives as the client decoded it (lua-cjson's encoder
-- keeps 14, and a value that changes on its way through the store would be
-- reported as changed by every reconcile).
local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function escape(c) return ESCAPES[c] or ("\\u%04x"):format(c:byte()) end

local function slow(v, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = '"' .. v:gsub('[%z\1-\31"\\\127]', escape) .. '"'
  elseif t == "number" then
    if v ~= v then
      out[#out + 1] = "null"
    elseif v == math.huge or v == -math.huge then
      -- what the decoder made of a number too large for a double (1e999
      -- from the server): "inf" would be stored as text no decoder reads
      out[#out + 1] = v > 0 and "1e999" or "-1e999"
    elseif v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
      out[#out + 1] = ("%.0f"):format(v)
    else
      out[#out + 1] = ("%.17g"):format(v)
    end
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "table" then
    local n = 0
    for _ in next, v do n = n + 1 end
    if n > 0 and n == #v then
      for i = 1, n do
        out[#out + 1] = i == 1 and "[" or ","
        slow(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local first = true
      out[#out + 1] = "{"
      for k, x in next, v do
        if not first then out[#out + 1] = "," end
        first = false
        slow(tostring(k), out)
        out[#out + 1] = ":"
        slow(x, out)
      end
      out[#out + 1] = "}"
    end
  else -- cjson.null (lightuserdata)
    out[#out + 1] = "null"
  end
end

-- A decoded schedule or calendar as JSON text.
function M.encode(v)
  local json = core.encode(nil, v)
  if json then return json end
  local out = {}
  slow(v, out)
  return table.concat(out)
end

-- JSON text of M.encode back to a table, or nil, message.
function M.decode(json)
  if type(json) ~= "string" then return nil, "expected JSON text, got " .. type(json) end
  local v, err = decode_reply(json)
  if not v then return nil, err end
  return v
end

-- What a store checks of a batch before it writes anything of it: nil, or
-- what is wrong.
function M.check_batch(batch)
  if type(batch) ~= "table" then return "the update function returned no batch" end
  for _, key in ipairs{ "put", "remove", "seen" } do
    if batch[key] ~= nil and type(batch[key]) ~= "table" then return "batch." .. key .. ": expected a list" end
  end
  for i, s in ipairs(batch.put or {}) do
    if type(s) ~= "table" or type(s.schedule_id) ~= "string" then
      return ("batch.put[%d]: expected a schedule with a schedule_id"):format(i)
    end
  end
  for _, key in ipairs{ "offset", "scan" } do
    if batch[key] ~= nil and type(batch[key]) ~= "number" then return "batch." .. key .. ": expected a number" end
  end
  return nil
end

-- Whether two decoded values have the same content (JSON's view: numbers
-- by value, tables by their entries, metatables ignored).
local function same(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in next, a do
    if not same(v, rawget(b, k)) then return false end
  end
  for k in next, b do
    if rawget(a, k) == nil then return false end
  end
  return true
end
M.same = same

return M
