-- ----------------------------------------------
-- Sink: stamps the output time and writes the event to the default output.
-- ----------------------------------------------
local last_second, stamp = nil, nil

function setup()
    print(">>>>>>>> write-to-log running")
end

function loop(msg)
    local eve = msg
    -- format the time once per second, not once per event
    local now = os.time()
    if now ~= last_second then
        last_second, stamp = now, os.date("!%Y-%m-%dT%H:%M:%SZ", now)
    end
    eve["mle_output_time"] = stamp
    dragonfly.output_event(default_output, eve)
end
