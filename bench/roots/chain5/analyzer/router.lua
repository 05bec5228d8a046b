-- 1: route by type
function setup() end
function loop(msg)
  if msg.event_type == "stats" then return dragonfly.analyze_event("sink", msg) end
  dragonfly.analyze_event("enrich", msg)
end
