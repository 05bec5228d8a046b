-- Helpers shared by analyzers (loaded with: require 'analyzer/utils')

local find, sub = string.find, string.sub

-- True when every field name in `fields` is present in the table `t`; a name may be a
-- dotted path into nested tables ("dns.rrname").
function check_fields(t, fields)
    for i = 1, #fields do
        local name = fields[i]
        local v = t
        local start = 1
        while true do
            if type(v) ~= "table" then return false end
            local dot = find(name, ".", start, true)
            if not dot then
                v = v[sub(name, start)]
                break
            end
            v = v[sub(name, start, dot - 1)]
            start = dot + 1
        end
        if v == nil then return false end
    end
    return true
end
