-- The routing core of a runtime, in Lua so that hand-offs between scripts stay inside LuaJIT:
-- dragonfly.analyze_event copies the value (a lazy event: a new view of its bytes plus what the
-- sender decoded or wrote) and queues it; run_batch gives each decoded input
-- event to its filter, then runs the queued analyzers until the queue is empty. Errors are
-- collected (not raised) for the engine to log and count.
--
-- The probe's slots and the failure kinds are named in wire.rs (see below).
-- `probe[P_CALLS]` is bumped before and after every script call: the watchdog's hook (watchdog.rs) reads it to tell one long call from many short ones;
-- `probe[P_POS]` is the batch index being run (0: none) and `probe[P_WHO]` the caller (as in
-- failure records). The engine reads the position if the runtime has to be given up, or when
-- an error outside any script call (out of memory while recording a failure) cut a batch's
-- run, to resume at the next event. The overlap scheduler also keeps `probe[P_STARTED]`, the
-- last batch index it started (0: not running), and `probe[P_LIVE]`, the set of batch indices
-- in flight: a cut run resumes after `probe[P_STARTED]` (no event runs twice) and the events
-- in flight besides the culprit go to the dead letters as dropped. A failure's kind is
-- recorded where it happens: the watchdog marks a call it stopped in `probe[P_KIND]`, a
-- routing loop is recorded as one, and an error for which the xpcall handler did not run is
-- LuaJIT's out-of-memory error.
local out_raw, fail_raw, unknown_raw, MAX_HOPS, probe, traceback, lazy, sched, tap_raw = ...
-- P_* (probe slots) and K_* (failure kinds) are names from
-- wire.rs, replaced with their numbers before this chunk is loaded: LuaJIT then compiles
-- constant indices (read as upvalues they cost ~10% on a 5-analyzer chain, measured).
-- the error value LuaJIT gives an out-of-memory error (LUA_ERRMEM), for which no handler runs
local ERRMEM = "not enough memory"
local lazy_index, lazy_clone = lazy.index, lazy.clone
local rawget, rawset = rawget, rawset
local type, select, next, pcall, xpcall, error = type, select, next, pcall, xpcall, error
local getmetatable, setmetatable, tostring = getmetatable, setmetatable, tostring
-- LuaJIT's table.new pre-sizes a table, so a copy never rehashes while it fills
local ok_new, tnew = pcall(require, "table.new")
if not ok_new then tnew = function() return {} end end

-- Everything else a call does lands in the runtime's Outcome (outcome.rs): output lines
-- through out_raw, failures through fail_raw, tags that name no analyzer through unknown_raw.
local M = {
  by_tag = {},      -- analyzer tag -> index
  loops = {},       -- analyzer index -> loop function
  counts = {},      -- analyzer index -> events since the last take (read by the runtime)
}
local by_tag, loops, counts = M.by_tag, M.loops, M.counts

-- Taps (the engine's tap.rs; Runtime::set_taps): analyzer index -> the taps on it while
-- someone taps, each { id =, n = values it may still take, filters = { {path =, value =,
-- num =}, ... } }. A value a tap takes is encoded (tap_raw) before the analyzer runs. Only
-- what is surely no match is refused here (a string or number that differs, a missing
-- field); the engine checks the encoded value again.
M.tapped = {}
local tapped = M.tapped

local function tap_wants(t, v)
  local fs = t.filters
  for i = 1, #fs do
    local f = fs[i]
    local x, path = v, f.path
    for j = 1, #path do
      if type(x) ~= "table" then return false end
      x = x[path[j]]
    end
    local tx = type(x)
    if x == nil then return false
    elseif tx == "string" then if x ~= f.value then return false end
    elseif tx == "number" then if x ~= f.num then return false end
    elseif tx == "boolean" then if tostring(x) ~= f.value then return false end
    end
  end
  return true
end

local function tap(list, a, v)
  for i = 1, #list do
    local t = list[i]
    if t.n > 0 and tap_wants(t, v) then
      t.n = t.n - 1
      tap_raw(t.id, a, v)
    end
  end
end

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

-- Hand-offs by caller, the live page's edges (Runtime::take_edges). `who` as in failure
-- records (filters -1, -2, ...; analyzers 1, 2, ...). hand[who][i]: analyze_event calls to
-- analyzer i; outs[who][tag]: output_event calls to output `tag`. The runtime makes both
-- (every caller, every destination at 0) so that counting is one lookup and one store, and
-- reads and zeroes them when it takes them. unknown_edges[who]["a" .. tag / "o" .. tag]:
-- calls to tags that name nothing (made here: the rare path).
local hand, outs, unknown_edges = {}, {}, {}
M.hand, M.outs, M.unknown_edges = hand, outs, unknown_edges

local function count_unknown(who, kind, tag)
  local u = unknown_edges[who]
  if u == nil then
    u = {}
    unknown_edges[who] = u
  end
  local k = kind .. tag
  u[k] = (u[k] or 0) + 1
end

function M.analyze_event(...)
  local n = select('#', ...)
  if n ~= 2 then error("dragonfly.analyze_event takes exactly 2 arguments, got " .. n, 2) end
  local tag, value = ...
  if type(tag) ~= "string" then
    error("dragonfly.analyze_event: the tag must be a string, got " .. type(tag), 2)
  end
  local idx = by_tag[tag]
  local q = sched.ctx
  local who = (q and q.who) or probe[P_WHO]
  if idx == nil then
    count_unknown(who, "a", tag)
    unknown_raw(tag)
    return
  end
  local h = hand[who]
  if h ~= nil then h[idx] = h[idx] + 1 end
  if q then
    -- an event run by the overlap scheduler: its own queue
    q.n = q.n + 1
    q.a[q.n] = idx
    q.v[q.n] = copy(value, 0)
    return
  end
  qn = qn + 1
  qa[qn] = idx
  qv[qn] = copy(value, 0)
end

function M.output_event(...)
  local n = select('#', ...)
  if n ~= 2 then error("dragonfly.output_event takes exactly 2 arguments, got " .. n, 2) end
  local e = out_raw(...)
  if e ~= nil then error("dragonfly.output_event: " .. e, 2) end
  local q = sched.ctx
  local who = (q and q.who) or probe[P_WHO]
  local o = outs[who]
  if o ~= nil then
    local tag = ...
    local c = o[tag]
    if c ~= nil then o[tag] = c + 1 else count_unknown(who, "o", tag) end
  end
end

-- An error object of any type, with any metamethods, becomes a string without raising.
local function message(err)
  if type(err) == "string" then return err end
  local ok, s = pcall(tostring, err)
  if ok and type(s) == "string" then return s end
  return "(an error object of type " .. type(err) .. " that cannot be shown: its __tostring failed)"
end

local function record(who, err, value, kind)
  local where
  if type(err) == "table" and err[0] == probe then
    err, where = err[1], err[2]
  elseif kind == nil and err == ERRMEM then
    kind = K_MEMORY
  end
  if kind == nil then
    kind = probe[P_KIND]
    if kind == 0 then kind = K_ERROR end
  end
  probe[P_KIND] = 0
  fail_raw(who, message(err), value, probe[P_POS], where, kind)
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
  probe[P_CALLS] = probe[P_CALLS] + 1
  probe[P_WHO] = who
  probe[P_KIND] = 0
  local ok, err = xpcall(f, on_error, v)
  probe[P_CALLS] = probe[P_CALLS] + 1
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
        " times; its pending hand-offs were dropped", v, K_LOOP)
      for j = qh, qn do qa[j], qv[j] = nil, nil end
      break
    end
    counts[a] = counts[a] + 1
    local taps = tapped[a]
    if taps ~= nil then pcall(tap, taps, a, v) end
    local ok, err = call(a, loops[a], v)
    if not ok then record(a, err, v) end
  end
  qh, qn = 1, 0
end

M.drain = drain

-- ---------------------------------------------------------------------------------------
-- The overlap scheduler (a Redis store and an analyzer with `concurrency` > 1): each input
-- event runs as a coroutine — its filter, then its hand-offs in order, as drain() runs them —
-- and a script's Redis command yields while the reply is on its way (hiredis.rs's wrapper),
-- so that other events go on meanwhile. Each filter and analyzer admits events in the order
-- they come to it (a FIFO line per stage): one at a time, or up to its `concurrency` of
-- different flows. An event holds at most one stage at a time and waits only for a reply or
-- for a stage, so the lines never deadlock. What is not kept: the order in which different
-- events' commands reach Redis across analyzers (docs/configuration.md).
local co_create, co_resume = coroutine.create, coroutine.resume
local co_yield = coroutine.yield
local BLOCKED = {}
local stages = {}          -- stage id (filter: negative, analyzer: index) -> line
-- runnable events (their contexts; each context's `val` is what to resume it with)
local rq, rh, rt = {}, 1, 0
-- Each event in flight has one context table: `co` its coroutine, `ev` its input value until
-- the first resume, `i` its batch index, `a`/`v`/`h`/`n` its queue of hand-offs, `stage`/`key`
-- the stage it is in and for which flow, `blocked` whether it waits in a stage's line,
-- `wud`/`wt` the connection and ticket of the reply it waits for. Contexts and their
-- coroutines are reused: an event's coroutine, done, waits for the next event.

-- Queues are arrays read from `h` and written at `n`; once the head has moved far, what is
-- left moves down to 1, so the indices stay small and the arrays stay arrays (LuaJIT keeps
-- large sparse integer keys in the hash part, rehashing as they move).
local COMPACT = 1024
local function compact(q, h, n)
  local j = 0
  for k = h, n do
    j = j + 1
    q[j], q[k] = q[k], nil
  end
  return 1, j
end

-- take the head of queue `q` (read at `h`, written at `n`, not empty): the item and the new
-- `h`, `n` (back to 1, 0 when it empties; compacted once the head has moved far)
local function pop(q, h, n)
  local x = q[h]
  q[h] = nil
  h = h + 1
  if h > n then return x, 1, 0 end
  if h > COMPACT then return x, compact(q, h, n) end
  return x, h, n
end

local function runnable(c, val)
  rt = rt + 1
  rq[rt] = c
  c.val = val
end

-- an event waiting in a stage's line (yielded BLOCKED) becomes runnable once per wake-up;
-- never one that waits for a reply
local function wake(c)
  if c.blocked then
    c.blocked = false
    runnable(c, nil)
  end
end

-- A stage admits up to `limit` events at once (an analyzer's `concurrency`; filters 1), never
-- two of one flow (`key`: the event's partition field), and never an event before an earlier
-- one of its flow. A stage of limit 1 admits strictly in the order events come to it. One of
-- several takes events of free flows in the order they come (`q`, the ready line), while
-- those of a flow already inside wait in that flow's own line (`lines[key]`) without holding
-- up the others; when the flow's event leaves, the next of that flow joins the ready line.
-- An event waits (yields BLOCKED) until a releasing event has admitted it (`c.stage`).
local function stage(id)
  local st = stages[id]
  if st == nil then
    st = { busy = 0, limit = (id > 0 and sched.limits[id]) or 1, keys = {}, lines = {},
      q = {}, h = 1, n = 0 }
    stages[id] = st
  end
  return st
end

local function admit(st, c, id, key)
  st.busy = st.busy + 1
  if key ~= nil then st.keys[key] = true end
  c.stage, c.key = id, key
end

local function ready(st, c)
  st.n = st.n + 1
  st.q[st.n] = c
end

-- admit from the ready line while there is room
local function fill(st, id)
  while st.busy < st.limit and st.h <= st.n do
    local c
    c, st.h, st.n = pop(st.q, st.h, st.n)
    local key = c.want
    if key ~= nil then
      -- c heads its flow's line: the rest of the line waits for c to leave
      local line = st.lines[key]
      line[line.h] = nil
      line.h = line.h + 1
      if line.h > line.n then st.lines[key] = nil end
    end
    c.want = nil
    admit(st, c, id, key)
    wake(c)
  end
end

local function acquire(c, id, key)
  local st = stage(id)
  if st.limit == 1 then key = nil end
  if key == nil then
    if st.busy < st.limit and st.h > st.n then
      admit(st, c, id, nil)
      return
    end
    ready(st, c)
  else
    local line = st.lines[key]
    if line == nil and not st.keys[key] and st.busy < st.limit and st.h > st.n then
      admit(st, c, id, key)
      return
    end
    if line == nil then
      line = { h = 1, n = 0 }
      st.lines[key] = line
      -- nobody of this flow inside: c is ready as soon as there is room
      if not st.keys[key] then ready(st, c) end
    end
    line.n = line.n + 1
    line[line.n] = c
    c.want = key
  end
  repeat co_yield(BLOCKED) until c.stage == id
end

local function release(c)
  local id, key = c.stage, c.key
  local st = stages[id]
  c.stage, c.key = nil, nil
  st.busy = st.busy - 1
  if key ~= nil then
    st.keys[key] = nil
    -- the next of this flow may go in now
    local line = st.lines[key]
    if line ~= nil then ready(st, line[line.h]) end
  end
  fill(st, id)
end

local function event_body(c, filter, who, ev)
  -- the flow, for analyzers that take several events at once
  local key
  if sched.key ~= "" and type(ev) == "table" then
    key = ev[sched.key]
    if key ~= nil and type(key) ~= "string" and type(key) ~= "number" then key = nil end
  end
  acquire(c, who, nil)
  c.who = who
  local ok, err = call(who, filter, ev)
  release(c)
  if not ok then record(who, err, ev) end
  local hops = 0
  while c.h <= c.n do
    local a, v = c.a[c.h], c.v[c.h]
    c.a[c.h], c.v[c.h] = nil, nil
    c.h = c.h + 1
    hops = hops + 1
    if hops > MAX_HOPS then
      record(a, "routing loop: one event was handed between analyzers more than " .. MAX_HOPS ..
        " times; its pending hand-offs were dropped", v, K_LOOP)
      for j = c.h, c.n do c.a[j], c.v[j] = nil, nil end
      break
    end
    counts[a] = counts[a] + 1
    local taps = tapped[a]
    if taps ~= nil then pcall(tap, taps, a, v) end
    acquire(c, a, key)
    c.who = a
    ok, err = call(a, loops[a], v)
    release(c)
    if not ok then record(a, err, v) end
  end
end

-- an event's coroutine: one event after another (DONE between them)
local DONE = {}
local function event_loop(c, filter, who, ev)
  while true do
    event_body(c, filter, who, ev)
    c, filter, who, ev = co_yield(DONE)
  end
end
local idle, nidle = {}, 0   -- contexts whose coroutine waits for its next event

-- an event failed outside any script call: free the stage it held
local function abandon(c)
  if c.stage ~= nil then release(c) end
end

-- events in flight at once (each holds at most one stage at a time, so more than the number
-- of stages only queues)
local WINDOW = 256

local function run_overlapped(filter, who, events, n, from)
  local ran, inflight, i = 0, 0, from
  local wq, wh, wt = {}, 1, 0   -- events waiting for a Redis reply
  local live = {}               -- batch indices in flight
  probe[P_LIVE] = live
  local WAIT = sched.WAIT
  while true do
    while inflight < WINDOW and i <= n do
      local ev = events[i]
      if ev ~= nil then
        local c
        if nidle > 0 then
          c = idle[nidle]
          idle[nidle] = nil
          nidle = nidle - 1
          c.ev, c.i, c.h, c.n = ev, i, 1, 0
        else
          c = { co = co_create(event_loop), ev = ev, i = i, a = {}, v = {}, h = 1, n = 0,
            blocked = false }
        end
        inflight = inflight + 1
        ran = ran + 1
        live[i] = true
        runnable(c, nil)
      end
      i = i + 1
      probe[P_STARTED] = i - 1
    end
    if rh <= rt then
      local c
      c, rh, rt = pop(rq, rh, rt)
      probe[P_POS] = c.i
      local who_now = c.who
      if who_now ~= nil then probe[P_WHO] = who_now end
      local co = c.co
      sched.current, sched.ctx = co, c
      local ok, tag, ud, t
      local ev = c.ev
      if ev ~= nil then
        c.ev = nil
        ok, tag, ud, t = co_resume(co, c, filter, who, ev)
      else
        local val = c.val
        c.val = nil
        ok, tag, ud, t = co_resume(co, val)
      end
      sched.current, sched.ctx = nil, nil
      if not ok then
        record(who, tag, nil)
        abandon(c)
        inflight = inflight - 1
        live[c.i] = nil
      elseif tag == DONE then
        inflight = inflight - 1
        live[c.i] = nil
        c.who = nil
        nidle = nidle + 1
        idle[nidle] = c
      elseif tag == WAIT then
        wt = wt + 1
        wq[wt] = c
        c.wud, c.wt = ud, t
      elseif tag == BLOCKED then
        c.blocked = true
      else
        -- the script itself yielded (coroutine.yield outside a coroutine of its own): in the
        -- plain path that is an error, so it is one here; the event's run ends with it
        record(c.who or who, "attempt to yield from outside a coroutine " ..
          "(loop() runs its event in a coroutine of the engine's)", nil)
        abandon(c)
        inflight = inflight - 1
        live[c.i] = nil
      end
    elseif wh <= wt then
      -- nothing can run: take the oldest reply. Its connection sends what it has queued if
      -- that command is among it; commands queued after one already on its way wait for the
      -- replies before them, and go out together (the pipeline fills while Redis answers)
      local c
      c, wh, wt = pop(wq, wh, wt)
      local ud, t = c.wud, c.wt
      c.wud, c.wt = nil, nil
      runnable(c, ud:_await(t))
    else
      break
    end
  end
  rq, rh, rt = {}, 1, 0
  probe[P_POS], probe[P_STARTED], probe[P_LIVE] = 0, 0, 0
  if inflight > 0 then
    -- (cannot happen: every event waits for a reply, a stage or nothing)
    stages = {}
    error("overlap scheduler: " .. inflight .. " events stuck", 0)
  end
  return ran
end

-- forget pending hand-offs (after an error escaped a run)
function M.reset()
  for j = qh, qn do qa[j], qv[j] = nil, nil end
  qh, qn = 1, 0
  rq, rh, rt = {}, 1, 0
  idle, nidle = {}, 0
  stages = {}
  sched.current, sched.ctx = nil, nil
end

-- events[i] is a decoded event, or nil for a line that was not JSON; `who` identifies the
-- filter in error records (a negative number: -1 for the first input)
-- filter, starting at index `from`; returns the number of events run
function M.run_batch(filter, who, events, n, from)
  if sched.overlap then return run_overlapped(filter, who, events, n, from) end
  local ran = 0
  for i = from, n do
    local ev = events[i]
    if ev ~= nil then
      probe[P_POS] = i
      ran = ran + 1
      local ok, err = call(who, filter, ev)
      if not ok then record(who, err, ev) end
      drain()
      -- a timer set under the event-time clock: the worker fires what is due, then goes on
      if probe[P_PAUSE] ~= 0 and i < n then
        probe[P_PAUSE] = 0
        probe[P_POS] = 0
        return ran, i
      end
    end
  end
  probe[P_PAUSE] = 0
  probe[P_POS] = 0
  return ran
end

-- a timer firing: one value for analyzer a
function M.run_one(a, v)
  probe[P_POS] = 0
  qn = qn + 1
  qa[qn] = a
  qv[qn] = v
  drain()
end

return M
