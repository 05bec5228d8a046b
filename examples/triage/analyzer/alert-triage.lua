-- ----------------------------------------------
-- Alert triage: every Suricata alert gets a "triage" object with a priority
-- (higher = look first) and the context the other detections left in the
-- store about the two hosts (hash ctx:<ip>: finding -> sightings):
--
--   priority = SEVERITY_BASE[alert.severity]
--            + for each host: min(CONTEXT_CAP, sum of the severities of its findings)
--            + EXTERNAL_BONUS when an outside address talks to an inside one
--
-- Findings that happen after an alert cannot raise it: the score reflects what
-- was known when the alert went by (reports keep it stable on replay).
-- ----------------------------------------------
local findings = require 'findings'

local SEVERITY_BASE = { [1] = 50, [2] = 30, [3] = 10 }
local CONTEXT_CAP = 150
local EXTERNAL_BONUS = 10

function setup()
    conn = assert(hiredis.connect())
end

local function internal(ip)
    if type(ip) ~= "string" then return false end
    return string.find(ip, "^10%.") or string.find(ip, "^192%.168%.")
        or string.find(ip, "^172%.1[6-9]%.") or string.find(ip, "^172%.2%d%.") or string.find(ip, "^172%.3[01]%.")
end

local function context(ip)
    if type(ip) ~= "string" then return {}, 0 end
    local kv = conn:command("HGETALL", "ctx:" .. ip)
    local seen, score = {}, 0
    for i = 1, #kv, 2 do
        seen[kv[i]] = tonumber(kv[i + 1])
        score = score + (findings.SEVERITY[kv[i]] or 10)
    end
    return seen, math.min(CONTEXT_CAP, score)
end

function loop(eve)
    if eve.event_type ~= "alert" or type(eve.alert) ~= "table" then return end
    local src_ctx, src_score = context(eve.src_ip)
    local dst_ctx, dst_score = context(eve.dest_ip)
    local priority = (SEVERITY_BASE[eve.alert.severity] or 10) + src_score + dst_score
    if internal(eve.dest_ip) and not internal(eve.src_ip) and eve.src_ip then
        priority = priority + EXTERNAL_BONUS
    end
    eve.triage = { priority = priority, src_context = src_ctx, dest_context = dst_ctx }
    conn:command("ZADD", "triage:priority", priority, eve.alert.signature or "?")
    dragonfly.output_event(default_output, eve)
    if findings.ARCHIVE then dragonfly.output_event(findings.ARCHIVE, eve) end
end
