-- A test CA and a server certificate for 127.0.0.1, made at test time with
-- the openssl command.
local shell = require("support.shell")

local M = {}

-- Returns {dir, ca, cert, key} (paths); remove() deletes them.
function M.make()
  local dir = os.tmpname()
  os.remove(dir)
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local rc, out = shell.run(table.concat({
    "mkdir -p " .. dir, "cd " .. dir,
    "openssl req -x509 " .. ec .. " -keyout ca.key -out ca.pem -days 2 -subj '/CN=wecom test CA'" ..
      " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
    "openssl req " .. ec .. " -keyout server.key -out server.csr -subj /CN=127.0.0.1",
    "printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf",
    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf",
    "chmod 0755 " .. dir, "chmod 0644 *",
  }, " && "))
  assert(rc == 0, "openssl failed: " .. out)
  return {
    dir = dir, ca = dir .. "/ca.pem", cert = dir .. "/server.pem", key = dir .. "/server.key",
    remove = function() os.execute("rm -rf " .. dir) end,
  }
end

return M
