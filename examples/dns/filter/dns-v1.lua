-- ----------------------------------------------
-- DNS filter: keeps DNS events and hands them on in the v1 layout
-- (dns.type query/answer, dns.rrname, dns.rrtype, dns.rdata, one event per
-- answer record), whichever EVE DNS version Suricata wrote (v1, v2, v3).
-- ----------------------------------------------
local dnsv1 = require 'dnsv1'

function setup()
end

-- each_v1 hands over one table changed per record: analyze_event copies it as it is
local function hand_on(e)
    dragonfly.analyze_event(default_analyzer, e)
end

function loop(eve)
    if eve.event_type ~= "dns" then return end
    dnsv1.each_v1(eve, hand_on)
end
