-- `luarocks make --deps-mode=none` of our two rockspecs, for the Lua running
-- this spec, into a temporary tree: the library rock alone carries no test
-- server; with the emulator rock beside it, the installed emulator starts
-- and the installed library and `wecom` command (no checkout paths) talk to it.
local shell = require("support.shell")

local sh, q = shell.run, shell.quote

local function read(path)
  local f = assert(io.open(path))
  local text = f:read("*a")
  f:close()
  return text
end

describe("rockspec", function()
  local tmp, tree, env
  local interpreter = shell.lua
  local version = jit and "5.1" or _VERSION:match("%d+%.%d+")
  local incdir = jit and " LUA_INCDIR=/usr/include/luajit-2.1" or ""

  local function make(rockspec)
    return sh(("cd %s/src && luarocks --lua-version %s --tree %s make --deps-mode=none %s%s")
      :format(q(tmp), version, q(tree), rockspec, incdir))
  end

  local function emulator_script(command, dir)
    return sh(("cd %s && %s %s %s/lib/luarocks/rocks-%s/wecom-emulator/scm-1/bin/wecom-emulator %s --port 0 --dir %s")
      :format(q(tmp), env, interpreter, q(tree), version, command, q(dir)))
  end

  setup(function()
    tmp = os.tmpname()
    os.remove(tmp)
    tree = tmp .. "/tree"
    assert.equal(0, (sh(("mkdir -p %s/src && cp -r csrc lua emulator bin rockspec %s/src/"):format(q(tmp), q(tmp)))))
    env = shell.lua_env(("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;"):format(tree, version, tree, version),
      ("%s/lib/lua/%s/?.so;;"):format(tree, version))
  end)

  teardown(function()
    emulator_script("stop", tmp .. "/emu")
    sh("rm -rf " .. q(tmp))
  end)

  it("lists every Lua module and C source of the checkout in one of the two rocks", function()
    local library, emulator = read("rockspec/wecom-scm-1.rockspec"), read("rockspec/wecom-emulator-scm-1.rockspec")
    local p = io.popen("find lua emulator -name '*.lua' | sort; cd csrc && ls *.c")
    for path in p:lines() do
      if path:match("%.lua$") then
        local top, file = path:match("^(%a+)/(.*)$")
        local module = file:gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
        local entry = ('["%s"] = "%s"'):format(module, path)
        local rockspec = top == "emulator" and emulator or library
        assert.truthy(rockspec:find(entry, 1, true), path .. " is not in its rockspec")
      else
        assert.truthy(library:find('"csrc/' .. path .. '"', 1, true), path .. " is not in the rockspec")
      end
    end
    p:close()
    assert.is_nil(library:find('"emulator/', 1, true))
  end)

  it("installs the library rock, with the wecom command and without the emulator", function()
    local rc, out = make("rockspec/wecom-scm-1.rockspec")
    assert.equal(0, rc, out)
    assert.truthy(out:find("wecom scm-1 is now installed", 1, true), out)
    assert.truthy(read(tree .. "/bin/wecom"):find("wecom/scm-1/bin/wecom", 1, true))
    local _, found = sh(("find %s -path '*emulator*'"):format(q(tree)))
    assert.equal("", found)
  end)

  it("installs the emulator rock beside it; the installed library talks to the installed emulator", function()
    local rc, out = make("rockspec/wecom-emulator-scm-1.rockspec")
    assert.equal(0, rc, out)
    assert.truthy(out:find("wecom-emulator scm-1 is now installed", 1, true), out)
    rc, out = emulator_script("start", tmp .. "/emu")
    assert.equal(0, rc, out)
    local vars = {}
    for k, v in out:gmatch("(WECOM_[%u_]+)=(%S+)") do vars[k] = v end
    assert.truthy(vars.WECOM_BASE_URL and vars.WECOM_BASE_URL:find("^http://127%.0%.0%.1:%d+$"), out)

    local script = tmp .. "/use.lua"
    local f = assert(io.open(script, "w"))
    f:write(([[
      local wecom = require("wecom")
      local launcher = require("wecom.emulator.launcher")
      for _, fn in ipairs{ wecom.new, launcher.start } do
        local src = debug.getinfo(fn, "S").source
        assert(src:find(%q, 1, true), "loaded from " .. src)
      end
      local client = wecom.assert(wecom.new{ corpid = %q, corpsecret = %q, base_url = %q })
      local res = wecom.assert(client:calendar_add{ calendar = { summary = "from the rock", color = "#00AA00" } })
      local got = wecom.assert(client:calendar_get{ cal_id_list = { res.cal_id } })
      print("installed ok: " .. got.calendar_list[1].summary)
    ]]):format(tree, vars.WECOM_CORPID, vars.WECOM_CORPSECRET, vars.WECOM_BASE_URL))
    f:close()
    rc, out = sh(("cd %s && %s %s %s"):format(q(tmp), env, interpreter, q(script)))
    assert.equal(0, rc, out)
    assert.truthy(out:find("installed ok: from the rock", 1, true), out)

    -- the installed command, as a new user runs it: the wrapper luarocks put in the tree's bin/
    -- (for LuaJIT, whose rocks luarocks builds as 5.1's, the installed script under luajit)
    local wecom = jit and ("%s %s/lib/luarocks/rocks-%s/wecom/scm-1/bin/wecom"):format(interpreter, q(tree), version)
      or q(tree .. "/bin/wecom")
    local function run(args)
      local env_vars = ("WECOM_BASE_URL=%s WECOM_CORPID=%s WECOM_CORPSECRET=%s"):format(vars.WECOM_BASE_URL,
        vars.WECOM_CORPID, vars.WECOM_CORPSECRET)
      return sh(("cd %s && %s %s %s %s"):format(q(tmp), env, env_vars, wecom, args))
    end
    rc, out = run("--help")
    assert.equal(0, rc, out)
    assert.truthy(out:find("Usage: wecom [-h] [--json]", 1, true), out)
    rc, out = run("calendar add --summary 'from the command' --color '#00AA00' --share zhangsan:rw")
    assert.equal(0, rc, out)
    local cal_id = out:match("^(%S+)\n$")
    assert.truthy(cal_id, out)
    rc, out = run("calendar get " .. cal_id)
    assert.equal(0, rc, out)
    assert.truthy(out:find("shares       1: zhangsan (read-write)", 1, true), out)
    rc, out = run("--json schedule list " .. cal_id)
    assert.equal(0, rc, out)
    assert.equal(0, require("cjson").decode(out).schedules)
    rc, out = run(("export %s -o %s"):format(cal_id, q(tmp .. "/cal.ics")))
    assert.equal(0, rc, out)
    assert.truthy(read(tmp .. "/cal.ics"):find("^BEGIN:VCALENDAR\r\n"))
    rc, out = run("calendar get wcNoSuchCalendar")
    assert.equal(1, rc, out)
    assert.truthy(out:find("wecom: oa/calendar/get: WeCom error 90457", 1, true), out)

    rc, out = emulator_script("stop", tmp .. "/emu")
    assert.equal(0, rc, out)
  end)
end)
