-- 5: write out
function setup() end
function loop(msg) dragonfly.output_event("out", msg) end
