-- Benchmark (a), (f), (g): pass-through filter -> analyzer -> file. BENCH_INPUT names the input file.
-- (f) BENCH_IN_URI / (g) BENCH_OUT_URI replace the input / the output (Kafka, Parquet scenarios).
local input = os.getenv("BENCH_IN_URI") or ("file://" .. os.getenv("BENCH_INPUT"))
inputs = { { tag="eve", uri=input, script="filter.lua", default_analyzer="sink" } }
analyzers = { { tag="sink", script="sink.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri=os.getenv("BENCH_OUT_URI") or "file://out.json" } }
engine = { stats_interval = 3600, workers = tonumber(os.getenv("BENCH_WORKERS") or "2") }
