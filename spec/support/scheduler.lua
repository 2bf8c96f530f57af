-- A tiny copas-like scheduler for specs: coroutines that interleave inside
-- calls, through a transport that yields once per request.
local core = require("wecom.core")
local session = require("support.session")

local M = {}

-- Runs each function in a coroutine of its own until all are done:
-- results[i] = {first, second result}, and the seconds it took. `skip(i)`
-- may leave a coroutine suspended forever (a holder that died).
function M.run_all(fns, skip)
  local cos, results = {}, {}
  for i, fn in ipairs(fns) do cos[i] = coroutine.create(fn) end
  local live = #cos
  local t0 = core.monotime()
  while live > 0 do
    live = 0
    for i, co in ipairs(cos) do
      if coroutine.status(co) ~= "dead" and not (skip and skip(i)) then
        local ok, a, b = coroutine.resume(co)
        assert(ok, a)
        if coroutine.status(co) == "dead" then results[i] = { a, b } else live = live + 1 end
      end
    end
    assert(core.monotime() - t0 < 20, "deadlocked")
  end
  return results, core.monotime() - t0
end

-- A libcurl transport that yields before each request.
function M.yielding()
  local real = session()
  return { request = function(_, method, url, body)
    coroutine.yield()
    return real:request(method, url, body)
  end }
end

return M
