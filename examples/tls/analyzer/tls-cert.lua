-- ----------------------------------------------
-- Certificates and protocol versions, per handshake:
--   tls.self_signed   subject == issuer           (host = the server)
--   tls.expired_cert  not valid at the event's own time: notafter passed or
--                     notbefore ahead             (host = the server)
--   tls.old_version   SSLv2/SSLv3/TLS 1.0/TLS 1.1 negotiated (host = the client)
-- Validity is judged against the event timestamp, not the wall clock, so a
-- replayed capture gives the answers it gave live.
-- ----------------------------------------------
local findings = require 'findings'

local OLD = { SSLv2 = true, SSLv3 = true, TLSv1 = true, ["TLS 1.0"] = true,
              ["TLSv1.1"] = true, ["TLS 1.1"] = true }

function setup()
    conn = assert(hiredis.connect())
end

local function epoch(s)
    if type(s) ~= "string" then return nil end
    local ok, t = pcall(dragonfly.date2epoch, s)
    return ok and t or nil
end

function loop(eve)
    local tls = eve.tls
    local server, client = eve.dest_ip, eve.src_ip
    if tls.subject and tls.subject == tls.issuerdn then
        findings.report(conn, default_output, {
            kind = "tls.self_signed", host = server, peer = client, event = eve,
            detail = { subject = tls.subject, sni = tls.sni, fingerprint = tls.fingerprint },
        })
    end
    local now, notafter, notbefore = epoch(eve.timestamp), epoch(tls.notafter), epoch(tls.notbefore)
    if now and ((notafter and notafter < now) or (notbefore and notbefore > now)) then
        findings.report(conn, default_output, {
            kind = "tls.expired_cert", host = server, peer = client, event = eve,
            detail = { subject = tls.subject, sni = tls.sni, notbefore = tls.notbefore, notafter = tls.notafter },
        })
    end
    if tls.version and OLD[tls.version] then
        findings.report(conn, default_output, {
            kind = "tls.old_version", host = client, peer = server, key = server, event = eve,
            detail = { version = tls.version, sni = tls.sni },
        })
    end
    if default_analyzer ~= "" then dragonfly.analyze_event(default_analyzer, eve) end
end
