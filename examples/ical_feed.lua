-- An iCalendar subscription feed of examples/nginx.conf:
--   GET /calendars/<cal_id>.ics[?key=...]
-- answers the calendar as text/calendar (client:export_ical), cached in a
-- shared dict for `ttl` seconds, with an ETag so a client polling an
-- unchanged calendar gets 304 Not Modified.
--
-- With a secret, a feed URL needs its key (M.key(cal_id)): a calendar's
-- feed is readable by whoever has its URL, so hand out URLs with keys.
-- M.drop(cal_id) forgets a cached feed, e.g. when a callback says the
-- calendar or one of its schedules changed.
local M = {}

local conf = { ttl = 60, refresh_interval = 3600, lock_timeout = 60 }

-- opts: client (a wecom client), dict (an ngx.shared dict), ttl (seconds a
-- feed is cached), secret (when set, URLs need ?key=), refresh_interval
-- (how often clients are asked to poll).
function M.init(opts)
  for k, v in pairs(opts) do conf[k] = v end
  assert(conf.client and conf.dict, "ical_feed.init: client and dict are required")
end

function M.key(cal_id)
  return (ngx.encode_base64(ngx.hmac_sha1(conf.secret, cal_id)):gsub("[+/=]", { ["+"] = "-", ["/"] = "_", ["="] = "" }))
end

function M.drop(cal_id)
  conf.dict:delete("feed:" .. cal_id)
end

-- Whether the request's If-None-Match names this (weak) ETag.
local function not_modified(etag)
  local header = ngx.var.http_if_none_match
  if not header then return false end
  if header:find("^%s*%*%s*$") then return true end
  local bare = etag:gsub("^W/", "")
  for tag in header:gmatch("[^,%s]+") do
    if tag:gsub("^W/", "") == bare then return true end
  end
  return false
end

local function fail(status, text)
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain; charset=utf-8"
  ngx.say(text)
  return ngx.exit(status)
end

-- The feed's ETag and body, exported once per ttl: one worker exports
-- while the others wait for its result (a lock in the same dict), so an
-- expired feed polled by many clients costs one export.
local function feed(cal_id)
  local dict, key = conf.dict, "feed:" .. cal_id
  local deadline = ngx.now() + conf.lock_timeout
  while true do
    local cached = dict:get(key)
    if cached then
      local etag, body = cached:match("^([^\n]*)\n(.*)$")
      return etag, body
    end
    if dict:add("lock:" .. cal_id, true, conf.lock_timeout) then break end
    if ngx.now() > deadline then return nil, "timed out waiting for another worker's export" end
    ngx.sleep(0.05)
  end
  local parts = {}
  local res, err = conf.client:export_ical(cal_id, function(chunk) parts[#parts + 1] = chunk end,
    { refresh_interval = conf.refresh_interval })
  if not res then
    dict:delete("lock:" .. cal_id)
    return nil, err
  end
  local body = table.concat(parts)
  -- DTSTAMP is the time of the export: leave it out of the ETag, so an
  -- unchanged calendar keeps its ETag across exports (a weak one: the
  -- bytes differ, the meaning does not)
  local etag = ('W/"%s"'):format(ngx.md5((body:gsub("\r\nDTSTAMP:%d+T%d+Z", ""))))
  dict:set(key, etag .. "\n" .. body, conf.ttl) -- a feed too big for the dict is served, not cached
  dict:delete("lock:" .. cal_id)
  return etag, body
end

-- content_by_lua: serves /calendars/<cal_id>.ics
function M.serve(raw_cal_id)
  local cal_id = ngx.unescape_uri(raw_cal_id or "")
  if conf.secret and ngx.var.arg_key ~= M.key(cal_id) then return fail(403, "a key is needed for this feed") end
  local etag, body = feed(cal_id)
  if not etag then
    local err = body
    if type(err) ~= "table" then return fail(503, tostring(err)) end
    ngx.log(ngx.ERR, "ical feed ", cal_id, ": ", tostring(err))
    if err.kind == "validation" or err.errcode == 90457 or err.errcode == 90459 then
      return fail(404, "no such calendar")
    end
    return fail(502, "WeCom could not be read: " .. tostring(err.message))
  end
  ngx.header["ETag"] = etag
  ngx.header["Cache-Control"] = ("private, max-age=%d"):format(conf.ttl)
  if not_modified(etag) then
    ngx.status = ngx.HTTP_NOT_MODIFIED -- sent this way, the 304 keeps its ETag
    return ngx.send_headers()
  end
  ngx.header["Content-Type"] = "text/calendar; charset=utf-8"
  ngx.header["Content-Disposition"] = ('inline; filename="%s.ics"'):format(cal_id:gsub('[^%w%-_.]', "_"))
  ngx.print(body)
end

return M
