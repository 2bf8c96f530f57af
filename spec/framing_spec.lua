-- Strict HTTP/1.1 framing (RFC 9112) on both transports, against a raw
-- server that answers the first request with a hostile reply and keeps the
-- connection open: every ambiguity is refused (reason "protocol", or
-- "too_large" for an oversized head) and the connection is never reused, so
-- leftover bytes can't become the answer to the next call. The cosocket
-- transport runs in a live nginx (spec/support/ngx_app.lua, /transport).
local cosockets = require("support.cosockets")
local raw = require("support.raw")
local session = require("support.session")
local core = require("wecom.core")

local H = "HTTP/1.1 200 OK\r\n"
local CHUNKED = H .. "Transfer-Encoding: chunked\r\n\r\n"

-- name, the first reply, what the first call gets on both transports.
local CASES = {
  -- 6: the chunk-size line: hex digits only, extensions after ";"
  { "chunk size 0x10", CHUNKED .. "0x10\r\n\r\n", "protocol" },
  { "chunk size 5zz", CHUNKED .. "5zz\r\nhello\r\n0\r\n\r\n", "protocol" },
  { "chunk size line without digits", CHUNKED .. ";x\r\n\r\n", "protocol" },
  { "chunk size of 17 hex digits", CHUNKED .. "00000000000000002\r\n{}\r\n0\r\n\r\n", "protocol" },
  { "a chunk larger than max_response_bytes", CHUNKED .. "FFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n", "too_large" },
  { "chunk-size line longer than 1 KiB", CHUNKED .. "2;" .. ("x"):rep(2000) .. "\r\n{}\r\n0\r\n\r\n", "protocol" },
  -- 7: the CRLF after each chunk's data
  { "chunk data without its CRLF", CHUNKED .. "5\r\nhelloXX0\r\n\r\n", "protocol" },
  -- 8: Content-Length headers that disagree
  { "two Content-Length values", H .. "Content-Length: 2\r\nContent-Length: 4\r\n\r\n{}{}", "protocol" },
  { "a Content-Length list that disagrees", H .. "Content-Length: 2, 4\r\n\r\n{}{}", "protocol" },
  -- 9: Transfer-Encoding with Content-Length, or one that isn't plain chunked
  { "Transfer-Encoding and Content-Length",
    H .. "Transfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "protocol" },
  { "Transfer-Encoding gzip, chunked", H .. "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "protocol" },
  { "Transfer-Encoding in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "protocol" },
  -- 10: replies that can't have a body
  { "204 with a Content-Length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", "protocol" },
  { "304 with Transfer-Encoding", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "protocol" },
  -- 11: header lines
  { "obsolete line folding", H .. "X-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\n{}", "protocol" },
  { "a blank before the colon", H .. "Content-Length : 2\r\n\r\n{}", "protocol" },
  { "a header line without a colon", H .. "not a header\r\nContent-Length: 2\r\n\r\n{}", "protocol" },
  { "a 1xx head over the head limit",
    "HTTP/1.1 100 Continue\r\n" .. ("X-B: " .. ("b"):rep(1000) .. "\r\n"):rep(70) .. "\r\n" .. H ..
      "Content-Length: 2\r\n\r\n{}", "too_large" },
  { "a status line that isn't one", "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\n{}", "protocol" },
  -- issue 11, item 9: one reason for an oversized head on both transports
  { "a 10 MB header line", H .. "X-Big: " .. ("a"):rep(10 * 1024 * 1024) .. "\r\nContent-Length: 2\r\n\r\n{}", "too_large" },
  { "70 KB of header lines", H .. ("X-H: " .. ("b"):rep(100) .. "\r\n"):rep(700) .. "Content-Length: 2\r\n\r\n{}",
    "too_large" },
  { "trailers over the head limit", CHUNKED .. "2\r\n{}\r\n0\r\n" .. ("X-T: " .. ("t"):rep(1000) .. "\r\n"):rep(70) ..
    "\r\n", "too_large" },
}

-- Replies whose framing is exact: answered, and the connection reused.
local GOOD = {
  { "chunk extensions and a trailer", CHUNKED .. "2;name=value\r\n{}\r\n1 ;x\r\n \r\n0\r\nX-T: 1\r\n\r\n", "{} " },
  { "Content-Length given twice alike", H .. "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", "{}" },
  { "a 100 Continue first", "HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\n" .. H .. "Content-Length: 2\r\n\r\n{}", "{}" },
  { "a 204", "HTTP/1.1 204 No Content\r\n\r\n", "" },
}

local NEXT = '{"errcode":0,"errmsg":"ok"}'

local function server(first)
  return raw.start{ replies = { { send = first } }, default = { send = raw.reply(NEXT) } }
end

describe("reply framing", function()
  local ngx_transport

  setup(function() ngx_transport = cosockets.start() end)
  teardown(function() ngx_transport:stop() end)

  -- The two transports, each answering {results of two GETs in a row}.
  local transports = {
    curl = function(srv, options)
      local s = session(options or { timeout = 3 })
      local out = {}
      for i = 1, 2 do
        local status, body, message = s:request("GET", srv.base_url .. "/" .. i)
        out[i] = status and { status = status, body = body } or { reason = body, message = message }
      end
      s:close()
      return out
    end,
    ngx = function(srv, options)
      local calls = {}
      for i = 1, 2 do calls[i] = { requests = { { method = "GET", url = srv.base_url .. "/" .. i } } } end
      local results = ngx_transport:run(calls, options or { timeout = 3 })
      return { results[1][1], results[2][1] }
    end,
  }

  for _, name in ipairs{ "curl", "ngx" } do
    local run = transports[name]

    -- The two results, the connections and the requests the server saw,
    -- with `first` as its first reply; the server always stopped.
    local function exchange(first)
      local srv = server(first)
      local ok, out = pcall(run, srv)
      local connections, requests = srv:connections(), srv:requests()
      srv:stop()
      assert(ok, out)
      return out, connections, requests
    end

    describe("through " .. name, function()
      for _, case in ipairs(CASES) do
        it("refuses " .. case[1] .. " and never reuses the connection", function()
          local out, connections = exchange(case[2])
          assert.is_nil(out[1].status, out[1].body)
          assert.equal(case[3], out[1].reason, out[1].message)
          assert.equal(NEXT, out[2].body, out[2].message)
          assert.equal(2, connections)
        end)
      end

      for _, case in ipairs(GOOD) do
        it("takes " .. case[1] .. " and reuses the connection", function()
          local out, connections = exchange(case[2])
          assert.equal(case[3], out[1].body, out[1].message)
          assert.equal(NEXT, out[2].body, out[2].message)
          -- libcurl can't see bytes after a reply without a body, so it
          -- never reuses the connection of one
          assert.equal((name == "curl" and case[1] == "a 204") and 2 or 1, connections)
        end)
      end

      it("never reuses the connection of a reply without a body that bytes followed", function()
        local out, connections = exchange("HTTP/1.1 204 No Content\r\n\r\nhello")
        -- cosockets see the bytes and refuse the reply; libcurl drops them unseen
        if name == "ngx" then assert.equal("protocol", out[1].reason) else assert.equal(204, out[1].status) end
        assert.equal(NEXT, out[2].body, out[2].message)
        assert.equal(2, connections)
      end)

      it("asks for an uncompressed reply and hands a compressed one over as it came", function()
        local p = io.popen("printf '%s' | gzip -c", "r")
        local gz = p:read("*a")
        p:close()
        local out, _, requests = exchange(H .. "Content-Encoding: gzip\r\nContent-Length: " .. #gz .. "\r\n\r\n" .. gz)
        assert.equal(200, out[1].status, out[1].message)
        assert.equal(gz, out[1].body)
        assert.truthy(requests[1].text:find("\r\nAccept-Encoding: identity\r\n", 1, true), requests[1].text)
      end)
    end)
  end

  describe("a user_agent with CR or LF (item 13)", function()
    local UA = "wecom\r\nX-Injected: 1"

    it("is refused by the libcurl session", function()
      local o = assert(require("wecom.options").transport())
      o.user_agent = UA
      assert.has_error(function() core.session(o) end, "session option user_agent: contains a control character")
      o.user_agent = "wecom\0x"
      assert.has_error(function() core.session(o) end)
    end)

    it("is refused by the cosocket transport", function()
      local srv = raw.start{ default = { send = raw.reply(NEXT) } }
      -- around wecom.options, which refuses it first
      local reply = ngx_transport:post{
        raw_options = { timeout = 3, connect_timeout = 3, max_response_bytes = 1000, user_agent = UA },
        calls = { { requests = { { method = "GET", url = srv.base_url .. "/" } } } },
      }
      local requests = srv:requests()
      srv:stop()
      assert.truthy(reply.error and reply.error:find("user_agent", 1, true), tostring(reply.error))
      assert.equal(0, #requests)
    end)
  end)

  it("reads a head line trickled byte by byte in linear time (item 14)", function()
    local long = ("a"):rep(16000)
    local srv = raw.start{
      replies = { { trickle = H .. "X-Long: " .. long .. "\r\nContent-Length: 2\r\n\r\n{}", interval = 0.00005 } },
    }
    local reply = ngx_transport:post{
      options = { timeout = 20 }, count_alloc = true,
      calls = { { requests = { { method = "GET", url = srv.base_url .. "/" } } } },
    }
    srv:stop()
    assert.equal("{}", reply.results[1][1].body, reply.results[1][1].message)
    -- a copy of the partial line per piece would allocate ~n^2/2 bytes: 128 MB
    -- for 16,000 one-byte pieces, still 8 MB if they came 16 at a time
    assert.is_true(reply.alloc_kb < 4096, ("%.0f KB allocated"):format(reply.alloc_kb))
  end)
end)
