-- Benchmarks (b) and (c): the quick start's hello-world, on the embedded store or on the Redis
-- named by BENCH_REDIS_PORT (with BENCH_CONCURRENCY flows at once in hello-world); BENCH_OUT_URI
-- replaces the output (Parquet scenarios).
local port = os.getenv("BENCH_REDIS_PORT")
if port and port ~= "" then redis_host = "127.0.0.1"; redis_port = port end
inputs = { { tag="eve", uri="file://" .. os.getenv("BENCH_INPUT"), script="filter.lua", default_analyzer="hello" } }
analyzers = {
   { tag="hello",  script="hello-world.lua",  default_analyzer="output", default_output="eve",
     concurrency = tonumber(os.getenv("BENCH_CONCURRENCY") or "1") },
   { tag="output", script="write-to-log.lua", default_analyzer="",       default_output="eve" },
}
outputs = { { tag="eve", uri=os.getenv("BENCH_OUT_URI") or "file://out.json" } }
engine = { stats_interval = 3600, workers = tonumber(os.getenv("BENCH_WORKERS") or "2"),
           redis_spin_us = tonumber(os.getenv("BENCH_REDIS_SPIN_US") or "") }
