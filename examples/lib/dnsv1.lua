-- ----------------------------------------------
-- Suricata DNS events in the v1 layout older scripts expect.
--
-- v1 (Suricata <= 4): one event per query ("type":"query", dns.rrname, dns.rrtype)
-- and one per answer record ("type":"answer", dns.rrname, dns.rrtype, dns.ttl,
-- dns.rdata, dns.rcode). v2 (Suricata 5-7) puts all records of a response in
-- dns.answers[] (or dns.grouped); v3 (Suricata 8) also nests the question under
-- dns.queries[] and says "request"/"response".
--
-- to_v1(eve) returns a list of events in v1 layout (the same table for queries,
-- one copy per answer record for responses; a response without records, such as
-- NXDOMAIN, stays one event). Fields it does not know stay as they are.
--
-- each_v1(eve, f) calls f with each of those events in turn, without copies: the same
-- table, its dns fields set for one record at a time. A filter that hands each on at
-- once should use it: dragonfly.analyze_event copies what it hands on, so the copies
-- to_v1 makes would be made twice (and a copy of an event reads every field of it).
-- ----------------------------------------------
local M = {}

local function copy(t)
    if type(t) ~= "table" then return t end
    local c = {}
    for k, v in pairs(t) do c[k] = copy(v) end
    return setmetatable(c, getmetatable(t))
end

local function records(d)
    if type(d.answers) == "table" and #d.answers > 0 then return d.answers end
    if type(d.grouped) == "table" then
        local out = {}
        for rrtype, values in pairs(d.grouped) do
            for _, v in ipairs(values) do
                out[#out + 1] = { rrname = d.rrname, rrtype = rrtype, rdata = v }
            end
        end
        table.sort(out, function(a, b) return a.rrtype < b.rrtype end)
        return out
    end
    return {}
end

-- the v3 question and type names in their v1 places; the answer records, or nil for an
-- event that stays one (not DNS, a query, an answer without records)
local function normalize(eve)
    local d = eve.dns
    if type(d) ~= "table" then return nil end
    if d.type == "request" then d.type = "query" end
    if d.type == "response" then d.type = "answer" end
    if d.rrname == nil and type(d.queries) == "table" and d.queries[1] then
        d.rrname = d.queries[1].rrname
        d.rrtype = d.queries[1].rrtype
    end
    if d.type ~= "answer" then return nil end
    local recs = records(d)
    if #recs == 0 then return nil end
    return recs
end

-- record r's fields in d (rrname and rrtype: the question's where r has none)
local function set_record(d, r, rrname, rrtype)
    d.rrname = r.rrname or rrname
    d.rrtype = r.rrtype or rrtype
    d.ttl = r.ttl
    d.rdata = r.rdata
end

function M.to_v1(eve)
    local recs = normalize(eve)
    if recs == nil then return { eve } end
    local d = eve.dns
    local rrname, rrtype = d.rrname, d.rrtype
    local out = {}
    for i, r in ipairs(recs) do
        local e = (i == #recs) and eve or copy(eve)
        set_record(e.dns, r, rrname, rrtype)
        out[i] = e
    end
    return out
end

function M.each_v1(eve, f)
    local recs = normalize(eve)
    if recs == nil then return f(eve) end
    local d = eve.dns
    local rrname, rrtype = d.rrname, d.rrtype
    for i = 1, #recs do
        set_record(d, recs[i], rrname, rrtype)
        f(eve)
    end
end

return M
