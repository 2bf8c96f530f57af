-- The handler of examples/nginx.conf: GET /schedules?cal_id=...[&offset=N&limit=N]
-- answers one page of a calendar's schedules as JSON, with the offset to ask
-- for next:
--   {"schedules": [...], "next_offset": 1000}
-- Errors answer JSON too: 400 for bad input, 502 when WeCom or the network
-- failed, with the error's kind, errcode and message.
local wecom = require("wecom")

local M = {}

local client, redis

local function env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

-- Called from init_by_lua: the client is made once and shared by the
-- workers (no I/O happens here; tokens are fetched on first use). With
-- WECOM_REDIS_HOST, the token lives in Redis, shared by every host.
function M.init()
  if env("WECOM_REDIS_HOST") then
    redis = assert(require("wecom.cache.redis").new{
      host = env("WECOM_REDIS_HOST"),
      port = tonumber(env("WECOM_REDIS_PORT") or "6379"),
      password = env("WECOM_REDIS_PASSWORD"),
    })
  end
  client = assert(wecom.new{
    corpid = os.getenv("WECOM_CORPID"),
    corpsecret = os.getenv("WECOM_CORPSECRET"),
    base_url = env("WECOM_BASE_URL"),
    token_cache = redis or ngx.shared.wecom_tokens, -- one token for all hosts, or all workers
    timeout = 5,
  })
end

-- The same client for the other handlers (wecom_callback.lua, ical_feed.lua).
function M.client() return client end

-- The Redis cache, when there is one (the callbacks' seen store too).
function M.redis() return redis end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.print(assert(wecom.encode_json(body)))
  return ngx.exit(status)
end

function M.schedules()
  local args = ngx.req.get_uri_args()
  local cursor, err = client:schedule_cursor(args.cal_id, {
    offset = tonumber(args.offset) or 0,
    limit = tonumber(args.limit) or 100,
  })
  local page
  if cursor then page, err = cursor:next_page() end
  if not page then
    return reply(err.kind == "validation" and 400 or 502, {
      error = { kind = err.kind, errcode = err.errcode, message = err.message },
    })
  end
  return reply(200, { schedules = wecom.array(page), next_offset = cursor.offset })
end

-- GET /redis: this worker's view of Redis (cache:status()), no secrets.
function M.redis_status()
  if not redis then return reply(404, { error = { message = "no Redis: WECOM_REDIS_HOST is not set" } }) end
  return reply(200, redis:status())
end

return M
