-- ----------------------------------------------
-- Input filter: every event decoded from the input goes to the default analyzer.
-- ----------------------------------------------
function setup()
    print(">>>>>>>> filter running")
end

function loop(msg)
    local eve = msg
    if eve and eve.event_type then
        dragonfly.analyze_event(default_analyzer, eve)
    end
end
