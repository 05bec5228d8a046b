-- ----------------------------------------------
-- DNS tunnelling: data smuggled in query names shows up as long or random
-- labels under one parent domain, often with TXT answers to carry the replies.
-- Per host and parent domain, in WINDOW seconds of traffic time, it reports
--   * LONG_QUERIES queries with a label of LONG_LABEL+ characters, or of
--     RANDOM_LABEL+ characters with entropy RANDOM_BITS+ bits/char, or
--   * TXT_QUERIES TXT queries (TXT volume alone).
-- Per parent domain across every host (a tunnel spread over many clients, each
-- below the per-host thresholds), in the same windows, it reports dns.tunnel_spread
-- when ZONE_QUERIES+ suspicious queries came from ZONE_HOSTS+ hosts, ZONE_NAMES+ of
-- them distinct, with labels of ZONE_BITS+ bits/char on average. One host's
-- tunnel alone never makes it (that is dns.tunnel's).
-- ----------------------------------------------
local findings = require 'findings'
local text = require 'text'

local WINDOW = 600
local LONG_LABEL = 40
local RANDOM_LABEL = 24
local RANDOM_BITS = 4.0
local LONG_QUERIES = 20
local TXT_QUERIES = 100
local ZONE_QUERIES = 40
local ZONE_HOSTS = 4
local ZONE_NAMES = 30
local ZONE_BITS = 3.5

function setup()
    conn = assert(hiredis.connect())
end

-- the entropy of the most random of a name's labels when the name looks like tunnelled
-- data, else nil
local function suspicious(labels)
    local worst
    for _, label in ipairs(labels) do
        local long = #label >= LONG_LABEL
        if long or #label >= RANDOM_LABEL then
            local bits = text.entropy(label)
            if long or bits >= RANDOM_BITS then
                if worst == nil or bits > worst then worst = bits end
            end
        end
    end
    return worst
end

local function count(key)
    local n = conn:command("INCR", key)
    if n == 1 then conn:command("EXPIRE", key, WINDOW * 2) end
    return n
end

-- The zone's view, for a suspicious query of `eve` under `parent` with label entropy `bits`:
-- its queries, hosts, distinct names and entropy in this window, across every host.
local function zone(eve, parent, window, bits)
    local scope = parent .. ":" .. window
    local n = count("tunnel:zone:q:" .. scope)
    local hosts, names = "tunnel:zone:hosts:" .. scope, "tunnel:zone:names:" .. scope
    conn:command("PFADD", hosts, eve.src_ip)
    conn:command("PFADD", names, eve.dns.rrname)
    local sum = tonumber(conn:command("INCRBYFLOAT", "tunnel:zone:bits:" .. scope, bits))
    if n == 1 then
        for _, k in ipairs({ hosts, names, "tunnel:zone:bits:" .. scope }) do
            conn:command("EXPIRE", k, WINDOW * 2)
        end
    end
    if n < ZONE_QUERIES then return end
    local h = conn:command("PFCOUNT", hosts)
    local u = conn:command("PFCOUNT", names)
    local mean = sum / n
    if h >= ZONE_HOSTS and u >= ZONE_NAMES and mean >= ZONE_BITS then
        findings.report(conn, default_output, {
            kind = "dns.tunnel_spread", host = parent, peer = parent, event = eve,
            detail = { parent = parent, queries = n, hosts = h, names = u,
                       mean_bits = math.floor(mean * 100 + 0.5) / 100, window = WINDOW,
                       example = eve.dns.rrname, example_host = eve.src_ip },
        })
    end
end

function loop(eve)
    local d = eve.dns
    if d.type == "query" and type(d.rrname) == "string" then
        local labels = text.labels(d.rrname)
        local _, parent = text.registered_of(labels)
        if parent then
            local t = findings.event_time(eve) or 0
            local window = math.floor(t / WINDOW)
            local scope = eve.src_ip .. ":" .. parent .. ":" .. window
            local bits = suspicious(labels)
            local long = bits and count("tunnel:long:" .. scope) or 0
            local txt = d.rrtype == "TXT" and count("tunnel:txt:" .. scope) or 0
            if long >= LONG_QUERIES or txt >= TXT_QUERIES then
                findings.report(conn, default_output, {
                    kind = "dns.tunnel", host = eve.src_ip, peer = parent, key = parent, event = eve,
                    detail = { parent = parent, long_queries = long, txt_queries = txt, window = WINDOW,
                               example = d.rrname },
                })
            end
            if bits then zone(eve, parent, window, bits) end
        end
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
