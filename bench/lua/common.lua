-- Shared by the bench's wrk scripts: thread ids, and one JSON line of results from done().
-- bench/run.py parses the line that starts with "BENCH_JSON ".
local common = {}
local threads = {}

function common.setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

function common.done(summary, latency, requests)
   local extra = 0
   for _, thread in ipairs(threads) do
      extra = extra + (thread:get("cycled") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"bodies_cycled": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout, extra))
   -- The whole latency histogram (microseconds:count), so runs can be merged exactly.
   local buckets = {}
   for i = 1, #latency do
      local value, count = latency(i)
      table.insert(buckets, string.format("%d:%d", value, count))
   end
   io.write("BENCH_HIST " .. table.concat(buckets, ",") .. "\n")
end

return common
