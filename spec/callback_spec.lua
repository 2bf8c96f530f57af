-- wecom.callback in plain Lua: the official test vectors, round trips, every
-- refusal at its boundary, the XML parser's limits, handling each message
-- once through the seen store, and thousands of hostile requests. The
-- openssl command line is the independent implementation the crafted
-- ciphertexts come from.
local callback = require("wecom.callback")
local core = require("wecom.core")
local wx = require("support.wxcrypt")

local NOW = 1700000000

local function new(o)
  local opts = { token = wx.TOKEN, encoding_aes_key = wx.KEY, receiveid = wx.RECEIVEID,
    clock = function() return NOW end }
  for k, v in pairs(o or {}) do
    if v == false then opts[k] = nil else opts[k] = v end
  end
  return assert(callback.new(opts))
end

-- A box with the same secrets, to sign and seal what the tests send.
local box = core.callback_box(wx.TOKEN, wx.KEY, wx.RECEIVEID)

local function envelope(encrypt)
  return ("<xml><ToUserName><![CDATA[%s]]></ToUserName><Encrypt><![CDATA[%s]]></Encrypt>"
    .. "<AgentID><![CDATA[1000002]]></AgentID></xml>"):format(wx.RECEIVEID, encrypt)
end

-- A POST of `xml` as WeCom sends it: sealed afresh, signed at `timestamp`.
local function post(xml, timestamp)
  timestamp = tostring(timestamp or NOW)
  local encrypt, signature, nonce = box:seal(xml, timestamp)
  return { msg_signature = signature, timestamp = timestamp, nonce = nonce }, envelope(encrypt)
end

-- A POST whose Encrypt is exactly these plaintext bytes, encrypted by openssl.
local function crafted(plain, key)
  local encrypt = wx.encrypt_raw(plain, key)
  local nonce = "42"
  return { msg_signature = box:sign(tostring(NOW), nonce, encrypt), timestamp = tostring(NOW), nonce = nonce },
    envelope(encrypt)
end

-- cb:handle of a fresh delivery of `xml`.
local function deliver(cb, xml, fn, timestamp)
  local q, body = post(xml, timestamp)
  return cb:handle("POST", q, body, fn)
end

local function modify_schedule(schedule_id, create_time)
  return ("<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>"
    .. "<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[modify_schedule]]></Event>"
    .. "<CalId><![CDATA[wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA]]></CalId><ScheduleId><![CDATA[%s]]></ScheduleId></xml>")
    :format(wx.RECEIVEID, create_time or NOW, schedule_id or "17c7d2bd9f20d652840f72f59e796AAA")
end

-- Asserts a refusal: nil, err of kind "callback" with this reason, and no
-- secret (or any of `hidden`) in its message.
local function refused(reason, msg, err, hidden)
  assert.is_nil(msg)
  assert.is_table(err, "expected an error")
  assert.equal("callback", err.kind)
  assert.equal(reason, err.reason, err.message)
  local secrets = { wx.TOKEN, wx.KEY }
  for _, h in ipairs(hidden or {}) do secrets[#secrets + 1] = h end
  for _, secret in ipairs(secrets) do
    assert.is_nil(err.message:find(secret, 1, true), "the error shows a secret: " .. err.message)
  end
  return err
end

describe("wecom.callback", function()
  describe("the official test vectors", function()
    it("verifies the URL check and answers echostr's plaintext", function()
      local cb = new{ clock = function() return 1409659589 + 5 end }
      assert.equal(wx.GET_PLAINTEXT, cb:verify_url(wx.GET))
    end)

    it("decrypts the sample message into WeCom's fields, CreateTime and AgentID as integers", function()
      local cb = new{ clock = function() return 1409659813 end }
      local msg = assert(cb:decrypt(wx.POST_QUERY, wx.POST_BODY))
      assert.same({
        ToUserName = "wx5823bf96d3bd56c7", FromUserName = "mycreate", CreateTime = 1409659813,
        MsgType = "text", Content = "hello", MsgId = "4561255354251345929", AgentID = 218,
      }, msg)
      if math.type then
        assert.equal("integer", math.type(msg.CreateTime))
        assert.equal("integer", math.type(msg.AgentID))
      end
    end)

    it("signs as the sample does, and openssl reads the sample's plaintext the same way", function()
      local q = wx.POST_QUERY
      assert.equal(q.msg_signature, box:sign(q.timestamp, q.nonce, wx.POST_ENCRYPT))
      local plain = wx.decrypt_raw(wx.POST_ENCRYPT)
      local cb = new{ clock = function() return 1409659813 end }
      local msg = cb:decrypt(q, wx.POST_BODY)
      assert.equal(30, plain:byte(-1)) -- the sample's padding: 30 bytes
      assert.equal(wx.RECEIVEID, plain:sub(-30 - #wx.RECEIVEID, -31))
      assert.truthy(plain:find("<Content><![CDATA[hello]]></Content>", 1, true))
      assert.equal("hello", msg.Content)
    end)
  end)

  describe("encrypt and decrypt", function()
    it("round-trips CJK text and emoji through a passive reply", function()
      local cb = new()
      local text = "会议改到下午三点 · 日程 🗓 ✓ «ok» & <tags>"
      local reply = assert(cb:encrypt(("<xml><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content>"
        .. "<CreateTime>%d</CreateTime></xml>"):format(text, NOW)))
      local fields = assert(core.xml(reply))
      assert.same({ "Encrypt", "MsgSignature", "Nonce", "TimeStamp" }, (function()
        local names = {}
        for k in pairs(fields) do names[#names + 1] = k end
        table.sort(names)
        return names
      end)())
      assert.equal(tostring(NOW), fields.TimeStamp)
      local msg = assert(cb:decrypt({ msg_signature = fields.MsgSignature, timestamp = fields.TimeStamp,
        nonce = fields.Nonce }, reply))
      assert.equal(text, msg.Content)
      assert.equal(NOW, msg.CreateTime)
    end)

    it("encrypts as WeCom does: openssl finds the random bytes, length, message, receiveid, 32-byte padding", function()
      for _, n in ipairs{ 0, 1, 11, 12, 13, 43, 44, 45, 1000 } do
        local message = ("x"):rep(n)
        if n % 2 == 1 then message = ("日"):rep(n) end
        local encrypt = box:seal(message, "1")
        local plain = wx.decrypt_raw(encrypt)
        assert.equal(0, #plain % 32)
        local pad = plain:byte(-1)
        assert.is_true(pad >= 1 and pad <= 32)
        assert.equal(string.char(pad):rep(pad), plain:sub(-pad))
        assert.equal(wx.be32(#message), plain:sub(17, 20))
        assert.equal(message, plain:sub(21, 20 + #message))
        assert.equal(wx.RECEIVEID, plain:sub(21 + #message, -pad - 1))
        -- 20 + 12 + 18 = 50 ... a length that fills whole blocks gets a whole block of padding
        if (20 + #message + #wx.RECEIVEID) % 32 == 0 then assert.equal(32, pad) end
      end
    end)

    it("never repeats the random bytes or the nonce", function()
      local seen = {}
      for _ = 1, 200 do
        local encrypt, _, nonce = box:seal("same", "1")
        local head = wx.decrypt_raw(encrypt):sub(1, 16)
        assert.is_nil(seen[head])
        seen[head] = true
        assert.truthy(nonce:match("^%d+$"))
      end
    end)

    it("takes a nonce when given one", function()
      local encrypt, signature, nonce = box:seal("m", "7", "nonce-1")
      assert.equal("nonce-1", nonce)
      assert.equal(box:sign("7", "nonce-1", encrypt), signature)
    end)
  end)

  describe("refuses", function()
    local cb
    before_each(function() cb = new() end)

    it("a signature one hex digit off, in capitals, or of another length", function()
      local q, body = post(modify_schedule())
      local sig = q.msg_signature
      local last = sig:sub(40)
      q.msg_signature = sig:sub(1, 39) .. (last == "0" and "1" or "0")
      refused("signature", cb:decrypt(q, body))
      q.msg_signature = sig:upper()
      if q.msg_signature ~= sig then refused("signature", cb:decrypt(q, body)) end
      q.msg_signature = sig:sub(1, 39)
      refused("signature", cb:decrypt(q, body))
      q.msg_signature = sig .. "0"
      refused("signature", cb:decrypt(q, body))
      q.msg_signature = sig
      assert.truthy(cb:decrypt(q, body))
    end)

    it("a signature made with another token, or over another timestamp or nonce", function()
      local q, body = post(modify_schedule())
      local other = core.callback_box("another-token", wx.KEY, wx.RECEIVEID)
      local encrypt = core.xml(body).Encrypt
      refused("signature", cb:decrypt({ msg_signature = other:sign(q.timestamp, q.nonce, encrypt),
        timestamp = q.timestamp, nonce = q.nonce }, body))
      refused("signature", cb:decrypt({ msg_signature = q.msg_signature, timestamp = tostring(NOW - 1),
        nonce = q.nonce }, body))
      refused("signature", cb:decrypt({ msg_signature = q.msg_signature, timestamp = q.timestamp,
        nonce = q.nonce .. "1" }, body))
    end)

    it("padding 0 and 33, and padding bytes that differ; accepts padding 32", function()
      local msg = modify_schedule()
      -- a body one byte short of whole blocks, then a single 0 byte
      local short = msg .. (" "):rep((31 - (20 + #msg + #wx.RECEIVEID) % 32) % 32)
      refused("decrypt", cb:decrypt(crafted(wx.plaintext(short, { fill = "\0" }))))
      refused("decrypt", cb:decrypt(crafted(wx.plaintext(short, { fill = ("\33"):rep(33) }))))
      -- the last byte says 5, the one before it isn't 5
      local five = msg .. (" "):rep((27 - (20 + #msg + #wx.RECEIVEID) % 32) % 32)
      refused("decrypt", cb:decrypt(crafted(wx.plaintext(five, { fill = "\5\5\5\4\5" }))))
      refused("decrypt", cb:decrypt(crafted(wx.plaintext(five, { fill = "\4\5\5\5\5" }))))
      assert.truthy(cb:decrypt(crafted(wx.plaintext(five, { fill = "\5\5\5\5\5" }))))
      -- whole blocks: a whole block of 32s
      local full = msg .. (" "):rep((32 - (20 + #msg + #wx.RECEIVEID) % 32) % 32)
      local plain = wx.plaintext(full)
      assert.equal(("\32"):rep(32), plain:sub(-32))
      assert.truthy(cb:decrypt(crafted(plain)))
      plain = plain:sub(1, -33) .. ("\32"):rep(31) .. "\31"
      refused("decrypt", cb:decrypt(crafted(plain)))
    end)

    it("a length one past the end, or leaving no room for the receiveid", function()
      local msg = modify_schedule()
      local room = #msg + #wx.RECEIVEID
      assert.truthy(cb:decrypt(crafted(wx.plaintext(msg, { length = wx.be32(#msg) }))))
      refused("decrypt", cb:decrypt(crafted(wx.plaintext(msg, { length = wx.be32(room + 1) }))))
      refused("decrypt", cb:decrypt(crafted(wx.plaintext(msg, { length = wx.be32(2 ^ 32 - 1) }))))
      refused("receiveid", cb:decrypt(crafted(wx.plaintext(msg, { length = wx.be32(room) }))))
      refused("receiveid", cb:decrypt(crafted(wx.plaintext(msg, { length = wx.be32(#msg + 1) }))))
      refused("receiveid", cb:decrypt(crafted(wx.plaintext(msg, { length = wx.be32(#msg - 1) }))))
    end)

    it("a receiveid one byte off, shorter, longer, or empty", function()
      local msg = modify_schedule()
      local rid = wx.RECEIVEID
      for _, other in ipairs{ rid:sub(1, -2) .. "8", "X" .. rid:sub(2), rid:sub(1, -2), rid .. "7", "",
        rid:upper() } do
        refused("receiveid", cb:decrypt(crafted(wx.plaintext(msg, { receiveid = other }))))
      end
      assert.truthy(cb:decrypt(crafted(wx.plaintext(msg, { receiveid = rid }))))
    end)

    it("a timestamp max_age + 1 seconds old or ahead; accepts max_age", function()
      local q, body = post(modify_schedule(), NOW - 600)
      assert.truthy(cb:decrypt(q, body))
      refused("expired", cb:decrypt(post(modify_schedule(), NOW - 601)))
      assert.truthy(cb:decrypt(post(modify_schedule(), NOW + 600)))
      refused("expired", cb:decrypt(post(modify_schedule(), NOW + 601)))
      local short = new{ max_age = 30 }
      assert.truthy(short:decrypt(post(modify_schedule(), NOW - 30)))
      local err = refused("expired", short:decrypt(post(modify_schedule(), NOW - 31)))
      assert.truthy(err.message:find("31 s old", 1, true), err.message)
      -- the URL check too
      local stale = new{ clock = function() return 1409659589 + 601 end }
      refused("expired", stale:verify_url(wx.GET))
    end)

    it("Encrypt that isn't strict base64 or whole 32-byte blocks", function()
      local msg = modify_schedule()
      local encrypt = wx.encrypt_raw(wx.plaintext(msg))
      local function try(e)
        local nonce = "1"
        return cb:decrypt({ msg_signature = box:sign(tostring(NOW), nonce, e), timestamp = tostring(NOW),
          nonce = nonce }, envelope(e))
      end
      assert.truthy(try(encrypt))
      refused("decrypt", try(encrypt:sub(1, -2)))                       -- not a multiple of 4
      refused("decrypt", try(encrypt:sub(1, 10) .. "*" .. encrypt:sub(12)))
      refused("decrypt", try(encrypt:sub(1, 10) .. "=" .. encrypt:sub(12)))
      refused("decrypt", try(encrypt:sub(1, 10) .. "\n" .. encrypt:sub(12)))
      refused("decrypt", try(encrypt:sub(1, 10) .. "-" .. encrypt:sub(12))) -- base64url is not WeCom's
      refused("decrypt", try(""))
      refused("decrypt", try(wx.encrypt_raw(wx.plaintext(msg):sub(1, -17)))) -- 16-byte blocks only
      -- the same bytes with a spare bit set: one encoding per byte string
      assert.equal("=", encrypt:sub(-1)) -- 32k bytes never fill whole base64 groups of 3... unless 3 | k
      local data_end = encrypt:find("=", 1, true) - 1
      local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
      local v = B64:find(encrypt:sub(data_end, data_end), 1, true) - 1
      local sibling = v % 2 == 0 and v + 1 or v - 1
      refused("decrypt", try(encrypt:sub(1, data_end - 1) .. B64:sub(sibling + 1, sibling + 1)
        .. encrypt:sub(data_end + 1)))
      -- another key: the padding comes out wrong (or, rarely, the length or receiveid)
      local other = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
      local e2 = wx.encrypt_raw(wx.plaintext(msg), other)
      local _, err = try(e2)
      assert.truthy(err.reason == "decrypt" or err.reason == "receiveid", err.message)
    end)

    it("missing, repeated and malformed query parameters", function()
      local q, body = post(modify_schedule())
      for _, name in ipairs{ "msg_signature", "timestamp", "nonce" } do
        local bad = { msg_signature = q.msg_signature, timestamp = q.timestamp, nonce = q.nonce }
        bad[name] = nil
        refused("request", cb:decrypt(bad, body))
        bad[name] = { q[name], q[name] }
        local err = refused("request", cb:decrypt(bad, body))
        assert.truthy(err.message:find(name, 1, true))
        bad[name] = true -- ?nonce with no value, as ngx.req.get_uri_args gives it
        refused("request", cb:decrypt(bad, body))
      end
      refused("request", cb:decrypt(nil, body))
      refused("request", cb:decrypt(q, nil))
      refused("request", cb:decrypt({ msg_signature = q.msg_signature, timestamp = "17e8", nonce = q.nonce }, body))
      refused("request", cb:decrypt({ msg_signature = q.msg_signature, timestamp = "-5", nonce = q.nonce }, body))
      refused("request", cb:verify_url({ msg_signature = "x", timestamp = "1", nonce = "1" }))
    end)

    it("bodies over 1 MiB before parsing them", function()
      local q = post(modify_schedule())
      local big = "<xml>" .. ("x"):rep(callback.MAX_BYTES) .. "</xml>"
      local err = refused("too_large", cb:decrypt(q, big))
      assert.truthy(err.message:find("1048576", 1, true))
      local msg, xerr = core.xml(big)
      assert.is_nil(msg)
      assert.truthy(xerr:find("larger than", 1, true))
    end)

    it("envelopes and messages that aren't the documented XML", function()
      local q, body = post(modify_schedule())
      refused("xml", cb:decrypt(q, "not xml"))
      refused("xml", cb:decrypt(q, body:gsub("<Encrypt>", "<Encrypted>"):gsub("</Encrypt>", "</Encrypted>")))
      refused("xml", cb:decrypt(q, body:gsub("</xml>", "<Encrypt>x</Encrypt></xml>")))
      refused("xml", cb:decrypt(q, '<!DOCTYPE xml [<!ENTITY e "x">]>' .. body))
      -- a message that decrypts but isn't XML, or whose CreateTime isn't Unix seconds
      refused("xml", cb:decrypt(post("plain text")))
      refused("xml", cb:decrypt(post('<?xml version="1.0"?><!DOCTYPE x><xml/>')))
      local m, e = cb:decrypt(post("<xml><CreateTime>soon</CreateTime></xml>"))
      local err = refused("xml", m, e, { "soon" })
      assert.truthy(err.message:find("CreateTime", 1, true))
    end)

    it("never shows the plaintext of what it refused", function()
      local secret = "the-secret-plan-" .. ("z"):rep(20)
      for _, xml in ipairs{ "<xml><Content>" .. secret .. "</Content>", "<xml>" .. secret .. "</xml>",
        "<!DOCTYPE " .. secret .. ">", "<xml><" .. secret .. " a='1'/></xml>", secret } do
        local _, err = cb:decrypt(post(xml))
        refused("xml", nil, err, { secret, "secret-plan" })
      end
      local _, err = cb:decrypt(crafted(wx.plaintext(secret, { receiveid = "wwother" })))
      refused("receiveid", nil, err, { secret, "wwother" })
    end)
  end)

  describe("the XML parser (core.xml)", function()
    it("takes CDATA and plain text, entities and character references, and nested, repeated elements", function()
      local t = assert(core.xml('<?xml version="1.0" encoding="UTF-8"?>\n<xml>\n  <A><![CDATA[<b>&amp;]]></A>'
        .. "<B>1 &lt; 2 &amp;&amp; &quot;q&quot; &apos;a&apos; &#20013;&#x6587;&#x1F5D3;</B>"
        .. "<C/><D></D><E> x <![CDATA[y]]> z </E>"
        .. "<List><Item><Id>1</Id></Item><Item><Id>2</Id></Item><Item><Id>3</Id></Item></List>"
        .. "<Twice>a</Twice><Twice>b</Twice><Nested><Deep><Deeper>v</Deeper></Deep></Nested>\n</xml>\n"))
      assert.same({
        A = "<b>&amp;", B = '1 < 2 && "q" \'a\' 中文🗓', C = "", D = "", E = " x y z ",
        List = { Item = { { Id = "1" }, { Id = "2" }, { Id = "3" } } },
        Twice = { "a", "b" }, Nested = { Deep = { Deeper = "v" } },
      }, t)
      assert.same({}, core.xml("<xml/>"))
      assert.same({}, core.xml("<xml>\n</xml>"))
      assert.same({ A = "\r\n\t" }, core.xml("<xml><A>\r\n\t</A></xml>"))
    end)

    it("refuses DOCTYPE, entities, comments, instructions, attributes, mixed content and broken markup", function()
      local cases = {
        { '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml><A>&b;</A></xml>', "DOCTYPE" },
        { '<?xml version="1.0"?><!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml/>', "DOCTYPE" },
        { "<xml><A>&nbsp;</A></xml>", "entity" },
        { "<xml><A>&lt</A></xml>", "entity" },
        { "<xml><A>&#0;</A></xml>", "character reference" },
        { "<xml><A>&#xD800;</A></xml>", "character reference" },
        { "<xml><A>&#x110000;</A></xml>", "character reference" },
        { "<xml><A>&#;</A></xml>", "character reference" },
        { "<xml><!-- c --><A>1</A></xml>", "comment" },
        { "<xml><A><!-- c -->1</A></xml>", "comment" },
        { "<!-- c --><xml/>", "comment" },
        { '<?xml-stylesheet href="x"?><xml/>', "processing instruction" },
        { "<xml><?php echo 1 ?></xml>", "processing instruction" },
        { '<xml><A id="1">x</A></xml>', "attributes" },
        { '<xml a="1"/>', "attributes" },
        { "<xml><A>x<B>y</B></A></xml>", "next to text" },
        { "<xml><A><B>y</B>x</A></xml>", "next to elements" },
        { "<xml>text</xml>", "text directly" },
        { "<xml><A>1</B></xml>", "mismatched" },
        { "<xml><A>1</A>", "unexpected end" },
        { "<xml><A><![CDATA[1</A></xml>", "CDATA" },
        { "<xml></xml><xml></xml>", "after </xml>" },
        { "<xml/>trailing", "after </xml>" },
        { "<XML/>", "root" },
        { "<other/>", "root" },
        { "", "empty" },
        { "   ", "empty" },
        { "x<xml/>", "outside" },
        { "\239\187\191<xml/>", "outside" },
        { "<xml><A>\1</A></xml>", "control character" },
        { "<xml><A>a\0b</A></xml>", "control character" },
        { "<xml><A>\255</A></xml>", "UTF-8" },
        { "<xml><A>\237\160\128</A></xml>", "UTF-8" },
        { "<xml><A>\192\175</A></xml>", "UTF-8" },
        { "<xml><A>\239\191\190</A></xml>", "non-character" },
        { "<xml><A>]]></A></xml>", "]]>" },
        { "<xml><1A/></xml>", "name" },
        { "<xml><" .. ("N"):rep(257) .. "/></xml>", "too long" },
        { "<xml><A></A ></xml>", nil },
      }
      for _, case in ipairs(cases) do
        local t, err = core.xml(case[1])
        if case[2] == nil then
          assert.truthy(t, err)
        else
          assert.is_nil(t, case[1])
          assert.truthy(err:find(case[2], 1, true), ("%q: %s"):format(case[1], err))
          assert.truthy(err:match("at byte %d+$"), err)
        end
      end
    end)

    it("takes 32 levels of elements and refuses 33", function()
      local function nest(n) return ("<A>"):rep(n) .. "v" .. ("</A>"):rep(n) end
      local t = assert(core.xml("<xml>" .. nest(31) .. "</xml>"))
      for _ = 1, 31 - 1 do t = t.A end
      assert.equal("v", t.A)
      local _, err = core.xml("<xml>" .. nest(32) .. "</xml>")
      assert.truthy(err:find("nested too deep", 1, true), err)
      _, err = core.xml("<xml>" .. ("<A>"):rep(100000))
      assert.truthy(err:find("nested too deep", 1, true), err)
    end)

    it("refuses anything but a string", function()
      assert.has_error(function() core.xml() end)
      assert.has_error(function() core.xml({}) end)
    end)
  end)

  describe("callback.new", function()
    it("names the bad option", function()
      local good = { token = wx.TOKEN, encoding_aes_key = wx.KEY, receiveid = wx.RECEIVEID }
      local function bad(changes, field, text)
        local o = {}
        for k, v in pairs(good) do o[k] = v end
        for k, v in pairs(changes) do
          if v == false then o[k] = nil else o[k] = v end
        end
        local cb, err = callback.new(o)
        assert.is_nil(cb)
        assert.equal("validation", err.kind)
        assert.equal(field, err.field)
        assert.truthy(err.message:find(text, 1, true), err.message)
        assert.is_nil(err.message:find(wx.TOKEN, 1, true))
        return err
      end
      bad({ token = false }, "token", "callback.new: token: expected a non-empty string")
      bad({ token = "" }, "token", "non-empty")
      bad({ token = 42 }, "token", "non-empty")
      bad({ receiveid = false }, "receiveid", "non-empty")
      bad({ encoding_aes_key = false }, "encoding_aes_key", "non-empty")
      bad({ encoding_aes_key = wx.KEY .. "=" }, "encoding_aes_key",
        "callback.new: encoding_aes_key: expected 43 characters")
      bad({ encoding_aes_key = wx.KEY:sub(1, 42) }, "encoding_aes_key", "expected 43 characters")
      bad({ encoding_aes_key = wx.KEY:sub(1, 42) .. "!" }, "encoding_aes_key", "base64")
      bad({ encoding_aes_key = wx.KEY:sub(1, 42) .. "=" }, "encoding_aes_key", "base64")
      bad({ token = ("t"):rep(1025) }, "token", "1..1024")
      bad({ max_age = 0 }, "max_age", "positive")
      bad({ max_age = -1 }, "max_age", "positive")
      bad({ max_age = 0 / 0 }, "max_age", "positive")
      bad({ max_age = 1 / 0 }, "max_age", "positive")
      bad({ max_age = "600" }, "max_age", "positive")
      bad({ seen = {} }, "seen", "add, get, set and delete")
      bad({ seen = { add = function() end } }, "seen", "add, get, set and delete")
      bad({ seen = 5 }, "seen", "add, get, set and delete")
      bad({ clock = 5 }, "clock", "function")
      local cb, err = callback.new("token")
      assert.is_nil(cb)
      assert.equal("validation", err.kind)
      assert.truthy(callback.new(good))
    end)

    it("keeps the token and the key out of the object", function()
      local cb = new()
      local seen = {}
      local function walk(v, depth)
        if type(v) == "string" then
          assert.is_nil(v:find(wx.TOKEN, 1, true))
          assert.is_nil(v:find(wx.KEY, 1, true))
        elseif type(v) == "table" and not seen[v] and depth < 6 then
          seen[v] = true
          for k, x in pairs(v) do
            walk(k, depth + 1)
            walk(x, depth + 1)
          end
        end
      end
      walk(cb, 0)
      walk(getmetatable(cb), 0)
      assert.is_nil(tostring(cb):find(wx.TOKEN, 1, true))
      assert.equal("wecom.core.callback_box", tostring(box))
      assert.is_false(getmetatable(box))
    end)

    it("raises when a method is called without the colon", function()
      local cb = new()
      assert.has_error(function() cb.decrypt({}, "") end)
      assert.has_error(function() cb:handle("POST", {}, "", "not a function") end)
    end)
  end)

  describe("handle: each message once", function()
    it("calls the handler once for a message delivered twice, re-encrypted", function()
      local cb = new()
      local calls = {}
      local function fn(msg) calls[#calls + 1] = msg end
      local xml = modify_schedule()
      local q1, b1 = post(xml, NOW)
      local q2, b2 = post(xml, NOW + 5)
      assert.are_not.equal(b1, b2)
      assert.same({ 200, "success" }, { cb:handle("POST", q1, b1, fn) })
      assert.same({ 200, "success" }, { cb:handle("POST", q2, b2, fn) })
      assert.same({ 200, "success" }, { cb:handle("POST", q1, b1, fn) }) -- a replay of the same request
      assert.equal(1, #calls)
      assert.equal("modify_schedule", calls[1].Event)
      assert.equal("17c7d2bd9f20d652840f72f59e796AAA", calls[1].ScheduleId)
      -- the same event a second later is another message
      assert.equal(200, (deliver(cb, modify_schedule(nil, NOW + 1), fn)))
      assert.equal(2, #calls)
    end)

    it("handles a message again after its handler failed, never after it succeeded", function()
      local cb = new()
      local calls, fail_with = 0, "raise"
      local function fn()
        calls = calls + 1
        if fail_with == "raise" then error("store down, token " .. wx.TOKEN) end
        if fail_with == "nil, err" then return nil, "not now" end
        if fail_with == "false, err" then return false, "not yet" end
      end
      local xml = modify_schedule()
      local status, body, err = deliver(cb, xml, fn)
      local _
      assert.equal(500, status)
      assert.equal("handler failed", body)
      assert.equal("handler", err.reason)
      assert.truthy(err.message:find("store down", 1, true))
      assert.is_nil(err.message:find(wx.TOKEN, 1, true), err.message) -- redacted
      fail_with = "nil, err"
      status, _, err = deliver(cb, xml, fn)
      assert.equal(500, status)
      assert.truthy(err.message:find("not now", 1, true))
      fail_with = "false, err"
      status, _, err = deliver(cb, xml, fn)
      assert.equal(500, status)
      assert.truthy(err.message:find("not yet", 1, true))
      fail_with = nil
      assert.equal(200, (deliver(cb, xml, fn)))
      assert.equal(200, (deliver(cb, xml, fn)))
      assert.equal(4, calls)
    end)

    it("answers 503 to a delivery that races one being handled, and success once that is done", function()
      -- two workers: two callback objects sharing one store
      local store = require("wecom.cache.memory").new()
      local a, b = new{ seen = store }, new{ seen = store }
      local xml = modify_schedule()
      local inner
      local calls = 0
      assert.equal(200, (deliver(a, xml, function()
        calls = calls + 1
        inner = { deliver(b, xml, function() calls = calls + 1 end) }
      end)))
      assert.equal(503, inner[1])
      assert.equal("busy", inner[3].reason)
      assert.same({ 200, "success" }, { deliver(b, xml, function() calls = calls + 1 end) })
      assert.equal(1, calls)
    end)

    it("lets the next delivery take a message over once its busy mark expired (a handler that died)", function()
      local cb = new()
      local xml = modify_schedule()
      local ttl = callback.BUSY_TTL
      callback.BUSY_TTL = 0.05
      local ok, err = pcall(function()
        local during, after
        assert.equal(200, (deliver(cb, xml, function()
          during = deliver(cb, xml, function() end)
          core.sleep(0.1) -- past BUSY_TTL: to the store this handler is gone
          after = { deliver(cb, xml, function() end) }
        end)))
        assert.equal(503, during)
        assert.same({ 200, "success" }, after)
      end)
      callback.BUSY_TTL = ttl
      assert(ok, err)
    end)

    it("answers 503 and calls nothing when the seen store fails", function()
      local calls = 0
      local function fn() calls = calls + 1 end
      local down = {
        add = function() return nil, "connection refused" end,
        get = function() return nil, "connection refused" end,
        set = function() return nil, "connection refused" end,
        delete = function() return nil, "connection refused" end,
      }
      local status, _, err = deliver(new{ seen = down }, modify_schedule(), fn)
      assert.equal(503, status)
      assert.equal("seen", err.reason)
      local raising = { add = function() error("boom") end, get = down.get, set = down.set, delete = down.delete }
      status, _, err = deliver(new{ seen = raising }, modify_schedule(), fn)
      assert.equal(503, status)
      assert.truthy(err.message:find("boom", 1, true))
      assert.equal(0, calls)
    end)

    it("keeps each message for 2 * max_age, then forgets it", function()
      local store = require("wecom.cache.memory").new()
      local ttls = {}
      local spy = {
        add = function(_, k, v, ttl) ttls[v] = ttl return store:add(k, v, ttl) end,
        get = function(_, k) return store:get(k) end,
        set = function(_, k, v, ttl) ttls[v] = ttl return store:set(k, v, ttl) end,
        delete = function(_, k) return store:delete(k) end,
      }
      local cb = new{ seen = spy, max_age = 300 }
      assert.equal(200, (deliver(cb, modify_schedule(), function() end)))
      assert.equal(callback.BUSY_TTL, ttls.busy)
      assert.equal(601, ttls.done)
    end)

    it("passes other message types to the handler unharmed, and sends a passive reply it returns", function()
      local cb = new()
      local got
      local q, b = post("<xml><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[sys_approval_change]]></Event>"
        .. "<ApprovalInfo><SpNo>1</SpNo><Comments><Item>a</Item><Item>b</Item></Comments></ApprovalInfo>"
        .. "<CreateTime>" .. NOW .. "</CreateTime></xml>")
      local status, body = cb:handle("POST", q, b, function(msg)
        got = msg
        return "<xml><Content><![CDATA[收到]]></Content></xml>"
      end)
      assert.equal(200, status)
      assert.same({ "a", "b" }, got.ApprovalInfo.Comments.Item)
      local reply = assert(core.xml(body))
      local inner = assert(cb:decrypt({ msg_signature = reply.MsgSignature, timestamp = reply.TimeStamp,
        nonce = reply.Nonce }, body))
      assert.equal("收到", inner.Content)
    end)

    it("answers each refusal with its status and no call", function()
      local cb = new()
      local calls = 0
      local function fn() calls = calls + 1 end
      local xml = modify_schedule()
      local q, b = post(xml)
      local function status(...) return (cb:handle(...)) end
      assert.equal(403, status("POST", { msg_signature = ("0"):rep(40), timestamp = q.timestamp, nonce = q.nonce },
        b, fn))
      assert.equal(403, (deliver(cb, xml, fn, NOW - 601)))
      local fq, fb = crafted(wx.plaintext(xml, { receiveid = "wwother" }))
      assert.equal(403, status("POST", fq, fb, fn))
      assert.equal(400, status("POST", q, "garbage", fn))
      assert.equal(400, status("POST", {}, b, fn))
      assert.equal(413, status("POST", q, ("x"):rep(callback.MAX_BYTES + 1), fn))
      assert.equal(405, status("PUT", q, b, fn))
      assert.equal(403, status("GET", { msg_signature = ("0"):rep(40), timestamp = "1", nonce = "1", echostr = "x" },
        nil, fn))
      assert.equal(0, calls)
      local cb2 = new{ clock = function() return 1409659589 end }
      assert.same({ 200, wx.GET_PLAINTEXT }, { cb2:handle("GET", wx.GET, nil, fn) })
      -- "+" decoded to a space by a server that treats the query as a form
      local spaced = {}
      for k, v in pairs(wx.GET) do spaced[k] = v end
      spaced.echostr = wx.GET.echostr:gsub("%+", " ")
      assert.same({ 200, wx.GET_PLAINTEXT }, { cb2:handle("GET", spaced, nil, fn) })
      assert.equal(0, calls)
    end)
  end)

  describe("the default seen store", function()
    it("drops expired entries as it grows", function()
      local store = require("wecom.cache.memory").new()
      for i = 1, 3000 do store:set("k" .. i, "done", 0.01) end
      core.sleep(0.02)
      for i = 1, 3000 do store:set("n" .. i, "done", 0.01) end
      local n = 0
      for _ in pairs(store.entries) do n = n + 1 end
      assert.is_true(n <= 3000, n .. " entries kept")
      assert.equal(n, store.count)
    end)
  end)
end)
