-- A row of `make bench` recorded alone (make bench-callback, make
-- bench-mirror): its section of bench/RESULTS.md replaced, the rest kept.
--   dofile("bench/section.lua")(lines, "## The section's heading, or its start")
return function(lines, heading)
  local path = "bench/RESULTS.md"
  local f = io.open(path)
  local text = f and f:read("*a") or "# Benchmark results\n\n"
  if f then f:close() end
  local section = table.concat(lines, "\n")
  section = section:gsub("Run this row alone", ("Recorded alone on %s. Run this row alone")
    :format(os.date("!%Y-%m-%d %H:%M UTC")), 1)
  local escaped = heading:gsub("%p", "%%%0")
  local head, rest = text:match("^(.-)" .. escaped .. "[^\n]*\n(.*)$")
  if head then
    local after = rest:match("\n(## .*)$") or ""
    text = head .. section .. (after ~= "" and "\n" .. after or "")
  else
    text = text:gsub("\n*$", "\n\n") .. section
  end
  f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  print(section)
end
