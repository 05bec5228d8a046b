-- ----------------------------------------------
-- Flow filter: Suricata writes a flow event when a flow ends or times out;
-- only those go on to the flow analyzers.
-- ----------------------------------------------
function setup()
end

function loop(eve)
    if eve.event_type == "flow" and type(eve.flow) == "table" then
        dragonfly.analyze_event(default_analyzer, eve)
    end
end
