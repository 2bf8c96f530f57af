-- luacheck configuration: `make lint`
std = "max"
max_line_length = 130
files["spec/**/*.lua"] = { std = "+busted" }
files["emulator/**/*.lua"] = { globals = { "ngx" } }
files["lua/wecom/transport/ngx.lua"] = { globals = { "ngx" } }
-- code that runs inside nginx
files["spec/support/ngx_app.lua"] = { std = "max", globals = { "ngx" } }
files["spec/support/redis_app.lua"] = { std = "max", globals = { "ngx" } }
files["examples/wecom_app.lua"] = { globals = { "ngx" } }
files["examples/wecom_callback.lua"] = { globals = { "ngx" } }
files["examples/wecom_mirror.lua"] = { globals = { "ngx" } }
files["examples/ical_feed.lua"] = { globals = { "ngx" } }
exclude_files = { "build/**" }
-- the names README examples take as given (spec/readme_spec.lua)
files["spec/support/readme_prelude.lua"] = {
  globals = { "client", "cal_id", "cal_ids", "schedule_id", "occurrence_start", "schedule_ids", "userids", "bodies" },
}
