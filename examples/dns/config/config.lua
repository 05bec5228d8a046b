-- DNS detections: DGA (ML.LOGREG), tunnelling, NXDOMAIN bursts.
-- Input: the sample shipped here, or any EVE source in $DRAGONFLY_EVE
-- (e.g. zfile:///path/eve.json.gz, tail:///var/log/suricata/eve.json, ipc:///run/eve.sock).
-- No redis_host: state and the model live in the embedded store.

inputs = {
   { tag="eve", uri=os.getenv("DRAGONFLY_EVE") or "zfile://data/sample.json.gz",
     script="dns-v1.lua", default_analyzer="dga" },
}

analyzers = {
   { tag="dga",    script="dns-dga.lua",      default_analyzer="tunnel", default_output="findings" },
   { tag="tunnel", script="dns-tunnel.lua",   default_analyzer="nx",     default_output="findings" },
   { tag="nx",     script="dns-nxdomain.lua", default_analyzer="",       default_output="findings" },
}

outputs = {
   { tag="findings", uri="file://findings.json" },
}

-- The store holds the detections' windows (keys with a TTL) and the DGA model (no TTL).
-- Capped, so that a flood of names (every query to a new zone) cannot take the sensor's
-- memory: at the cap the least recently used windows go first; the model never does.
engine = { store_maxmemory_mb = 512, store_maxmemory_policy = "volatile-lru" }
