-- Hostile callback requests, with a fixed seed: random bodies, mutations of
-- genuine ones re-signed so they reach the AES, padding, length, receiveid
-- and XML checks, random plaintexts sealed properly, and finalizers that
-- call the C core while it works. Never a raise, never a crash; always an
-- HTTP status and, when refused, a callback error; the handler only sees
-- what decrypted. (`make fuzz` runs libFuzzer on the same C for longer.)
local callback = require("wecom.callback")
local core = require("wecom.core")
local wx = require("support.wxcrypt")

local CASES = tonumber(os.getenv("WECOM_FUZZ_CASES") or "") or 3000
local NOW = 1700000000

-- Park-Miller: the same sequence on every Lua.
local function generator(seed)
  local state = seed
  return function(n)
    state = state * 16807 % 2147483647
    return state % n + 1
  end
end

local SNIPPETS = {
  "<", ">", "&", "&amp;", "&#0;", "&#x10FFFF;", "&e;", "<![CDATA[", "]]>", "<!DOCTYPE xml>", "<!--", "-->",
  "<?xml ?>", "<?pi?>", "</xml>", "<xml>", "<A>", "</A>", "<A/>", "<Encrypt>", "</Encrypt>", '="x"', "\0",
  "\255", "\192\175", "\237\160\128", "=", "==", "+", "/", "\n", " ", ("<A>"):rep(40), ("x"):rep(300),
}

local function mutate(int, s)
  local kind = int(6)
  local at = int(#s + 1)
  if kind == 1 then -- flip a byte
    if #s == 0 then return s end
    local i = int(#s)
    return s:sub(1, i - 1) .. string.char((s:byte(i) + int(255)) % 256) .. s:sub(i + 1)
  elseif kind == 2 then -- cut
    return s:sub(1, at - 1)
  elseif kind == 3 then -- insert a snippet
    return s:sub(1, at - 1) .. SNIPPETS[int(#SNIPPETS)] .. s:sub(at)
  elseif kind == 4 then -- delete a run
    return s:sub(1, at - 1) .. s:sub(at + int(16))
  elseif kind == 5 then -- repeat a run
    local len = int(32)
    return s:sub(1, at + len - 1) .. s:sub(at, at + len - 1) .. s:sub(at + len)
  end
  local bytes = {}
  for i = 1, int(64) - 1 do bytes[i] = string.char(int(256) - 1) end
  return s:sub(1, at - 1) .. table.concat(bytes) .. s:sub(at)
end

describe("wecom.callback under hostile input", function()
  local box = core.callback_box(wx.TOKEN, wx.KEY, wx.RECEIVEID)
  local GOOD = "<xml><ToUserName><![CDATA[" .. wx.RECEIVEID .. "]]></ToUserName><FromUserName><![CDATA[lisi]]>"
    .. "</FromUserName><CreateTime>" .. NOW .. "</CreateTime><MsgType><![CDATA[event]]></MsgType>"
    .. "<Event><![CDATA[delete_schedule]]></Event><CalId><![CDATA[wcABC]]></CalId>"
    .. "<ScheduleId><![CDATA[17c7d2bd9f20d652840f72f59e796AAA]]></ScheduleId></xml>"

  local function envelope(encrypt)
    return "<xml><ToUserName><![CDATA[" .. wx.RECEIVEID .. "]]></ToUserName><Encrypt><![CDATA[" .. encrypt
      .. "]]></Encrypt><AgentID><![CDATA[1]]></AgentID></xml>"
  end

  -- The query that signs whatever Encrypt the body holds (so the request
  -- gets past the signature), or a random one.
  local function signed_query(int, body)
    local encrypt = body:match("<Encrypt><!%[CDATA%[(.-)%]%]></Encrypt>") or ""
    local timestamp = tostring(NOW - int(3) + 2)
    local nonce = tostring(int(1000000))
    if int(10) == 1 then return { msg_signature = ("f"):rep(40), timestamp = timestamp, nonce = nonce } end
    return { msg_signature = box:sign(timestamp, nonce, encrypt), timestamp = timestamp, nonce = nonce }
  end

  -- Sealed by us, then its ciphertext bytes mutated and re-encoded: the
  -- AES output is then random-looking, so padding, length and receiveid
  -- meet every value.
  local function mutated_cipher(int)
    local encrypt = box:seal(GOOD, "1")
    local raw = wx.unbase64(encrypt)
    for _ = 1, int(3) do
      local i = int(#raw)
      raw = raw:sub(1, i - 1) .. string.char(int(256) - 1) .. raw:sub(i + 1)
    end
    if int(4) == 1 then raw = raw:sub(1, #raw - 32 * (int(2) - 1)) end
    return envelope(wx.base64(raw))
  end

  local function random_plaintext(int)
    local s = GOOD
    for _ = 1, int(4) do s = mutate(int, s) end
    return s
  end

  it(("answers %d hostile requests without raising"):format(CASES), function()
    local int = generator(20240613)
    local cb = assert(callback.new{ token = wx.TOKEN, encoding_aes_key = wx.KEY, receiveid = wx.RECEIVEID,
      clock = function() return NOW end })
    local handled, statuses = 0, {}
    local function fn(msg)
      handled = handled + 1
      assert(type(msg) == "table")
      if int(5) == 1 then error("handler trouble") end
      if int(5) == 1 then return nil, "not now" end
    end
    for case = 1, CASES do
      local body, query
      local kind = case % 5
      if kind == 0 then -- random bytes
        local bytes = {}
        for i = 1, int(200) - 1 do bytes[i] = string.char(int(256) - 1) end
        body = table.concat(bytes)
        query = signed_query(int, body)
      elseif kind == 1 then -- a genuine body, mutated, re-signed
        body = envelope(box:seal(GOOD, "1"))
        for _ = 1, int(3) do body = mutate(int, body) end
        query = signed_query(int, body)
      elseif kind == 2 then
        body = mutated_cipher(int)
        query = signed_query(int, body)
      else -- a new event (3), or a random plaintext (4), sealed properly: the handler or the parser meets it
        local timestamp = tostring(NOW)
        local plain = kind == 3 and GOOD:gsub("17c7d2bd9f20d652840f72f59e796AAA", "schedule-" .. case)
          or random_plaintext(int)
        local encrypt, signature, nonce = box:seal(plain, timestamp)
        body = envelope(encrypt)
        query = { msg_signature = signature, timestamp = timestamp, nonce = nonce }
        if kind == 4 and int(3) == 1 then query[({ "timestamp", "nonce", "msg_signature" })[int(3)]] =
          mutate(int, query.timestamp) end
      end
      local method = int(20) == 1 and "GET" or "POST"
      local ok, status, reply, err = pcall(cb.handle, cb, method, query, body, fn)
      assert(ok, status)
      assert(type(status) == "number" and type(reply) == "string", "case " .. case)
      statuses[status] = (statuses[status] or 0) + 1
      if status ~= 200 then
        assert(type(err) == "table" and err.kind == "callback" and type(err.reason) == "string", "case " .. case)
        assert(not err.message:find(wx.TOKEN, 1, true) and not err.message:find(wx.KEY, 1, true))
      end
      -- the parser on its own, on the same bytes
      local t, xerr = core.xml(body)
      assert(t or type(xerr) == "string")
    end
    -- every path was reached
    assert.is_true(handled > CASES / 10, "handled " .. handled)
    for _, s in ipairs{ 200, 400, 403, 500 } do
      assert.is_true((statuses[s] or 0) > 0, "no " .. s .. " answers")
    end
  end)

  it("is safe when finalizers call into the C core mid-call", function()
    local cb = assert(callback.new{ token = wx.TOKEN, encoding_aes_key = wx.KEY, receiveid = wx.RECEIVEID,
      clock = function() return NOW end })
    local encrypt, signature, nonce = box:seal(GOOD, tostring(NOW))
    local body = envelope(encrypt)
    local query = { msg_signature = signature, timestamp = tostring(NOW), nonce = nonce }
    local inside = 0
    local function finalizer()
      inside = inside + 1
      local e = box:seal(GOOD, "1")
      assert(box:open(box:sign("1", "n", e), "1", "n", e) == GOOD)
      assert(core.xml(GOOD).Event == "delete_schedule")
      assert(cb:decrypt(query, body))
    end
    local function garbage()
      if newproxy then -- Lua 5.1, LuaJIT: only userdata have __gc
        local p = newproxy(true)
        getmetatable(p).__gc = finalizer
        return p
      end
      return setmetatable({}, { __gc = finalizer })
    end
    local pause = collectgarbage("setpause", 10)
    local ok, err = pcall(function()
      for i = 1, math.max(50, math.floor(CASES / 10)) do
        for _ = 1, 20 do garbage() end
        local msg = assert(cb:decrypt(query, body))
        assert(msg.Event == "delete_schedule", i)
        local e2, s2, n2 = box:seal(("日"):rep(i), tostring(NOW))
        assert(box:open(s2, tostring(NOW), n2, e2) == ("日"):rep(i))
        assert(core.xml(envelope(e2)).Encrypt == e2)
      end
      collectgarbage()
      collectgarbage()
    end)
    collectgarbage("setpause", pause)
    assert(ok, err)
    assert.is_true(inside > 100, "finalizers ran " .. inside .. " times")
  end)
end)
