-- 100 events per request to /v1/events/batch, authenticated with $EVENTLINE_KEY.
wrk.method = "POST"
wrk.path = "/v1/events/batch"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("EVENTLINE_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
local event = '{"service":"checkout-api","message":"order 8812 paid by card ending 4242, 3 items, total 129.90 EUR","metadata":{"order_id":8812,"items":3,"currency":"EUR","customer":{"id":"c-1942","tier":"gold"}}}'
local events = {}
for i = 1, 100 do events[i] = event end
wrk.body = "[" .. table.concat(events, ",") .. "]"
