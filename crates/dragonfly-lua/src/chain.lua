-- The routing core of a runtime, in Lua so that hand-offs between scripts stay inside LuaJIT:
-- dragonfly.analyze_event copies the value and queues it; run_batch gives each decoded input
-- event to its filter, then runs the queued analyzers until the queue is empty. Errors are
-- collected (not raised) for the engine to log and count.
local out_raw, MAX_HOPS = ...
local type, select, next, pcall, error = type, select, next, pcall, error
local getmetatable, setmetatable, tostring = getmetatable, setmetatable, tostring
-- LuaJIT's table.new pre-sizes a table, so a copy never rehashes while it fills
local ok_new, tnew = pcall(require, "table.new")
if not ok_new then tnew = function() return {} end end

local M = {
  by_tag = {},      -- analyzer tag -> index
  loops = {},       -- analyzer index -> loop function
  counts = {},      -- analyzer index -> events since the last take
  errors = {},      -- { who, message, value } since the last take
  unknown = {},     -- analyzer tags routed to that do not exist
  loops_cut = 0,    -- routing loops cut since the last take
}
local by_tag, loops, counts, errors, unknown = M.by_tag, M.loops, M.counts, M.errors, M.unknown

local function copy(v, depth)
  if type(v) ~= "table" then return v end
  local mt = getmetatable(v)
  if mt ~= nil and type(mt) ~= "table" then return v end -- protected (e.g. hiredis constants)
  if depth > 1000 then
    error("cannot copy the value: nesting deeper than 1000 (a table that contains itself?)", 0)
  end
  local n = 0
  for _ in next, v do n = n + 1 end
  local r = (v[1] ~= nil) and tnew(n, 0) or tnew(0, n)
  for k, x in next, v do
    if type(x) == "table" then x = copy(x, depth + 1) end
    r[k] = x
  end
  if mt then setmetatable(r, mt) end
  return r
end
M.copy = function(v) return copy(v, 0) end

local qa, qv, qh, qn = {}, {}, 1, 0

function M.analyze_event(...)
  local n = select('#', ...)
  if n ~= 2 then error("dragonfly.analyze_event takes exactly 2 arguments, got " .. n, 2) end
  local tag, value = ...
  if type(tag) ~= "string" then
    error("dragonfly.analyze_event: the tag must be a string, got " .. type(tag), 2)
  end
  local idx = by_tag[tag]
  if idx == nil then unknown[#unknown + 1] = tag; return end
  qn = qn + 1
  qa[qn] = idx
  qv[qn] = copy(value, 0)
end

function M.output_event(...)
  local n = select('#', ...)
  if n ~= 2 then error("dragonfly.output_event takes exactly 2 arguments, got " .. n, 2) end
  local e = out_raw(...)
  if e ~= nil then error("dragonfly.output_event: " .. e, 2) end
end

local function record(who, err, value)
  errors[#errors + 1] = { who, tostring(err), value }
end

local function drain()
  local hops = 0
  while qh <= qn do
    local a, v = qa[qh], qv[qh]
    qa[qh], qv[qh] = nil, nil
    qh = qh + 1
    hops = hops + 1
    if hops > MAX_HOPS then
      record(a, "routing loop: one event was handed between analyzers more than " .. MAX_HOPS ..
        " times; its pending hand-offs were dropped", v)
      for j = qh, qn do qa[j], qv[j] = nil, nil end
      M.loops_cut = M.loops_cut + 1
      break
    end
    counts[a] = counts[a] + 1
    local ok, err = pcall(loops[a], v)
    if not ok then record(a, err, v) end
  end
  qh, qn = 1, 0
end

M.drain = drain

-- events[i] is a decoded event, or nil for a line that was not JSON; `who` identifies the
-- filter in error records (a negative number: -1 for the first input)
function M.run_batch(filter, who, events, n)
  local ran = 0
  for i = 1, n do
    local ev = events[i]
    if ev ~= nil then
      ran = ran + 1
      local ok, err = pcall(filter, ev)
      if not ok then record(who, err, ev) end
      drain()
    end
  end
  return ran
end

-- a timer firing: one value for analyzer a
function M.run_one(a, v)
  qn = qn + 1
  qa[qn] = a
  qv[qn] = v
  drain()
end

return M
