-- Counts responses per x-pid header, for each worker's share of requests.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
-- WRK_DELAY_MS: wait that long after each response before the next request on
-- that connection, standing in for the round trip to a proxy on another host.
local gap = tonumber(os.getenv("WRK_DELAY_MS") or "")
if gap then function delay() return gap end end
function response(status, headers, body)
  local pid = headers["x-pid"] or "none"
  counts[pid] = (counts[pid] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for pid, n in pairs(t:get("counts")) do total[pid] = (total[pid] or 0) + n end
  end
  local parts = {}
  for pid, n in pairs(total) do table.insert(parts, string.format('"%s":%d', pid, n)) end
  io.write("PIDS {" .. table.concat(parts, ",") .. "}\n")
  io.write(string.format("LATENCY %d %d %d %d\n", latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
