-- ----------------------------------------------
-- NXDOMAIN bursts: a host whose lookups fail NX_PER_MINUTE+ times in one minute
-- of traffic time (DGA malware walking its domain list, misconfigured software).
-- ----------------------------------------------
local findings = require 'findings'

local NX_PER_MINUTE = 20

function setup()
    conn = assert(hiredis.connect())
end

function loop(eve)
    local d = eve.dns
    if d.type == "answer" and d.rcode == "NXDOMAIN" then
        local t = findings.event_time(eve) or 0
        local key = "nx:" .. eve.src_ip .. ":" .. math.floor(t / 60)
        local n = conn:command("INCR", key)
        if n == 1 then conn:command("EXPIRE", key, 120) end
        if n >= NX_PER_MINUTE then
            findings.report(conn, default_output, {
                kind = "dns.nxdomain_burst", host = eve.src_ip, event = eve,
                detail = { nxdomain_per_minute = n, example = d.rrname },
            })
        end
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
