-- The container's default root: the quick start's hello-world on Suricata's eve.json in the
-- mounted log directory (/opt/dragonfly/log, as in the original's `docker run -v
-- /var/log/suricata:/opt/dragonfly/log dragonfly`), followed from its beginning, with its
-- position kept in the results volume so a restarted container goes on where it stopped.
-- Results go to the results volume (-l /opt/dragonfly/results). Mount your own root over
-- /opt/dragonfly/root to run your analyzers.
local redis = os.getenv("DRAGONFLY_REDIS")   -- e.g. "redis:6379" (compose.yaml)
if redis and redis ~= "" then
   redis_host, redis_port = redis:match("^(.+):(%d+)$")
end

inputs = {
   { tag="eve", uri="tail:///opt/dragonfly/log/eve.json<", script="filter.lua",
     default_analyzer="hello", options = { checkpoint = "/opt/dragonfly/results/eve.checkpoint" } },
}

analyzers = {
   { tag="hello",  script="hello-world.lua",  default_analyzer="output", default_output="eve" },
   { tag="output", script="write-to-log.lua", default_analyzer="",       default_output="eve" },
}

outputs = {
   { tag="eve", uri="file://eve-mle.json" },
}

engine = { http = os.getenv("DRAGONFLY_HTTP") }
