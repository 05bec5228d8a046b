-- ----------------------------------------------
-- Reputation: the SNI (or a parent domain of it) or the server address is on
-- the list in data/reputation.txt, read once in setup(). One entry per line:
-- a domain or an IP address, then optional words as the reason; # comments.
-- ----------------------------------------------
local findings = require 'findings'
local text = require 'text'

function setup()
    conn = assert(hiredis.connect())
    bad = {}
    local n = 0
    for line in io.lines("data/reputation.txt") do
        local entry, reason = string.match(line, "^%s*([^%s#]+)%s*([^#]*)")
        if entry then
            bad[string.lower(entry)] = (reason ~= "" and reason) or "listed"
            n = n + 1
        end
    end
    print(string.format("tls-reputation: %d entries", n))
end

local function listed(name)
    if type(name) ~= "string" then return nil end
    local l = text.labels(name)
    for i = 1, #l do
        local suffix = table.concat(l, ".", i)
        if bad[suffix] then return suffix end
    end
    return nil
end

function loop(eve)
    local match = listed(eve.tls.sni) or (bad[eve.dest_ip] and eve.dest_ip)
    if match then
        findings.report(conn, default_output, {
            kind = "tls.reputation", host = eve.src_ip, peer = eve.dest_ip, key = match, event = eve,
            detail = { sni = eve.tls.sni, match = match, reason = bad[match] },
        })
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
