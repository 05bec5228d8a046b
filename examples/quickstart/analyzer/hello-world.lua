-- ----------------------------------------------
-- Hello World with the MLE
--
-- Counts event types in the store (Redis or the embedded store)
-- and stamps the running count on the event.
-- ----------------------------------------------
require 'analyzer/utils'

function setup()
    conn = hiredis.connect()
    assert(conn:command("PING") == hiredis.status.PONG)
    print(">>>>>>>> Hello World! analyzer running")
end

function loop(msg)
    local eve = msg
    if not check_fields(eve, {"event_type"}) then
        dragonfly.log_event('hello_world: missing field event_type')
        dragonfly.analyze_event(default_analyzer, msg)
        return
    end
    local redis_cmd = "INCR count:" .. eve.event_type
    local reply = conn:command_line(redis_cmd)
    if type(reply) == 'table' and reply.name ~= 'OK' then
        dragonfly.log_event('hello_world: ' .. redis_cmd .. ' : ' .. reply.name)
        dragonfly.analyze_event(default_analyzer, msg)
        return
    end
    eve["event_count"] = reply
    dragonfly.analyze_event(default_analyzer, eve)
end
