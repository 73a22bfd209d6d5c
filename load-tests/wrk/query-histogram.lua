-- GET /v1/stats/histogram: the console's bucketed counts (60 buckets) of one
-- random service over a window of WINDOW_HOURS hours ending at a random
-- minute within the loaded data, so 7-day windows have ragged edges (whole
-- hours from the rollup, the edges from the events) and 1-hour windows are
-- minute buckets counted from the events. NOW: the load time as a Unix
-- epoch; DAYS, SERVICES: as loaded.
local now = tonumber(os.getenv("NOW"))
local hours = tonumber(os.getenv("WINDOW_HOURS") or "1")
local days = tonumber(os.getenv("DAYS") or "10")
local services = tonumber(os.getenv("SERVICES") or "50")
local key = os.getenv("EVENTLINE_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local function rfc3339(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", t)
end

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  local last_minute = math.floor(now / 60)
  local back = math.random(hours * 60, days * 24 * 60 - 1)
  local to = (last_minute - back + hours * 60) * 60
  local from = to - hours * 3600
  local path = string.format("/v1/stats/histogram?service=svc-%03d&from=%s&to=%s&buckets=60",
    math.random(0, services - 1), rfc3339(from), rfc3339(to))
  return wrk.format("GET", path)
end
