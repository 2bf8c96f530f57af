-- The libcurl transport: a wecom.core HTTP session (one easy handle, kept
-- alive across calls). It blocks while a request is in flight, which is what
-- plain Lua scripts want; inside nginx request handlers use cosockets.
--
-- Every transport has the same shape, which the session has itself:
--   transport:request(method, url, body) -> status, body | nil, reason, message
--   transport:request_many(requests, concurrency) -> results
--     requests[i] = {method=, url=, body=}; results[i] = {status=, body=} or
--     {reason=, message=}
--   transport:close()
local core = require("wecom.core")

local M = {}

-- opts: timeout, connect_timeout, ca_file, max_response_bytes, user_agent
function M.new(opts)
  opts = opts or {}
  return core.session{
    timeout = opts.timeout,
    connect_timeout = opts.connect_timeout,
    ca_file = opts.ca_file,
    max_response_bytes = opts.max_response_bytes,
    user_agent = opts.user_agent,
  }
end

return M
