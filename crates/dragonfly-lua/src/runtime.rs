//! One Lua runtime: a LuaJIT state holding every filter and analyzer script of the pipeline,
//! each in its own environment (its own globals and library tables, as if it had a state of its
//! own: see sandbox.lua), so an event crosses from one script to the next without leaving the
//! state.
//!
//! Limits: the state's memory is capped ([`Limits::memory`]: an allocation past it is the Lua
//! error "not enough memory" in the call that made it, after which the runtime runs a full
//! collection and goes on) and every script call has a time budget ([`Limits::script_timeout`],
//! enforced by the watchdog). After `setup()` every script is sealed: no `io`, no process
//! control (sandbox.lua).

use std::path::{Path, PathBuf};

use dragonfly_event::Batch;
use mlua::{ffi, Function, Lua, LuaOptions, StdLib, Table, Value};

use crate::fast;
use crate::json;
use crate::libs::{cjson, dragonfly, hiredis};
use crate::outcome::{self, Channel, ChannelBox, TagKind, TimerRequest};
use crate::wire::probe;

use crate::outcome::{capped, clean_message};
pub use crate::outcome::{
    Caller, Failure, FailureKind, ScriptError, MAX_ERROR_BYTES, MAX_TRACEBACK_BYTES,
    MAX_VALUE_BYTES,
};
pub use crate::spec::{Limits, Overlap, RuntimeSpec, ScriptKind, ScriptSpec};

const CHAIN: &str = include_str!("chain.lua");
const SANDBOX: &str = include_str!("sandbox.lua");

struct Script {
    display: String,
    env: Table,
}

/// What one input batch did.
#[derive(Debug, Default)]
pub struct BatchResult {
    /// Events handed to the filter.
    pub events: usize,
    /// Lines that were not JSON: (index in the batch, error).
    pub malformed: Vec<(usize, String)>,
    /// The batch paused before this line (a timer set under the event-time clock): the lines
    /// from here on have not run.
    pub paused_at: Option<usize>,
}

/// What a runtime's calls did, from [`Runtime::take_results`].
#[derive(Default)]
pub struct Results {
    /// Calls that failed.
    pub failures: Vec<Failure>,
    /// Events each analyzer received (index = analyzer).
    pub counts: Vec<u64>,
    /// Routing loops cut.
    pub loops_cut: u64,
    /// Events routed to tags that name nothing.
    pub unknown: Vec<(String, TagKind)>,
    /// `dragonfly.timer_event` requests.
    pub timers: Vec<TimerRequest>,
    /// Values taken for taps ([`Runtime::set_taps`]): (tap id, analyzer index, the value as
    /// JSON), in the order the analyzers were handed them.
    pub tapped: Vec<(u64, usize, Vec<u8>)>,
}

/// Where hand-offs went ([`Results::edges`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EdgeTo {
    /// `analyze_event` to analyzer `n`.
    Analyzer(usize),
    /// `output_event` to output `n`.
    Output(usize),
    /// A tag that names nothing (its kind: analyzer or output).
    Unknown(TagKind, String),
}

/// Hand-offs from one script to one place since the last take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Who handed on.
    pub from: Caller,
    /// Where to.
    pub to: EdgeTo,
    /// How many events.
    pub events: u64,
}

/// What one tap may take from the values analyzer `analyzer` is handed during the next calls
/// ([`Runtime::set_taps`]): up to `budget` values that pass every filter (a dotted path as its
/// names and the value: a string field equal to it, a number equal to it as a number, a
/// boolean written as it; other values are left to the engine's check of the JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct TapPlan {
    /// The analyzer (index).
    pub analyzer: usize,
    /// The tap (the engine's id, handed back with each value).
    pub id: u64,
    /// Most values to take.
    pub budget: u32,
    /// (path, value) filters.
    pub filters: Vec<(Vec<String>, String)>,
}

/// What a runtime's calls wrote, from [`Runtime::take_lines`].
pub struct Lines {
    /// Encoded lines per output (index = output).
    pub outputs: Vec<Batch>,
    /// `dragonfly.log_event` records.
    pub log: Batch,
    /// `dragonfly.stats_event` records.
    pub stats: Batch,
}

/// A hand-off chain longer than this for one event is a routing loop.
pub const MAX_HOPS: usize = 10_000;

/// One LuaJIT state with every filter and analyzer of the pipeline loaded, each in its own
/// environment: what a worker runs. Built by [`Runtime::new`], readied by [`Runtime::setup`],
/// then fed input batches ([`Runtime::run_batch`]) and timer firings; what the scripts produced
/// is taken with the `take_*` calls after each. Owned and used by one thread; `!Send`.
pub struct Runtime {
    /// The watchdog's view of this runtime; declared first so that it is dropped (and the
    /// runtime deregistered) before the state.
    active: Option<Box<crate::watchdog::Active>>,
    lua: Lua,
    sandbox: Table,
    filters: Vec<Script>,
    analyzers: Vec<Script>,
    array_mt: Table,
    chain: Table,
    run_batch: Function,
    run_one: Function,
    drain: Function,
    /// Routing tables and what the calls did (outcome.rs), reached from the C functions and
    /// library callbacks through the registry and app data; boxed so its address stays put
    /// for the life of the Lua state.
    channel: ChannelBox,
    /// chain.lua's call counter and position (see there).
    probe: Table,
    /// lazy.rs's context table (array metatable, proxy functions).
    lazy_ctx: Table,
    /// Whether input batches become lazy events.
    lazy_events: bool,
    /// A batch that paused (event-time clock) keeps its decoded events for the next piece:
    /// (the batch's identity, its events, every malformed line). Decoding again at every
    /// pause would cost the whole batch per pause (a script setting a timer per event).
    paused: Option<Paused>,
}

/// A batch that paused: its identity (address, length, first line's address), its decoded
/// events, its malformed lines.
struct Paused {
    id: (usize, usize, usize),
    events: Table,
    malformed: Vec<(usize, String)>,
}

/// The first line of a Lua error (the traceback is not useful in a log line).
fn lua_message(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::CallbackError { cause, .. } => return lua_message(cause),
        other => other.to_string(),
    };
    let text = text.split("\nstack traceback:").next().unwrap_or(&text);
    capped(text.trim_start_matches("runtime error: ").trim())
}

fn runtime_error(e: mlua::Error) -> Vec<ScriptError> {
    vec![ScriptError {
        script: "<runtime>".into(),
        message: lua_message(&e),
    }]
}

/// The Lua side of a runtime once its libraries, chain.lua and the sandbox are in place.
struct Wired {
    array_mt: Table,
    chain: Table,
    sandbox: Table,
    probe: Table,
    lazy_ctx: Table,
    /// A thread of the state anchored in its registry, for the watchdog.
    thread: *mut ffi::lua_State,
}

/// The channel of a runtime for `spec`: its routing tables, script names, an empty outcome.
fn new_channel(spec: &RuntimeSpec) -> ChannelBox {
    let names = |v: &[ScriptSpec]| v.iter().map(|s| s.display.clone()).collect();
    Box::new(std::cell::UnsafeCell::new(Channel {
        outputs: spec
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.as_bytes().to_vec(), i))
            .collect(),
        analyzers: spec
            .analyzers
            .iter()
            .enumerate()
            .map(|(i, a)| (a.tag.clone(), i))
            .collect(),
        filter_names: names(&spec.filters),
        analyzer_names: names(&spec.analyzers),
        outcome: outcome::Outcome {
            outputs: spec.outputs.iter().map(|_| Batch::default()).collect(),
            ..Default::default()
        },
        event_now: None,
        event_times: Vec::new(),
    }))
}

/// lazy.rs's context table, and the `lazy` table sandbox.lua and chain.lua get (index,
/// newindex, materialize, clone).
fn lazy_library(lua: &Lua, array_mt: &Table) -> mlua::Result<(Table, Table)> {
    // SAFETY: push_context pushes a table and closures only (see lazy.rs)
    let (_, lazy_ctx): (Value, Table) = unsafe {
        lua.exec_raw(array_mt.clone(), |state| {
            crate::lazy::push_context(state, 1)
        })?
    };
    // the metamethods proxies get are Lua functions around the C ones: LuaJIT records
    // a Lua metamethod into the caller's trace and stitches the C call inside it,
    // where a C metamethod would end the trace
    let wrap: (Function, Function) = lua
        .load(
            "local index, newindex = ...
             return function(t, k) return (index(t, k)) end,
                    function(t, k, v) newindex(t, k, v) end",
        )
        .set_name("=dragonfly-lazy")
        .call((
            lazy_ctx.raw_get::<Function>(4)?,
            lazy_ctx.raw_get::<Function>(5)?,
        ))?;
    lazy_ctx.raw_set(4, wrap.0)?;
    lazy_ctx.raw_set(5, wrap.1)?;
    let lazy = lua.create_table()?;
    for (i, name) in [
        (4, "index"),
        (5, "newindex"),
        (6, "materialize"),
        (7, "clone"),
    ] {
        lazy.raw_set(name, lazy_ctx.raw_get::<Function>(i)?)?;
    }
    Ok((lazy_ctx, lazy))
}

/// Registry entries of the C side (wire.rs): the array metatable, the channel, the probe;
/// loads the debug library (only its `traceback` is kept, see install_traceback). Returns a
/// thread of the state anchored in the registry for the state's life: the watchdog's signal
/// handler arms the (global) hook through it.
fn register_raw(
    lua: &Lua,
    array_mt: &Table,
    probe: &Table,
    channel: &ChannelBox,
) -> mlua::Result<*mut ffi::lua_State> {
    // SAFETY: the channel is in a box the Runtime keeps for as long as the Lua state lives;
    // the state is used only by the thread that owns the Runtime.
    unsafe { outcome::install(lua, channel)? };
    let mut thread: *mut ffi::lua_State = std::ptr::null_mut();
    // SAFETY: registry writes of values on the stack; luaopen_debug is called through
    // lua_call as a C function should be.
    unsafe {
        lua.exec_raw::<()>((array_mt.clone(), probe.clone()), |state| {
            crate::encode::register(state, 1);
            ffi::lua_pushlightuserdata(
                state,
                &crate::watchdog::PROBE_KEY as *const u8 as *mut std::ffi::c_void,
            );
            ffi::lua_pushvalue(state, 2);
            ffi::lua_rawset(state, ffi::LUA_REGISTRYINDEX);
            ffi::lua_pushcfunction(state, ffi::luaopen_debug);
            ffi::lua_call(state, 0, 0);
            thread = ffi::lua_newthread(state);
            ffi::luaL_ref(state, ffi::LUA_REGISTRYINDEX);
            ffi::lua_settop(state, 0);
        })?;
    }
    Ok(thread)
}

/// Load chain.lua (handed the C functions through which outcomes reach Rust) and attach the
/// functions it makes for scripts to the `dragonfly` table `df`.
fn load_chain(
    lua: &Lua,
    df: &Table,
    probe: &Table,
    traceback: Function,
    lazy: Table,
) -> mlua::Result<Table> {
    // SAFETY: the three follow the C function protocol (fast.rs, outcome.rs).
    let (out_raw, fail_raw, unknown_raw) = unsafe {
        (
            lua.create_c_function(fast::output_event)?,
            lua.create_c_function(outcome::record_failure)?,
            lua.create_c_function(outcome::note_unknown)?,
        )
    };
    // a value an analyzer is handed, taken for a tap (chain.lua's `tap`): encoded now, before
    // the analyzer can change it
    let tap_raw = lua.create_function(|lua, (id, analyzer, v): (u64, usize, Value)| {
        let json = json::encode_to_vec(lua, &v).map_err(mlua::Error::external)?;
        outcome::with_channel(lua, |c| {
            c.outcome
                .tapped
                .push((id, analyzer.saturating_sub(1), json))
        });
        Ok(())
    })?;
    let chain: Table = lua
        .load(crate::wire::chain_source(CHAIN))
        .set_name("=dragonfly-chain")
        .call((
            out_raw,
            fail_raw,
            unknown_raw,
            MAX_HOPS,
            probe.clone(),
            traceback,
            lazy,
            lua.named_registry_value::<Table>("dragonfly.sched")?,
            tap_raw,
        ))?;
    lua.set_named_registry_value("dragonfly.copy", chain.get::<Function>("copy")?)?;
    df.set("analyze_event", chain.get::<Function>("analyze_event")?)?;
    let output: Function = chain.get("output_event")?;
    df.set("output_event", output.clone())?;
    df.set("forward_event", output)?;
    Ok(chain)
}

/// chain.lua's analyzer tags and counters, and the overlap scheduler's limits.
fn route_analyzers(lua: &Lua, spec: &RuntimeSpec, chain: &Table) -> mlua::Result<()> {
    let by_tag: Table = chain.get("by_tag")?;
    let counts: Table = chain.get("counts")?;
    let sched: Table = lua.named_registry_value("dragonfly.sched")?;
    let limits = lua.create_table()?;
    for (i, a) in spec.analyzers.iter().enumerate() {
        by_tag.raw_set(a.tag.as_str(), i + 1)?;
        counts.raw_set(i + 1, 0)?;
        let k = spec.overlap.concurrency.get(i).copied().unwrap_or(1).max(1);
        limits.raw_set(i + 1, k)?;
    }
    sched.raw_set("limits", limits)?;
    // the edge counters (chain.lua's `hand` and `outs`): every caller, every destination at 0
    let hand: Table = chain.get("hand")?;
    let outs: Table = chain.get("outs")?;
    let whos = (1..=spec.filters.len() as i64)
        .map(|f| -f)
        .chain(1..=spec.analyzers.len() as i64);
    for who in whos {
        let h = lua.create_table_with_capacity(spec.analyzers.len(), 0)?;
        for i in 1..=spec.analyzers.len() {
            h.raw_set(i, 0)?;
        }
        hand.raw_set(who, h)?;
        let o = lua.create_table()?;
        for tag in &spec.outputs {
            o.raw_set(tag.as_str(), 0)?;
        }
        outs.raw_set(who, o)?;
    }
    let concurrent = spec.overlap.concurrency.iter().any(|&k| k > 1);
    let redis: bool = sched.raw_get("redis")?;
    sched.raw_set("overlap", redis && concurrent)?;
    sched.raw_set("key", spec.overlap.partition_key.as_str())?;
    Ok(())
}

/// Install the libraries, chain.lua and the sandbox in `lua`.
fn wire(lua: &Lua, spec: &RuntimeSpec, channel: &ChannelBox) -> mlua::Result<Wired> {
    cjson::install(lua)?;
    let array_mt = cjson::array_mt(lua);
    let (lazy_ctx, lazy) = lazy_library(lua, &array_mt)?;
    let df = dragonfly::install(lua)?;
    hiredis::install(lua, spec.backend.clone())?;
    set_package_path(lua, &spec.root)?;
    let probe = crate::wire::new_probe(lua)?;
    lua.set_app_data(crate::wire::ProbeRef(probe.clone()));
    let thread = register_raw(lua, &array_mt, &probe, channel)?;
    let traceback = install_traceback(lua)?;
    let dirs = code_dirs(spec);
    // (source, nil) or (nil, message): never raises, so the message stays a string
    let read_code = lua.create_function(move |lua, (path, confine): (String, bool)| {
        Ok(match read_code(&path, confine, &dirs) {
            Ok(bytes) => (Some(lua.create_string(bytes)?), None),
            Err(e) => (None, Some(e)),
        })
    })?;
    let sandbox: Table = lua.load(SANDBOX).set_name("=dragonfly-sandbox").call((
        lua.globals(),
        lazy.clone(),
        crate::libs::frozen(lua)?,
        read_code,
    ))?;
    let chain = load_chain(lua, &df, &probe, traceback, lazy)?;
    route_analyzers(lua, spec, &chain)?;
    Ok(Wired {
        array_mt,
        chain,
        sandbox,
        probe,
        lazy_ctx,
        thread,
    })
}

/// Load every script of `spec` (their top level runs under the setup budget): the scripts,
/// filters then analyzers, or every load error.
fn load_scripts(
    lua: &Lua,
    spec: &RuntimeSpec,
    wired: &Wired,
    active: Option<&crate::watchdog::Active>,
) -> Result<(Vec<Script>, Vec<Script>), Vec<ScriptError>> {
    let _phase = SetupPhase::enter(active, &wired.probe);
    let mut errors = Vec::new();
    let mut load = |s: &ScriptSpec| -> Option<Script> {
        match load_script(lua, &wired.sandbox, s) {
            Ok(sc) => Some(sc),
            Err(e) => {
                errors.push(ScriptError {
                    script: s.display.clone(),
                    message: lua_message(&e),
                });
                None
            }
        }
    };
    let filters: Vec<Option<Script>> = spec.filters.iter().map(&mut load).collect();
    let analyzers: Vec<Option<Script>> = spec.analyzers.iter().map(&mut load).collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let all = |v: Vec<Option<Script>>| v.into_iter().map(|s| s.expect("no errors")).collect();
    Ok((all(filters), all(analyzers)))
}

impl crate::spec::SpecBuilder {
    /// A runtime with every script loaded ([`Runtime::new`]); `setup()` not run yet.
    pub fn build(self) -> Result<Runtime, Vec<ScriptError>> {
        Runtime::new(&self.spec())
    }

    /// A runtime with every script loaded and set up: the errors of either step.
    pub fn ready(self) -> Result<Runtime, Vec<ScriptError>> {
        let mut rt = self.build()?;
        let errors = rt.setup();
        if errors.is_empty() {
            Ok(rt)
        } else {
            Err(errors)
        }
    }
}

impl Runtime {
    /// Create the state, install the libraries and load (compile and run the top level of)
    /// every script. `setup()` is not called yet.
    pub fn new(spec: &RuntimeSpec) -> Result<Self, Vec<ScriptError>> {
        let lua = Lua::new_with(StdLib::ALL_SAFE, LuaOptions::default()).map_err(runtime_error)?;
        if spec.limits.memory > 0 {
            lua.set_memory_limit(spec.limits.memory)
                .map_err(runtime_error)?;
        }
        let channel = new_channel(spec);
        let wired = wire(&lua, spec, &channel).map_err(runtime_error)?;
        let active = Some(crate::watchdog::watch(
            wired.thread,
            channel.get(),
            spec.limits.script_timeout,
            spec.limits.setup_timeout,
        ));
        let (filters, analyzers) = load_scripts(&lua, spec, &wired, active.as_deref())?;
        let get = |name: &str| wired.chain.get::<Function>(name).map_err(runtime_error);
        Ok(Self {
            active,
            run_batch: get("run_batch")?,
            run_one: get("run_one")?,
            drain: get("drain")?,
            sandbox: wired.sandbox,
            lua,
            filters,
            analyzers,
            array_mt: wired.array_mt,
            chain: wired.chain,
            channel,
            probe: wired.probe,
            lazy_ctx: wired.lazy_ctx,
            lazy_events: spec.lazy_events,
            paused: None,
        })
    }

    /// Call every script's `setup()` (filters first, in config order), then take `io` away
    /// as the original did before the first `loop()`. Returns every failure.
    /// `setup()` is trusted with the full library (it may load models, download lists), but
    /// not with time: every `setup()` together may take [`Limits::setup_timeout`] (a call
    /// past it fails with `setup timeout`, and the ones after it are not run), and memory is
    /// limited as for any call.
    pub fn setup(&mut self) -> Vec<ScriptError> {
        let mut errors = Vec::new();
        let loops: Table = match self.chain.get("loops") {
            Ok(t) => t,
            Err(e) => return runtime_error(e),
        };
        let phase = SetupPhase::enter(self.active.as_deref(), &self.probe);
        let nf = self.filters.len();
        for (n, s) in self
            .filters
            .iter_mut()
            .chain(self.analyzers.iter_mut())
            .enumerate()
        {
            let res = (|| -> mlua::Result<()> {
                if let Value::Function(f) = s.env.raw_get::<Value>("setup")? {
                    f.call::<()>(())?;
                }
                match s.env.raw_get::<Value>("loop")? {
                    Value::Function(f) => {
                        if n >= nf {
                            loops.raw_set(n - nf + 1, f)?;
                        }
                    }
                    _ => {
                        return Err(mlua::Error::runtime(
                            "the script defines no loop(msg) function",
                        ))
                    }
                }
                Ok(())
            })();
            if let Err(e) = res {
                let message = lua_message(&e);
                // the watchdog marks the probe when it stops a call (wire::probe::KIND)
                let timed_out =
                    self.probe.raw_get::<i64>(probe::KIND).ok() == Some(crate::wire::kind::TIMEOUT);
                let _ = self.probe.raw_set(probe::KIND, 0);
                errors.push(ScriptError {
                    script: s.display.clone(),
                    message,
                });
                if timed_out {
                    break;
                }
            }
        }
        drop(phase);
        // From here on, scripts run sealed (sandbox.lua): no io, no process control.
        let seal = || -> mlua::Result<()> {
            let seal: Function = self.sandbox.get("seal")?;
            for s in self.filters.iter().chain(self.analyzers.iter()) {
                seal.call::<()>(s.env.clone())?;
            }
            self.sandbox
                .get::<Function>("seal_template")?
                .call::<()>(())
        };
        if let Err(e) = seal() {
            errors.extend(runtime_error(e));
        }
        self.lua.set_app_data(crate::libs::dragonfly::Sealed);
        self.lua.gc_collect().ok();
        errors
    }

    /// The Lua state (for tests and tools).
    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Decode a batch of raw input lines and run each through input `input`'s filter and the
    /// analyzers it hands events to.
    ///
    /// An error outside any script call (out of memory while recording a failure) does not
    /// lose the rest of the batch: it is recorded against the filter for the event it hit, the
    /// pending hand-offs are dropped, and the run resumes with the next event.
    pub fn run_batch(&mut self, input: usize, batch: &Batch) -> mlua::Result<BatchResult> {
        self.run_batch_from(input, batch, 0)
    }

    /// [`Runtime::run_batch`] from the event at index `start` on (the rest of a batch a
    /// parked runtime did not finish).
    pub fn run_batch_from(
        &mut self,
        input: usize,
        batch: &Batch,
        start: usize,
    ) -> mlua::Result<BatchResult> {
        self.run_batch_range(input, batch, start, batch.len())
    }

    /// As [`Runtime::run_batch_from`], for the events `start..end` of the batch only (the
    /// event-time clock fires timers between them).
    pub fn run_batch_range(
        &mut self,
        input: usize,
        batch: &Batch,
        start: usize,
        end: usize,
    ) -> mlua::Result<BatchResult> {
        let end = end.min(batch.len());
        let _busy = self.busy();
        let filter: Function = self.filters[input].env.raw_get("loop")?;
        // the same batch as the piece before (its lines' address too: a new batch could take
        // a freed one's place), resumed where it paused
        let id = (
            batch as *const Batch as usize,
            batch.len(),
            if batch.is_empty() {
                0
            } else {
                batch.get(0).as_ptr() as usize
            },
        );
        let (events, mut malformed) = match self.paused.take() {
            Some(p) if p.id == id => (p.events, p.malformed),
            _ => self.decode(batch)?,
        };
        // SAFETY: decode_batch only pushes values (see fast.rs); the array metatable is the
        // argument at stack index 1 and the events array is left on top as the result.
        // native for the watchdog: decoding is Rust code that no hook can stop, and a batch of
        // huge lines may take a while
        let who = -(input as i64) - 1;
        let mut ran = 0;
        let mut paused_at = None;
        let mut from = start.saturating_add(1);
        while from <= end {
            match self
                .run_batch
                .call::<(usize, Option<usize>)>((&filter, who, &events, end, from))
            {
                Ok((n, paused)) => {
                    ran += n;
                    paused_at = paused;
                    break;
                }
                Err(e) => {
                    let pos: usize = self.probe.raw_get(probe::POS).unwrap_or(0);
                    // the overlap scheduler: the last event started, and those in flight
                    let started: usize = self.probe.raw_get(probe::STARTED).unwrap_or(0);
                    let mut dropped: Vec<usize> = match self.probe.raw_get::<Value>(probe::LIVE) {
                        Ok(Value::Table(t)) => t
                            .pairs::<usize, Value>()
                            .filter_map(|kv| kv.ok().map(|(k, _)| k))
                            .filter(|&k| k != pos)
                            .collect(),
                        _ => Vec::new(),
                    };
                    dropped.sort_unstable();
                    self.recover(&e);
                    for k in [probe::POS, probe::STARTED, probe::LIVE] {
                        let _ = self.probe.raw_set(k, 0);
                    }
                    if pos < from {
                        return Err(e);
                    }
                    let caller = self.current_caller();
                    self.escaped(caller, &e, Some(pos - 1));
                    // the others in flight lost their runs with it (no event runs twice)
                    for &k in &dropped {
                        self.escaped(caller, &e, Some(k - 1));
                    }
                    let resume = pos.max(started);
                    ran += resume + 1 - from;
                    from = resume + 1;
                }
            }
        }
        // lines outside what ran are not this call's (each is reported by the call that runs it)
        let stop = paused_at.unwrap_or(end);
        if paused_at.is_some() {
            self.paused = Some(Paused {
                id,
                events: events.clone(),
                malformed: malformed.clone(),
            });
        }
        malformed.retain(|(i, _)| (start..stop).contains(i));
        Ok(BatchResult {
            events: ran,
            malformed,
            paused_at,
        })
    }

    /// Decode a batch into a Lua array of events (lazy or eager), and its malformed lines.
    fn decode(&mut self, batch: &Batch) -> mlua::Result<(Table, Vec<(usize, String)>)> {
        let mut malformed = Vec::new();
        // SAFETY: decode_batch only pushes values (see fast.rs); the array metatable is the
        // argument at stack index 1 and the events array is left on top as the result.
        // native for the watchdog: decoding is Rust code that no hook can stop, and a batch of
        // huge lines may take a while
        let decoded = crate::watchdog::native(|| unsafe {
            if self.lazy_events {
                self.lua.exec_raw(self.lazy_ctx.clone(), |state| {
                    malformed = fast::lazy_batch(state, 1, batch);
                })
            } else {
                self.lua.exec_raw(self.array_mt.clone(), |state| {
                    malformed = fast::decode_batch(state, 1, batch);
                })
            }
        });
        match decoded {
            Ok((Value::Nil, events)) | Ok((_, events)) => Ok((events, malformed)),
            Err(e) => {
                self.recover(&e);
                Err(e)
            }
        }
    }

    /// Mark the runtime busy in Lua (watched by the watchdog) until the guard drops.
    fn busy(&self) -> Option<crate::watchdog::Busy> {
        // SAFETY: the Active is owned by self, and the guard is dropped inside the method
        // that took it, on the thread that owns the runtime.
        self.active
            .as_deref()
            .map(|a| unsafe { crate::watchdog::Busy::enter(a) })
    }

    /// After an error escaped the routing core: drop pending hand-offs, free memory.
    fn recover(&mut self, e: &mlua::Error) {
        if let Ok(reset) = self.chain.get::<Function>("reset") {
            let _ = reset.call::<()>(());
        }
        if is_memory_error(e) {
            let _ = self.lua.gc_collect();
        }
    }

    /// The script whose call ran last (chain.lua's `probe[P_WHO]`).
    fn current_caller(&self) -> Caller {
        let who: i64 = self.probe.raw_get(probe::WHO).unwrap_or(-1);
        if who < 0 {
            Caller::Filter((-who - 1) as usize)
        } else {
            Caller::Analyzer((who - 1).max(0) as usize)
        }
    }

    /// Record an error that escaped the routing core as a failure of `caller`.
    fn escaped(&mut self, caller: Caller, e: &mlua::Error, input_index: Option<usize>) {
        let (kind, message) = if is_memory_error(e) {
            (FailureKind::Memory, "not enough memory".into())
        } else {
            (FailureKind::Error, clean_message(&lua_message(e)))
        };
        let ch = self.channel();
        let error = ScriptError {
            script: ch.script(caller),
            message,
        };
        ch.outcome
            .fail(Failure::bare(caller, kind, error, input_index));
    }

    /// A timer fired: hand `value` to analyzer `analyzer`.
    pub fn run_timer(&mut self, analyzer: usize, value: Value) -> mlua::Result<()> {
        let _busy = self.busy();
        let r = self.run_one.call::<()>((analyzer + 1, value));
        if let Err(e) = &r {
            self.recover(e);
            self.escaped(Caller::Analyzer(analyzer), e, None);
        }
        Ok(())
    }

    /// Run hand-offs queued outside a batch (by `setup()`).
    pub fn drain(&mut self) -> mlua::Result<()> {
        let _busy = self.busy();
        let r = self.drain.call(());
        if let Err(e) = &r {
            self.recover(e);
        }
        r
    }

    /// Set what `dragonfly.now()` returns: the event time under the event-time clock (the
    /// worker's watermark), None for the wall clock.
    pub fn set_event_now(&mut self, now: Option<f64>) {
        self.channel().event_now = now;
    }

    /// Under the event-time clock, the clock at each line of the batch about to run (what
    /// `dragonfly.now()` gives during that line's calls).
    pub fn set_event_times(&mut self, times: impl IntoIterator<Item = Option<f64>>) {
        let ch = self.channel();
        ch.event_times.clear();
        ch.event_times.extend(times);
    }

    /// The watchdog's view of this runtime (None without a time limit).
    pub fn watched(&self) -> Option<&std::sync::Arc<crate::watchdog::Watched>> {
        self.active.as_deref().map(|a| a.watched())
    }

    /// Bytes the Lua state holds now.
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// The channel, between calls.
    fn channel(&mut self) -> &mut Channel {
        // SAFETY: `&mut self` means no call into this runtime's Lua state is under way (the
        // state is used only through the runtime, on its thread), so no C function or
        // callback holds a reference to the channel (outcome.rs).
        unsafe { &mut *self.channel.get() }
    }

    /// Everything the calls since the last take did besides writing lines, moved out of the
    /// outcome: failures, events per analyzer, loops cut, unknown tags, timers requested.
    /// Lines are taken with [`Runtime::take_lines`].
    pub fn take_results(&mut self) -> Results {
        let counts = self.take_counts();
        let o = &mut self.channel().outcome;
        let results = Results {
            failures: std::mem::take(&mut o.failures),
            counts,
            loops_cut: std::mem::take(&mut o.loops_cut),
            unknown: std::mem::take(&mut o.unknown),
            timers: std::mem::take(&mut o.timers),
            tapped: std::mem::take(&mut o.tapped),
        };
        self.collect_after(&results.failures);
        results
    }

    /// After a call ran out of memory, collect now (before the next call needs the room).
    fn collect_after(&self, failures: &[Failure]) {
        if failures.iter().any(|f| f.kind == FailureKind::Memory) {
            let _ = self.lua.gc_collect();
        }
    }

    /// Every line written since the last take: per output, the engine log's and the stats
    /// log's.
    pub fn take_lines(&mut self) -> Lines {
        let o = &mut self.channel().outcome;
        Lines {
            outputs: o.outputs.iter_mut().map(Batch::take).collect(),
            log: o.log.take(),
            stats: o.stats.take(),
        }
    }

    /// Failed calls since the last take.
    pub fn take_failures(&mut self) -> Vec<Failure> {
        let failures = std::mem::take(&mut self.channel().outcome.failures);
        self.collect_after(&failures);
        failures
    }

    /// Events each analyzer received since the last take (index = analyzer): chain.lua's
    /// `counts` array, read and reset.
    fn take_counts(&mut self) -> Vec<u64> {
        let Ok(counts) = self.chain.get::<Table>("counts") else {
            return Vec::new();
        };
        (1..=self.analyzers.len())
            .map(|i| {
                let n: u64 = counts.raw_get(i).unwrap_or(0);
                if n > 0 {
                    let _ = counts.raw_set(i, 0);
                }
                n
            })
            .collect()
    }

    /// Set what taps take from the values analyzers are handed during the next calls (the
    /// engine's tap.rs); an empty list stops taking. Each taken value comes back in
    /// [`Results::tapped`]. Cost when no plan is set: one table lookup per hand-off.
    pub fn set_taps(&mut self, plans: &[TapPlan]) -> mlua::Result<()> {
        let tapped: Table = self.chain.get("tapped")?;
        tapped.clear()?;
        for p in plans {
            let list = match tapped.raw_get::<Option<Table>>(p.analyzer + 1)? {
                Some(l) => l,
                None => {
                    let l = self.lua.create_table()?;
                    tapped.raw_set(p.analyzer + 1, &l)?;
                    l
                }
            };
            let filters = self.lua.create_table()?;
            for (path, value) in &p.filters {
                let f = self.lua.create_table()?;
                f.raw_set(
                    "path",
                    self.lua
                        .create_sequence_from(path.iter().map(String::as_str))?,
                )?;
                f.raw_set("value", value.as_str())?;
                f.raw_set("num", value.parse::<f64>().ok())?;
                filters.raw_push(f)?;
            }
            let t = self.lua.create_table()?;
            t.raw_set("id", p.id)?;
            t.raw_set("n", p.budget)?;
            t.raw_set("filters", filters)?;
            list.raw_push(t)?;
        }
        Ok(())
    }

    /// Hand-offs by script and destination since the last take (analyze_event and
    /// output_event calls; those a `setup()` made are not counted): chain.lua's `hand`,
    /// `outs` and `unknown_edges`, read and zeroed. Cost: a read per caller and destination
    /// (a 12-analyzer root: about 200), so the engine takes them now and then, not per batch.
    pub fn take_edges(&mut self) -> Vec<Edge> {
        let mut edges = Vec::new();
        let _ = self.read_edges(&mut edges);
        edges
    }

    fn read_edges(&mut self, edges: &mut Vec<Edge>) -> mlua::Result<()> {
        let hand: Table = self.chain.get("hand")?;
        let outs: Table = self.chain.get("outs")?;
        let unknown: Table = self.chain.get("unknown_edges")?;
        let outputs: Vec<(Vec<u8>, usize)> = self
            .channel()
            .outputs
            .iter()
            .map(|(k, &i)| (k.clone(), i))
            .collect();
        let whos = (1..=self.filters.len() as i64)
            .map(|f| -f)
            .chain(1..=self.analyzers.len() as i64);
        for who in whos {
            let from = Caller::from_who(who);
            let h: Table = hand.raw_get(who)?;
            for i in 1..=self.analyzers.len() {
                let n: u64 = h.raw_get(i)?;
                if n > 0 {
                    h.raw_set(i, 0)?;
                    edges.push(Edge {
                        from,
                        to: EdgeTo::Analyzer(i - 1),
                        events: n,
                    });
                }
            }
            let o: Table = outs.raw_get(who)?;
            for (tag, i) in &outputs {
                let key = self.lua.create_string(tag)?;
                let n: u64 = o.raw_get(&key)?;
                if n > 0 {
                    o.raw_set(&key, 0)?;
                    edges.push(Edge {
                        from,
                        to: EdgeTo::Output(*i),
                        events: n,
                    });
                }
            }
        }
        for (who, dests) in unknown.pairs::<i64, Table>().flatten() {
            if who == 0 {
                continue;
            }
            for (key, events) in dests.pairs::<mlua::LuaString, u64>().flatten() {
                let key = key.to_string_lossy();
                let (kind, tag) = match key.split_at_checked(1) {
                    Some(("a", tag)) => (TagKind::Analyzer, tag),
                    Some((_, tag)) => (TagKind::Output, tag),
                    None => continue,
                };
                let from = Caller::from_who(who);
                edges.push(Edge {
                    from,
                    to: EdgeTo::Unknown(kind, tag.to_string()),
                    events,
                });
            }
        }
        unknown.clear()
    }

    /// Encoded lines for output `i` since the last take.
    pub fn take_output(&mut self, i: usize) -> Batch {
        self.channel().outcome.outputs[i].take()
    }

    /// Lines waiting for output `i`.
    pub fn output_len(&mut self, i: usize) -> usize {
        self.channel().outcome.outputs[i].len()
    }

    /// A JSON rendering of `v` cut to `max` bytes, for log lines.
    pub fn describe(&self, v: &Value, max: usize) -> String {
        let mut s = match json::encode_to_vec(&self.lua, v) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => format!("<{}>", v.type_name()),
        };
        truncate(&mut s, max);
        s
    }
}

/// The setup phase of a runtime (loading scripts, `setup()`) while it lives: the runtime is
/// busy for the watchdog under its setup budget, as one call.
struct SetupPhase<'a> {
    active: Option<&'a crate::watchdog::Active>,
    probe: &'a Table,
    _busy: Option<crate::watchdog::Busy>,
}

impl<'a> SetupPhase<'a> {
    fn enter(active: Option<&'a crate::watchdog::Active>, probe: &'a Table) -> Self {
        bump(probe);
        let busy = active.map(|a| {
            a.setup_phase(true);
            // SAFETY: the Active outlives the guard (both borrowed from the runtime being
            // built or set up, on its own thread), which is dropped on this thread.
            unsafe { crate::watchdog::Busy::enter(a) }
        });
        SetupPhase {
            active,
            probe,
            _busy: busy,
        }
    }
}

impl Drop for SetupPhase<'_> {
    fn drop(&mut self) {
        bump(self.probe);
        if let Some(a) = self.active {
            a.setup_phase(false);
        }
    }
}

/// A new call for the watchdog (chain.lua's call counter, `probe[P_CALLS]`).
fn bump(probe: &Table) {
    let n: f64 = probe.raw_get(probe::CALLS).unwrap_or(0.0);
    let _ = probe.raw_set(probe::CALLS, n + 1.0);
}

pub use dragonfly_event::text::truncate;

/// Whether a call failed because the runtime reached its memory limit: LuaJIT's out-of-memory
/// status, as mlua reports it (a message is never read for it).
fn is_memory_error(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// Keep only `debug.traceback` of the debug library (the rest can break the sandbox).
fn install_traceback(lua: &Lua) -> mlua::Result<Function> {
    let g = lua.globals();
    let full: Table = g.raw_get("debug")?;
    let traceback: Function = full.raw_get("traceback")?;
    let debug = lua.create_table()?;
    debug.raw_set("traceback", traceback.clone())?;
    g.raw_set("debug", debug.clone())?;
    let loaded: Table = g.get::<Table>("package")?.get("loaded")?;
    loaded.raw_set("debug", debug)?;
    Ok(traceback)
}

fn load_script(lua: &Lua, sandbox: &Table, s: &ScriptSpec) -> mlua::Result<Script> {
    let new_env: Function = sandbox.get("new_env")?;
    let dout = (s.kind == ScriptKind::Analyzer).then_some(s.default_output.as_str());
    let env: Table = new_env.call((s.default_analyzer.as_str(), dout))?;
    lua.load(&*s.source)
        .set_name(format!("@{}", s.display))
        .set_environment(env.clone())
        .exec()?;
    Ok(Script {
        display: s.display.clone(),
        env,
    })
}

/// Largest file `loadfile`, `dofile` and `require` read.
pub const MAX_CODE_BYTES: u64 = 16 << 20;

/// Where code may be loaded from once every `setup()` has run: `ROOT/analyzer`,
/// `ROOT/filter`, `ROOT/lib` and the directory of every configured script, as canonical
/// paths (those that exist).
fn code_dirs(spec: &RuntimeSpec) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["analyzer", "filter", "lib"]
        .iter()
        .map(|d| spec.root.join(d))
        .collect();
    for s in spec.filters.iter().chain(&spec.analyzers) {
        if let Some(parent) = spec.root.join(&s.display).parent() {
            dirs.push(parent.to_path_buf());
        }
    }
    let mut dirs: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Read the Lua source file at `path` for `loadfile`/`dofile`/`require`: a regular file of
/// at most [`MAX_CODE_BYTES`], and with `confine` (after setup()) one under `dirs`. The file
/// is opened by its canonical path without following a link there, and never blocks (a FIFO
/// is refused, not waited on). Messages name the path, never the contents.
fn read_code(path: &str, confine: bool, dirs: &[PathBuf]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let canon = std::fs::canonicalize(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    if confine && !dirs.iter().any(|d| canon.starts_with(d)) {
        let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(format!(
            "{path}: code is loaded only from the script directories once setup() has run ({})",
            if list.is_empty() {
                "none exist".to_string()
            } else {
                list.join(", ")
            }
        ));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&canon)
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path}: not a regular file"));
    }
    if meta.len() > MAX_CODE_BYTES {
        return Err(format!(
            "{path}: {} bytes, more than a script may be ({MAX_CODE_BYTES})",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_CODE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    if bytes.len() as u64 > MAX_CODE_BYTES {
        return Err(format!(
            "{path}: more than a script may be ({MAX_CODE_BYTES} bytes)"
        ));
    }
    Ok(bytes)
}

fn set_package_path(lua: &Lua, root: &Path) -> mlua::Result<()> {
    let package: Table = lua.globals().get("package")?;
    let old: String = package.get("path")?;
    let r = root.display();
    let path =
        format!("{r}/?.lua;{r}/?/init.lua;{r}/analyzer/?.lua;{r}/filter/?.lua;{r}/lib/?.lua;{old}");
    package.set("path", path)
}
