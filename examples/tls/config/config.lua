-- TLS detections: self-signed and expired certificates, old protocol versions,
-- rare JA4 per host, SNI/IP on a reputation list.
-- Input: the sample shipped here, or any EVE source in $DRAGONFLY_EVE.

inputs = {
   { tag="eve", uri=os.getenv("DRAGONFLY_EVE") or "zfile://data/sample.json.gz",
     script="tls-filter.lua", default_analyzer="cert" },
}

analyzers = {
   { tag="cert",       script="tls-cert.lua",       default_analyzer="ja4",        default_output="findings" },
   { tag="ja4",        script="tls-ja4.lua",        default_analyzer="reputation", default_output="findings" },
   { tag="reputation", script="tls-reputation.lua", default_analyzer="",           default_output="findings" },
}

outputs = {
   { tag="findings", uri="file://findings.json" },
}
