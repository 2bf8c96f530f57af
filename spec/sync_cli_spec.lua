-- `wecom mirror` (lua/wecom/sync/cli.lua, which bin/wecom calls): arguments,
-- a first run that follows and pulls, later runs that print only what
-- changed (reconcile included), --json as one document, failures and bad
-- usage with their exit statuses.
local cjson = require("cjson")
local cli = require("wecom.sync.cli")
local emulator = require("support.emulator")
local shell = require("support.shell")
local support = require("support.mirror")

local function stream()
  local s = { parts = {} }
  function s.write(self, ...)
    for _, v in ipairs{ ... } do self.parts[#self.parts + 1] = tostring(v) end
    return self
  end
  function s.text(self) return table.concat(self.parts) end
  function s.lines(self)
    local out = {}
    for line in self:text():gmatch("[^\n]+") do out[#out + 1] = line end
    return out
  end
  return s
end

describe("wecom mirror", function()
  local emu, dir, client
  local n = 0

  setup(function()
    emu = emulator.start()
    dir = support.tmpdir()
  end)

  teardown(function()
    emu:stop()
    support.rmdir(dir)
  end)

  before_each(function()
    client = support.fresh(emu)
    n = n + 1
  end)

  local function db() return ("%s/cli-%d.db"):format(dir, n) end

  local function run(argv, json)
    local opts = assert(cli.parse(argv))
    opts.client, opts.stdout, opts.stderr = client, stream(), stream()
    if json then opts.json = true end
    local status = cli.run(opts)
    return status, opts.stdout, opts.stderr
  end

  local function calendar(summary) return support.calendar(client, summary) end

  it("follows and pulls on the first run, then prints only what changed, reconcile included", function()
    local cal = calendar()
    emu:seed(cal, 120, { cancelled_every = 4 })
    local status, out, err = run{ "--db", db(), cal }
    assert.equal(0, status, err:text())
    local lines = out:lines()
    assert.equal(90, #lines)
    local kind, cal_id, sid, summary = lines[1]:match("^(%S+)\t(%S+)\t(%S+)\t(.*)$")
    assert.equal("added", kind)
    assert.equal(cal, cal_id)
    assert.equal("seeded schedule 1", summary)
    assert.truthy(err:text():find("1 followed, 90 changes pulled, 0 reconciled", 1, true), err:text())

    status, out = run{ "--db=" .. db() }
    assert.equal(0, status)
    assert.same({}, out:lines())

    -- changes made without a callback: the reconcile of the next run finds them
    assert(client:schedule_update{ schedule = { schedule_id = sid, start_time = 1700000000, end_time = 1700001800,
      summary = "line one\nline two" } })
    assert(client:calendar_update{ calendar = { cal_id = cal, summary = "team (renamed)", color = "#336699" } })
    status, out = run{ "--db", db(), "--no-reconcile" }
    assert.equal(0, status)
    assert.same({}, out:lines())
    status, out = run{ "--db", db() }
    assert.equal(0, status)
    assert.same({ ("calendar_changed\t%s\t-\tteam (renamed)"):format(cal),
      ("changed\t%s\t%s\tline one\\nline two"):format(cal, sid) }, out:lines())
  end)

  it("prints one JSON document with --json, the error included when a call fails", function()
    local cal = calendar()
    emu:seed(cal, 30)
    local status, out = run({ "--db", db(), cal }, true)
    assert.equal(0, status)
    local doc = cjson.decode(out:text())
    assert.equal(db(), doc.db)
    assert.equal(30, doc.pulled)
    assert.equal(0, doc.reconciled)
    assert.equal(30, #doc.changes)
    assert.equal("added", doc.changes[1].kind)
    assert.equal("pull", doc.changes[1].source)
    assert.equal("seeded schedule 1", doc.changes[1].schedule.summary)

    emu:seed(cal, 5)
    emu:fault{ path = "oa/calendar/get", errcode = 48002, times = -1 }
    local err
    status, out, err = run({ "--db", db() }, true)
    assert.equal(1, status)
    doc = cjson.decode(out:text())
    assert.equal(5, doc.pulled) -- the pull went through, the reconcile failed
    assert.equal(5, #doc.changes)
    assert.equal("api", doc.error.kind)
    assert.equal(48002, doc.error.errcode)
    assert.truthy(err:text():find("wecom mirror: oa/calendar/get: WeCom error 48002", 1, true), err:text())
  end)

  it("reports a calendar deleted since, and fails on one that can't be followed", function()
    local cal = calendar("doomed")
    emu:seed(cal, 3)
    assert.equal(0, (run{ "--db", db(), cal }))
    assert(client:calendar_del{ cal_id = cal })
    local status, out = run{ "--db", db(), "--no-reconcile" }
    assert.equal(0, status)
    assert.same({ ("calendar_removed\t%s\t-\tdoomed"):format(cal) }, out:lines())
    local failed, _, err = run{ "--db", db(), cal }
    assert.equal(1, failed)
    assert.truthy(err:text():find("90459", 1, true), err:text())
  end)

  describe("through bin/wecom", function()
    -- `wecom args` as a user runs it, against the emulator: status, stdout, stderr.
    local function wecom(args)
      local out, err = os.tmpname(), os.tmpname()
      local env = shell.lua_env(package.path, package.cpath):gsub("^env ", "")
      local rc = shell.run(("env -u WECOM_ACCESS_TOKEN %s WECOM_BASE_URL=%s WECOM_CORPID=%s WECOM_CORPSECRET=%s %s"
        .. " bin/wecom %s >%s 2>%s"):format(env, shell.quote(emu.base_url), shell.quote(emu.corpid),
        shell.quote(emu.corpsecret), shell.quote(shell.lua), args, shell.quote(out), shell.quote(err)))
      local function read(path)
        local text = assert(shell.read(path), "can't read " .. path)
        os.remove(path)
        return text
      end
      return rc, read(out), read(err)
    end

    it("runs wecom mirror: text, --json, and bad usage with status 2", function()
      local cal = calendar()
      emu:seed(cal, 12)
      local rc, out, err = wecom(("mirror --db %s %s"):format(shell.quote(db()), cal))
      assert.equal(0, rc, err)
      assert.equal(12, select(2, out:gsub("\nadded\t", "\n")) + (out:find("^added\t") and 1 or 0))
      assert.truthy(err:find("wecom mirror: 1 followed, 12 changes pulled, 0 reconciled", 1, true), err)
      assert(client:schedule_update{ schedule = { schedule_id = out:match("^added\t%S+\t(%S+)"), start_time = 1700000000,
        end_time = 1700001800, summary = "renamed" } })
      rc, out = wecom(("--json mirror --db=%s"):format(shell.quote(db())))
      assert.equal(0, rc)
      local doc = cjson.decode(out)
      assert.equal(1, #doc.changes)
      assert.equal("changed", doc.changes[1].kind)
      assert.equal("reconcile", doc.changes[1].source)
      assert.equal("renamed", doc.changes[1].schedule.summary)
      assert.equal(0, doc.pulled)
      assert.equal(1, doc.reconciled)
      rc, out, err = wecom(("--json mirror --db %s"):format(shell.quote(dir .. "/empty.db")))
      assert.equal(2, rc)
      assert.truthy(err:find("no calendar is followed", 1, true), err)
      assert.truthy(err:find("Usage: wecom mirror", 1, true), err)
      assert.equal("usage", cjson.decode(out).error.kind)
      assert.is_nil((out .. err):find(emu.corpsecret, 1, true))
      rc, out = wecom("mirror --help")
      assert.equal(0, rc)
      assert.truthy(out:find("--no-reconcile", 1, true))
    end)
  end)

  it("refuses bad usage with status 2 and the usage, and a store it can't open with 1", function()
    assert.same({ nil, "unknown option --dbfile" }, { cli.parse{ "--dbfile", "x" } })
    assert.same({ nil, "--db: expected a file name" }, { cli.parse{ "--db" } })
    local opts = assert(cli.parse{ "--json", "--", "--not-an-option" })
    assert.is_true(opts.json)
    assert.same({ "--not-an-option" }, opts.cal_ids)
    local status, out, err = run{ "--db", db() }
    assert.equal(2, status)
    assert.truthy(err:text():find("no calendar is followed", 1, true))
    assert.truthy(err:text():find("Usage: wecom [--json] mirror", 1, true))
    assert.equal("", out:text())
    status, out, err = run{ "--db", db(), ("x"):rep(65) }
    assert.equal(2, status)
    assert.equal("", out:text())
    assert.truthy(err:text():find("CAL_ID", 1, true))
    status, out, err = run{ "--db", dir .. "/missing/dir/m.db", "wc1" }
    assert.equal("", out:text())
    assert.equal(1, status)
    assert.truthy(err:text():find("wecom mirror: sync: sqlite:", 1, true), err:text())
    status, out = run{ "--help" }
    assert.equal(0, status)
    assert.equal(cli.USAGE, out:text())
  end)
end)
