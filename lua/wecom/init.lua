-- wecom: a client of the WeCom (企业微信) calendar and schedule API.
--
--   local wecom = require("wecom")
--   local client = wecom.assert(wecom.new{ corpid = "ww...", corpsecret = "..." })
--   local res, err = client:calendar_get{ cal_id_list = { cal_id } }
--
-- Every runtime failure is `nil, err` with err a wecom.errors object; only
-- programming mistakes (a method called without the colon) raise.
--
-- Where each part lives: options.lua (the options, their defaults and
-- ranges), client.lua (the client and its methods), request.lua (one request
-- and the retry policy), token.lua (access tokens), transport/ (how requests
-- travel, and which way a call made now takes), schema.lua (the C endpoint
-- table's limits), paging/bulk/patch.lua (the helpers), errors.lua.
local core = require("wecom.core")
local client = require("wecom.client")
local errors = require("wecom.errors")
local request = require("wecom.request")
local schema = require("wecom.schema")

local M = {
  _VERSION = core._VERSION,
  errors = errors,
  Client = client.Client,
  MAX_CONCURRENCY = core.MAX_CONCURRENCY,
  urlescape = request.urlescape,
}

-- wecom.new(opts) -> client | nil, err (DESIGN.md lists the options)
M.new = client.new

-- The endpoints the client has a method for: { {name =, path =, idempotent =}, ... }
M.endpoints = {}
for _, ep in ipairs(schema.endpoints) do
  M.endpoints[#M.endpoints + 1] = { name = ep.name, path = ep.path, idempotent = ep.idempotent }
end

-- wecom.assert(v, err, ...): returns all its arguments when v is true;
-- otherwise raises the error's message as a string. Lua 5.1's own assert
-- only takes string messages, so `assert(client:calendar_get(...))` hides
-- the reason there; this works the same on every Lua. Use
-- `local res, err = ...` where you want the error object itself.
function M.assert(v, err, ...)
  if v then return v, err, ... end
  if err == nil then error("assertion failed!", 2) end
  error(tostring(err), 2)
end

-- A list for fields the schemas don't know: an empty table is otherwise
-- sent as {}, since keys alone can't tell. wecom.array() or wecom.array(t).
local ARRAY_MT = { __jsontype = "array" }
function M.array(t) return setmetatable(t or {}, ARRAY_MT) end

-- JSON as the library sends it (raw UTF-8, integers as integers, lists
-- marked with wecom.array as []): string, or nil, err.
function M.encode_json(value)
  local json, field, text = core.encode(nil, value)
  if not json then return nil, errors.validation("encode_json", field, text) end
  return json
end

return M
