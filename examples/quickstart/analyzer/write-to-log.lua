-- ----------------------------------------------
-- Sink: stamps the output time and writes the event to the default output.
-- ----------------------------------------------
function setup()
    print(">>>>>>>> write-to-log running")
end

function loop(msg)
    local eve = msg
    eve["mle_output_time"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
    dragonfly.output_event(default_output, eve)
end
