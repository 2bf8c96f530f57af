-- One plain-Lua "host" of the many-hosts spec: a process (under lua5.1,
-- lua5.4 or luajit) with a client whose tokens live in Redis (redis-lua
-- over luasocket). It reads commands, one a line, from the file named
-- conf.commands as they are appended, and answers each with one JSON line
-- on stdout:
--   call K SEQ   K calls, one after another -> {seq, pid, results = {{took, ok, err}, ...}, status}
--   quit         (or the file's removal) ends it
-- Run as: lua spec/support/redis_host.lua '<conf as JSON>' (see hosts.lua).
local cjson = require("cjson")
local core = require("wecom.core")
local wecom = require("wecom")

local conf = cjson.decode((assert(arg[1], "usage: redis_host.lua CONF_JSON")))

local cache = assert(require("wecom.cache.redis").new{ port = conf.redis.port, timeout = conf.redis.timeout,
  cooldown = conf.redis.cooldown })
local client = assert(wecom.new{ corpid = conf.corpid, corpsecret = conf.corpsecret, base_url = conf.base_url,
  token_cache = cache, retry_base_delay = 0.01, retry_max_delay = 0.05, timeout = 10 })

local pid = tonumber((io.open("/proc/self/stat"):read("*l") or ""):match("^(%d+)")) or 0

local function one_call()
  local t0 = core.monotime()
  local res, err = client:calendar_get{ cal_id_list = { conf.cal_id } }
  return { pid = pid, took = core.monotime() - t0, ok = res ~= nil,
    err = err and { kind = err.kind, reason = err.reason, errcode = err.errcode, message = err.message } }
end

-- The commands appended to the file since `done` lines were run, or nil
-- when the file is gone.
local function commands(done)
  local f = io.open(conf.commands, "rb")
  if not f then return nil end
  local lines = {}
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  local new = {}
  -- a last line without its newline may still be being written
  for i = done + 1, #lines do new[#new + 1] = lines[i] end
  return new
end

local done = 0
while true do
  local new = commands(done)
  if not new then break end
  for _, line in ipairs(new) do
    done = done + 1
    local count, seq = line:match("^call (%d+) (%d+)$")
    if count then
      local results = {}
      for i = 1, tonumber(count) do results[i] = one_call() end
      io.write(cjson.encode{ seq = tonumber(seq), pid = pid, lua = conf.lua, results = results,
        status = cache:status() }, "\n")
      io.flush()
    elseif line == "quit" then
      os.exit(0)
    end
  end
  core.sleep(0.01)
end
