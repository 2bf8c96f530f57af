-- Handlers of the nginx that the OpenResty specs start (2 workers): each
-- request makes one call through a client of this worker and answers what
-- happened as JSON. Runs inside nginx; spec/support/openresty.lua starts it.
local cjson = require("cjson")
local wecom = require("wecom")

local M = {}

local conf
local clients = {}

function M.init(c) conf = c end

-- Clients by kind, made once per worker: "shared" (tokens in the shared
-- dict), "memory" (the default cache), "curl" (forced libcurl), "tls",
-- "hostile" (1 s timeout, 1 MiB cap, no retries), "refused" (a closed port),
-- "stale" (a server that drops idle connections after 1 s), "badsecret",
-- "backoff" (waits of 0.3..0.6 s between retries).
local function client(kind)
  if not clients[kind] then
    local o = {
      corpid = conf.corpid, corpsecret = conf.corpsecret, base_url = conf.base_url,
      retry_base_delay = 0.01, retry_max_delay = 0.05, timeout = 10,
    }
    if kind == "shared" then o.token_cache = ngx.shared.wecom_tokens end
    if kind == "curl" then o.transport = "curl" end
    if kind == "tls" then
      o.base_url = conf.tls_url
      o.max_retries = 0
    end
    if kind == "matrix" then o.max_retries, o.retry_base_delay, o.retry_max_delay = 0, 0, 0 end
    if kind == "hostile" or kind == "refused" then
      o.timeout, o.max_retries, o.max_response_bytes = 1, 0, 1024 * 1024
    end
    if kind == "refused" then o.base_url = "http://127.0.0.1:1" end
    if kind == "stale" then o.base_url, o.max_retries = conf.stale_url, 0 end
    if kind == "backoff" then o.retry_base_delay, o.retry_max_delay = 0.6, 0.6 end
    if kind == "badsecret" then
      o.corpsecret, o.token_cache = "not-the-secret", ngx.shared.wecom_tokens
    end
    clients[kind] = assert(wecom.new(o))
  end
  return clients[kind]
end

local function describe_error(err)
  if not err then return nil end
  return { kind = err.kind, reason = err.reason, errcode = err.errcode, message = err.message }
end

-- In init_worker there are no cosockets: the client must use libcurl.
function M.init_worker()
  local c = client("memory")
  local _, err = c:calendar_get{ cal_id_list = { "probe-from-init-worker" } }
  ngx.shared.test_stats:set("init_worker", cjson.encode{
    transport = c:transport_name(), errcode = err and err.errcode,
  })
  -- how many workers are past init_worker (spec/support/openresty.lua waits for all)
  ngx.shared.test_stats:incr("workers_ready", 1, 0)
end

-- The cosocket transport used directly: {options =, calls = {{requests =
-- {...}, concurrency =, sleep =}, ...}}. Each call is one request (one
-- request_many with `concurrency`), after `sleep` seconds; all on one
-- transport, in this worker, so a call finds the connections the ones before
-- it left in the pool. `raw_options` instead of `options`: given to the
-- transport as they are, unchecked by wecom.options. `count_alloc`: the KB
-- the calls allocated (the collector stopped meanwhile) in `alloc_kb`.
-- Returns {results = {...}} (one list per call), or {error =} when the
-- transport can't be made.
function M.transport(t)
  local ok, tr = pcall(function()
    return require("wecom.transport.ngx").new(t.raw_options or assert(require("wecom.options").transport(t.options)))
  end)
  if not ok then return { error = tostring(tr) } end
  local results, before = {}, nil
  if t.count_alloc then
    collectgarbage("stop")
    before = collectgarbage("count")
  end
  for i, call in ipairs(t.calls) do
    if call.sleep then ngx.sleep(call.sleep) end
    if call.concurrency then
      results[i] = tr:request_many(call.requests, call.concurrency)
    else
      local r = call.requests[1]
      local status, body, message = tr:request(r.method, r.url, r.body, r.idempotent)
      results[i] = { status and { status = status, body = body } or { reason = body, message = message } }
    end
  end
  local out = { results = results }
  if before then
    out.alloc_kb = collectgarbage("count") - before
    collectgarbage("restart")
  end
  return out
end

function M.handle()
  local args = ngx.req.get_uri_args()
  local uri = ngx.var.uri
  local out = { pid = ngx.worker.pid() }
  if uri == "/ready" then
    out.ready = ngx.shared.test_stats:get("workers_ready") or 0
  elseif uri == "/init_worker" then
    out.result = cjson.decode(ngx.shared.test_stats:get("init_worker") or "null")
  elseif uri == "/flush" then
    ngx.shared.wecom_tokens:flush_all()
  elseif uri == "/bulk" then -- POST {ids, concurrency}: calendars() in light threads
    ngx.req.read_body()
    local body = cjson.decode(ngx.req.get_body_data())
    local c = client("shared")
    local t0 = ngx.now()
    local list, err = c:calendars(body.ids, { concurrency = body.concurrency })
    ngx.update_time()
    out.transport, out.took, out.err = c:transport_name(), ngx.now() - t0, describe_error(err)
    out.count = list and #list
    out.last = list and list[#list] and list[#list].cal_id
  elseif uri == "/hostile" then -- POST {helper, ids}: one helper of the hostile-reply matrix
    ngx.req.read_body()
    local body = cjson.decode(ngx.req.get_body_data())
    local hostile = require("support.hostile")
    local c = client("matrix")
    out.transport = c:transport_name()
    out.result = hostile.run(hostile.helper(body.helper), c, body.ids)
  elseif uri == "/add2" then -- two calendar_add in a row: the second reuses the first's connection
    local c = client(args.client or "shared")
    local first, err1 = c:calendar_add{ calendar = { summary = "first", color = "#000000" } }
    local second, err2 = c:calendar_add{ calendar = { summary = "second", color = "#000000" } }
    out.ok = first ~= nil and second ~= nil
    out.err = describe_error(err1 or err2)
  elseif uri == "/transport" then -- POST: M.transport's input, its results
    ngx.req.read_body()
    out = M.transport(cjson.decode(ngx.req.get_body_data()))
  elseif uri == "/add" then
    local c = client(args.client or "shared")
    local res, err = c:calendar_add{ calendar = { summary = "from nginx", color = "#000000" } }
    out.ok, out.err = res ~= nil, describe_error(err)
  else
    local c = client(uri:find("^/tls") and "tls" or (args.client or "shared"))
    out.transport = c:transport_name()
    local res, err = c:calendar_get{ cal_id_list = { args.cal_id or "none" } }
    out.ok = res ~= nil
    out.err = describe_error(err)
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(out))
end

return M
