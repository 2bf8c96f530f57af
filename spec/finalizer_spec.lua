-- Lua code running in the middle of a C call: a __gc finalizer may run at
-- any allocation the C core makes through the Lua API, and it may close,
-- call or encode with the very session or encoder that is mid-call. None of
-- it may break the call: a close is carried out when the call ends, a
-- nested call on a busy session is refused ("busy"), encoders don't share a
-- buffer, values C points into stay referenced. The scenarios that crashed
-- or hung run in a child process (spec/support/child.lua); the stress run
-- is in this process, so `make asan` and `make valgrind` watch it.
local chaos = require("support.chaos")
local child = require("support.child")
local raw = require("support.raw")
local session = require("support.session")
local core = require("wecom.core")

local REAL = '{"errcode":0,"errmsg":"ok","calendar_list":[]}'

local function stress_iterations()
  return tonumber(os.getenv("WECOM_STRESS_ITERATIONS") or "") or 3000
end

describe("a finalizer in the middle of a C call", function()
  local srv

  setup(function() srv = raw.start{ default = { send = raw.reply(REAL) } } end)
  teardown(function() srv:stop() end)

  -- The child's prelude: the server's URL, the chaos, a session maker.
  local function prelude()
    return ([[
local chaos = require("support.chaos")
local session = require("support.session")
local URL = %q
local REAL = %q
local stop = chaos.start()
]]):format(srv.base_url, REAL)
  end

  local function run_child(code)
    local rc, out = child.run(prelude() .. code, 120)
    assert.equal(0, rc, out)
    return out
  end

  -- item 1: heap-use-after-free in push_outcome (seen under ASan)
  it("that closes the session during request: the reply comes back whole, then the session is closed", function()
    local out = run_child([[
local during = 0
local url = URL .. "/one"
for i = 1, 60 do -- the close comes at each allocation of the call in turn
  local s = session{ timeout = 5 }
  local close = function() pcall(s.close, s) end
  chaos.arm(i % 12 + 1, close)
  local status, body = s:request("GET", url)
  if status then
    assert(status == 200 and body == REAL, tostring(body))
    if s:is_closed() then during = during + 1 end
  else
    assert(body == "closed", tostring(body))
  end
  s:close()
  assert(select(2, s:request("GET", URL .. "/one")) == "closed")
end
stop()
assert(during > 0, "no close ever came during a call")
print("ok", during)
]])
    assert.truthy(out:find("ok", 1, true), out)
  end)

  -- item 2: NULL dereference in request_many (SIGSEGV)
  it("that closes the session during request_many: every reply comes back, then the session is closed", function()
    run_child([[
local reqs = {}
for k = 1, 4 do reqs[k] = { method = "GET", url = URL .. "/many" .. k } end
for i = 1, 150 do -- the close comes later and later: every allocation of the call in turn
  local s = session{ timeout = 5 }
  chaos.arm(i, function() pcall(s.close, s) end)
  local res = s:request_many(reqs, 2)
  assert(#res == 4)
  for k = 1, 4 do
    local r = res[k]
    assert((r.status == 200 and r.body == REAL) or r.reason == "closed", tostring(r.reason) .. " " .. tostring(r.message))
  end
  s:close()
end
stop()
]])
  end)

  -- item 3: a nested request detached the multi transfers: 100% CPU forever
  it("that makes a request on the same session during request_many: refused as busy, no hang", function()
    local out = run_child([[
local reqs = {}
for k = 1, 4 do reqs[k] = { method = "GET", url = URL .. "/many" .. k } end
local s = session{ timeout = 5 }
local refused = 0
chaos.always(function()
  local ok, _, reason = pcall(s.request, s, "GET", "http://127.0.0.1:1/")
  if ok and reason == "busy" then refused = refused + 1 end
end)
for _ = 1, 30 do
  for _, r in ipairs(s:request_many(reqs, 3)) do assert(r.status == 200 and r.body == REAL, tostring(r.message)) end
end
chaos.always(nil)
stop()
s:close()
assert(refused > 0, "no nested call came during a call")
print("refused", refused)
]])
    assert.truthy(out:find("refused", 1, true), out)
  end)

  -- item 4: one scratch buffer per state: the outer encode came back truncated
  it("that encodes during an encode: both come back whole", function()
    local body = {
      calendar = {
        summary = "s", color = "#000000", admins = { "u1", "u2" },
        shares = { { userid = "u1" }, { userid = "u2" }, { userid = "u3", permission = 1 } },
      },
    }
    local id = require("wecom.schema").by_name.calendar_add.id
    local expected = assert(core.encode(id, body))
    local nested_expected = assert(core.encode(nil, { x = ("n"):rep(100) }))
    local bad = 0
    local stop = chaos.start()
    chaos.always(function()
      local ok, json = pcall(core.encode, nil, { x = ("n"):rep(100) })
      if ok and json ~= nested_expected then bad = bad + 1 end
    end)
    for _ = 1, 500 do
      if core.encode(id, body) ~= expected then bad = bad + 1 end
    end
    stop()
    assert.equal(0, bad)
  end)

  -- item 5: options read through __index, a fresh string freed before use
  it("can't reach core.session's options through metamethods", function()
    local opts = assert(require("wecom.options").transport())
    opts.user_agent, opts.ca_file = nil, nil
    local seen = {}
    setmetatable(opts, { __index = function(_, k)
      seen[#seen + 1] = k
      return "wecom-from-index-" .. ("x"):rep(100) .. tostring(#seen)
    end })
    local stop = chaos.start()
    local ok, s = pcall(core.session, opts)
    stop()
    assert(ok, s)
    assert.same({}, seen)
    local before = #srv:requests()
    assert.equal(200, (s:request("GET", srv.base_url .. "/ua")))
    s:close()
    local text = srv:requests()[before + 1].text
    assert.is_nil(text:find("User-Agent", 1, true), text)
    setmetatable(opts, { __index = function() error("an __index ran") end })
    assert.has_no_error(function() core.session(opts):close() end)
  end)

  it("keeps the session usable after a finalizer raised in the middle of a call", function()
    -- Lua 5.1 and LuaJIT pass a finalizer's error on to the allocation that
    -- ran it; 5.4 turns it into a warning. LuaJIT can't unwind such an error
    -- out of compiled code (it crashes, our code or not): none here.
    if jit then
      jit.off()
      jit.flush()
    end
    finally(function() if jit then jit.on() end end)
    local s = session{ timeout = 5 }
    -- Each call gets one raise, from a finalizer the collector runs inside
    -- the C function after skipping `skip` of them; now and then it runs one
    -- between the spec's own instructions too, where nothing would catch it.
    local inside, skip, raised = false, 0, 0
    local function raise()
      local at = debug.getinfo(3, "S")
      if not (inside and at and at.what == "C") then return end
      skip = skip - 1
      if skip < 0 then
        inside, raised = false, raised + 1
        error("finalizer error", 0)
      end
    end
    local function call(n, fn, ...)
      local before = raised
      skip, inside = n, true
      pcall(fn, ...)
      inside = false
      -- Lua 5.1 leaves the collector's threshold where a finalizer that
      -- raises had put it (twice the heap: no step for a long while)
      if raised > before then collectgarbage("collect") end
    end
    -- made beforehand: the raise must come from inside the C call
    local reqs = { { method = "GET", url = srv.base_url .. "/a" }, { method = "GET", url = srv.base_url .. "/b" } }
    local url, body = srv.base_url .. "/raise", { a = { 1, 2, 3 }, b = "x" }
    local stop = chaos.start()
    chaos.always(raise)
    -- how many finalizers run inside one call depends on the heap (the
    -- whole suite's, or this spec's alone): calls until 30 raises, or 3000
    local i = 0
    while raised < 30 and i < 1000 do
      i = i + 1
      call(i % 5, s.request, s, "GET", url)
      call(i % 30, s.request_many, s, reqs)
      call(i % 3, core.encode, nil, body)
    end
    stop()
    assert.is_true(raised >= 30, ("raised inside %d of %d calls"):format(raised, 3 * i))
    assert.equal(200, (s:request("GET", srv.base_url .. "/after")))
    assert.equal(200, s:request_many({ { method = "GET", url = srv.base_url .. "/after" } })[1].status)
    assert.equal('{"a":1}', core.encode(nil, { a = 1 }))
    s:close()
  end)

  it("runs finalizers that close, call and encode during every C entry point, thousands of times", function()
    -- in a child: a small heap lets the collector run them at nearly every
    -- allocation (`make asan` watches the child too)
    local out = run_child(("local hits = require('support.stress')(URL, %d)\nstop()\nprint('hits', hits)\n")
      :format(stress_iterations()))
    local hits = tonumber(out:match("hits%s+(%d+)"))
    assert.is_true(hits and hits > stress_iterations() / 2, out)
  end)
end)

-- A memory error in the middle of a call (the reply or the JSON can't be
-- copied into a Lua string) still frees the call's big buffer: it isn't
-- pinned until the next call. Children with an address space limit that
-- leaves room for the buffer or for what comes after it, not for both.
describe("a memory error in the middle of a C call", function()
  local MB = 1024 * 1024
  -- AddressSanitizer reserves terabytes of address space: no limit fits
  local asan = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true)
  local small, big

  setup(function()
    small = raw.start{ default = { send = raw.reply("{}") } }
    big = raw.start{ default = { send = raw.reply(("x"):rep(40 * MB)) } }
  end)
  teardown(function()
    small:stop()
    big:stop()
  end)

  local SETUP = child.VM_SIZE .. [[
local session = require("support.session")
local core = require("wecom.core")
local s = session{ timeout = 30, max_response_bytes = 100 * 1024 * 1024 }
assert(s:request("GET", SMALL) == 200)
assert(core.encode(nil, { a = "b" }))
]]
  -- after the failed call: 40 MB more in 1 MB strings
  local AFTER = [[
local keep = {}
local ok, err = pcall(function() for i = 1, 40 do keep[i] = ("y"):rep(1024 * 1024 - 64) .. i end end)
assert(ok, "40 MB after the failed call: " .. tostring(err))
print("ok")
]]

  -- Runs `code` after SETUP and `before` with `extra_mb` of address space
  -- more than they took.
  local function limited(extra_mb, before, code)
    local prelude = ("local SMALL, BIG = %q, %q\n"):format(small.base_url, big.base_url) .. SETUP .. before
    local rc, out = child.run(prelude .. "print('vm', vm_size())\n", 60)
    assert.equal(0, rc, out)
    local base = assert(tonumber(out:match("vm%s+(%d+)")), out)
    rc, out = child.run(prelude .. code .. AFTER, 120, base + extra_mb * 1024)
    assert.equal(0, rc, out)
  end

  it("in a request: the reply buffer is freed", function()
    if asan then return pending("not under AddressSanitizer") end
    -- the 40 MB reply is buffered in 64 MB; its Lua string doesn't fit as well
    limited(64 + 24, "", [[
local ok, err = pcall(s.request, s, "GET", BIG)
assert(not ok and tostring(err):find("memory"), "expected a memory error, got " .. tostring(err))
]])
  end)

  it("in encode: the output buffer is freed", function()
    if asan then return pending("not under AddressSanitizer") end
    -- a 15 MB string is encoded in a 32 MB buffer; the 15 MB JSON doesn't fit as well
    limited(32 + 10, [[
local body = { big = ("z"):rep(15 * 1024 * 1024) }
collectgarbage()
]], [[
local ok, err = pcall(core.encode, nil, body)
assert(not ok and tostring(err):find("memory"), "expected a memory error, got " .. tostring(err))
body = nil
collectgarbage()
]])
  end)
end)
