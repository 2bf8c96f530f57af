-- Every ```lua block of README.md runs, verbatim, under the Lua running this
-- spec, in a process of its own (in a temporary directory) against the
-- emulator. Two things are done for it, as the README says: wecom.new
-- gets its connection options (base_url and the credentials) pointed at the
-- emulator (and wecom.cache.redis its 127.0.0.1:6379 at a redis-server this
-- spec starts), and the names the README's examples take as given (`client`,
-- `cal_id`, `schedule_id`, ...) are defined by spec/support/readme_prelude.lua.
-- A block preceded by the line `<!-- readme: not run -->` (an nginx handler,
-- a sketch) is skipped; so is anything that is not a ```lua block.
local emulator = require("support.emulator")
local redis = require("support.redis")
local shell = require("support.shell")

local sh, q = shell.run, shell.quote

local NOT_RUN = "<!-- readme: not run -->"

-- { {line =, code =, run =}, ... }: the ```lua blocks of a Markdown text.
local function lua_blocks(text)
  local blocks, current, previous = {}, nil, ""
  local n = 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if current then
      if line:match("^```%s*$") then
        blocks[#blocks + 1] = current
        current = nil
      else
        current.lines[#current.lines + 1] = line
      end
    elseif line:match("^```lua%s*$") then
      current = { line = n, lines = {}, run = previous ~= NOT_RUN }
    end
    if line:match("%S") then previous = line end
  end
  assert(current == nil, "README.md: a ```lua block is not closed")
  for _, b in ipairs(blocks) do b.code = table.concat(b.lines, "\n") .. "\n" end
  return blocks
end

local function read(path) return assert(shell.read(path), "can't read " .. path) end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

describe("README.md", function()
  local emu, tmp, root, redis_server
  local blocks = lua_blocks(read("README.md"))

  setup(function()
    emu = emulator.start()
    redis_server = redis.start()
    tmp = os.tmpname()
    os.remove(tmp)
    assert.equal(0, (sh("mkdir -p " .. q(tmp))))
    root = shell.cwd()
  end)

  teardown(function()
    emu:stop()
    if redis_server then redis_server:stop() end
    sh("rm -rf " .. q(tmp))
  end)

  it("has Lua examples, and marks the ones it does not run", function()
    local run, skipped = 0, 0
    for _, b in ipairs(blocks) do
      if b.run then run = run + 1 else skipped = skipped + 1 end
    end
    assert.is_true(run >= 10, "only " .. run .. " runnable blocks")
    assert.is_true(skipped < run)
  end)

  -- Runs `code` as README examples run; returns the exit code and the output.
  local function run_example(name, code)
    local dir = ("%s/%s"):format(tmp, name)
    assert.equal(0, (sh("mkdir -p " .. q(dir))))
    write(dir .. "/example.lua", code)
    local build = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    return sh(("cd %s && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT LUA_PATH=%s LUA_CPATH=%s %s %s -e %s example.lua")
      :format(q(dir),
        q(("%s/lua/?.lua;%s/lua/?/init.lua;%s/emulator/?.lua;%s/spec/?.lua;;"):format(root, root, root, root)),
        q(("%s/build/%s/?.so;;"):format(root, build)),
        ("WECOM_README_BASE_URL=%s WECOM_README_CORPID=%s WECOM_README_CORPSECRET=%s WECOM_README_REDIS_PORT=%d")
          :format(q(emu.base_url), q(emu.corpid), q(emu.corpsecret), redis_server.port),
        shell.lua, q('require("support.readme_prelude")')))
  end

  it("shows the real error of a failed call through wecom.assert, on this Lua", function()
    local rc, out = run_example("assert", [[
      wecom.assert(client:calendar_add{ calendar = { summary = "x", color = "red" } })
    ]])
    assert.is_not.equal(0, rc)
    assert.truthy(out:find('oa/calendar/add: calendar.color: expected "#RRGGBB", got "red"', 1, true), out)
    assert.falsy(out:find("string expected, got table", 1, true), out)
    assert.falsy(out:find("error object is not a string", 1, true), out)
    -- and it hands back every result of a call that worked
    rc, out = run_example("assert_ok", [[
      local a, b, c = wecom.assert(1, 2, 3)
      print(a + b + c, select("#", wecom.assert(true, nil, nil)))
    ]])
    assert.equal(0, rc, out)
    assert.equal("6\t3\n", out)
  end)

  for _, block in ipairs(blocks) do
    if block.run then
      it("runs the example at line " .. block.line, function()
        emu:reset()
        local rc, out = run_example("block" .. block.line, block.code)
        assert.equal(0, rc, ("README.md line %d:\n%s\n-- output:\n%s"):format(block.line, block.code, out))
      end)
    end
  end
end)
