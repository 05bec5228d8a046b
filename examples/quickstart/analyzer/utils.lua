-- Helpers shared by analyzers (loaded with: require 'analyzer/utils')

-- True when every dotted field name in `fields` is present in the table `t`.
function check_fields(t, fields)
    for _, name in ipairs(fields) do
        local v = t
        for part in string.gmatch(name, "[^%.]+") do
            if type(v) ~= "table" then return false end
            v = v[part]
        end
        if v == nil then return false end
    end
    return true
end
