rockspec_format = "3.0"
package = "wecom-emulator"
version = "scm-1"

-- `luarocks make rockspec/wecom-emulator-scm-1.rockspec` installs the emulator
-- of the checkout it is run in; install the wecom rock first.
source = {
  url = "git+https://example.invalid/wecom.git",
}

description = {
  summary = "A local emulator of the WeCom (企业微信) calendar and schedule API, for tests",
  detailed = [[
The WeCom calendar and schedule API served by nginx with its Lua module on
127.0.0.1: gettoken and every endpoint the wecom library supports, with
state in memory, WeCom's validation and error codes, and fault injection.
For tests, demos and offline development; `wecom-emulator start` runs it.
Needs nginx with the Lua module (Debian: nginx-light libnginx-mod-http-lua).
]],
  license = "MIT",
  labels = { "wecom", "testing", "emulator", "openresty" },
}

dependencies = {
  "lua >= 5.1",
  "lua-cjson >= 2.1",
  "wecom",
}

-- Not "builtin": that type also copies the checkout's lua/ directory, which
-- holds the library (the wecom rock's).
build = {
  type = "none",
  install = {
    lua = {
      ["wecom.emulator.calendar"] = "emulator/wecom/emulator/calendar.lua",
      ["wecom.emulator.callback"] = "emulator/wecom/emulator/callback.lua",
      ["wecom.emulator.check"] = "emulator/wecom/emulator/check.lua",
      ["wecom.emulator.json"] = "emulator/wecom/emulator/json.lua",
      ["wecom.emulator.launcher"] = "emulator/wecom/emulator/launcher.lua",
      ["wecom.emulator.schedule"] = "emulator/wecom/emulator/schedule.lua",
      ["wecom.emulator.server"] = "emulator/wecom/emulator/server.lua",
      ["wecom.emulator.state"] = "emulator/wecom/emulator/state.lua",
    },
    bin = { ["wecom-emulator"] = "bin/wecom-emulator" },
  },
}
