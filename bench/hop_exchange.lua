-- wrk script: the second-hop token exchange (mcp-logs exchanges the agent's
-- hop token for one for the cost tool), as bench/hop_exchange.sh sets it up.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
wrk.body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
  .. "&resource=https%3A%2F%2Fcost.example.com"
  .. "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
  .. "&subject_token=" .. os.getenv("HOP1")

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("p50 %.2f ms  p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
