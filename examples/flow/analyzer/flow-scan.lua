-- ----------------------------------------------
-- Scans and brute force from flow events, in windows of traffic time:
--   flow.port_scan       a source reaching SCAN_PORTS+ distinct destination
--                        ports (HyperLogLog per source) within SCAN_WINDOW;
--   flow.ssh_bruteforce  BRUTE_FLOWS+ connections from one source to one
--                        server's login port (22) within BRUTE_WINDOW.
-- ----------------------------------------------
local findings = require 'findings'

local SCAN_WINDOW = 300
local SCAN_PORTS = 100
local BRUTE_WINDOW = 600
local BRUTE_FLOWS = 30
local LOGIN_PORTS = { [22] = "ssh" }

function setup()
    conn = assert(hiredis.connect())
end

function loop(eve)
    local t = findings.event_time(eve, eve.flow.start) or findings.event_time(eve) or 0
    if eve.dest_port then
        local key = "scan:" .. eve.src_ip .. ":" .. math.floor(t / SCAN_WINDOW)
        if conn:command("PFADD", key, eve.dest_port) == 1 then
            conn:command("EXPIRE", key, SCAN_WINDOW * 2)
            local ports = conn:command("PFCOUNT", key)
            if ports >= SCAN_PORTS then
                findings.report(conn, default_output, {
                    kind = "flow.port_scan", host = eve.src_ip, event = eve,
                    detail = { distinct_ports = ports, window = SCAN_WINDOW, example_target = eve.dest_ip },
                })
            end
        end
        local service = LOGIN_PORTS[eve.dest_port]
        if service and eve.proto == "TCP" then
            local bkey = "brute:" .. eve.src_ip .. ":" .. eve.dest_ip .. ":" .. math.floor(t / BRUTE_WINDOW)
            local n = conn:command("INCR", bkey)
            if n == 1 then conn:command("EXPIRE", bkey, BRUTE_WINDOW * 2) end
            if n >= BRUTE_FLOWS then
                findings.report(conn, default_output, {
                    kind = "flow." .. service .. "_bruteforce", host = eve.src_ip, peer = eve.dest_ip,
                    key = eve.dest_ip, event = eve,
                    detail = { connections = n, window = BRUTE_WINDOW, port = eve.dest_port },
                })
            end
        end
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
