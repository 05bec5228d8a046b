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

use crate::fast::{self, OutState};
use crate::json;
use crate::libs::{cjson, dragonfly, hiredis};
use crate::mailbox::{Mailbox, Routes, TagKind};
use crate::wire::{probe, record};

pub use crate::spec::{Limits, Overlap, RuntimeSpec, ScriptKind, ScriptSpec};

const CHAIN: &str = include_str!("chain.lua");
const SANDBOX: &str = include_str!("sandbox.lua");

/// A script failed: which one, and the Lua message (with file and line).
#[derive(Debug, Clone, thiserror::Error)]
pub struct ScriptError {
    /// The script, as shown in messages (`analyzer/a.lua`).
    pub script: String,
    /// The Lua message (with file and line when Lua gives them).
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    /// `script: message`, or the message alone when it names the script already
    /// (`analyzer/a.lua:3: ...`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.starts_with(&format!("{}:", self.script)) {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.script, self.message)
        }
    }
}

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
}

/// Who a failed call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The filter of input `n`.
    Filter(usize),
    /// Analyzer `n`.
    Analyzer(usize),
}

impl Caller {
    /// The caller chain.lua names `who` (filters negative from -1, analyzers from 1).
    pub fn from_who(who: i64) -> Caller {
        if who < 0 {
            Caller::Filter((-who - 1) as usize)
        } else {
            Caller::Analyzer((who - 1).max(0) as usize)
        }
    }
}

impl FailureKind {
    /// Its name in dead letters and on the live page.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::RoutingLoop => "routing_loop",
        }
    }
}

/// Why a script call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A Lua error raised by the script (or a library it called).
    Error,
    /// The call ran past [`Limits::script_timeout`].
    Timeout,
    /// The runtime reached [`Limits::memory`].
    Memory,
    /// A routing loop was cut.
    RoutingLoop,
}

/// A script call that failed (a Lua error in `loop()`), or a routing loop that was cut.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Whose call it was.
    pub caller: Caller,
    /// Why it failed.
    pub kind: FailureKind,
    /// The script and message.
    pub error: ScriptError,
    /// The first traceback line inside a script (`analyzer/a.lua:12: in function 'loop'`).
    pub traceback: Option<String>,
    /// The event, as JSON, cut to a few hundred bytes.
    pub event: String,
    /// The event as JSON, as the failing script left it: whole, or cut to
    /// [`MAX_VALUE_BYTES`] (then `value_cut` says how many bytes went).
    pub event_full: Option<String>,
    /// Bytes cut from the end of `event_full` (0: it is whole).
    pub value_cut: usize,
    /// Index in the input batch of the event whose chain failed (none for timer calls).
    pub input_index: Option<usize>,
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
    pub timers: Vec<crate::mailbox::TimerRequest>,
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

/// Bytes of an event quoted in a failure.
const EXCERPT: usize = 512;
/// Longest error message a failure keeps (logs, the live page, dead letters): a script's
/// `error()` may raise anything; the rest is cut, and the cut says how much.
pub const MAX_ERROR_BYTES: usize = 2048;
/// Longest traceback line a failure keeps.
pub const MAX_TRACEBACK_BYTES: usize = 512;
/// Most of the failing value a failure keeps, as JSON, for its dead letter.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
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
    /// Reached from the output_event C function through the registry; boxed so its address
    /// stays put for the life of the Lua state.
    out: Box<OutState>,
    /// Failures of errors that escaped the routing core, until taken.
    escaped_failures: Vec<Failure>,
    /// chain.lua's call counter and position (see there).
    probe: Table,
    /// lazy.rs's context table (array metatable, proxy functions).
    lazy_ctx: Table,
    /// Whether input batches become lazy events.
    lazy_events: bool,
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

impl Runtime {
    /// Create the state, install the libraries and load (compile and run the top level of)
    /// every script. `setup()` is not called yet.
    pub fn new(spec: &RuntimeSpec) -> Result<Self, Vec<ScriptError>> {
        let lua = Lua::new_with(StdLib::ALL_SAFE, LuaOptions::default()).map_err(runtime_error)?;
        if spec.limits.memory > 0 {
            lua.set_memory_limit(spec.limits.memory)
                .map_err(runtime_error)?;
        }
        let mut out = Box::new(OutState {
            routes: spec
                .outputs
                .iter()
                .enumerate()
                .map(|(i, o)| (o.as_bytes().to_vec(), i))
                .collect(),
            outputs: spec.outputs.iter().map(|_| Batch::default()).collect(),
            unknown: Vec::new(),
        });
        let out_ptr: *mut OutState = &mut *out;
        let mut state_ptr: *mut ffi::lua_State = std::ptr::null_mut();
        let mut setup = || -> mlua::Result<(Table, Table, Table, Table, Table)> {
            cjson::install(&lua)?;
            let array_mt = cjson::array_mt(&lua);
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
            let df = dragonfly::install(&lua)?;
            hiredis::install(&lua, spec.backend.clone())?;
            set_package_path(&lua, &spec.root)?;
            let probe = crate::wire::new_probe(&lua)?;
            // SAFETY: out_ptr points into a Box the Runtime keeps for as long as the Lua
            // state lives; the state is used only by the thread that owns the Runtime.
            // luaopen_debug is called through lua_call as a C function should be; only its
            // `traceback` is kept (see install_traceback).
            unsafe {
                lua.exec_raw::<()>((array_mt.clone(), probe.clone()), |state| {
                    fast::register(state, out_ptr, 1);
                    ffi::lua_pushlightuserdata(
                        state,
                        &crate::watchdog::PROBE_KEY as *const u8 as *mut std::ffi::c_void,
                    );
                    ffi::lua_pushvalue(state, 2);
                    ffi::lua_rawset(state, ffi::LUA_REGISTRYINDEX);
                    ffi::lua_pushcfunction(state, ffi::luaopen_debug);
                    ffi::lua_call(state, 0, 0);
                    // a thread of this state, anchored in the registry for the state's life:
                    // the watchdog's signal handler arms the (global) hook through it
                    state_ptr = ffi::lua_newthread(state);
                    ffi::luaL_ref(state, ffi::LUA_REGISTRYINDEX);
                    ffi::lua_settop(state, 0);
                })?;
            }
            let traceback = install_traceback(&lua)?;
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
                crate::libs::frozen(&lua)?,
                read_code,
            ))?;
            // SAFETY: fast::output_event follows the C function protocol (see fast.rs).
            let out_raw = unsafe { lua.create_c_function(fast::output_event)? };
            let chain: Table = lua
                .load(crate::wire::chain_source(CHAIN))
                .set_name("=dragonfly-chain")
                .call((
                    out_raw,
                    MAX_HOPS,
                    probe.clone(),
                    traceback,
                    lazy,
                    lua.named_registry_value::<Table>("dragonfly.sched")?,
                ))?;
            lua.set_named_registry_value("dragonfly.copy", chain.get::<Function>("copy")?)?;
            df.set("analyze_event", chain.get::<Function>("analyze_event")?)?;
            let output: Function = chain.get("output_event")?;
            df.set("output_event", output.clone())?;
            df.set("forward_event", output)?;
            let by_tag: Table = chain.get("by_tag")?;
            let counts: Table = chain.get("counts")?;
            let mut routes = Routes::default();
            let sched: Table = lua.named_registry_value("dragonfly.sched")?;
            let limits = lua.create_table()?;
            for (i, a) in spec.analyzers.iter().enumerate() {
                routes.analyzers.insert(a.tag.clone(), i);
                by_tag.raw_set(a.tag.as_str(), i + 1)?;
                counts.raw_set(i + 1, 0)?;
                let k = spec.overlap.concurrency.get(i).copied().unwrap_or(1).max(1);
                limits.raw_set(i + 1, k)?;
            }
            sched.raw_set("limits", limits)?;
            let concurrent = spec.overlap.concurrency.iter().any(|&k| k > 1);
            let redis: bool = sched.raw_get("redis")?;
            sched.raw_set("overlap", redis && concurrent)?;
            sched.raw_set("key", spec.overlap.partition_key.as_str())?;
            lua.set_app_data(routes);
            lua.set_app_data(Mailbox::default());
            Ok((array_mt, chain, sandbox, probe, lazy_ctx))
        };
        let (array_mt, chain, sandbox, probe, lazy_ctx) = setup().map_err(runtime_error)?;
        let active = Some(crate::watchdog::watch(
            state_ptr,
            out_ptr,
            spec.limits.script_timeout,
            spec.limits.setup_timeout,
        ));
        // the scripts' top level runs under the setup budget
        let phase = SetupPhase::enter(active.as_deref(), &probe);

        let mut errors = Vec::new();
        let mut load = |s: &ScriptSpec| -> Option<Script> {
            match load_script(&lua, &sandbox, s) {
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
        drop(phase);
        if !errors.is_empty() {
            return Err(errors);
        }
        let get = |name: &str| chain.get::<Function>(name).map_err(runtime_error);
        Ok(Self {
            active,
            sandbox,
            run_batch: get("run_batch")?,
            run_one: get("run_one")?,
            drain: get("drain")?,
            lua,
            filters: filters.into_iter().map(|s| s.expect("no errors")).collect(),
            analyzers: analyzers
                .into_iter()
                .map(|s| s.expect("no errors"))
                .collect(),
            array_mt,
            chain,
            out,
            escaped_failures: Vec::new(),
            probe,
            lazy_ctx,
            lazy_events: spec.lazy_events,
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
        let _busy = self.busy();
        let filter: Function = self.filters[input].env.raw_get("loop")?;
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
        let events: Table = match decoded {
            Ok((Value::Nil, events)) | Ok((_, events)) => events,
            Err(e) => {
                self.recover(&e);
                return Err(e);
            }
        };
        let who = -(input as i64) - 1;
        let mut ran = 0;
        let mut from = start.saturating_add(1);
        while from <= batch.len() {
            match self
                .run_batch
                .call::<usize>((&filter, who, &events, batch.len(), from))
            {
                Ok(n) => {
                    ran += n;
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
        Ok(BatchResult {
            events: ran,
            malformed,
        })
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
        let script = match caller {
            Caller::Filter(i) => self.filters.get(i),
            Caller::Analyzer(i) => self.analyzers.get(i),
        };
        self.escaped_failures.push(Failure {
            caller,
            kind: if is_memory_error(e) {
                FailureKind::Memory
            } else {
                FailureKind::Error
            },
            error: ScriptError {
                script: script.map(|s| s.display.clone()).unwrap_or_default(),
                message: if is_memory_error(e) {
                    "not enough memory".into()
                } else {
                    clean_message(&lua_message(e))
                },
            },
            traceback: None,
            event: String::new(),
            event_full: None,
            value_cut: 0,
            input_index,
        });
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

    /// The watchdog's view of this runtime (None without a time limit).
    pub fn watched(&self) -> Option<&std::sync::Arc<crate::watchdog::Watched>> {
        self.active.as_deref().map(|a| a.watched())
    }

    /// Bytes the Lua state holds now.
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// Everything the calls since the last take did besides writing lines: the one place the
    /// engine learns it from (failures, events per analyzer, loops cut, unknown tags, timers
    /// requested). Lines are taken with [`Runtime::take_lines`].
    pub fn take_results(&mut self) -> Results {
        Results {
            failures: self.take_failures(),
            counts: self.take_counts(),
            loops_cut: self.take_loops_cut(),
            unknown: self.take_unknown(),
            timers: std::mem::take(&mut self.mailbox().timers),
        }
    }

    /// Every line written since the last take: per output, the engine log's and the stats
    /// log's.
    pub fn take_lines(&mut self) -> Lines {
        let outputs = (0..self.out.outputs.len())
            .map(|i| self.take_output(i))
            .collect();
        let mut mb = self.mailbox();
        Lines {
            outputs,
            log: mb.log.take(),
            stats: mb.stats.take(),
        }
    }

    /// Failed calls since the last take.
    pub fn take_failures(&mut self) -> Vec<Failure> {
        let mut out = std::mem::take(&mut self.escaped_failures);
        let Ok(errors) = self.chain.get::<Table>("errors") else {
            return out;
        };
        let n = errors.raw_len();
        if n == 0 {
            return out;
        }
        let mut memory = false;
        for i in 1..=n {
            let Ok(rec) = errors.raw_get::<Table>(i) else {
                continue;
            };
            let who: i64 = rec.raw_get(record::WHO).unwrap_or(0);
            let message: String = rec.raw_get(record::MESSAGE).unwrap_or_default();
            let message = clean_message(&message);
            let value: Value = rec.raw_get(record::VALUE).unwrap_or(Value::Nil);
            let pos: usize = rec.raw_get(record::POS).unwrap_or(0);
            let mut traceback: Option<String> = rec.raw_get(record::WHERE).ok().flatten();
            if let Some(t) = traceback.as_mut() {
                dragonfly_event::text::cut_marked(t, MAX_TRACEBACK_BYTES);
            }
            let kind = FailureKind::from_code(rec.raw_get(record::KIND).unwrap_or(0));
            memory |= kind == FailureKind::Memory;
            let caller = Caller::from_who(who);
            let script = match caller {
                Caller::Filter(f) => self.filters.get(f),
                Caller::Analyzer(a) => self.analyzers.get(a),
            }
            .map(|s| s.display.clone());
            let mut value_cut = 0;
            let event_full = json::encode_to_vec(&self.lua, &value).ok().map(|b| {
                let mut s =
                    String::from_utf8_lossy(&b[..b.len().min(MAX_VALUE_BYTES + 4)]).into_owned();
                value_cut = b.len().saturating_sub(MAX_VALUE_BYTES);
                if value_cut > 0 {
                    let mut at = MAX_VALUE_BYTES.min(s.len());
                    while !s.is_char_boundary(at) {
                        at -= 1;
                    }
                    s.truncate(at);
                }
                s
            });
            let mut event = event_full
                .clone()
                .unwrap_or_else(|| format!("<{}>", value.type_name()));
            truncate(&mut event, EXCERPT);
            out.push(Failure {
                caller,
                kind,
                error: ScriptError {
                    script: script.unwrap_or_default(),
                    message,
                },
                traceback,
                event,
                event_full,
                value_cut,
                input_index: pos.checked_sub(1),
            });
        }
        // cleared in place: chain.lua holds this very table
        for i in 1..=n {
            let _ = errors.raw_set(i, Value::Nil);
        }
        if memory {
            let _ = self.lua.gc_collect();
        }
        out
    }

    /// Events each analyzer received since the last take (index = analyzer).
    pub fn take_counts(&mut self) -> Vec<u64> {
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

    /// Routing loops cut since the last take.
    pub fn take_loops_cut(&mut self) -> u64 {
        let n: u64 = self.chain.get("loops_cut").unwrap_or(0);
        if n > 0 {
            let _ = self.chain.set("loops_cut", 0);
        }
        n
    }

    /// Encoded lines for output `i` since the last take.
    pub fn take_output(&mut self, i: usize) -> Batch {
        self.out.outputs[i].take()
    }

    /// Lines waiting for output `i`.
    pub fn output_len(&self, i: usize) -> usize {
        self.out.outputs[i].len()
    }

    /// Events routed to tags that do not exist, since the last take.
    pub fn take_unknown(&mut self) -> Vec<(String, TagKind)> {
        let mut v = std::mem::take(&mut self.out.unknown);
        v.append(&mut self.mailbox().unknown);
        if let Ok(t) = self.chain.get::<Table>("unknown") {
            let n = t.raw_len();
            for i in 1..=n {
                if let Ok(tag) = t.raw_get::<String>(i) {
                    v.push((tag, TagKind::Analyzer));
                }
                let _ = t.raw_set(i, Value::Nil);
            }
        }
        v
    }

    /// What the scripts emitted besides events: log and stats lines, timers.
    pub fn mailbox(&self) -> mlua::AppDataRefMut<'_, Mailbox> {
        self.lua
            .app_data_mut::<Mailbox>()
            .expect("mailbox installed")
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

/// A Lua error text without mlua's prefix and Rust-side traceback, cut to
/// [`MAX_ERROR_BYTES`].
pub(crate) fn clean_message(text: &str) -> String {
    let text = text.split("\nstack traceback:").next().unwrap_or(text);
    capped(
        text.trim_start_matches("runtime error: ")
            .trim_start_matches("memory error: ")
            .trim_end(),
    )
}

/// `text` cut to [`MAX_ERROR_BYTES`] on a character boundary, the cut marked with how much
/// went (without copying more than is kept).
fn capped(text: &str) -> String {
    let mut end = text.len().min(MAX_ERROR_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = text[..end].to_string();
    if end < text.len() {
        s.push_str(&format!(" ... [{} bytes cut]", text.len() - end));
    }
    s
}

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
