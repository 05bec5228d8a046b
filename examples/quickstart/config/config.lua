-- Dragonfly MLE quick start: filter -> hello-world -> write-to-log.
-- No redis_host: analyzers keep their counters in the embedded store.
-- Input paths are relative to this root (the engine chdirs into it);
-- relative output paths go under the log directory given with -l.

inputs = {
   { tag="eve", uri="file://data/eve-sample.json", script="filter.lua", default_analyzer="hello" },
}

analyzers = {
   { tag="hello",  script="hello-world.lua",  default_analyzer="output", default_output="eve" },
   { tag="output", script="write-to-log.lua", default_analyzer="",       default_output="eve" },
}

outputs = {
   { tag="eve", uri="file://eve-mle.json" },
}
