-- Benchmark (d): a 5-analyzer chain router -> enrich -> score -> filter -> sink.
inputs = { { tag="eve", uri="file://" .. os.getenv("BENCH_INPUT"), script="filter.lua", default_analyzer="router" } }
analyzers = {
  { tag="router", script="router.lua" },
  { tag="enrich", script="enrich.lua" },
  { tag="score",  script="score.lua" },
  { tag="filter", script="keep.lua" },
  { tag="sink",   script="sink.lua" },
}
outputs = { { tag="out", uri="file://out.json" } }
-- BENCH_HTTP: the listener scenario (k) taps (unset: none)
engine = { stats_interval = 3600, workers = tonumber(os.getenv("BENCH_WORKERS") or "2"),
           http = os.getenv("BENCH_HTTP") }
