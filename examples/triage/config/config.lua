-- Alert triage: every detection of the dns, flow and tls examples plus web
-- scanners, and Suricata alerts ranked with what those found about their hosts.
-- Input: the sample shipped here, or any EVE source in $DRAGONFLY_EVE.

inputs = {
   { tag="eve", uri=os.getenv("DRAGONFLY_EVE") or "zfile://data/sample.json.gz",
     script="route.lua", default_analyzer="" },
}

analyzers = {
   -- DNS: queries go dga -> tunnel, answers to nx (route.lua)
   { tag="dga",        script="dns-dga.lua",        default_analyzer="tunnel",     default_output="findings" },
   { tag="tunnel",     script="dns-tunnel.lua",     default_analyzer="",           default_output="findings" },
   { tag="nx",         script="dns-nxdomain.lua",   default_analyzer="",           default_output="findings" },
   -- flow chain
   { tag="talkers",    script="flow-talkers.lua",   default_analyzer="scan",       default_output="reports" },
   { tag="scan",       script="flow-scan.lua",      default_analyzer="outlier",    default_output="findings" },
   { tag="outlier",    script="flow-outlier.lua",   default_analyzer="beacon",     default_output="findings" },
   { tag="beacon",     script="flow-beacon.lua",    default_analyzer="",           default_output="findings" },
   -- TLS chain
   { tag="cert",       script="tls-cert.lua",       default_analyzer="ja4",        default_output="findings" },
   { tag="ja4",        script="tls-ja4.lua",        default_analyzer="reputation", default_output="findings" },
   { tag="reputation", script="tls-reputation.lua", default_analyzer="",           default_output="findings" },
   -- HTTP
   { tag="http",       script="http-scan.lua",      default_analyzer="",           default_output="findings" },
   -- alerts
   { tag="triage",     script="alert-triage.lua",   default_analyzer="",           default_output="alerts" },
}

outputs = {
   { tag="findings", uri="file://findings.json" },
   { tag="reports",  uri="file://reports.json" },
   { tag="alerts",   uri="file://alerts.json" },
   -- findings and ranked alerts again, as Parquet partitioned by event_type and date, for
   -- hunting over weeks with DuckDB (README); files close every 5 minutes and at the end
   { tag="archive",  uri="parquet://archive" },
}

-- the live pipeline page and metrics at http://$DRAGONFLY_HTTP/ (e.g. 127.0.0.1:7070) if set
-- The store is capped as in examples/dns (a flood of new names or hosts evicts the least
-- recently used windows; the DGA model, without a TTL, stays).
engine = { http = os.getenv("DRAGONFLY_HTTP"),
           store_maxmemory_mb = 512, store_maxmemory_policy = "volatile-lru" }
