-- Store benchmark: run with --check (setup() does the measuring). See scripts/bench-store.
local host = os.getenv("BENCH_REDIS_HOST")
if host and host ~= "" then
  redis_host = host
  redis_port = os.getenv("BENCH_REDIS_PORT") or "6379"
end
inputs = { { tag="none", uri="file:///dev/null", script="noop.lua", default_analyzer="ops" } }
analyzers = { { tag="ops", script="ops.lua" } }
outputs = {}
