-- The emulator's in-memory state: configuration, tokens, calendars,
-- schedules, injected faults and call statistics. One nginx worker holds it.
local M = {}

-- token_suffix: appended to issued tokens (characters a client must escape)
local DEFAULTS = { corpid = "wwemulator", corpsecret = "emulator-secret", token_ttl = 7200, token_suffix = "" }

local function now() return ngx.now() end

local random_state = math.floor((os.time() % 100000) * 1000 + (os.clock() * 1000) % 1000)

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

-- A random id: WeCom ids are opaque strings of letters and digits.
function M.random_id(prefix, n)
  local out = { prefix or "" }
  for _ = 1, n do
    random_state = (random_state * 69069 + 1) % 4294967296
    local k = math.floor(random_state / 65536) % #ALPHABET + 1
    out[#out + 1] = ALPHABET:sub(k, k)
  end
  return table.concat(out)
end

function M.reset(config)
  M.config = {}
  for k, v in pairs(DEFAULTS) do M.config[k] = v end
  M.tokens = {}
  M.calendars = {}       -- cal_id -> calendar (deleted ones keep `deleted = true`)
  M.schedules = {}       -- schedule_id -> schedule
  M.calendar_schedules = {} -- cal_id -> array of schedule ids in creation order
  M.default_cal_id = nil   -- the app's default calendar, made on first use
  M.faults = {}
  M.calls = {}
  M.errors = {}
  M.requests = {}
  M.tokens_issued = 0
  M.sequence = 0
  if config then M.configure(config) end
end

function M.configure(config)
  for _, k in ipairs{ "corpid", "corpsecret", "token_suffix" } do
    if type(config[k]) == "string" then M.config[k] = config[k] end
  end
  if tonumber(config.token_ttl) then M.config.token_ttl = tonumber(config.token_ttl) end
end

-- The next value of the increasing `sequence` of schedules.
function M.next_sequence()
  M.sequence = M.sequence + 1
  return M.sequence
end

---------------------------------------------------------------------------
-- tokens

function M.issue_token()
  local token = M.random_id("", 64) .. M.config.token_suffix
  local ttl = M.config.token_ttl
  M.tokens[token] = { expires = now() + ttl }
  M.tokens_issued = M.tokens_issued + 1
  return token, ttl
end

-- "valid", "expired" or "invalid"
function M.token_status(token)
  local t = M.tokens[token]
  if not t or t.invalid then return "invalid" end
  if now() >= t.expires then return "expired" end
  return "valid"
end

function M.expire_tokens()
  for _, t in pairs(M.tokens) do t.expires = 0 end
end

function M.invalidate_tokens()
  for _, t in pairs(M.tokens) do t.invalid = true end
end

---------------------------------------------------------------------------
-- faults: per path ("gettoken", "oa/calendar/get", or "*" for any), applied
-- in the order they were added.

local FAULT_KEYS = {
  path = "string", times = "number", after = "number", latency_ms = "number", status = "number",
  body = "string", malformed = "boolean", truncated = "boolean", short_body = "boolean",
  hang = "number", close = "boolean", huge_bytes = "number", chunked = "boolean", errcode = "number",
  errmsg = "string", raw = "string", trickle_ms = "number",
  expire_tokens = "boolean", invalidate_tokens = "boolean",
}

function M.add_fault(f)
  for k, v in pairs(f) do
    if FAULT_KEYS[k] == nil then return nil, "unknown fault field " .. tostring(k) end
    if type(v) ~= FAULT_KEYS[k] then return nil, ("fault field %s must be a %s"):format(k, FAULT_KEYS[k]) end
  end
  if not f.path then return nil, "a fault needs a path" end
  f.times = f.times or 1
  f.after = f.after or 0
  M.faults[#M.faults + 1] = f
  return true
end

function M.clear_faults() M.faults = {} end

-- What applies to this request: the faults for its path that are due,
-- merged (the earliest added wins a field both set), or nil. A fault with
-- times < 0 stays until cleared.
function M.take_fault(path)
  local merged
  local i = 1
  while i <= #M.faults do
    local f = M.faults[i]
    local gone = false
    if f.path == path or f.path == "*" then
      if f.after > 0 then
        f.after = f.after - 1
      else
        merged = merged or {}
        for k, v in pairs(f) do
          if merged[k] == nil then merged[k] = v end
        end
        if f.times > 0 then
          f.times = f.times - 1
          if f.times == 0 then
            table.remove(M.faults, i)
            gone = true
          end
        end
      end
    end
    if not gone then i = i + 1 end
  end
  return merged
end

---------------------------------------------------------------------------
-- statistics

function M.count_call(path) M.calls[path] = (M.calls[path] or 0) + 1 end

function M.count_error(errcode)
  local k = tostring(errcode)
  M.errors[k] = (M.errors[k] or 0) + 1
end

function M.record_request(path, raw) M.requests[path] = raw end

function M.last_request(path) return M.requests[path] end

function M.stats()
  return { calls = M.calls, errors = M.errors, tokens_issued = M.tokens_issued }
end

M.reset()

return M
