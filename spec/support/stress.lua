-- The finalizer stress of spec/finalizer_spec.lua: `n` calls, spread over
-- every entry point of the C core, each with finalizers (support.chaos must
-- be started) that close the session, make requests on it, encode, decode
-- and hash while the call runs. url: a server answering every request with
-- a small JSON reply. Raises on any wrong result; returns how many actions
-- ran while an entry point was running.
local chaos = require("support.chaos")
local session = require("support.session")
local core = require("wecom.core")
local request = require("wecom.request")
local schema = require("wecom.schema")

return function(url, n)
  local id = schema.by_name.calendar_add.id
  local body = { calendar = { summary = "s", color = "#000000", admins = { "u1" }, shares = { { userid = "u1" } } } }
  local plain = { a = { 1, 2, { b = "c" } } }
  local expected, expected_plain = assert(core.encode(id, body)), assert(core.encode(nil, plain))
  local reply = '{"errcode":0,"errmsg":"ok","n":[1,2,3]}'
  local decode = request.decode_reply
  local get, refused = url .. "/e", "http://127.0.0.1:1/"
  local reqs = { { method = "GET", url = url .. "/a" }, { method = "POST", url = url .. "/b", body = "{}" } }
  local nested = { { method = "GET", url = refused } }
  local long = ("s"):rep(200)
  local function decoder() return {} end
  local target = session{ timeout = 5 }
  local inside, hits = false, 0

  -- what the finalizers do: everything, to the session that is mid-call too
  local actions = {
    function() pcall(target.close, target) end,
    function() pcall(target.request, target, "GET", refused) end,
    function() pcall(target.request_many, target, nested) end,
    function() pcall(core.encode, id, body) end,
    function() pcall(core.sha256, "abc") end,
    function() pcall(decode, reply) end,
    function() pcall(tostring, target) end,
  }
  for k, action in ipairs(actions) do
    actions[k] = function()
      if inside then hits = hits + 1 end
      action()
    end
  end

  local function check(ok, why) if not ok then error(why, 2) end end
  local entries = {
    function()
      local status, text = target:request("GET", get)
      check(status == 200 or text == "closed", "request: " .. tostring(text))
    end,
    function()
      for _, r in ipairs(target:request_many(reqs, 2)) do
        check(r.status == 200 or r.reason == "closed", "request_many: " .. tostring(r.message))
      end
    end,
    function() check(core.encode(id, body) == expected, "encode came back changed") end,
    function() check(core.encode(nil, plain) == expected_plain, "encode came back changed") end,
    function() target:close() end,
    function() return target:is_closed(), tostring(target) end,
    function() return core.endpoints() end,
    function() return core.sha256(long) end,
    function() check(decode(reply).n[3] == 3, "decode came back changed") end,
    function() return core.reply_decoder(decoder) end,
    function() return core.random(), core.monotime() end,
    function() target = session{ timeout = 5 } end,
  }

  for i = 1, n do
    chaos.arm(i % 9 + 1, actions[i % #actions + 1])
    if i % 3 == 0 then chaos.always(actions[(i * 5) % #actions + 1]) end
    inside = true
    entries[i % #entries + 1]()
    inside = false
    chaos.always(nil)
    if i % 40 == 0 and target:is_closed() then target = session{ timeout = 5 } end
  end
  target:close()
  -- everything works as before
  local s = session{ timeout = 5 }
  check(s:request("GET", get) == 200, "a request after the stress failed")
  s:close()
  check(core.encode(id, body) == expected, "encode after the stress came back changed")
  return hits
end
