-- GET /v1/events: a 50-event page of one random service over a window of
-- WINDOW_HOURS hours ending at a random whole hour within the loaded data
-- (NOW: the load time as a Unix epoch; DAYS, SERVICES: as loaded).
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
  local last_hour = math.floor(now / 3600)
  -- Windows end between `hours` hours and DAYS days back: inside the data.
  local back = math.random(hours, days * 24 - 1)
  local to = (last_hour - back + hours) * 3600
  local from = to - hours * 3600
  local path = string.format("/v1/events?service=svc-%03d&from=%s&to=%s&limit=50",
    math.random(0, services - 1), rfc3339(from), rfc3339(to))
  return wrk.format("GET", path)
end
