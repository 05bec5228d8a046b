-- ----------------------------------------------
-- Rare client fingerprints: after a learning period of LEARN_SECONDS of traffic
-- time (while the network's usual fingerprints are collected), a host that has
-- already made LEARN handshakes
-- shows a JA4 (JA3 when Suricata logs no JA4) it never used before, and at
-- most RARE_SHARE of the hosts seen so far (once there are MIN_HOSTS) have ever
-- used it. Per-host fingerprints are a store set; hosts per fingerprint and all
-- hosts are HyperLogLogs.
-- ----------------------------------------------
local findings = require 'findings'

local LEARN = 5
local LEARN_SECONDS = 900
local RARE_SHARE = 0.1
local MIN_HOSTS = 20

function setup()
    conn = assert(hiredis.connect())
end

function loop(eve)
    local tls = eve.tls
    local fp = tls.ja4 or (type(tls.ja3) == "table" and tls.ja3.hash) or nil
    if fp then
        local host = eve.src_ip
        conn:command("PFADD", "fp:hosts:" .. fp, host)
        conn:command("PFADD", "fp:hosts", host)
        local seen = conn:command("INCR", "fp:handshakes:" .. host)
        local new = conn:command("SADD", "fp:" .. host, fp) == 1
        local rare = false
        local t = findings.event_time(eve) or 0
        conn:command("SET", "fp:since", t, "NX")
        local since = tonumber(conn:command("GET", "fp:since"))
        if new and seen > LEARN and t - since >= LEARN_SECONDS then
            local all = conn:command("PFCOUNT", "fp:hosts")
            local users = conn:command("PFCOUNT", "fp:hosts:" .. fp)
            rare = all >= MIN_HOSTS and users <= RARE_SHARE * all
        end
        if rare then
            findings.report(conn, default_output, {
                kind = "tls.rare_ja4", host = host, peer = eve.dest_ip, key = fp, event = eve,
                detail = { fingerprint = fp, sni = tls.sni, earlier_handshakes = seen - 1 },
            })
        end
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
