-- 2: tag internal/external addresses and the hour of day
function setup() end
local function internal(ip) return ip ~= nil and (ip:sub(1, 3) == "10." or ip:sub(1, 8) == "192.168.") end
function loop(msg)
  msg.mle = { src_internal = internal(msg.src_ip), dest_internal = internal(msg.dest_ip),
              hour = tonumber(string.sub(msg.timestamp or "", 12, 13)) }
  dragonfly.analyze_event("score", msg)
end
