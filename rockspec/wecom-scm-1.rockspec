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
share; the `wecom` command does the same for operators and scripts. The local emulator of the API for tests is its own rock,
wecom-emulator, so production trees carry no test server.
]],
  license = "MIT",
  labels = { "wecom", "calendar", "http", "openresty" },
}

dependencies = {
  "lua >= 5.1",
  "lua-cjson >= 2.1",
  "argparse >= 0.6", -- the wecom command (Debian: lua-argparse)
}

external_dependencies = {
  CURL = { library = "curl" },
  -- libcrypto of OpenSSL 3 (Debian: libssl-dev), for the callbacks' crypto
  CRYPTO = { library = "crypto", header = "openssl/evp.h" },
}

build = {
  type = "builtin",
  modules = {
    ["wecom"] = "lua/wecom/init.lua",
    ["wecom.args"] = "lua/wecom/args.lua",
    ["wecom.bulk"] = "lua/wecom/bulk.lua",
    ["wecom.cache.memory"] = "lua/wecom/cache/memory.lua",
    ["wecom.cache.redis"] = "lua/wecom/cache/redis.lua",
    ["wecom.callback"] = "lua/wecom/callback.lua",
    ["wecom.cli"] = "lua/wecom/cli/init.lua",
    ["wecom.cli.calendar"] = "lua/wecom/cli/calendar.lua",
    ["wecom.cli.context"] = "lua/wecom/cli/context.lua",
    ["wecom.cli.export"] = "lua/wecom/cli/export.lua",
    ["wecom.cli.mirror"] = "lua/wecom/cli/mirror.lua",
    ["wecom.cli.occurrences"] = "lua/wecom/cli/occurrences.lua",
    ["wecom.cli.output"] = "lua/wecom/cli/output.lua",
    ["wecom.cli.schedule"] = "lua/wecom/cli/schedule.lua",
    ["wecom.client"] = "lua/wecom/client.lua",
    ["wecom.compat"] = "lua/wecom/compat.lua",
    ["wecom.errors"] = "lua/wecom/errors.lua",
    ["wecom.export"] = "lua/wecom/export.lua",
    ["wecom.ical"] = "lua/wecom/ical.lua",
    ["wecom.options"] = "lua/wecom/options.lua",
    ["wecom.paging"] = "lua/wecom/paging.lua",
    ["wecom.patch"] = "lua/wecom/patch.lua",
    ["wecom.recurrence"] = "lua/wecom/recurrence.lua",
    ["wecom.reply"] = "lua/wecom/reply.lua",
    ["wecom.request"] = "lua/wecom/request.lua",
    ["wecom.schema"] = "lua/wecom/schema.lua",
    ["wecom.sync"] = "lua/wecom/sync/init.lua",
    ["wecom.sync.cli"] = "lua/wecom/sync/cli.lua",
    ["wecom.sync.codec"] = "lua/wecom/sync/codec.lua",
    ["wecom.sync.memory"] = "lua/wecom/sync/memory.lua",
    ["wecom.sync.sqlite"] = "lua/wecom/sync/sqlite.lua",
    ["wecom.token"] = "lua/wecom/token.lua",
    ["wecom.transport"] = "lua/wecom/transport/init.lua",
    ["wecom.transport.curl"] = "lua/wecom/transport/curl.lua",
    ["wecom.transport.ngx"] = "lua/wecom/transport/ngx.lua",
    ["wecom.core"] = {
      sources = {
        "csrc/buffer.c", "csrc/callback.c", "csrc/core.c", "csrc/decode.c", "csrc/encode.c",
        "csrc/framing.c", "csrc/http.c", "csrc/schema.c", "csrc/sha256.c", "csrc/xml.c",
      },
      libraries = { "curl", "crypto" },
      incdirs = { "$(CURL_INCDIR)", "$(CRYPTO_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(CRYPTO_LIBDIR)" },
    },
  },
  install = {
    bin = { wecom = "bin/wecom" },
  },
}

test_dependencies = { "busted" }

test = { type = "busted" }
