-- ----------------------------------------------
-- Web scanners: a client whose user agent names a known scanner (sqlmap,
-- Nikto, ...), or that asks one server for DISTINCT_URLS+ different URLs, at
-- least ERROR_SHARE of them answered 4xx, within WINDOW seconds of traffic time
-- (directory brute forcing with a faked user agent).
-- ----------------------------------------------
local findings = require 'findings'

local WINDOW = 300
local DISTINCT_URLS = 100
local ERROR_SHARE = 0.5
local TOOLS = { "sqlmap", "nikto", "nmap", "masscan", "zgrab", "gobuster", "dirbuster", "wpscan",
                "nuclei", "acunetix", "wfuzz", "ffuf", "nessus", "openvas", "havij" }

function setup()
    conn = assert(hiredis.connect())
end

local function tool(ua)
    if type(ua) ~= "string" then return nil end
    ua = string.lower(ua)
    for _, t in ipairs(TOOLS) do
        if string.find(ua, t, 1, true) then return t end
    end
    return nil
end

function loop(eve)
    local http = eve.http
    if eve.event_type ~= "http" or type(http) ~= "table" then return end
    local name = tool(http.http_user_agent)
    local scope = eve.src_ip .. ":" .. eve.dest_ip .. ":" .. math.floor((findings.event_time(eve) or 0) / WINDOW)
    conn:command("PFADD", "web:urls:" .. scope, tostring(http.url))
    conn:command("EXPIRE", "web:urls:" .. scope, WINDOW * 2)
    local errors = 0
    if type(http.status) == "number" and http.status >= 400 and http.status < 500 then
        errors = conn:command("INCR", "web:4xx:" .. scope)
        conn:command("EXPIRE", "web:4xx:" .. scope, WINDOW * 2)
    end
    local urls = conn:command("PFCOUNT", "web:urls:" .. scope)
    if name or (urls >= DISTINCT_URLS and errors >= ERROR_SHARE * urls) then
        findings.report(conn, default_output, {
            kind = "http.scanner", host = eve.src_ip, peer = eve.dest_ip, key = eve.dest_ip, event = eve,
            detail = { tool = name, user_agent = http.http_user_agent, hostname = http.hostname,
                       distinct_urls = urls, client_errors = errors, window = WINDOW },
        })
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
