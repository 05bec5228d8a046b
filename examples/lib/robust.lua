-- ----------------------------------------------
-- Robust statistics on small samples: median and median absolute deviation.
-- ----------------------------------------------
local M = {}

function M.median(xs)
    local t = {}
    for i = 1, #xs do t[i] = xs[i] end
    table.sort(t)
    local n = #t
    if n == 0 then return nil end
    if n % 2 == 1 then return t[(n + 1) / 2] end
    return (t[n / 2] + t[n / 2 + 1]) / 2
end

-- median, MAD
function M.mad(xs)
    local m = M.median(xs)
    if m == nil then return nil end
    local d = {}
    for i = 1, #xs do d[i] = math.abs(xs[i] - m) end
    return m, M.median(d)
end

return M
