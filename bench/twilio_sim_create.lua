-- wrk script: POST Messages.json creates with Basic auth over keep-alive.
-- Reads SIM_ACCOUNT and SIM_TOKEN from the environment.
local account = os.getenv("SIM_ACCOUNT") or "ACbench"
local token = os.getenv("SIM_TOKEN") or "token"

local function b64(data)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

wrk.method = "POST"
wrk.path = "/2010-04-01/Accounts/" .. account .. "/Messages.json"
wrk.headers["Authorization"] = "Basic " .. b64(account .. ":" .. token)
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "To=%2B14155550199&From=%2B18005550100&Body=Hello+from+the+benchmark%2C+reply+STOP+to+opt+out"

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write +
                 summary.errors.status + summary.errors.timeout
  io.write(string.format("requests/s: %.0f\n", summary.requests / (summary.duration / 1e6)))
  io.write(string.format("latency p50: %.3f ms  p90: %.3f ms  p99: %.3f ms  max: %.3f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
  io.write(string.format("requests: %d  errors: %d (non-2xx: %d)\n", summary.requests, errors, summary.errors.status))
end
