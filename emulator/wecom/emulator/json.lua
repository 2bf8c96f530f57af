-- JSON output for the emulator. lua-cjson 2.1.0 writes an empty table as {},
-- but WeCom sends empty lists as [], so lists are marked with json.array().
local M = {}

local ARRAY = { __name = "json.array" }

function M.array(t) return setmetatable(t or {}, ARRAY) end

function M.is_array(t) return getmetatable(t) == ARRAY end

local ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\b"] = "\\b", ["\f"] = "\\f",
}

local function escape(c) return ESCAPES[c] or ("\\u%04x"):format(c:byte()) end

local floor, format, concat = math.floor, string.format, table.concat

local encode_into

local function encode_number(n)
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if n == floor(n) and n > -2 ^ 63 and n < 2 ^ 63 then return format("%d", n) end
  return format("%.17g", n)
end

encode_into = function(v, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', escape) .. '"'
  elseif t == "number" then
    out[#out + 1] = encode_number(v)
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif t == "table" then
    if getmetatable(v) == ARRAY or v[1] ~= nil then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode_into(v[i], out)
      end
      out[#out + 1] = "]"
    else
      out[#out + 1] = "{"
      local first = true
      for k, x in pairs(v) do
        if not first then out[#out + 1] = "," end
        first = false
        out[#out + 1] = '"' .. tostring(k):gsub('[%c"\\]', escape) .. '":'
        encode_into(x, out)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = "null"
  end
end

function M.encode(v)
  local out = {}
  encode_into(v, out)
  return concat(out)
end

return M
