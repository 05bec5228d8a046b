-- 4: drop nothing, but look at the score
function setup() end
function loop(msg)
  if msg.mle.score < 0 then return end
  dragonfly.analyze_event("sink", msg)
end
