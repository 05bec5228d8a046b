//! One Lua runtime: a LuaJIT state holding every filter and analyzer script of the pipeline,
//! each in its own environment (its own globals, as if it had a state of its own), so an
//! event crosses from one script to the next without leaving the state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dragonfly_io::Batch;
use mlua::{ffi, Function, Lua, LuaOptions, StdLib, Table, Value};

use crate::fast::{self, OutState};
use crate::json;
use crate::libs::hiredis::Backend;
use crate::libs::{cjson, dragonfly, hiredis};
use crate::mailbox::{Mailbox, Routes, TagKind};

const CHAIN: &str = include_str!("chain.lua");

/// Filter (input) script or analyzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    Filter,
    Analyzer,
}

/// A script to load, with its source already read (so loading works after a chroot).
#[derive(Debug, Clone)]
pub struct ScriptSpec {
    pub tag: String,
    pub kind: ScriptKind,
    /// The path as shown in messages (e.g. `analyzer/hello-world.lua`).
    pub display: String,
    pub source: Arc<str>,
    pub default_analyzer: String,
    pub default_output: String,
}

/// Everything a runtime is built from.
#[derive(Clone)]
pub struct RuntimeSpec {
    /// Directory `require` resolves against.
    pub root: PathBuf,
    pub filters: Vec<ScriptSpec>,
    pub analyzers: Vec<ScriptSpec>,
    pub outputs: Vec<String>,
    pub backend: Backend,
}

/// A script failed: which one, and the Lua message (with file and line).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{script}: {message}")]
pub struct ScriptError {
    pub script: String,
    pub message: String,
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
    Filter(usize),
    Analyzer(usize),
}

/// A script call that failed (a Lua error in `loop()`), or a routing loop that was cut.
#[derive(Debug, Clone)]
pub struct Failure {
    pub caller: Caller,
    pub error: ScriptError,
    /// The event, as JSON, cut to a few hundred bytes.
    pub event: String,
}

/// Bytes of an event quoted in a failure.
const EXCERPT: usize = 512;
/// A hand-off chain longer than this for one event is a routing loop.
pub const MAX_HOPS: usize = 10_000;

pub struct Runtime {
    lua: Lua,
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
}

/// The first line of a Lua error (the traceback is not useful in a log line).
fn lua_message(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::CallbackError { cause, .. } => return lua_message(cause),
        other => other.to_string(),
    };
    let text = text.split("\nstack traceback:").next().unwrap_or(&text);
    text.trim_start_matches("runtime error: ")
        .trim()
        .to_string()
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
        let setup = || -> mlua::Result<(Table, Table)> {
            cjson::install(&lua)?;
            let array_mt = cjson::array_mt(&lua);
            let df = dragonfly::install(&lua)?;
            hiredis::install(&lua, spec.backend.clone())?;
            set_package_path(&lua, &spec.root)?;
            // SAFETY: out_ptr points into a Box the Runtime keeps for as long as the Lua
            // state lives; the state is used only by the thread that owns the Runtime.
            unsafe {
                lua.exec_raw::<()>(array_mt.clone(), |state| {
                    fast::register(state, out_ptr, 1);
                    ffi::lua_settop(state, 0);
                })?;
            }
            // SAFETY: fast::output_event follows the C function protocol (see fast.rs).
            let out_raw = unsafe { lua.create_c_function(fast::output_event)? };
            let chain: Table = lua
                .load(CHAIN)
                .set_name("=dragonfly-chain")
                .call((out_raw, MAX_HOPS))?;
            df.set("analyze_event", chain.get::<Function>("analyze_event")?)?;
            let output: Function = chain.get("output_event")?;
            df.set("output_event", output.clone())?;
            df.set("forward_event", output)?;
            let by_tag: Table = chain.get("by_tag")?;
            let counts: Table = chain.get("counts")?;
            let mut routes = Routes::default();
            for (i, a) in spec.analyzers.iter().enumerate() {
                routes.analyzers.insert(a.tag.clone(), i);
                by_tag.raw_set(a.tag.as_str(), i + 1)?;
                counts.raw_set(i + 1, 0)?;
            }
            lua.set_app_data(routes);
            lua.set_app_data(Mailbox::default());
            Ok((array_mt, chain))
        };
        let (array_mt, chain) = setup().map_err(runtime_error)?;

        let mut errors = Vec::new();
        let mut load = |s: &ScriptSpec| -> Option<Script> {
            match load_script(&lua, s) {
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
        let get = |name: &str| chain.get::<Function>(name).map_err(runtime_error);
        Ok(Self {
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
        })
    }

    /// Call every script's `setup()` (filters first, in config order), then take `io` away
    /// as the original did before the first `loop()`. Returns every failure.
    pub fn setup(&mut self) -> Vec<ScriptError> {
        let mut errors = Vec::new();
        let loops: Table = match self.chain.get("loops") {
            Ok(t) => t,
            Err(e) => return runtime_error(e),
        };
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
                errors.push(ScriptError {
                    script: s.display.clone(),
                    message: lua_message(&e),
                });
            }
        }
        let _ = self.lua.globals().raw_set("io", Value::Nil);
        errors
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Decode a batch of raw input lines and run each through input `input`'s filter and the
    /// analyzers it hands events to.
    pub fn run_batch(&mut self, input: usize, batch: &Batch) -> mlua::Result<BatchResult> {
        let filter: Function = self.filters[input].env.raw_get("loop")?;
        let mut malformed = Vec::new();
        // SAFETY: decode_batch only pushes values (see fast.rs); the array metatable is the
        // argument at stack index 1 and the events array is left on top as the result.
        let (_, events): (Value, Table) = unsafe {
            self.lua.exec_raw(self.array_mt.clone(), |state| {
                malformed = fast::decode_batch(state, 1, batch);
            })?
        };
        let ran: usize = self
            .run_batch
            .call((filter, -(input as i64) - 1, events, batch.len()))?;
        Ok(BatchResult {
            events: ran,
            malformed,
        })
    }

    /// A timer fired: hand `value` to analyzer `analyzer`.
    pub fn run_timer(&mut self, analyzer: usize, value: Value) -> mlua::Result<()> {
        self.run_one.call((analyzer + 1, value))
    }

    /// Run hand-offs queued outside a batch (by `setup()`).
    pub fn drain(&mut self) -> mlua::Result<()> {
        self.drain.call(())
    }

    /// Failed calls since the last take.
    pub fn take_failures(&mut self) -> Vec<Failure> {
        let Ok(errors) = self.chain.get::<Table>("errors") else {
            return Vec::new();
        };
        let n = errors.raw_len();
        if n == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(n);
        for i in 1..=n {
            let Ok(rec) = errors.raw_get::<Table>(i) else {
                continue;
            };
            let who: i64 = rec.raw_get(1).unwrap_or(0);
            let message: String = rec.raw_get(2).unwrap_or_default();
            let value: Value = rec.raw_get(3).unwrap_or(Value::Nil);
            let (caller, script) = if who < 0 {
                let f = (-who - 1) as usize;
                (
                    Caller::Filter(f),
                    self.filters.get(f).map(|s| s.display.clone()),
                )
            } else {
                let a = (who - 1).max(0) as usize;
                (
                    Caller::Analyzer(a),
                    self.analyzers.get(a).map(|s| s.display.clone()),
                )
            };
            out.push(Failure {
                caller,
                error: ScriptError {
                    script: script.unwrap_or_default(),
                    message,
                },
                event: self.describe(&value, EXCERPT),
            });
        }
        // cleared in place: chain.lua holds this very table
        for i in 1..=n {
            let _ = errors.raw_set(i, Value::Nil);
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
        let mut s = match json::encode_to_vec(v, &self.array_mt) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => format!("<{}>", v.type_name()),
        };
        truncate(&mut s, max);
        s
    }
}

/// Cut a string to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
}

fn load_script(lua: &Lua, s: &ScriptSpec) -> mlua::Result<Script> {
    let globals = lua.globals();
    let env = lua.create_table()?;
    let mt = lua.create_table()?;
    mt.set("__index", globals.clone())?;
    env.set_metatable(Some(mt))?;
    env.raw_set("_G", env.clone())?;
    env.raw_set("default_analyzer", s.default_analyzer.as_str())?;
    if s.kind == ScriptKind::Analyzer {
        env.raw_set("default_output", s.default_output.as_str())?;
    }
    lua.load(&*s.source)
        .set_name(format!("@{}", s.display))
        .set_environment(env.clone())
        .exec()?;
    Ok(Script {
        display: s.display.clone(),
        env,
    })
}

fn set_package_path(lua: &Lua, root: &Path) -> mlua::Result<()> {
    let package: Table = lua.globals().get("package")?;
    let old: String = package.get("path")?;
    let r = root.display();
    let path =
        format!("{r}/?.lua;{r}/?/init.lua;{r}/analyzer/?.lua;{r}/filter/?.lua;{r}/lib/?.lua;{old}");
    package.set("path", path)
}
