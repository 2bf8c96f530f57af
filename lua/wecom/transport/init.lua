-- Transports: how a request reaches the server, and which one a call made
-- now uses.
--
-- The transport contract. A transport is any object with
--   transport:request(method, url, body, idempotent)
--       method "GET" or "POST"; body a string or nil (GET); idempotent
--       whether the request may be sent again after a failure (nil: GET
--       is, POST isn't; a transport may ignore it if it never resends)
--       -> status (an integer), body (a string)
--       -> nil, reason, message on failure: reason is one of
--          wecom.errors.REASONS (timeout, connect, ... ; an unknown one
--          counts as "error"), message one readable line
-- and optionally
--   transport:request_many(requests, concurrency) -> results
--       requests[i] = {method =, url =, body =, idempotent =}; results[i] =
--       {status =, body =} or {reason =, message =}, in the order of
--       requests, with up to `concurrency` requests in flight at once
--   transport:close()
-- Two are built in: "curl" (transport/curl.lua, a libcurl session of the C
-- core: blocks while a request is in flight) and "ngx" (transport/ngx.lua,
-- nginx cosockets: never blocks an nginx worker). Both are made with the
-- complete transport options of wecom.options, and both keep these
-- guarantees:
--   * a request that isn't idempotent is sent at most once: after a
--     kept-alive connection closed with it unanswered, it fails ("empty")
--     instead of going out again; an idempotent one goes once more on a
--     fresh connection (and with cosockets any whose send failed)
--   * bytes that arrive on an idle connection are never read as a reply:
--     such a connection is not reused
--   * replies are framed strictly (RFC 9112): a malformed chunk, conflicting
--     Content-Length or Transfer-Encoding headers, a folded or malformed
--     header line, framing on a reply without a body are "protocol"; a head
--     (1xx heads and trailers included) over core.MAX_HEAD_BYTES is
--     "too_large"; a connection goes back to the pool only after a reply
--     whose framing was exact
--   * the request asks for "Accept-Encoding: identity"; a compressed reply
--     is handed over as it came (the JSON decoder refuses it)
--   * nothing from the options reaches a header line with CR or LF in it
local core = require("wecom.core")
local options = require("wecom.options")

local M = {}

-- Phases of nginx's Lua module where cosockets and ngx.sleep work.
local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

-- Whether this code runs in an nginx phase that allows cosockets.
function M.in_cosocket_phase()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then return false end
  return COSOCKET_PHASES[ngx.get_phase()] == true
end
local in_cosocket_phase = M.in_cosocket_phase

-- Waits without blocking nginx where it can (ngx.sleep yields the request);
-- elsewhere a real sleep.
function M.sleep(seconds)
  if in_cosocket_phase() then return rawget(_G, "ngx").sleep(seconds) end
  return core.sleep(seconds)
end

local Chooser = {}
Chooser.__index = Chooser

-- The transports of one client. `choice` is the transport option: "auto"
-- (cosockets where nginx allows them, else libcurl), "curl", "ngx", or a
-- transport object (always that one).
function M.chooser(choice, transport_options)
  local self = setmetatable({ options = transport_options, made = {} }, Chooser)
  if type(choice) == "string" then
    self.mode = choice
  else
    self.mode, self.custom = "custom", choice
  end
  -- outside nginx there is no phase to look at
  self.in_nginx = type(rawget(_G, "ngx")) == "table"
  return self
end

-- The kind of transport a request made now goes through: "curl", "ngx" or
-- "custom".
function Chooser:kind()
  local mode = self.mode
  if mode == "auto" then
    return (self.in_nginx and in_cosocket_phase()) and "ngx" or "curl"
  end
  return mode
end

-- The transport for a request made now, made on first use in the phase that
-- needs it: the transport, or nil, message.
function Chooser:current()
  local kind = self:kind()
  if kind == "custom" then return self.custom end
  local t = self.made[kind]
  if not t then
    local ok, made = pcall(function() return require("wecom.transport." .. kind).new(self.options) end)
    if not ok then return nil, "can't make the " .. kind .. " transport: " .. tostring(made) end
    t = made
    self.made[kind] = t
  end
  return t
end

-- Closes what this chooser made or was given; cosockets need no closing.
function Chooser:close()
  local t = self.custom or self.made.curl
  if options.has_method(t, "close") then t:close() end
end

return M
