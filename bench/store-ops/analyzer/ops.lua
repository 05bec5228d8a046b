-- Measures store operations per second through the hiredis Lua API.
local N = tonumber(os.getenv("BENCH_OPS") or "200000")
-- BENCH_ONLY=incr: only the two rows compared with redis-benchmark
local ONLY_INCR = os.getenv("BENCH_ONLY") == "incr"

local function measure(name, n, f)
  if ONLY_INCR and not name:find("^INCR via command%(%)") and not name:find("^INCR pipelined") then
    return
  end
  local t0 = dragonfly.clock()
  f(n)
  local dt = dragonfly.clock() - t0
  io.write(string.format("| %s | %d | %.0f |\n", name, n, n / dt))
end

function setup()
  local conn = assert(hiredis.connect())
  conn:command("DEL", "bench:c", "bench:h", "bench:z")
  io.write("| operation | ops | ops/s |\n|---|---:|---:|\n")
  measure("INCR via command()", N, function(n)
    for i = 1, n do conn:command("INCR", "bench:c") end
  end)
  measure("INCR via command_line()", N, function(n)
    for i = 1, n do conn:command_line("INCR bench:c") end
  end)
  measure("HINCRBY (100 fields)", N, function(n)
    for i = 1, n do conn:command("HINCRBY", "bench:h", i % 100, 1) end
  end)
  measure("ZINCRBY (1000 members)", N, function(n)
    for i = 1, n do conn:command("ZINCRBY", "bench:z", 1, i % 1000) end
  end)
  measure("INCR pipelined (append_command x100)", N, function(n)
    for i = 1, n / 100 do
      for j = 1, 100 do conn:append_command("INCR", "bench:c") end
      for j = 1, 100 do conn:get_reply() end
    end
  end)
  conn:command("DEL", "bench:c", "bench:h", "bench:z")
end

function loop(msg) end
