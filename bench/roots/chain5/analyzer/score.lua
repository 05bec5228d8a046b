-- 3: a rarity score per (type, hour) kept in the analyzer's own memory
function setup() seen = {} end
function loop(msg)
  local k = (msg.event_type or "?") .. ":" .. tostring(msg.mle.hour)
  local n = (seen[k] or 0) + 1
  seen[k] = n
  msg.mle.score = 1 / n
  dragonfly.analyze_event("filter", msg)
end
