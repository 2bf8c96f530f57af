-- The `wecom` command line (bin/wecom): parsing with lua-argparse, and the
-- dispatch to the subcommands.
--
--   local status = require("wecom.cli").main(arg)   -- 0, 1, 2 or 130
--
-- A subcommand is a module in M.COMMANDS with
--   name                    the word after `wecom` ("calendar")
--   configure(parser)       adds its command to the root parser:
--                           parser:command(name, description) and its
--                           arguments, options and nested commands
--   run(args, ctx)          does the work: true, or nil, err
-- `ctx` (wecom.cli.context) gives ctx:client(), ctx.json, ctx:out(text),
-- ctx:document(value, shape), ctx:warn(text), ctx:progress(noun),
-- ctx:on_exit(fn) and ctx.interrupted. err is a wecom error or
-- context.error(kind, message): kinds "usage" and "validation" exit 2,
-- "interrupted" 130, any other 1. With --json, a command that fails before
-- writing to stdout gets {"error": {...}} written for it.
local context = require("wecom.cli.context")
local output = require("wecom.cli.output")

local M = {}

M.COMMANDS = {
  "wecom.cli.calendar",
  "wecom.cli.schedule",
  "wecom.cli.export",
  "wecom.cli.occurrences",
  "wecom.cli.mirror",
}

-- lua-argparse is one pure Lua file that works on every Lua, but a
-- distribution installs it for the Lua versions it packages it for, which
-- need not include the one running us: look in the others' directories too.
local function load_argparse()
  local ok, argparse = pcall(require, "argparse")
  if ok then return argparse end
  for _, root in ipairs{ "/usr/local/share/lua/", "/usr/share/lua/" } do
    for _, version in ipairs{ "5.1", "5.4", "5.3", "5.2" } do
      local chunk = loadfile(root .. version .. "/argparse.lua")
      if chunk then
        argparse = chunk()
        package.loaded.argparse = argparse
        return argparse
      end
    end
  end
  error("the command line needs lua-argparse (apt-get install lua-argparse, or luarocks install argparse)", 0)
end

-- Asked-for help and usage errors travel as raised tables out of
-- argparse, whose own versions print and call os.exit.
local Help, Usage = {}, {}

-- Our help flag on a parser and on every command made from it: argparse's
-- prints and exits, which a program testing us in-process can't have.
-- state.chosen: the parser of the deepest command a parse chose (argparse
-- calls the commands' actions once the parse is complete, deepest first).
local function with_help(parser, state)
  parser:add_help(false)
  parser:flag("-h --help", "Show this help and exit."):action(function()
    error(setmetatable({ parser = parser }, Help), 0)
  end)
  local make_command = parser.command
  parser.command = function(self, ...)
    local child = with_help(make_command(self, ...), state)
    child:action(function() state.chosen = state.chosen or child end)
    return child
  end
  return parser
end

-- The root parser, the commands by name, and the parse's state (chosen).
function M.parser()
  local argparse = load_argparse()
  local state = {}
  local parser = with_help(argparse("wecom")
    :description("WeCom (企业微信) calendars and schedules from the command line.")
    :help_max_width(100)
    :epilog(table.concat({
      "Credentials come from the environment: WECOM_CORPID and WECOM_CORPSECRET (an app granted the",
      "schedule API), or WECOM_ACCESS_TOKEN; WECOM_BASE_URL for a private deployment or the emulator.",
      "Global options go before the command. `wecom COMMAND --help` for each command.",
      "Exit status: 0 done, 1 the call failed, 2 bad usage, 130 interrupted.",
    }, "\n")), state)
  parser:flag("--json", "Print one JSON document on stdout instead of text.")
  parser:option("--base-url", "The API's base URL (default https://qyapi.weixin.qq.com; or WECOM_BASE_URL).")
    :argname("URL")
  parser:option("--corpid", "The corp's id (or WECOM_CORPID).")
    :argname("ID")
  parser:option("--corpsecret", "The app's secret (or WECOM_CORPSECRET, which other users can't see in ps).")
    :argname("SECRET")
  parser:option("--access-token", "A fixed access token (or WECOM_ACCESS_TOKEN).")
    :argname("TOKEN")
  parser:flag("-v --verbose", "Show each HTTP request on stderr (secrets left out).")
  parser:command_target("command")
  parser.error = function(p, message) error(setmetatable({ parser = p, message = message }, Usage), 0) end
  local commands = {}
  for _, name in ipairs(M.COMMANDS) do
    local command = require(name)
    command.configure(parser)
    commands[command.name] = command
  end
  return parser, commands, state
end

local STATUS = { usage = 2, validation = 2, interrupted = 130 }

local function system_io()
  return {
    stdout = io.stdout,
    stderr = io.stderr,
    getenv = os.getenv,
    isatty = function(fd)
      local a, _, c = os.execute(("test -t %d"):format(fd))
      return a == true or (a == 0 and c == nil)
    end,
  }
end

-- The secrets of a command line that did not parse: the values of the
-- secret flags, and of the environment.
local SECRET_FLAGS = { ["--corpsecret"] = true, ["--access-token"] = true }
local function secrets_in(argv, getenv)
  local out = {}
  local function add(v)
    if type(v) == "string" then out[#out + 1] = v end
  end
  add(getenv("WECOM_CORPSECRET"))
  add(getenv("WECOM_ACCESS_TOKEN"))
  for i, a in ipairs(argv) do
    local flag, value = a:match("^(%-%-[%w-]+)=(.*)$")
    if flag and SECRET_FLAGS[flag] then add(value) end
    if SECRET_FLAGS[a] then add(argv[i + 1]) end
  end
  return out
end

-- Runs the command line `argv` (a list of strings, arg as the interpreter
-- gives it) and returns the exit status. io_: where output goes and what
-- the environment is (system_io's fields; tests give their own).
function M.main(argv, io_)
  io_ = io_ or system_io()
  local list = {}
  for i = 1, #argv do list[i] = argv[i] end
  local parser, commands, state = M.parser()
  local ok, args = pcall(parser.parse, parser, list)
  if not ok then
    local mt = getmetatable(args)
    if mt == Help then
      io_.stdout:write(args.parser:get_help(), "\n")
      return 0
    elseif mt == Usage then
      -- the message may quote an argument, which may be a secret put in the wrong place
      local ctx = context.new({}, io_)
      for _, s in ipairs(secrets_in(list, io_.getenv)) do ctx:add_secret(s) end
      ctx:say("wecom: " .. args.message .. "\n" .. args.parser:get_usage() .. "\n")
      return 2
    end
    error(args, 0)
  end

  local ctx = context.new(args, io_)
  local used = state.chosen or parser
  local command = commands[args.command]
  local ran, done, err = xpcall(function() return command.run(args, ctx) end, function(e)
    if context.is_interrupt(e) then return context.error("interrupted", "interrupted") end
    -- a mistake of ours: one line, no traceback for the user
    return context.error("failed", "internal error: " .. tostring(e))
  end)
  if not ran then done, err = nil, done end
  ctx:finish()
  if done then return 0 end
  -- the latch, or the interpreter's error surfacing through a part of the
  -- library that no guard covers: as a transport or write failure, never in
  -- a server's text (api, http, decode errors)
  local carrier = type(err) ~= "table" or err.kind == "transport" or err.kind == "write"
  if ctx.interrupted or (carrier and context.is_interrupt(err)) then
    err = context.error("interrupted", "interrupted")
  end
  err = err or context.error("failed", "failed")
  local kind = type(err) == "table" and err.kind or "failed"
  if ctx.json and not ctx.stdout_used then ctx:document{ error = output.error_doc(err) } end
  ctx:warn(tostring(err.message or err))
  if kind == "usage" or kind == "validation" then
    ctx:say(used:get_usage() .. "\n")
  end
  return STATUS[kind] or 1
end

return M
