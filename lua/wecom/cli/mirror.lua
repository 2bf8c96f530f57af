-- wecom mirror [--db FILE] [--no-reconcile] [CAL_ID...]: a mirror of
-- calendars in a SQLite file (wecom.sync), one round per run: follow the
-- calendars named, pull, reconcile, print each change. The work is
-- wecom.sync.cli's; this is its place among the commands.
local sync_cli = require("wecom.sync.cli")

local M = { name = "mirror" }

function M.configure(parser)
  local mirror = parser:command("mirror", "Keep a mirror of calendars in a SQLite file: follow the CAL_IDs"
    .. " given (the file remembers them), pull what was added, reconcile, and print each change"
    .. " (kind, cal_id, schedule_id, summary; tab-separated). Run it from cron.")
  mirror:argument("cal_id", "Calendars to start following."):argname("CAL_ID"):args("*")
  mirror:option("--db", "The SQLite file (created when missing)."):argname("FILE"):default(sync_cli.DEFAULT_DB)
  mirror:flag("--no-reconcile", "Pull only: faster, but misses what changed without an event.")
end

function M.run(args, ctx)
  local client, err = ctx:client()
  if not client then return nil, err end
  local function stream(send)
    return { write = function(_, ...) return send(table.concat({ ... })) end }
  end
  return sync_cli.mirror{
    client = client, db = args.db, cal_ids = args.cal_id, reconcile = not args.no_reconcile, json = ctx.json,
    stdout = stream(function(text) return ctx:out(text) end),
    stderr = stream(function(text) return ctx:say(text) end),
  }
end

return M
