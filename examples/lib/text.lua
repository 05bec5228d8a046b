-- ----------------------------------------------
-- Text helpers for domain names: labels, the registered label, entropy.
-- ----------------------------------------------
local M = {}

-- second-level suffixes under which the registered name is one label further left
local SLD = { co = true, com = true, org = true, net = true, ac = true, gov = true, edu = true }

-- the non-empty dot-separated labels, lower-cased (string.find with a plain dot:
-- LuaJIT compiles it, where string.gmatch stops the trace compiler)
local find, sub, lower = string.find, string.sub, string.lower
function M.labels(name)
    local s = lower(name)
    local out, n, i, len = {}, 0, 1, #s
    while i <= len do
        local j = find(s, ".", i, true) or len + 1
        if j > i then
            n = n + 1
            out[n] = sub(s, i, j - 1)
        end
        i = j + 1
    end
    return out
end

-- "www.example.co.uk" -> "example", "example.co.uk"; nil for reverse lookups
-- and single-label names.
function M.registered(name)
    return M.registered_of(M.labels(name))
end

-- the same from the name's labels (M.labels), for a caller that needs them too
function M.registered_of(l)
    local n = #l
    if n < 2 or l[n] == "arpa" then return nil end
    if n >= 3 and SLD[l[n - 1]] and #l[n] == 2 then
        return l[n - 2], l[n - 2] .. "." .. l[n - 1] .. "." .. l[n]
    end
    return l[n - 1], l[n - 1] .. "." .. l[n]
end

-- Shannon entropy in bits per character
function M.entropy(s)
    local n = #s
    if n == 0 then return 0 end
    local counts = {}
    for i = 1, n do
        local c = string.byte(s, i)
        counts[c] = (counts[c] or 0) + 1
    end
    local h = 0
    for _, c in pairs(counts) do
        local p = c / n
        h = h - p * math.log(p) / math.log(2)
    end
    return h
end

return M
