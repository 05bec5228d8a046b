-- ----------------------------------------------
-- TLS filter: only TLS handshake events go on to the TLS analyzers.
-- ----------------------------------------------
function setup()
end

function loop(eve)
    if eve.event_type == "tls" and type(eve.tls) == "table" then
        dragonfly.analyze_event(default_analyzer, eve)
    end
end
