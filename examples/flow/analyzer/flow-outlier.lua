-- ----------------------------------------------
-- Flow-size outliers (exfiltration-shaped uploads): per application protocol, a
-- streaming estimate of the median and of the median absolute deviation (MAD) of
-- log10(bytes sent by the client), kept in a
-- store hash (fields m, s, n). Each flow moves the estimates a step towards
-- itself (stochastic approximation: m += STEP * sign(x - m), the same for the
-- deviation), so memory is constant and the estimate follows drift. After
-- WARMUP flows, a flow more than K MADs above the median is reported.
-- ----------------------------------------------
local findings = require 'findings'

local STEP = 0.02
local WARMUP = 200
local K = 10
local MIN_MAD = 0.25         -- in log10 units: x1.78, so K MADs >= x300

function setup()
    conn = assert(hiredis.connect())
end

local function sign(x) return x > 0 and 1 or (x < 0 and -1 or 0) end

function loop(eve)
    local f = eve.flow
    local bytes = f.bytes_toserver or 0
    if bytes > 0 then
        local x = math.log10(bytes)
        local key = "size:" .. (eve.app_proto or eve.proto or "unknown")
        local st = conn:command("HMGET", key, "m", "s", "n")
        local m, s, n = tonumber(st[1]), tonumber(st[2]), tonumber(st[3]) or 0
        if m == nil then
            m, s = x, MIN_MAD
        else
            local mad = math.max(s, MIN_MAD)
            if n >= WARMUP and x - m > K * mad then
                findings.report(conn, default_output, {
                    kind = "flow.size_outlier", host = eve.src_ip, peer = eve.dest_ip,
                    key = eve.dest_ip, event = eve,
                    detail = { bytes_toserver = bytes, app_proto = eve.app_proto, median_bytes = math.floor(10 ^ m),
                               mads = (x - m) / mad },
                })
            end
            m = m + STEP * sign(x - m)
            s = s + STEP * sign(math.abs(x - m) - s)
        end
        conn:command("HSET", key, "m", m, "s", s, "n", n + 1)
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
