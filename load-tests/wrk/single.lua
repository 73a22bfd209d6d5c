-- One event per request, authenticated with $EVENTLINE_KEY when set.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("EVENTLINE_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
wrk.body = '{"service":"checkout-api","message":"order 8812 paid by card ending 4242, 3 items, total 129.90 EUR","metadata":{"order_id":8812,"items":3,"currency":"EUR","customer":{"id":"c-1942","tier":"gold"}}}'
