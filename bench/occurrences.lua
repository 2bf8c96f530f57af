-- recurrence.occurrences over the rules of spec/support/ical_corpus.lua;
-- prints "occurrences seconds" for PASSES passes.
--   occurrences.lua FROM TO PASSES
package.path = "spec/?.lua;" .. package.path
local corpus = require("support.ical_corpus")
local recurrence = require("wecom.recurrence")
local core = require("wecom.core")
local from, to, passes = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
local schedules = corpus.schedules()
local n = 0
local t0 = core.monotime()
for _ = 1, passes do
  for i = 1, #schedules do
    n = n + #assert(recurrence.occurrences(schedules[i], from, to))
  end
end
print(n, ("%.4f"):format(core.monotime() - t0))
