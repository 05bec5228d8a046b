-- The routing core of a runtime, in Lua so that hand-offs between scripts stay inside LuaJIT:
-- dragonfly.analyze_event copies the value (a lazy event: a new view of its bytes plus what the
-- sender decoded or wrote) and queues it; run_batch gives each decoded input
-- event to its filter, then runs the queued analyzers until the queue is empty. Errors are
-- collected (not raised) for the engine to log and count.
--
-- `probe[1]` is bumped before and after every script call: the watchdog's hook (watchdog.rs)
-- reads it to tell one long call from many short ones; `probe[2]` is the batch index being run
-- (0: none) and `probe[3]` the caller (as in error records). The engine reads the position if
-- the runtime has to be given up, or when an error outside any script call (out of memory while
-- recording a failure) cut a batch's run, to resume at the next event.
local out_raw, MAX_HOPS, probe, traceback, lazy = ...
local lazy_index, lazy_clone = lazy.index, lazy.clone
local rawget, rawset = rawget, rawset
local type, select, next, pcall, xpcall, error = type, select, next, pcall, xpcall, error
local getmetatable, setmetatable, tostring = getmetatable, setmetatable, tostring
-- LuaJIT's table.new pre-sizes a table, so a copy never rehashes while it fills
local ok_new, tnew = pcall(require, "table.new")
if not ok_new then tnew = function() return {} end end

local M = {
  by_tag = {},      -- analyzer tag -> index
  loops = {},       -- analyzer index -> loop function
  counts = {},      -- analyzer index -> events since the last take
  errors = {},      -- { who, message, value, pos, where } since the last take
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
  if mt ~= nil and rawget(mt, "__index") == lazy_index then
    -- a lazy event (lazy.rs): a new view of the same bytes, plus what this one holds
    local r = lazy_clone(v)
    for k, x in next, v do
      if type(x) == "table" then x = copy(x, depth + 1) end
      rawset(r, k, x)
    end
    return r
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

-- An error object of any type, with any metamethods, becomes a string without raising.
local function message(err)
  if type(err) == "string" then return err end
  local ok, s = pcall(tostring, err)
  if ok and type(s) == "string" then return s end
  return "(an error object of type " .. type(err) .. " that cannot be shown: its __tostring failed)"
end

local function record(who, err, value)
  local where
  if type(err) == "table" and err[0] == probe then err, where = err[1], err[2] end
  errors[#errors + 1] = { who, message(err), value, probe[2], where }
end

-- xpcall handler: keep the error and the first traceback line inside a script
local function on_error(err)
  local ok, tb = pcall(traceback, "", 2)
  local where
  if ok and type(tb) == "string" then
    for line in tb:gmatch("\n%s*([^\n]*)") do
      if not line:find("^%[") and not line:find("^dragonfly%-") and line ~= "stack traceback:" then
        where = line
        break
      end
    end
  end
  return { [0] = probe, err, where }
end

local function call(who, f, v)
  probe[1] = probe[1] + 1
  probe[3] = who
  local ok, err = xpcall(f, on_error, v)
  probe[1] = probe[1] + 1
  return ok, err
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
    local ok, err = call(a, loops[a], v)
    if not ok then record(a, err, v) end
  end
  qh, qn = 1, 0
end

M.drain = drain

-- forget pending hand-offs (after an error escaped a run)
function M.reset()
  for j = qh, qn do qa[j], qv[j] = nil, nil end
  qh, qn = 1, 0
end

-- events[i] is a decoded event, or nil for a line that was not JSON; `who` identifies the
-- filter in error records (a negative number: -1 for the first input)
-- filter, starting at index `from`; returns the number of events run
function M.run_batch(filter, who, events, n, from)
  local ran = 0
  for i = from, n do
    local ev = events[i]
    if ev ~= nil then
      probe[2] = i
      ran = ran + 1
      local ok, err = call(who, filter, ev)
      if not ok then record(who, err, ev) end
      drain()
    end
  end
  probe[2] = 0
  return ran
end

-- a timer firing: one value for analyzer a
function M.run_one(a, v)
  probe[2] = 0
  qn = qn + 1
  qa[qn] = a
  qv[qn] = v
  drain()
end

return M
