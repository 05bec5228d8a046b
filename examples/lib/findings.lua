-- ----------------------------------------------
-- Findings: what the example detections report.
--
-- A finding is one JSON line on the findings output:
--   {"timestamp": <event time>, "event_type": "finding", "finding": "dns.dga",
--    "host": "10.1.3.77", "peer": "...", "severity": 70, "detail": {...},
--    "flow_id": ..., "community_id": "..."}
-- It is written once per (finding, host[, key]) per FINDING_TTL seconds, so a
-- detection that keeps matching does not flood the output. Every sighting is
-- also counted in the store hash ctx:<host> (field = finding name), which the
-- alert-triage analyzer reads to rank alerts. In the triage example findings also
-- go to the Parquet archive (M.ARCHIVE).
-- ----------------------------------------------
local M = {}

M.FINDING_TTL = 3600

-- a root with an `archive` module (the triage example) also keeps findings in that output
-- (Parquet, for hunting); the other roots have none
local has_archive, archive = pcall(require, 'archive')
M.ARCHIVE = has_archive and archive.output or nil

-- severity 0..100 per finding; alert triage adds these up per host
M.SEVERITY = {
    ["dns.dga"] = 70,
    ["dns.nxdomain_burst"] = 40,
    ["dns.tunnel"] = 80,
    ["dns.tunnel_spread"] = 75,
    ["flow.port_scan"] = 50,
    ["flow.beacon"] = 80,
    ["flow.ssh_bruteforce"] = 60,
    ["flow.size_outlier"] = 20,
    ["tls.self_signed"] = 30,
    ["tls.expired_cert"] = 20,
    ["tls.old_version"] = 30,
    ["tls.rare_ja4"] = 20,
    ["tls.reputation"] = 90,
    ["http.scanner"] = 60,
}

-- report(conn, output, f): f = { kind=, host=, peer=?, key=?, event=?, detail=? }
-- Returns true when the finding was written (first sighting), false when throttled.
function M.report(conn, output, f)
    local host = f.host or "-"
    conn:command("HINCRBY", "ctx:" .. host, f.kind, 1)
    local seen = "finding:" .. f.kind .. ":" .. host
    if f.key then seen = seen .. ":" .. f.key end
    if conn:command("SET", seen, "1", "NX", "EX", M.FINDING_TTL) ~= hiredis.status.OK then
        return false
    end
    local ev = f.event or {}
    local finding = {
        timestamp = ev.timestamp,
        event_type = "finding",
        finding = f.kind,
        host = host,
        peer = f.peer,
        severity = M.SEVERITY[f.kind] or 10,
        detail = f.detail,
        flow_id = ev.flow_id,
        community_id = ev.community_id,
    }
    dragonfly.output_event(output, finding)
    -- and to the Parquet archive, where a hunt queries weeks of them (README: DuckDB)
    if M.ARCHIVE then dragonfly.output_event(M.ARCHIVE, finding) end
    return true
end

-- Event time in seconds since the epoch (EVE "timestamp"), so windows follow the
-- traffic, not the wall clock: a replayed hour behaves like the live one.
function M.event_time(ev, field)
    local ts = field or ev.timestamp
    if type(ts) ~= "string" then return nil end
    return dragonfly.date2epoch(ts)
end

return M
