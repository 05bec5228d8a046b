-- ----------------------------------------------
-- Triage filter: sends each event type to the head of its detection chain;
-- DNS goes in the v1 layout. Alerts go straight to triage.
-- ----------------------------------------------
local dnsv1 = require 'dnsv1'

local HEAD = { flow = "talkers", tls = "cert", http = "http", alert = "triage" }

function setup()
end

function loop(eve)
    local t = eve.event_type
    if t == "dns" then
        for _, e in ipairs(dnsv1.to_v1(eve)) do dragonfly.analyze_event("dga", e) end
    elseif HEAD[t] then
        dragonfly.analyze_event(HEAD[t], eve)
    end
end
