-- ----------------------------------------------
-- DNS tunnelling: data smuggled in query names shows up as long or random
-- labels under one parent domain, often with TXT answers to carry the replies.
-- Per host and parent domain, in WINDOW seconds of traffic time, it reports
--   * LONG_QUERIES queries with a label of LONG_LABEL+ characters, or of
--     RANDOM_LABEL+ characters with entropy RANDOM_BITS+ bits/char, or
--   * TXT_QUERIES TXT queries (TXT volume alone).
-- ----------------------------------------------
local findings = require 'findings'
local text = require 'text'

local WINDOW = 600
local LONG_LABEL = 40
local RANDOM_LABEL = 24
local RANDOM_BITS = 4.0
local LONG_QUERIES = 20
local TXT_QUERIES = 100

function setup()
    conn = assert(hiredis.connect())
end

local function suspicious(name)
    for _, label in ipairs(text.labels(name)) do
        if #label >= LONG_LABEL then return true end
        if #label >= RANDOM_LABEL and text.entropy(label) >= RANDOM_BITS then return true end
    end
    return false
end

local function count(key)
    local n = conn:command("INCR", key)
    if n == 1 then conn:command("EXPIRE", key, WINDOW * 2) end
    return n
end

function loop(eve)
    local d = eve.dns
    if d.type == "query" and type(d.rrname) == "string" then
        local _, parent = text.registered(d.rrname)
        if parent then
            local t = findings.event_time(eve) or 0
            local scope = eve.src_ip .. ":" .. parent .. ":" .. math.floor(t / WINDOW)
            local long = suspicious(d.rrname) and count("tunnel:long:" .. scope) or 0
            local txt = d.rrtype == "TXT" and count("tunnel:txt:" .. scope) or 0
            if long >= LONG_QUERIES or txt >= TXT_QUERIES then
                findings.report(conn, default_output, {
                    kind = "dns.tunnel", host = eve.src_ip, peer = parent, key = parent, event = eve,
                    detail = { parent = parent, long_queries = long, txt_queries = txt, window = WINDOW,
                               example = d.rrname },
                })
            end
        end
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
