-- Flow detections: top talkers and fan-out, port scans, SSH brute force,
-- flow-size outliers, beaconing.
-- Input: the sample shipped here, or any EVE source in $DRAGONFLY_EVE.

inputs = {
   { tag="eve", uri=os.getenv("DRAGONFLY_EVE") or "zfile://data/sample.json.gz",
     script="flow-filter.lua", default_analyzer="talkers" },
}

analyzers = {
   { tag="talkers", script="flow-talkers.lua", default_analyzer="scan",    default_output="reports" },
   { tag="scan",    script="flow-scan.lua",    default_analyzer="outlier", default_output="findings" },
   { tag="outlier", script="flow-outlier.lua", default_analyzer="beacon",  default_output="findings" },
   { tag="beacon",  script="flow-beacon.lua",  default_analyzer="",        default_output="findings" },
}

outputs = {
   { tag="findings", uri="file://findings.json" },
   { tag="reports",  uri="file://reports.json" },
}
