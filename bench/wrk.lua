-- The wrk script of bench/run.sh: POSTs form bodies read from a file, one
-- per line, rotating through them. Driven by the environment:
--   BENCH_BODIES   file of form-encoded bodies, one per line (required)
--   BENCH_AUTH     the Authorization header value (e.g. "Basic ...")
--   BENCH_THREADS  wrk's -t (default 2), to split BENCH_ONCE pools
--   BENCH_ONCE=1   use each body once (single-use ID-JAGs): thread k takes
--                  lines k, k+T, k+2T, ...; when its share runs out it stops
--                  and reports EXHAUSTED (the run is then void)
--   BENCH_RATE     total requests/s to pace to (fixed rate, via delay());
--                  0 or unset: as fast as the connections go (closed loop)
--   BENCH_OUT      minting: append each 200 answer's access_token to
--                  BENCH_OUT.<thread> (one per line)
-- done() prints one line: RESULT req/s p50_ms p99_ms errors requests, where
-- errors = non-2xx/3xx answers + connect, read, write and timeout errors.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local once = os.getenv("BENCH_ONCE") == "1"
local outname = os.getenv("BENCH_OUT")

-- Main state: number the threads, keep them for done().
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local reqs = {}
local i = 0
local next_slot, interval, out

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  local auth = os.getenv("BENCH_AUTH")
  if auth and auth ~= "" then
    wrk.headers["Authorization"] = auth
  end
  local n = 0
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    if not once or n % nthreads == id then
      -- Pre-formatted: request() only picks the next one.
      table.insert(reqs, wrk.format(nil, nil, nil, line))
    end
    n = n + 1
  end
  -- Threads start at different offsets so they do not send the same body
  -- at the same moment.
  if not once then
    i = (id * math.floor(#reqs / nthreads)) % #reqs
  end
  if rate > 0 then
    interval = 1000 / (rate / nthreads)
    next_slot = now_ms()
  end
  if outname then
    out = io.open(outname .. "." .. id, "w")
    out:setvbuf("line")
  end
end

function request()
  i = i + 1
  if i > #reqs then
    if once then
      exhausted = true
      wrk.thread:stop()
      return reqs[#reqs]
    end
    i = 1
  end
  return reqs[i]
end

if rate > 0 then
  -- Open-ish loop: every request takes the next slot of this thread's
  -- schedule, whichever connection sends it. A thread that falls behind
  -- does not burst to catch up.
  function delay()
    local now = now_ms()
    if next_slot < now then
      next_slot = now
    end
    local d = next_slot - now
    next_slot = next_slot + interval
    return math.floor(d + 0.5)
  end
end

if outname then
  function response(status, headers, body)
    if status == 200 then
      local tok = body:match('"access_token":"([^"]+)"')
      if tok then
        out:write(tok, "\n")
      end
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.status + e.connect + e.read + e.write + e.timeout
  for _, t in ipairs(threads) do
    if t:get("exhausted") then
      io.write("EXHAUSTED\n")
    end
  end
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    errors, summary.requests))
end
