-- What a `wecom` subcommand runs with: the parsed arguments, the client
-- (made on first use from the environment or the flags), stdout and stderr
-- with every secret scrubbed out, JSON documents, progress on a terminal,
-- clean-ups, and the Ctrl-C latch.
--
-- Ctrl-C. Plain Lua has no signal handling of its own, but the standalone
-- interpreters (lua5.1, lua5.4, luajit) catch SIGINT while a script runs and
-- raise the error "interrupted!" at the next Lua instruction (a second
-- SIGINT kills the process). The library turns errors raised inside its
-- callbacks (transport, cache, sleep, write) into ordinary failures, so
-- everything the library calls back into here goes through guard(), which
-- latches the interrupt before passing the error on; the command then stops
-- at the next request, and main() exits 130 after the clean-ups.
local core = require("wecom.core")
local errors = require("wecom.errors")
local output = require("wecom.cli.output")
local request = require("wecom.request")

local M = {}

M.INTERRUPTED = "interrupted!"

local CliError = { __tostring = function(e) return e.message end }

-- An error of the command line itself: kind "usage" (exit 2), "failed"
-- (exit 1), "interrupted" (exit 130).
function M.error(kind, message)
  return setmetatable({ kind = kind, message = message }, CliError)
end

function M.is_interrupt(e)
  if type(e) == "table" then
    if e.kind == "interrupted" then return true end
    e = e.message
  end
  return type(e) == "string" and e:find(M.INTERRUPTED, 1, true) ~= nil
end

local Context = {}
Context.__index = Context

-- io: { stdout =, stderr = (file-like: write, flush), getenv = function(name),
-- isatty = function(fd) -> boolean } (main fills in the real ones)
function M.new(args, io_)
  return setmetatable({
    args = args,
    json = args.json and true or false,
    verbose = args.verbose and true or false,
    io = io_,
    secrets = {},
    cleanups = {},
    interrupted = false,
    stdout_used = false,
  }, Context)
end

-- Runs fn(...) and passes its results on; an interrupt raised inside it is
-- latched, then raised again as it was.
local function passed(self, ok, ...)
  if not ok then
    local e = ...
    if M.is_interrupt(e) then self.interrupted = true end
    error(e, 0)
  end
  return ...
end

function Context:guard(fn, ...) return passed(self, pcall(fn, ...)) end

function Context:check_interrupt()
  if self.interrupted then return nil, M.error("interrupted", "interrupted") end
  return true
end

---------------------------------------------------------------------------
-- output

function Context:add_secret(s)
  if type(s) ~= "string" or #s < errors.MIN_SECRET then return end
  for _, v in ipairs{ s, request.urlescape(s) } do
    local known = false
    for _, x in ipairs(self.secrets) do known = known or x == v end
    if not known then self.secrets[#self.secrets + 1] = v end
  end
end

local function write(self, stream, s)
  s = errors.scrub(s, self.secrets)
  local ok, err = self.io[stream]:write(s)
  if not ok then return nil, M.error("failed", ("can't write to %s: %s"):format(stream, tostring(err))) end
  return true
end

-- Text for stdout (data) and stderr (talk); both return true or nil, err.
function Context:out(s)
  self.stdout_used = true
  return write(self, "stdout", s)
end

-- stdout first: what the command printed comes before what it says of it
function Context:say(s)
  self.io.stdout:flush()
  return write(self, "stderr", s)
end

-- "wecom: <text>" on stderr.
function Context:warn(text) return self:say("wecom: " .. text .. "\n") end

-- One JSON document on stdout (lists marked by shape, a schema field).
function Context:document(value, shape)
  local text, err = output.json(value, shape)
  if not text then return nil, M.error("failed", "can't write it as JSON: " .. tostring(err)) end
  return self:out(text .. "\n")
end

-- What a bulk read (client:calendars, client:schedules) returned for ids
-- (false where WeCom returned nothing), on stdout: {[how.list] = [...]}
-- with --json, else a block of fields (how.show(item)) per item. Ids not
-- found make it fail: true | nil, err.
function Context:found(ids, list, how)
  local found, missing = {}, {}
  for i, item in ipairs(list) do
    if item then found[#found + 1] = item else missing[#missing + 1] = ids[i] end
  end
  local ok, err = true, nil
  if self.json then
    ok, err = self:document({ [how.list] = found }, { type = "object", fields = {
      [how.list] = { type = "array", elem = how.shape } } })
  elseif #found > 0 then
    local blocks = {}
    for i, item in ipairs(found) do blocks[i] = how.show(item) end
    ok, err = self:out(table.concat(blocks, "\n"))
  end
  if not ok then return nil, err end
  if #missing > 0 then return nil, M.error("failed", ("no such %s: %s"):format(how.noun, table.concat(missing, ", "))) end
  return true
end

---------------------------------------------------------------------------
-- the client

local function usage(text) return nil, M.error("usage", text) end

-- The credentials of the flags, else of the environment: wecom.new's
-- options, or nil, err saying what to set.
function M.credentials(args, getenv)
  local function env(name)
    local v = getenv(name)
    if v == "" then v = nil end
    return v
  end
  local opts = { base_url = args.base_url or env("WECOM_BASE_URL") }
  if args.access_token then
    if args.corpid or args.corpsecret then
      return usage("give --access-token, or --corpid and --corpsecret, not both")
    end
    opts.access_token = args.access_token
    return opts
  end
  local corpid, secret = args.corpid or env("WECOM_CORPID"), args.corpsecret or env("WECOM_CORPSECRET")
  local token = env("WECOM_ACCESS_TOKEN")
  if corpid and secret then
    opts.corpid, opts.corpsecret = corpid, secret
  elseif token and not (args.corpid or args.corpsecret) then
    opts.access_token = token
  elseif corpid then
    return usage("WECOM_CORPSECRET is not set: set it to the secret of an app granted the schedule API "
      .. "(or give --corpsecret)")
  elseif secret then
    return usage("WECOM_CORPID is not set: set it to your corp's id, ww... (or give --corpid)")
  else
    return usage("no credentials: set WECOM_CORPID and WECOM_CORPSECRET (or WECOM_ACCESS_TOKEN), "
      .. "or give --corpid and --corpsecret (or --access-token)")
  end
  return opts
end

-- The transport of the client: libcurl's, with the interrupt latch, the
-- tokens WeCom hands out learnt as secrets, and each request shown on stderr
-- with --verbose.
local Transport = {}
Transport.__index = Transport

local function redact_url(url)
  return (url:gsub("([?&]access_token=)[^&]*", "%1***"):gsub("([?&]corpsecret=)[^&]*", "%1***"))
end

function Transport:request(method, url, body, idempotent)
  local ctx = self.ctx
  if ctx.interrupted then error(M.INTERRUPTED, 0) end
  local started = core.monotime()
  local status, reply, detail = ctx:guard(self.inner.request, self.inner, method, url, body, idempotent)
  if status == 200 and url:find("/cgi-bin/gettoken?", 1, true) and type(reply) == "string" then
    ctx:add_secret(reply:match('"access_token"%s*:%s*"([^"]*)"'))
  end
  if ctx.verbose then
    local result
    if status then
      result = ("%d, %d bytes"):format(status, type(reply) == "string" and #reply or 0)
    else
      result = ("transport error (%s): %s"):format(tostring(reply), tostring(detail))
    end
    ctx:warn(("%s %s -> %s, %.0f ms"):format(method, redact_url(url), result, (core.monotime() - started) * 1000))
  end
  return status, reply, detail
end

function Transport:close() return self.inner:close() end

-- The client: made once, on first use -> client | nil, err
function Context:client()
  if self.made_client then return self.made_client end
  local opts, err = M.credentials(self.args, self.io.getenv)
  if not opts then return nil, err end
  self:add_secret(opts.corpsecret)
  self:add_secret(opts.access_token)
  local ctx = self
  local inner = require("wecom.transport.curl").new(assert(require("wecom.options").transport()))
  local cache = require("wecom.cache.memory").new()
  opts.transport = setmetatable({ ctx = self, inner = inner }, Transport)
  opts.token_cache = {
    get = function(_, key) return ctx:guard(cache.get, cache, key) end,
    set = function(_, key, value, ttl) return ctx:guard(cache.set, cache, key, value, ttl) end,
  }
  opts.sleep = function(seconds) return ctx:guard(core.sleep, seconds) end
  local client
  client, err = require("wecom").new(opts)
  if not client then
    inner:close()
    if err.field == "base_url" then
      return usage("--base-url (or WECOM_BASE_URL): " .. err.message:gsub("^.-base_url: ", ""))
    end
    return usage(err.message)
  end
  self.made_client = client
  self:on_exit(function() client:close() end)
  return client
end

---------------------------------------------------------------------------
-- clean-ups, progress

-- fn runs when the command ends, however it ends (last registered first).
function Context:on_exit(fn) self.cleanups[#self.cleanups + 1] = fn end

function Context:finish()
  for i = #self.cleanups, 1, -1 do pcall(self.cleanups[i]) end
  self.cleanups = {}
end

function Context:stderr_is_terminal()
  if self.tty == nil then self.tty = self.io.isatty(2) and true or false end
  return self.tty
end

local Progress = {}
Progress.__index = Progress

local NO_PROGRESS = { update = function() end, clear = function() end, pause = function() end }

-- A one-line progress display on stderr, redrawn in place; nothing at all
-- unless stderr is a terminal (a log file or a pipe gets no progress).
-- noun: what is counted ("schedules").
function Context:progress(noun)
  if not self:stderr_is_terminal() then return NO_PROGRESS end
  return setmetatable({ ctx = self, noun = noun, started = core.monotime(), shown = false }, Progress)
end

-- pages fetched and items so far; extra: more to say ("812 KB").
function Progress:update(pages, items, extra)
  local elapsed = core.monotime() - self.started
  local rate = elapsed > 0 and items / elapsed or 0
  local text = ("%d %s, %d page%s, %.0f/s"):format(items, self.noun, pages, pages == 1 and "" or "s", rate)
  if extra then text = text .. ", " .. extra end
  self.shown = true
  self.ctx:say("\r\27[K" .. text)
  self.ctx.io.stderr:flush()
end

-- Takes the line away (before other output, and at the end).
function Progress:clear()
  if self.shown then
    self.ctx:say("\r\27[K")
    self.ctx.io.stderr:flush()
    self.shown = false
  end
end

-- Before writing to stdout, which may be the same terminal: takes the line
-- away; the next update draws it again under the new output.
Progress.pause = Progress.clear

return M
