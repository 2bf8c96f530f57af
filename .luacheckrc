-- luacheck configuration: `make lint`
std = "max"
max_line_length = 130
files["spec/**/*.lua"] = { std = "+busted" }
files["lua/wecom/emulator/**/*.lua"] = { globals = { "ngx" } }
files["lua/wecom/transport/ngx.lua"] = { globals = { "ngx" } }
-- code that runs inside nginx
files["spec/support/ngx_app.lua"] = { std = "max", globals = { "ngx" } }
files["examples/wecom_app.lua"] = { globals = { "ngx" } }
files["examples/ical_feed.lua"] = { globals = { "ngx" } }
exclude_files = { "build/**" }
