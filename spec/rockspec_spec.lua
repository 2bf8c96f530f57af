-- `luarocks make --deps-mode=none` of our rockspec, for the Lua running
-- this spec, into a temporary tree: the installed rock alone (no checkout
-- paths) must load, talk to the emulator, and run its wecom-emulator script.
local emulator = require("support.emulator")
local shell = require("support.shell")

local sh, q = shell.run, shell.quote

describe("rockspec", function()
  local emu, tmp, tree, env
  local interpreter = shell.lua
  local version = jit and "5.1" or _VERSION:match("%d+%.%d+")

  setup(function()
    emu = emulator.start()
    tmp = os.tmpname()
    os.remove(tmp)
    tree = tmp .. "/tree"
    assert.equal(0, (sh(("mkdir -p %s/src && cp -r csrc lua bin rockspec %s/src/"):format(q(tmp), q(tmp)))))
    env = shell.lua_env(("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;"):format(tree, version, tree, version),
      ("%s/lib/lua/%s/?.so;;"):format(tree, version))
  end)

  teardown(function()
    emu:stop()
    sh("rm -rf " .. q(tmp))
  end)

  it("lists every Lua module and C source of the checkout", function()
    local f = assert(io.open("rockspec/wecom-scm-1.rockspec"))
    local text = f:read("*a")
    f:close()
    local p = io.popen("cd lua && find . -name '*.lua' | sort; cd ../csrc && ls *.c")
    for path in p:lines() do
      if path:match("%.lua$") then
        local file = path:gsub("^%./", "")
        local module = file:gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
        assert.truthy(text:find(('["%s"] = "lua/%s"'):format(module, file), 1, true), module .. " is not in the rockspec")
      else
        assert.truthy(text:find('"csrc/' .. path .. '"', 1, true), path .. " is not in the rockspec")
      end
    end
    p:close()
  end)

  it("installs a working module with luarocks make --deps-mode=none", function()
    local incdir = jit and " LUA_INCDIR=/usr/include/luajit-2.1" or ""
    local rc, out = sh(("cd %s/src && luarocks --lua-version %s --tree %s make --deps-mode=none rockspec/wecom-scm-1.rockspec%s")
      :format(q(tmp), version, q(tree), incdir))
    assert.equal(0, rc, out)
    assert.truthy(out:find("wecom scm-1 is now installed", 1, true), out)

    local script = tmp .. "/use.lua"
    local f = assert(io.open(script, "w"))
    f:write(([[
      local wecom = require("wecom")
      local src = debug.getinfo(wecom.new, "S").source
      assert(src:find(%q, 1, true), "wecom loaded from " .. src)
      local client = assert(wecom.new{ corpid = %q, corpsecret = %q, base_url = %q })
      local res = assert(client:calendar_add{ calendar = { summary = "from the rock", color = "#00AA00" } })
      local got = assert(client:calendar_get{ cal_id_list = { res.cal_id } })
      print("installed ok: " .. got.calendar_list[1].summary)
    ]]):format(tree, emu.corpid, emu.corpsecret, emu.base_url))
    f:close()
    rc, out = sh(("cd %s && %s %s %s"):format(q(tmp), env, interpreter, q(script)))
    assert.equal(0, rc, out)
    assert.truthy(out:find("installed ok: from the rock", 1, true), out)
  end)

  it("installs the wecom-emulator script", function()
    local dir = tmp .. "/emu"
    local rc, out = sh(("cd %s && %s %s %s/lib/luarocks/rocks-%s/wecom/scm-1/bin/wecom-emulator start --port 0 --dir %s")
      :format(q(tmp), env, interpreter, q(tree), version, q(dir)))
    assert.equal(0, rc, out)
    assert.truthy(out:find("WECOM_BASE_URL=http://127.0.0.1:", 1, true), out)
    rc, out = sh(("cd %s && %s %s %s/lib/luarocks/rocks-%s/wecom/scm-1/bin/wecom-emulator stop --dir %s")
      :format(q(tmp), env, interpreter, q(tree), version, q(dir)))
    assert.equal(0, rc, out)
  end)
end)
