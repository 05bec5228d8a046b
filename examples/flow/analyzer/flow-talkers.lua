-- ----------------------------------------------
-- Top talkers and fan-out: bytes per source host in a sorted set (ZINCRBY) and
-- distinct peers per host in a HyperLogLog (PFADD). Every REPORT_EVERY seconds
-- (and once at shutdown) it writes a report with the TOP hosts by bytes and
-- their distinct-peer counts.
-- ----------------------------------------------
local REPORT_EVERY = 60
local TOP = 10

function setup()
    conn = assert(hiredis.connect())
    timer_started = false
end

local function report()
    local top = conn:command("ZREVRANGE", "talkers:bytes", 0, TOP - 1, "WITHSCORES")
    local rows = {}
    for i = 1, #top, 2 do
        rows[#rows + 1] = { host = top[i], bytes = tonumber(top[i + 1]),
                            peers = conn:command("PFCOUNT", "peers:" .. top[i]) }
    end
    dragonfly.output_event(default_output, { event_type = "report", report = "flow.top_talkers", top = rows })
end

function loop(eve)
    if eve.report_timer then
        report()
        dragonfly.timer_event("talkers", REPORT_EVERY, { report_timer = true })
        return
    end
    if not timer_started then
        timer_started = true
        dragonfly.timer_event("talkers", REPORT_EVERY, { report_timer = true })
    end
    local f = eve.flow
    local bytes = (f.bytes_toserver or 0) + (f.bytes_toclient or 0)
    conn:command("ZINCRBY", "talkers:bytes", bytes, eve.src_ip)
    conn:command("PFADD", "peers:" .. eve.src_ip, eve.dest_ip)
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
