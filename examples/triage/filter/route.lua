-- ----------------------------------------------
-- Triage filter: sends each event type to the head of its detection chain, and
-- each event only where it is read. DNS goes in the v1 layout: queries to the
-- DGA and tunnel analyzers, answers (one per record) to the NXDOMAIN one.
-- Alerts go straight to triage.
-- ----------------------------------------------
local dnsv1 = require 'dnsv1'

local HEAD = { flow = "talkers", tls = "cert", http = "http", alert = "triage" }

function setup()
end

-- each_v1 hands over one table changed per record: analyze_event copies it as it is
local function route_dns(e)
    dragonfly.analyze_event(e.dns.type == "query" and "dga" or "nx", e)
end

function loop(eve)
    local t = eve.event_type
    if t == "dns" then
        dnsv1.each_v1(eve, route_dns)
    elseif HEAD[t] then
        dragonfly.analyze_event(HEAD[t], eve)
    end
end
