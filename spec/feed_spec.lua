-- The iCalendar feed of examples/ (ical_feed.lua in examples/nginx.conf) in
-- a real nginx against the emulator: what a calendar client subscribing to
-- /calendars/<cal_id>.ics sees. Requests go through the curl program, so
-- headers (ETag, If-None-Match) are plain to see.
local check = require("support.ical_check")
local emulator = require("support.emulator")
local launcher = require("wecom.emulator.launcher")
local shell = require("support.shell")

local q = shell.quote
local SECRET = "feed-secret-for-the-spec"
local MON = 1795399200 -- 2026-11-23 10:00 +08:00

-- GET with curl: status, headers (lower-case names), body.
local function get(url, headers)
  local head, body = os.tmpname(), os.tmpname()
  local args = {}
  for k, v in pairs(headers or {}) do args[#args + 1] = "-H " .. q(k .. ": " .. v) end
  local rc, out = check.run(("curl -sS --max-time 30 -D %s -o %s -w '%%{http_code}' %s %s"):format(q(head), q(body),
    table.concat(args, " "), q(url)))
  assert.equal(0, rc, out)
  local h = {}
  for line in io.lines(head) do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then h[k:lower()] = v end
  end
  local f = io.open(body, "rb")
  local text = f:read("*a")
  f:close()
  os.remove(head)
  os.remove(body)
  return tonumber(out), h, text
end

-- The feed key as the example computes it, here with the openssl program.
local function key(cal_id)
  local rc, out = check.run(("printf %%s %s | openssl dgst -sha1 -hmac %s -binary | base64 | tr '+/' '-_' | tr -d '=\\n'")
    :format(q(cal_id), q(SECRET)))
  assert.equal(0, rc, out)
  return out
end

describe("the iCalendar feed (examples/ical_feed.lua)", function()
  local emu, client, cal_id

  setup(function()
    check.ensure()
    emu = emulator.start()
  end)
  teardown(function() emu:stop() end)

  before_each(function()
    client, cal_id = emu:fresh{ summary = "Releases", color = "#3F7FBF" }
    assert(client:schedule_add{ schedule = { cal_id = cal_id, summary = "release train", start_time = MON,
      end_time = MON + 3600, reminders = { is_repeat = 1, repeat_type = 1, is_custom_repeat = 1, repeat_interval = 2,
      repeat_day_of_week = { 1, 4 }, timezone = 8 } } })
    emu:seed(cal_id, 30, { cancelled_every = 10 })
  end)

  describe("in examples/nginx.conf", function()
    local example
    setup(function() example = require("support.example").start(emu, { WECOM_FEED_SECRET = SECRET }) end)
    teardown(function() assert.is_true(example:stop()) end)

    local function url(id, with_key)
      return ("%s/calendars/%s.ics%s"):format(example.base_url, id, with_key and ("?key=" .. key(id)) or "")
    end

    it("serves the calendar as text/calendar that libical and ical.js read", function()
      local status, h, body = get(url(cal_id, true))
      assert.equal(200, status, body)
      assert.equal("text/calendar; charset=utf-8", h["content-type"])
      assert.truthy(h.etag:find('^W/"%x+"$'), h.etag)
      local path = check.file(body)
      local ok, out = check.libical(path)
      assert.is_true(ok, out)
      local js = assert(check.icaljs(path))
      os.remove(path)
      assert.equal(31, js.events)
      assert.truthy(body:find("\r\nNAME:Releases\r\n", 1, true))
      assert.truthy(body:find("\r\nRRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;WKST=MO\r\n", 1, true))
      assert.truthy(body:find("\r\nREFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n", 1, true))
    end)

    it("answers from its cache, and 304 to a client that has it", function()
      local _, h, body = get(url(cal_id, true))
      local exports = emu:calls("oa/schedule/get_by_calendar")
      local status, h2, body2 = get(url(cal_id, true))
      assert.equal(200, status)
      assert.equal(body, body2)
      assert.equal(h.etag, h2.etag)
      local body3
      status, h2, body3 = get(url(cal_id, true), { ["If-None-Match"] = h.etag })
      assert.equal(304, status)
      assert.equal("", body3)
      assert.equal(h.etag, h2.etag)
      status = get(url(cal_id, true), { ["If-None-Match"] = '"something-else"' })
      assert.equal(200, status)
      assert.equal(exports, emu:calls("oa/schedule/get_by_calendar"))
    end)

    it("needs the URL's key", function()
      assert.equal(403, (get(url(cal_id, false))))
      assert.equal(403, (get(url(cal_id, false) .. "?key=" .. key("another-calendar"))))
    end)

    it("answers 404 for an unknown calendar and 502 when WeCom fails", function()
      assert.equal(404, (get(url("wcNoSuchCalendar", true))))
      local other = assert(client:calendar_add{ calendar = { summary = "other", color = "#000000" } }).cal_id
      emu:fault{ path = "oa/schedule/get_by_calendar", errcode = 48002, times = 1 }
      local status, _, body = get(url(other, true))
      assert.equal(502, status)
      assert.truthy(body:find("48002", 1, true), body)
    end)
  end)

  -- The same module with a 1 s cache and a location that drops a feed, as a
  -- callback handler would.
  describe("its cache", function()
    local nginx, http
    setup(function()
      local root = shell.cwd()
      nginx = assert(launcher.start_nginx({ port = 0 }, function(dir, port)
        return launcher.conf_head(dir, 2) .. ([[
http {
%s
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_shared_dict feeds 5m;
  init_by_lua_block {
    local client = assert(require("wecom").new{ base_url = %q, corpid = %q, corpsecret = %q })
    require("ical_feed").init{ client = client, dict = ngx.shared.feeds, ttl = 1 }
  }
  server {
    listen 127.0.0.1:%d;
    location ~ ^/calendars/(?<id>[^/]+)\.ics$ { content_by_lua_block { require("ical_feed").serve(ngx.var.id) } }
    location ~ ^/drop/(?<id>[^/]+)$ { content_by_lua_block { require("ical_feed").drop(ngx.var.id) ngx.say("dropped") } }
  }
}
]]):format(launcher.http_common(dir, root .. "/examples/?.lua;"), root, emu.base_url, emu.corpid, emu.corpsecret, port)
      end))
      nginx.base_url = ("http://127.0.0.1:%d"):format(nginx.port)
      http = require("support.session"){ timeout = 30 }
    end)
    teardown(function()
      http:close()
      assert.is_true(nginx:stop())
    end)

    local function feed() return get(("%s/calendars/%s.ics"):format(nginx.base_url, cal_id)) end

    it("is dropped on request: the next client sees the change", function()
      local _, h, body = feed()
      assert(client:schedule_add{ schedule = { cal_id = cal_id, summary = "added later", start_time = MON,
        end_time = MON + 60 } })
      local _, h2, body2 = feed()
      assert.equal(body, body2) -- still cached
      assert.equal(h.etag, h2.etag)
      assert.equal(200, (http:request("GET", nginx.base_url .. "/drop/" .. cal_id)))
      _, h2, body2 = feed()
      assert.truthy(body2:find("SUMMARY:added later", 1, true))
      assert.are_not.equal(h.etag, h2.etag)
    end)

    it("keeps its ETag across exports of an unchanged calendar", function()
      local _, h = feed()
      local exports = emu:calls("oa/schedule/get_by_calendar")
      os.execute("sleep 1.2")
      local status, h2 = get(("%s/calendars/%s.ics"):format(nginx.base_url, cal_id), { ["If-None-Match"] = h.etag })
      assert.equal(304, status)
      assert.equal(h.etag, h2.etag)
      assert.is_true(emu:calls("oa/schedule/get_by_calendar") > exports) -- it did export again
    end)

    it("exports once for many clients at once", function()
      http:request("GET", nginx.base_url .. "/drop/" .. cal_id)
      emu:fault{ path = "oa/schedule/get_by_calendar", latency_ms = 300, times = -1 }
      local pages = emu:calls("oa/schedule/get_by_calendar")
      local reqs = {}
      for i = 1, 20 do reqs[i] = { method = "GET", url = ("%s/calendars/%s.ics"):format(nginx.base_url, cal_id) } end
      local results = http:request_many(reqs, 20)
      emu:clear_faults()
      for _, r in ipairs(results) do
        assert.equal(200, r.status, r.message or r.body)
        assert.equal(results[1].body, r.body)
      end
      -- one export: a page of 31 schedules, then the empty page that ends it
      assert.equal(2, emu:calls("oa/schedule/get_by_calendar") - pages)
    end)
  end)
end)
