-- busted output handler: the usual terminal output, plus the counts written
-- to $WECOM_TEST_SUMMARY ("passed failed errors pending") for `make test`.
return function(options)
  local busted = require("busted")
  local inner = require("busted.outputHandlers.utfTerminal")(options)
  local subscribe = inner.subscribe
  inner.subscribe = function(handler, opts)
    subscribe(handler, opts)
    busted.subscribe({ "suite", "end" }, function()
      local path = os.getenv("WECOM_TEST_SUMMARY")
      if path and path ~= "" then
        local f = io.open(path, "w")
        if f then
          f:write(("%d %d %d %d\n"):format(handler.successesCount, handler.failuresCount,
            handler.errorsCount, handler.pendingsCount))
          f:close()
        end
      end
      return nil, true
    end)
  end
  return inner
end
