-- A libcurl session of the C core made the way the client makes one: the
-- transport options completed with their defaults (wecom.options), then any
-- given here.
local curl = require("wecom.transport.curl")
local options = require("wecom.options")

return function(opts)
  return curl.new(assert(options.transport(opts)))
end
