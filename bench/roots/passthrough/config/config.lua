-- Benchmark (a): pass-through filter -> analyzer -> file. BENCH_INPUT names the input file.
inputs = { { tag="eve", uri="file://" .. os.getenv("BENCH_INPUT"), script="filter.lua", default_analyzer="sink" } }
analyzers = { { tag="sink", script="sink.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
engine = { stats_interval = 3600, workers = tonumber(os.getenv("BENCH_WORKERS") or "2") }
