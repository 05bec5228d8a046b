-- ----------------------------------------------
-- DGA detection: scores the registered label of every queried name with a
-- logistic regression on lexical features (ML.LOGREG.PREDICT), and reports a
-- host that asks for DGA_NAMES distinct high-scoring names within WINDOW seconds
-- of traffic time. The model is loaded in setup() from model/dga-logreg.txt,
-- written by model/train_dga.py.
-- ----------------------------------------------
local findings = require 'findings'
local text = require 'text'
local dga = require 'dga_features'

local MODEL_KEY = "dga:logreg"
local THRESHOLD = 0.5
local DGA_NAMES = 5
local WINDOW = 600

function setup()
    conn = assert(hiredis.connect())
    local f = assert(io.open("model/dga-logreg.txt", "r"))
    local args = { "ML.LOGREG.SET", MODEL_KEY }
    for v in string.gmatch(f:read("*a"), "%S+") do args[#args + 1] = v end
    f:close()
    local reply = conn:command(unpack(args))
    assert(reply == hiredis.status.OK, "loading the DGA model: " .. tostring(type(reply) == "table" and reply.name or reply))
end

-- the probability that name's registered label came from a DGA, or nil
function dga_score(name)
    local label = text.registered(name)
    if label == nil or #label < 6 then return nil end
    local f = dga.features(label)
    local p = conn:command("ML.LOGREG.PREDICT", MODEL_KEY, unpack(f))
    return tonumber(p)
end

function loop(eve)
    local d = eve.dns
    if d.type == "query" and type(d.rrname) == "string" then
        local score = dga_score(d.rrname)
        if score and score > THRESHOLD then
            local t = findings.event_time(eve) or 0
            local key = "dga:" .. eve.src_ip .. ":" .. math.floor(t / WINDOW)
            conn:command("SADD", key, d.rrname)
            conn:command("EXPIRE", key, WINDOW * 2)
            local n = conn:command("SCARD", key)
            if n >= DGA_NAMES then
                findings.report(conn, default_output, {
                    kind = "dns.dga", host = eve.src_ip, event = eve,
                    detail = { names = n, window = WINDOW, example = d.rrname, score = score },
                })
            end
        end
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
