-- Replays recorded webhook requests once each: thread i of n takes requests i+1, i+1+n, ... of RECOUP_WRK_DATA (a
-- Lua file returning a list of {path=, headers=, body=}). A connection with nothing left to send waits a minute, then
-- sends GET /__bench_idle, a 404 (not counted as a webhook: no webhook endpoint answers 404); the bench stops wrk
-- (SIGINT) once the database shows every webhook's effect.
local requests_file = os.getenv("RECOUP_WRK_DATA")
local thread_count = tonumber(os.getenv("RECOUP_WRK_THREADS") or "1")
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local all = dofile(requests_file)
  mine = {}
  for i = id + 1, #all, thread_count do
    table.insert(mine, all[i])
  end
  count = #mine
  issued, answered, errors, spare = 0, 0, 0, 0
  spare_request = wrk.format("GET", "/__bench_idle")
end

-- a connection with nothing left to send waits instead of spinning on the idle path
function delay()
  if issued >= count then
    return 60000
  end
  return 0
end

function request()
  if id == 0 and not verified then
    -- wrk calls request() once on the first thread before the run, only to check what it returns
    verified = true
    local r = mine[1]
    return wrk.format("POST", r.path, r.headers, r.body)
  end
  if issued < #mine then
    issued = issued + 1
    local r = mine[issued]
    return wrk.format("POST", r.path, r.headers, r.body)
  end
  spare = spare + 1
  return spare_request
end

function response(status, headers, body)
  if status == 404 then
    return
  end
  answered = answered + 1
  if status < 200 or status >= 300 then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  local answered_all, errors_all, spare_all, total = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    answered_all = answered_all + t:get("answered")
    errors_all = errors_all + t:get("errors")
    spare_all = spare_all + t:get("spare")
    total = total + t:get("count")
  end
  io.write(string.format("RESULT hooks=%d answered=%d non2xx=%d spare=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    total, answered_all, errors_all, spare_all, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
