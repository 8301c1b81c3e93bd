-- Signed webhook deliveries: POST bodies signed in advance (HMAC-SHA256, base64), one per line of
-- "<signature>\t<body>" in "<file>.<thread id>", cycled; each request carries a new event id, so
-- the receiver stores every request as a new event (the signature covers the body, not the id).
-- Args: <deliveries file prefix> <signature header> <event id header> <event id prefix>.
-- Headers given with -H (topic, shop domain...) go on every request.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
done = common.done

local deliveries = {}
local position = 0
local sent = 0
local signature_header, event_id_header, event_prefix
cycled = 0

function init(args)
   local file = args[1] .. "." .. (tid or 0)
   signature_header, event_id_header, event_prefix = args[2], args[3], args[4]
   for line in io.lines(file) do
      local tab = string.find(line, "\t", 1, true)
      if tab then
         table.insert(deliveries, {string.sub(line, 1, tab - 1), string.sub(line, tab + 1)})
      end
   end
   assert(#deliveries > 0, "no deliveries in " .. file)
end

function request()
   position = position + 1
   if position > #deliveries then
      position = 1
      cycled = cycled + 1
   end
   sent = sent + 1
   local delivery = deliveries[position]
   local headers = {}
   for name, value in pairs(wrk.headers) do headers[name] = value end
   headers["Content-Type"] = "application/json"
   headers[signature_header] = delivery[1]
   headers[event_id_header] = event_prefix .. "-" .. (tid or 0) .. "-" .. sent
   return wrk.format("POST", wrk.path, headers, delivery[2])
end
