-- Benchmark (e): unix datagram input fed at a fixed rate, pass-through to a file.
inputs = { { tag="eve", uri="ipc://" .. os.getenv("BENCH_SOCKET"), script="filter.lua", default_analyzer="sink" } }
analyzers = { { tag="sink", script="sink.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
engine = { stats_interval = 1, workers = tonumber(os.getenv("BENCH_WORKERS") or "2") }
