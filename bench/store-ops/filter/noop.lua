function setup() end
function loop(msg) end
