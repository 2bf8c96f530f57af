rockspec_format = "3.0"
package = "wecom"
version = "scm-1"

-- `luarocks make rockspec/wecom-scm-1.rockspec` builds the checkout it is run in.
source = {
  url = "git+https://example.invalid/wecom.git",
}

description = {
  summary = "WeCom (企业微信) calendar and schedule API client with a C core",
  detailed = [[
A client of the WeCom calendar and schedule server API for Lua scripts and
OpenResty: a C core validates and encodes requests by the endpoint schemas
and talks HTTPS through libcurl; Lua helpers cache tokens, retry, page and
share. Includes a local emulator of the API (nginx + Lua) for tests.
]],
  license = "MIT",
  labels = { "wecom", "calendar", "http", "openresty" },
}

dependencies = {
  "lua >= 5.1",
  "lua-cjson >= 2.1",
}

external_dependencies = {
  CURL = { library = "curl" },
}

build = {
  type = "builtin",
  modules = {
    ["wecom"] = "lua/wecom/init.lua",
    ["wecom.errors"] = "lua/wecom/errors.lua",
    ["wecom.token"] = "lua/wecom/token.lua",
    ["wecom.cache"] = "lua/wecom/cache.lua",
    ["wecom.args"] = "lua/wecom/args.lua",
    ["wecom.paging"] = "lua/wecom/paging.lua",
    ["wecom.bulk"] = "lua/wecom/bulk.lua",
    ["wecom.patch"] = "lua/wecom/patch.lua",
    ["wecom.recurrence"] = "lua/wecom/recurrence.lua",
    ["wecom.ical"] = "lua/wecom/ical.lua",
    ["wecom.export"] = "lua/wecom/export.lua",
    ["wecom.transport.curl"] = "lua/wecom/transport/curl.lua",
    ["wecom.transport.ngx"] = "lua/wecom/transport/ngx.lua",
    ["wecom.emulator.launcher"] = "lua/wecom/emulator/launcher.lua",
    ["wecom.emulator.server"] = "lua/wecom/emulator/server.lua",
    ["wecom.emulator.state"] = "lua/wecom/emulator/state.lua",
    ["wecom.emulator.json"] = "lua/wecom/emulator/json.lua",
    ["wecom.emulator.check"] = "lua/wecom/emulator/check.lua",
    ["wecom.emulator.calendar"] = "lua/wecom/emulator/calendar.lua",
    ["wecom.emulator.schedule"] = "lua/wecom/emulator/schedule.lua",
    ["wecom.core"] = {
      sources = {
        "csrc/buffer.c", "csrc/core.c", "csrc/decode.c", "csrc/encode.c",
        "csrc/http.c", "csrc/schema.c", "csrc/sha256.c",
      },
      libraries = { "curl" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
    },
  },
  install = {
    bin = { ["wecom-emulator"] = "bin/wecom-emulator" },
  },
}

test_dependencies = { "busted" }

test = { type = "busted" }
