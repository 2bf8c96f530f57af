-- WeCom's callback encryption done independently of wecom.core, with the
-- openssl command line, so the specs can check our C against another
-- implementation and craft plaintexts that ours would never produce (bad
-- padding, lengths past the end, other receiveids).
local shell = require("support.shell")

local M = {}

-- The official test vectors (API.md, "Callbacks"; document path/90968).
M.TOKEN = "QDG6eK"
M.KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
M.RECEIVEID = "wx5823bf96d3bd56c7"
M.GET = {
  msg_signature = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", timestamp = "1409659589", nonce = "263014780",
  echostr = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
}
M.GET_PLAINTEXT = "1616140317555161061"
M.POST_QUERY = {
  msg_signature = "477715d11cdb4164915debcba66cb864d751f3e6", timestamp = "1409659813", nonce = "1372623149",
}
M.POST_ENCRYPT = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
  .. "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdn"
  .. "LxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMEL"
  .. "NqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bH"
  .. "CmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
-- the body as WeCom's sample request shows it
M.POST_BODY = "<xml>\n<ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA["
  .. M.POST_ENCRYPT .. "]]></Encrypt>\n<AgentID><![CDATA[218]]></AgentID>\n</xml>"

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local VALUE = {}
for i = 1, 64 do VALUE[B64:sub(i, i)] = i - 1 end

-- Lenient base64 decoding (the key's spare bits are dropped).
function M.unbase64(s)
  s = s:gsub("=", "")
  local out = {}
  for i = 1, #s, 4 do
    local group, n = 0, 0
    for j = i, math.min(i + 3, #s) do
      group = group * 64 + VALUE[s:sub(j, j)]
      n = n + 1
    end
    group = group * 64 ^ (4 - n)
    local bytes = string.char(math.floor(group / 65536) % 256, math.floor(group / 256) % 256, group % 256)
    out[#out + 1] = bytes:sub(1, n - 1)
  end
  return table.concat(out)
end

function M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local group = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for k = 3, 0, -1 do
      local v = math.floor(group / 64 ^ k) % 64
      chars[#chars + 1] = B64:sub(v + 1, v + 1)
    end
    local n = c and 4 or (b and 3 or 2)
    out[#out + 1] = table.concat(chars):sub(1, n) .. ("="):rep(4 - n)
  end
  return table.concat(out)
end

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

local function run_openssl(args, input)
  local file = os.tmpname()
  local f = assert(io.open(file, "wb"))
  f:write(input)
  f:close()
  local p = assert(io.popen(("openssl %s -in %s 2>&1"):format(args, shell.quote(file))))
  local out = p:read("*a")
  p:close()
  os.remove(file)
  return out
end

local function key_args(key)
  local raw = M.unbase64((key or M.KEY) .. "=")
  return ("-K %s -iv %s"):format(hex(raw), hex(raw:sub(1, 16)))
end

-- AES-256-CBC of whole blocks, no padding added: base64 of the ciphertext.
function M.encrypt_raw(plain, key)
  assert(#plain % 16 == 0, "whole blocks only")
  return (run_openssl("enc -aes-256-cbc -nopad -a -A " .. key_args(key), plain):gsub("%s+$", ""))
end

-- The plaintext bytes of a base64 ciphertext.
function M.decrypt_raw(encrypt, key)
  local file = os.tmpname()
  local f = assert(io.open(file, "wb"))
  f:write(encrypt)
  f:close()
  local p = assert(io.popen(("openssl enc -d -aes-256-cbc -nopad -a -A %s -in %s"):format(key_args(key),
    shell.quote(file))))
  local out = p:read("*a")
  p:close()
  os.remove(file)
  return out
end

function M.be32(n)
  return string.char(math.floor(n / 2 ^ 24) % 256, math.floor(n / 2 ^ 16) % 256, math.floor(n / 2 ^ 8) % 256, n % 256)
end

-- WeCom's plaintext: 16 random bytes, length, message, receiveid, padding
-- to 32 bytes; each part can be overridden to make it wrong.
function M.plaintext(msg, o)
  o = o or {}
  local body = (o.random or "0123456789abcdef") .. (o.length or M.be32(#msg)) .. msg .. (o.receiveid or M.RECEIVEID)
  local pad = o.pad or (32 - #body % 32)
  local fill = o.fill or string.char(pad % 256):rep(pad)
  return body .. fill
end

return M
