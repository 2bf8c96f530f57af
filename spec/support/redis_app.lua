-- One "host" of the many-hosts spec, inside nginx (spec/support/hosts.lua
-- starts it with 2 workers): a client whose tokens live in Redis
-- (wecom.cache.redis over lua-resty-redis), called from request handlers
-- and from a timer in every worker, so each worker takes part in each round.
--   GET /call           one call in this request: {pid, took, ok, err}
--   GET /calls?n=N      N calls one after another in this request
--   GET /round?n=R&calls=K   every worker makes K calls at once (light
--                       threads of its timer) for round R
--   GET /results?n=R    what each worker's calls of round R gave: {pid = {...}}
--   GET /status         this worker's cache:status()
--   GET /phase          what cache:get answers in set_by_lua (no cosockets)
local cjson = require("cjson")
local wecom = require("wecom")

local M = {}

local conf, client, cache

-- conf: base_url, corpid, corpsecret, cal_id, redis = {port, timeout, cooldown}
function M.init(c)
  conf = c
  cache = assert(require("wecom.cache.redis").new{ port = c.redis.port, timeout = c.redis.timeout,
    cooldown = c.redis.cooldown })
  client = assert(wecom.new{ corpid = c.corpid, corpsecret = c.corpsecret, base_url = c.base_url,
    token_cache = cache, retry_base_delay = 0.01, retry_max_delay = 0.05, timeout = 10 })
end

local function one_call()
  ngx.update_time()
  local t0 = ngx.now()
  local res, err = client:calendar_get{ cal_id_list = { conf.cal_id } }
  ngx.update_time()
  return { pid = ngx.worker.pid(), took = ngx.now() - t0, ok = res ~= nil,
    err = err and { kind = err.kind, reason = err.reason, errcode = err.errcode, message = err.message } }
end

local stats = function() return ngx.shared.redis_app end

local function run_round(round, calls)
  local threads, results = {}, {}
  for i = 1, calls do threads[i] = ngx.thread.spawn(one_call) end
  for i, t in ipairs(threads) do
    local ok, r = ngx.thread.wait(t)
    results[i] = ok and r or { pid = ngx.worker.pid(), ok = false, err = { message = tostring(r) } }
  end
  stats():set(("round:%d:%d"):format(round, ngx.worker.pid()), cjson.encode(results))
end

-- Each worker's timer: waits for the next round and plays its part.
local function watch(premature)
  if premature then return end
  local done = stats():get("round") or 0
  while not ngx.worker.exiting() do
    local round = stats():get("round") or 0
    if round > done then
      done = round
      run_round(round, stats():get("calls") or 1)
    end
    ngx.sleep(0.01)
  end
end

function M.init_worker()
  assert(ngx.timer.at(0, watch))
end

-- From set_by_lua: the cache asked where nginx has no cosockets.
function M.probe()
  local res, err = cache:get("probe")
  return cjson.encode{ res = res, err = err, status = cache:status() }
end

function M.handle()
  local args = ngx.req.get_uri_args()
  local uri = ngx.var.uri
  local out
  if uri == "/call" then
    out = one_call()
  elseif uri == "/calls" then
    out = {}
    for i = 1, tonumber(args.n) do out[i] = one_call() end
  elseif uri == "/round" then
    stats():set("calls", tonumber(args.calls) or 1)
    stats():set("round", tonumber(args.n))
    out = { pid = ngx.worker.pid() }
  elseif uri == "/results" then
    out = {}
    local prefix = ("round:%d:"):format(tonumber(args.n))
    for _, key in ipairs(stats():get_keys(0)) do
      if key:sub(1, #prefix) == prefix then out[key:sub(#prefix + 1)] = cjson.decode(stats():get(key)) end
    end
  elseif uri == "/phase" then
    out = cjson.decode(ngx.var.probe)
  elseif uri == "/status" then
    out = cache:status()
    out.pid = ngx.worker.pid()
  else
    return ngx.exit(404)
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(out))
end

return M
