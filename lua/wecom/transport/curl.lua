-- The libcurl transport: a wecom.core HTTP session (one easy handle kept
-- alive across calls, and a multi handle for request_many). It blocks while
-- a request is in flight, which is what plain Lua scripts want; inside nginx
-- request handlers the cosocket transport is used. The contract it keeps is
-- written down in wecom.transport (transport/init.lua).
local core = require("wecom.core")

local M = {}

-- opts: the complete transport options (wecom.options.transport)
function M.new(opts)
  return core.session{
    timeout = opts.timeout,
    connect_timeout = opts.connect_timeout,
    max_response_bytes = opts.max_response_bytes,
    user_agent = opts.user_agent,
    ca_file = opts.ca_file,
  }
end

return M
