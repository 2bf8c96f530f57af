-- What the wecom.sync specs share: the server's truth against a mirror's
-- store, a feed that records what a mirror reports, and an inbox that
-- receives the emulator's callbacks (spec/support/raw_server.lua answering
-- "success") and decrypts them for mirror:apply.
local callback = require("wecom.callback")
local codec = require("wecom.sync.codec")
local luassert = require("luassert")
local raw = require("support.raw")
local shell = require("support.shell")
local sync = require("wecom.sync")

local M = {}

M.TOKEN = "mirrorCallbackToken"
M.KEY = "Mk1mZ0p5cW1KcU9ZbWh3Rk1sU2d0b3J3c1RkY2xw0a9"

-- A store of a kind the specs run against: "memory", or "sqlite" (a new
-- file in dir; its path second).
local files = 0
function M.store(kind, dir)
  if kind == "memory" then return sync.memory() end
  files = files + 1
  local path = ("%s/mirror-%d.db"):format(dir, files)
  return assert(sync.sqlite(path)), path
end

-- A directory of a spec's own (M.rmdir(dir) in its teardown).
function M.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(shell.run("mkdir -p " .. shell.quote(dir)) == 0)
  return dir
end

function M.rmdir(dir)
  if dir then shell.run("rm -rf " .. shell.quote(dir)) end
end

-- Each test's start: the emulator as new (the callback target stays), and
-- a client of it.
function M.fresh(emu)
  emu:reset()
  emu:clear_faults()
  return emu:client()
end

function M.calendar(client, summary)
  return assert(client:calendar_add{ calendar = { summary = summary or "team", color = "#336699" } }).cal_id
end

-- The live schedules of a calendar as the API lists them, in list order,
-- and by id. `upto`: only the first `upto` entries of the list.
function M.truth(client, cal_id, upto)
  local list, by_id, n = {}, {}, 0
  local iter = client:each_schedule(cal_id, { limit = 1000 })
  for s, err in iter do
    luassert.is_not_false(s, tostring(err))
    n = n + 1
    if upto and n > upto then break end
    if s.status ~= 1 then
      list[#list + 1] = s
      by_id[s.schedule_id] = s
    end
  end
  return list, by_id
end

-- The schedules a store holds for a calendar, through its page() (what
-- mirror:schedules reads), checked for duplicates: list and by id.
function M.stored(store, cal_id)
  local list, by_id, after = {}, {}, nil
  while true do
    local page, pos = store:page(cal_id, after, 333)
    luassert.is_table(page, tostring(pos))
    if #page == 0 then break end
    after = pos
    for _, s in ipairs(page) do
      luassert.is_nil(by_id[s.schedule_id], "stored twice: " .. s.schedule_id)
      list[#list + 1] = s
      by_id[s.schedule_id] = s
    end
  end
  return list, by_id
end

-- Asserts the store holds exactly the live schedules of the calendar's
-- first `upto` list entries (all of them by default), with their content.
function M.assert_mirrors(client, store, cal_id, upto)
  local want = select(2, M.truth(client, cal_id, upto))
  local got = select(2, M.stored(store, cal_id))
  for id, s in pairs(want) do
    luassert.is_truthy(got[id], "missing from the mirror: " .. id)
    luassert.is_true(codec.same(s, got[id]), "differs: " .. id)
  end
  for id in pairs(got) do luassert.is_truthy(want[id], "not on the server: " .. id) end
end

-- A feed: feed.fn is an on_change that records; feed:kinds() counts by kind.
function M.feed()
  local feed = { list = {} }
  function feed.fn(change) feed.list[#feed.list + 1] = change end
  function feed.kinds()
    local out = {}
    for _, c in ipairs(feed.list) do out[c.kind] = (out[c.kind] or 0) + 1 end
    return out
  end
  function feed.take()
    local list = feed.list
    feed.list = {}
    return list
  end
  return feed
end

---------------------------------------------------------------------------
-- the callback inbox

local Inbox = {}
Inbox.__index = Inbox

function M.inbox(corpid)
  local self = setmetatable({ server = raw.start{ default = { send = raw.reply("success") } }, taken = 0 }, Inbox)
  self.url = self.server.base_url .. "/wecom/callback"
  self.cb = assert(callback.new{ token = M.TOKEN, encoding_aes_key = M.KEY, receiveid = corpid })
  return self
end

function Inbox:stop() self.server:stop() end

-- The emulator's callbacks go here (after an emulator reset too).
function Inbox:target(emu)
  emu:control("callback", { url = self.url, token = M.TOKEN, encoding_aes_key = M.KEY })
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The messages delivered since the last call, decrypted, in arrival order.
function Inbox:messages()
  local out = {}
  local requests = self.server:requests()
  for i = self.taken + 1, #requests do
    local text = requests[i].text
    local target = text:match("^POST (%S+) HTTP/1%.1\r\n")
    local body = text:match("\r\n\r\n(.*)$")
    local query = {}
    for k, v in target:match("%?(.*)$"):gmatch("([^&=]+)=([^&]*)") do query[unescape(k)] = unescape(v) end
    out[#out + 1] = assert(self.cb:decrypt(query, body))
  end
  self.taken = #requests
  return out
end

return M
