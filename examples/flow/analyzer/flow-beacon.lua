-- ----------------------------------------------
-- Beaconing: malware calling home connects to the same server and port at
-- regular intervals. Per (source, destination, port) the start times of the
-- last KEEP flows are kept in a sorted set (score = start time, so the late and
-- out-of-order flow events Suricata writes still sort right). Once MIN_FLOWS are
-- there, the intervals' median and MAD are computed; a median of MIN_PERIOD+
-- seconds with MAD/median below JITTER is reported.
-- ----------------------------------------------
local findings = require 'findings'
local robust = require 'robust'

local KEEP = 32
local MIN_FLOWS = 12
local MIN_PERIOD = 10
local JITTER = 0.15
local IGNORE_PORTS = { [53] = true, [123] = true, [67] = true, [68] = true }

function setup()
    conn = assert(hiredis.connect())
end

function loop(eve)
    local t = findings.event_time(eve, eve.flow.start)
    if t and eve.dest_port and not IGNORE_PORTS[eve.dest_port] then
        local key = "beacon:" .. eve.src_ip .. ":" .. eve.dest_ip .. ":" .. eve.dest_port
        conn:command("ZADD", key, t, tostring(eve.flow_id))
        -- trim to the last KEEP only when there are more (one command fewer per flow)
        local n = conn:command("ZCARD", key)
        if n > KEEP then
            conn:command("ZREMRANGEBYRANK", key, 0, -(KEEP + 1))
            n = KEEP
        end
        conn:command("EXPIRE", key, 3600)
        if n >= MIN_FLOWS then
            local r = conn:command("ZRANGE", key, 0, -1, "WITHSCORES")
            local gaps, prev = {}, nil
            for i = 2, #r, 2 do
                local s = tonumber(r[i])
                if prev then gaps[#gaps + 1] = s - prev end
                prev = s
            end
            local median, mad = robust.mad(gaps)
            if median >= MIN_PERIOD and mad / median < JITTER then
                findings.report(conn, default_output, {
                    kind = "flow.beacon", host = eve.src_ip, peer = eve.dest_ip,
                    key = eve.dest_ip .. ":" .. eve.dest_port, event = eve,
                    detail = { period = median, mad = mad, flows = #gaps + 1, port = eve.dest_port,
                               app_proto = eve.app_proto },
                })
            end
        end
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
