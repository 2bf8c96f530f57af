-- The cosocket transport driven directly, inside a live nginx (an emulator
-- behind it, for support.openresty's configuration): POST /transport of
-- spec/support/ngx_app.lua.
--
--   local ngx_transport = cosockets.start()
--   ngx_transport:run(calls [, options])  -- one list of results per call
--   ngx_transport:post{ ... }              -- the handler's whole reply
--   ngx_transport:stop()
local cjson = require("cjson")
local emulator = require("support.emulator")
local openresty = require("support.openresty")
local session = require("support.session")

local M = {}

local Runner = {}
Runner.__index = Runner

function M.start()
  local emu = emulator.start()
  local nginx = openresty.start{ emu = emu }
  return setmetatable({ emu = emu, nginx = nginx, http = session{ timeout = 60 } }, Runner)
end

-- t: {options = | raw_options =, calls = {...}, count_alloc =} (see
-- ngx_app.transport); returns the decoded reply.
function Runner:post(t)
  local status, body = self.http:request("POST", self.nginx.base_url .. "/transport", cjson.encode(t))
  assert(status == 200, body)
  return cjson.decode(body)
end

-- The results of `calls`, made on one transport with `options` (default a
-- 5 s timeout).
function Runner:run(calls, options)
  local reply = self:post{ options = options or { timeout = 5 }, calls = calls }
  assert(reply.error == nil, reply.error)
  return reply.results
end

function Runner:stop()
  self.http:close()
  self.nginx:stop()
  self.emu:stop()
end

return M
