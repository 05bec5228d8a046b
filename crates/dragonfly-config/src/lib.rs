//! `config.lua`: the pipeline definition of the original Dragonfly MLE, loaded and checked.
//!
//! The file is plain Lua evaluated once; the engine reads the globals `redis_host`,
//! `redis_port`, `modules`, `inputs`, `analyzers`, `outputs`, and (an extension of ours) the
//! table `engine` with tuning knobs. Every problem found is reported, each naming the file, the
//! table entry and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use mlua::{Lua, LuaOptions, StdLib, Table, Value};

/// One problem in config.lua.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file, as shown in messages.
    pub file: String,
    /// e.g. `inputs[1] (tag "eve")`
    pub entry: Option<String>,
    /// The field, when the problem is one field.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if let Some(e) = &self.entry {
            write!(f, "{e}: ")?;
        }
        if let Some(fl) = &self.field {
            write!(f, "field '{fl}': ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// One entry of `inputs`: where events come from and the filter script they go through.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Where it is in config.lua, for messages: `inputs[2] (tag "eve")` (its real position,
    /// whatever entries before it failed).
    pub entry: String,
    /// Name, unique among inputs (logs, stats).
    pub tag: String,
    /// Where events come from (`file://`, `tail://`, ...).
    pub uri: String,
    /// The script as written in config.lua.
    pub script: String,
    /// The script file found for it.
    pub script_path: PathBuf,
    /// The filter's `default_analyzer` global ("" = none).
    pub default_analyzer: String,
    /// `options = { ["key"] = value, ... }`: client settings passed to the input's library
    /// (librdkafka for kafka://), sorted by key.
    pub options: Vec<(String, String)>,
}

/// One entry of `analyzers`: a script that events are routed to by tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Analyzer {
    /// Where it is in config.lua, for messages: `analyzers[3] (tag "dga")`.
    pub entry: String,
    /// Name, unique among analyzers; `dragonfly.analyze_event(tag, ...)` routes here.
    pub tag: String,
    /// The script as written in config.lua.
    pub script: String,
    /// The script file found for it.
    pub script_path: PathBuf,
    /// The script's `default_analyzer` global ("" = none).
    pub default_analyzer: String,
    /// The script's `default_output` global ("" = none).
    pub default_output: String,
    /// Events of different flows this analyzer may have in progress at once, each waiting
    /// for its Redis replies (ours; 1 = one at a time, as in the original).
    pub concurrency: u32,
}

/// One entry of `outputs`: where `dragonfly.output_event(tag, ...)` writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Where it is in config.lua, for messages: `outputs[1] (tag "alerts")`.
    pub entry: String,
    /// Name, unique among outputs; `dragonfly.output_event(tag, ...)` writes here.
    pub tag: String,
    /// Where lines go.
    pub uri: String,
    /// As for inputs: client settings for the output's library.
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
/// One entry of `modules`: a Redis module the store must have loaded.
pub struct Module {
    /// Where it is in config.lua, for messages: `modules[1] (tag "redisml")`.
    pub entry: String,
    /// Name, for messages.
    pub tag: String,
    /// The module file (checked with `MODULE LIST`).
    pub module: String,
}

/// Where analyzers keep state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// No `redis_host`, or `redis_host = "embedded"`: the in-process store.
    Embedded,
    /// A Redis server over TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `redis_port <= 0`: a Redis server over the unix socket at `redis_host`.
    Unix {
        /// The socket's path (`redis_host` with `redis_port <= 0`).
        path: String,
    },
    /// `redis_cluster = { "host:port", ... }` (ours): a Redis Cluster, reached through any of
    /// these nodes; each command goes to the node that holds its key's slot.
    Cluster {
        /// The seed nodes.
        nodes: Vec<(String, u16)>,
    },
}

/// Tuning knobs: the `engine = { ... }` table (all optional).
#[derive(Debug, Clone, PartialEq)]
pub struct Engine {
    /// Seconds between lines in dragonfly-mle-stats.log.
    pub stats_interval: f64,
    /// Longest input line accepted, in bytes.
    pub max_line_bytes: usize,
    /// Lines handed from an input to the pipeline at a time.
    pub batch_lines: usize,
    /// Batches that may wait between stages before the producer blocks.
    pub queue_batches: usize,
    /// Snapshot file of the embedded store (empty: none); relative to ROOT.
    pub store_snapshot: String,
    /// Seconds between snapshots (one is also written at exit).
    pub store_snapshot_interval: f64,
    /// Worker threads, each with its own Lua runtime running the whole chain.
    pub workers: usize,
    /// The top-level event field whose value picks the worker (events with equal values stay
    /// on one worker, in order).
    pub partition_key: String,
    /// Memory each worker's Lua runtime may hold, in MiB (0: no limit).
    pub lua_memory_mb: usize,
    /// Longest a script call may run, in milliseconds (0: no limit).
    pub script_timeout_ms: u64,
    /// Longest loading the scripts and running every setup() may take, per runtime.
    pub setup_timeout_ms: u64,
    /// Longest the engine waits for a Redis reply, in milliseconds (0: no limit).
    pub redis_timeout_ms: u64,
    /// How long a Redis read polls the socket before it blocks, in microseconds (0: never).
    pub redis_spin_us: u64,
    /// Largest Redis reply accepted, in MiB.
    pub redis_max_reply_mb: usize,
    /// Memory the embedded store may hold, in MiB (0: no limit).
    pub store_maxmemory_mb: u64,
    /// What the embedded store does at its limit (Redis's policy names).
    pub store_maxmemory_policy: String,
    /// Output URI for events whose script failed ("": none).
    pub dead_letter: String,
    /// Seconds to drain at shutdown before giving up.
    pub drain_timeout_s: f64,
    /// Input objects reach scripts as lazy events (decoded as they are read, written back as
    /// their original bytes where unchanged); false decodes each event whole first.
    pub lazy_events: bool,
    /// Address of the HTTP listener (health, metrics, stats); "" = none.
    pub http: String,
    /// What timers and `dragonfly.now()` go by: "wall" (the system's clock) or "event" (the
    /// events' `timestamp`s: the largest seen, minus `clock_lateness_s`).
    pub clock: String,
    /// Under the event clock, how far behind the largest timestamp seen the clock stays.
    pub clock_lateness_s: f64,
}

/// A value read from config.lua, checked against its [`KeyKind`].
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// A number.
    Number(f64),
    /// A string.
    Text(String),
    /// A boolean.
    Bool(bool),
}

impl KeyValue {
    fn num(&self) -> f64 {
        match self {
            KeyValue::Number(n) => *n,
            KeyValue::Text(_) | KeyValue::Bool(_) => 0.0,
        }
    }
    fn text(self) -> String {
        match self {
            KeyValue::Text(s) => s,
            KeyValue::Number(n) => n.to_string(),
            KeyValue::Bool(b) => b.to_string(),
        }
    }
    fn flag(&self) -> bool {
        matches!(self, KeyValue::Bool(true))
    }
}

/// The type and bounds of a config key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyKind {
    /// A number within `[min, max]`; `integer` ones must be whole.
    Number {
        /// Smallest value accepted.
        min: f64,
        /// Largest value accepted.
        max: f64,
        /// Whole numbers only.
        integer: bool,
    },
    /// A string.
    Text,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
}

impl KeyKind {
    /// Check `v`; the error says what was expected and what was found.
    pub fn read(&self, v: &Value) -> Result<KeyValue, String> {
        match (self, v) {
            (KeyKind::Text, Value::String(s)) => Ok(KeyValue::Text(s.to_string_lossy())),
            (KeyKind::Text, other) => Err(format!("must be a string, not a {}", other.type_name())),
            (KeyKind::OneOf(names), Value::String(s)) => {
                let s = s.to_string_lossy();
                if names.contains(&s.as_str()) {
                    Ok(KeyValue::Text(s))
                } else {
                    Err(format!("must be one of {}, got \"{s}\"", names.join(", ")))
                }
            }
            (KeyKind::OneOf(names), other) => Err(format!(
                "must be one of {}, not a {}",
                names.join(", "),
                other.type_name()
            )),
            (KeyKind::Bool, Value::Boolean(b)) => Ok(KeyValue::Bool(*b)),
            (KeyKind::Bool, other) => Err(format!(
                "must be a boolean (true or false), not a {}",
                other.type_name()
            )),
            (KeyKind::Number { min, max, integer }, v) => {
                let n = match v {
                    Value::Integer(n) => *n as f64,
                    Value::Number(n) => *n,
                    other => return Err(format!("must be a number, not a {}", other.type_name())),
                };
                let what = if *integer {
                    "a whole number"
                } else {
                    "a number"
                };
                if !n.is_finite() || n < *min || n > *max || (*integer && n.fract() != 0.0) {
                    return Err(format!("must be {what} from {min} to {max}, got {n}"));
                }
                Ok(KeyValue::Number(n))
            }
        }
    }

    /// How the type reads in the reference table.
    pub fn describe(&self) -> String {
        match self {
            KeyKind::Text => "string".into(),
            KeyKind::OneOf(names) => format!("one of {}", names.join(", ")),
            KeyKind::Bool => "boolean".into(),
            KeyKind::Number { min, max, integer } => {
                let t = if *integer { "integer" } else { "number" };
                format!("{t} {min}..{max}")
            }
        }
    }
}

/// One key of a config section: the single source for parsing, warnings and the reference.
pub struct Key<T> {
    /// The key in config.lua.
    pub name: &'static str,
    /// Its type and bounds.
    pub kind: KeyKind,
    /// The default as written in config.lua.
    pub default: &'static str,
    /// One line for the reference.
    pub doc: &'static str,
    /// Store a checked value.
    pub set: fn(&mut T, KeyValue),
}

const fn int(min: f64, max: f64) -> KeyKind {
    KeyKind::Number {
        min,
        max,
        integer: true,
    }
}

const fn num(min: f64, max: f64) -> KeyKind {
    KeyKind::Number {
        min,
        max,
        integer: false,
    }
}

/// One field of an `inputs`, `analyzers`, `outputs` or `modules` entry: the single source for
/// which fields are known (others warn), which are required, and the reference tables of
/// docs/configuration.md (a test checks them).
pub struct Field {
    /// The field in config.lua.
    pub name: &'static str,
    /// Whether an entry without it is an error.
    pub required: bool,
    /// `options` tables; every other field is a string.
    pub options: bool,
}

const fn field(name: &'static str, required: bool) -> Field {
    Field {
        name,
        required,
        options: false,
    }
}

const OPTIONS: Field = Field {
    name: "options",
    required: false,
    options: true,
};

/// Fields of an `inputs` entry.
pub const INPUT_FIELDS: &[Field] = &[
    field("tag", true),
    field("uri", true),
    field("script", true),
    field("default_analyzer", false),
    OPTIONS,
];
/// Fields of an `analyzers` entry.
pub const ANALYZER_FIELDS: &[Field] = &[
    field("tag", true),
    field("script", true),
    field("default_analyzer", false),
    field("default_output", false),
    field("concurrency", false),
];
/// Fields of an `outputs` entry.
pub const OUTPUT_FIELDS: &[Field] = &[field("tag", true), field("uri", true), OPTIONS];
/// Fields of a `modules` entry.
pub const MODULE_FIELDS: &[Field] = &[field("tag", true), field("module", true)];

/// The config sections made of entries, with their fields.
pub const SECTIONS: &[(&str, &[Field])] = &[
    ("inputs", INPUT_FIELDS),
    ("analyzers", ANALYZER_FIELDS),
    ("outputs", OUTPUT_FIELDS),
    ("modules", MODULE_FIELDS),
];

fn required(fields: &[Field], name: &str) -> bool {
    fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.required)
        .expect("a field of the table")
}

/// Every key of the `engine = { ... }` table. docs/configuration.md lists the same (a test
/// checks it).
pub const ENGINE_KEYS: &[Key<Engine>] = &[
    Key {
        name: "stats_interval",
        kind: num(0.01, 1e9),
        default: "60",
        doc: "seconds between lines in dragonfly-mle-stats.log",
        set: |e, v| e.stats_interval = v.num(),
    },
    Key {
        name: "max_line_bytes",
        kind: int(64.0, 1073741824.0),
        default: "16777216",
        doc: "longer input lines are skipped and counted (oversized)",
        set: |e, v| e.max_line_bytes = v.num() as usize,
    },
    Key {
        name: "batch_lines",
        kind: int(1.0, 1e6),
        default: "256",
        doc: "lines handed from an input to the pipeline at a time",
        set: |e, v| e.batch_lines = v.num() as usize,
    },
    Key {
        name: "queue_batches",
        kind: int(1.0, 1e6),
        default: "64",
        doc: "batches that may wait between stages before backpressure",
        set: |e, v| e.queue_batches = v.num() as usize,
    },
    Key {
        name: "workers",
        kind: int(1.0, 256.0),
        default: "1",
        doc: "Lua runtimes running the whole chain in parallel (docs/architecture.md)",
        set: |e, v| e.workers = v.num() as usize,
    },
    Key {
        name: "partition_key",
        kind: KeyKind::Text,
        default: "\"flow_id\"",
        doc: "top-level field that picks the worker: one flow, one worker, in order",
        set: |e, v| e.partition_key = v.text(),
    },
    Key {
        name: "store_maxmemory_mb",
        kind: int(0.0, 1048576.0),
        default: "0",
        doc: "memory the embedded store may hold, in MiB (estimated per key, as Redis's maxmemory; 0 = no limit)",
        set: |e, v| e.store_maxmemory_mb = v.num() as u64,
    },
    Key {
        name: "store_maxmemory_policy",
        kind: KeyKind::OneOf(MAXMEMORY_POLICIES),
        default: "\"noeviction\"",
        doc: "what the embedded store does at its limit: noeviction refuses writes with Redis's OOM error; allkeys-lru, volatile-lru, allkeys-random, volatile-random, volatile-ttl evict as Redis does",
        set: |e, v| e.store_maxmemory_policy = v.text(),
    },
    Key {
        name: "store_snapshot",
        kind: KeyKind::Text,
        default: "\"\"",
        doc: "embedded store snapshot file, relative to ROOT (\"\" = none)",
        set: |e, v| e.store_snapshot = v.text(),
    },
    Key {
        name: "store_snapshot_interval",
        kind: num(0.01, 1e9),
        default: "60",
        doc: "seconds between snapshots (and one at exit)",
        set: |e, v| e.store_snapshot_interval = v.num(),
    },
    Key {
        name: "lua_memory_mb",
        kind: int(0.0, 1048576.0),
        default: "1024",
        doc: "memory each worker's Lua runtime may hold; past it a call fails with \"not enough memory\" (0 = no limit)",
        set: |e, v| e.lua_memory_mb = v.num() as usize,
    },
    Key {
        name: "script_timeout_ms",
        kind: int(0.0, 86400000.0),
        default: "1000",
        doc: "longest one script call (loop, a timer callback) may run before it is stopped (0 = no limit; setup() has setup_timeout_ms)",
        set: |e, v| e.script_timeout_ms = v.num() as u64,
    },
    Key {
        name: "setup_timeout_ms",
        kind: int(100.0, 3600000.0),
        default: "60000",
        doc: "longest loading every script and running every setup() may take per runtime, at start, at a reload and under --check (time in downloads and store calls counts); past it start-up (or the reload) fails naming the script",
        set: |e, v| e.setup_timeout_ms = v.num() as u64,
    },
    Key {
        name: "redis_timeout_ms",
        kind: int(0.0, 86400000.0),
        default: "10000",
        doc: "longest wait for a Redis reply before the command fails and the connection is reopened (blocking commands wait their own time; 0 = no limit)",
        set: |e, v| e.redis_timeout_ms = v.num() as u64,
    },
    Key {
        name: "redis_max_reply_mb",
        kind: int(1.0, 4096.0),
        default: "64",
        doc: "largest Redis reply accepted, in MiB (its strings plus 64 bytes per element); a larger one fails the command and drops the connection",
        set: |e, v| e.redis_max_reply_mb = v.num() as usize,
    },
    Key {
        name: "redis_spin_us",
        kind: int(0.0, 10000.0),
        default: "100",
        doc: "how long a read from Redis polls the socket before it sleeps, in microseconds: a local server's reply usually comes sooner than a sleeping thread wakes (0 = always sleep; polling rests by itself while the server answers slower)",
        set: |e, v| e.redis_spin_us = v.num() as u64,
    },
    Key {
        name: "dead_letter",
        kind: KeyKind::Text,
        default: "\"file://dead-letter.json\"",
        doc: "output URI for events whose script failed (relative files go to LOGDIR; \"\" = none)",
        set: |e, v| e.dead_letter = v.text(),
    },
    Key {
        name: "drain_timeout_s",
        kind: num(0.0, 86400.0),
        default: "30",
        doc: "at shutdown, seconds to drain what was accepted before exiting non-zero",
        set: |e, v| e.drain_timeout_s = v.num(),
    },
    Key {
        name: "http",
        kind: KeyKind::Text,
        default: "\"\"",
        doc: "HTTP listener for /health, /metrics (Prometheus) and /api/stats, e.g. \"127.0.0.1:7070\" (\"\" = none)",
        set: |e, v| e.http = v.text(),
    },
    Key {
        name: "clock",
        kind: KeyKind::OneOf(&["wall", "event"]),
        default: "\"wall\"",
        doc: "what dragonfly.timer_event delays and dragonfly.now() go by: wall (the system's clock) or event (the events' timestamp fields: the largest seen so far minus clock_lateness_s, per worker; for replays of captures, and `dragonfly-mle test`; docs/configuration.md)",
        set: |e, v| e.clock = v.text(),
    },
    Key {
        name: "clock_lateness_s",
        kind: num(0.0, 86400.0),
        default: "0",
        doc: "under clock = \"event\": how many seconds the clock stays behind the largest timestamp seen (events that come that late still count before a timer due then fires)",
        set: |e, v| e.clock_lateness_s = v.num(),
    },
    Key {
        name: "lazy_events",
        kind: KeyKind::Bool,
        default: "true",
        doc: "decode event fields only as scripts read them, write unchanged ones back as their input bytes (docs/lua-api.md)",
        set: |e, v| e.lazy_events = v.flag(),
    },
];

impl Default for Engine {
    fn default() -> Self {
        Self {
            stats_interval: 60.0,
            max_line_bytes: 16 * 1024 * 1024,
            batch_lines: 256,
            queue_batches: 64,
            store_snapshot: String::new(),
            store_snapshot_interval: 60.0,
            workers: 1,
            partition_key: "flow_id".into(),
            lua_memory_mb: 1024,
            script_timeout_ms: 1000,
            setup_timeout_ms: 60000,
            redis_timeout_ms: 10000,
            redis_spin_us: 100,
            redis_max_reply_mb: 64,
            store_maxmemory_mb: 0,
            store_maxmemory_policy: "noeviction".into(),
            dead_letter: "file://dead-letter.json".into(),
            drain_timeout_s: 30.0,
            lazy_events: true,
            http: String::new(),
            clock: "wall".into(),
            clock_lateness_s: 0.0,
        }
    }
}

/// `engine.store_maxmemory_policy`'s names (Redis's).
pub const MAXMEMORY_POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "volatile-lru",
    "allkeys-random",
    "volatile-random",
    "volatile-ttl",
];

/// A checked config.lua: the store, the modules, the pipeline's inputs, analyzers and outputs,
/// and the engine's knobs; every script file resolved. Made by [`load`] or [`parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The config file, relative to ROOT where possible (for messages).
    pub file: String,
    /// Where analyzers keep state.
    pub store: Store,
    /// Redis modules the store must have.
    pub modules: Vec<Module>,
    /// Inputs, in config order.
    pub inputs: Vec<Input>,
    /// Analyzers, in config order.
    pub analyzers: Vec<Analyzer>,
    /// Outputs, in config order.
    pub outputs: Vec<Output>,
    /// The `engine = { ... }` knobs.
    pub engine: Engine,
    /// Things that are not errors but deserve a word (unknown keys, ...).
    pub warnings: Vec<String>,
}

/// Find ROOT/config/config.lua, or ROOT/scripts/config.lua.
pub fn find(root: &Path) -> Option<PathBuf> {
    ["config/config.lua", "scripts/config.lua"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
}

/// Load and check the configuration of ROOT.
pub fn load(root: &Path) -> Result<Config, ConfigErrors> {
    let Some(path) = find(root) else {
        return Err(ConfigErrors(vec![ConfigError {
            file: root.join("config/config.lua").display().to_string(),
            entry: None,
            field: None,
            message: "not found (also looked for scripts/config.lua)".into(),
        }]));
    };
    let source = std::fs::read_to_string(&path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            entry: None,
            field: None,
            message: e.to_string(),
        }])
    })?;
    let display = path
        .strip_prefix(root)
        .unwrap_or(&path)
        .display()
        .to_string();
    parse(&source, &display, root)
}

/// Like [`load`], but errors do not hide what else is there: unless config.lua cannot be
/// found, read or run, the config comes back with what did parse (entries with errors left
/// out) beside every error, so a checker can look further (schemes, scripts) and report
/// every problem at once.
pub fn load_all(root: &Path) -> (Option<Config>, Vec<ConfigError>) {
    let read = find(root).and_then(|path| std::fs::read_to_string(&path).ok().map(|s| (path, s)));
    let Some((path, source)) = read else {
        // not found or unreadable: load says which
        return (None, load(root).err().map(|e| e.0).unwrap_or_default());
    };
    let display = path
        .strip_prefix(root)
        .unwrap_or(&path)
        .display()
        .to_string();
    match parse_partial(&source, &display, root) {
        Ok((config, errors)) => (Some(config), errors),
        Err(e) => (None, e.0),
    }
}

/// Evaluate config source text; script files are looked up under `root`.
pub fn parse(source: &str, file: &str, root: &Path) -> Result<Config, ConfigErrors> {
    let (config, errors) = parse_partial(source, file, root)?;
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Longest config.lua may run: its top level, and whatever reading its tables runs
/// (metamethods). Past it, evaluation stops with an error instead of hanging start-up, a
/// `--check` or a reload.
pub const CONFIG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Memory config.lua's Lua state may hold.
pub const CONFIG_MEMORY: usize = 256 << 20;

/// A Lua state for config.lua: the safe standard libraries, JIT off (a compiled loop never
/// runs a hook; config.lua is small) and `jit` gone (so it cannot be turned back on), a
/// memory limit ([`CONFIG_MEMORY`]) and a deadline ([`CONFIG_TIMEOUT`]) checked by a hook at
/// every instruction (a config.lua runs a few thousand). Past the deadline the hook raises an
/// error at every instruction, so a script that catches it with `pcall` and goes on is unwound
/// to the top within a few instructions per `pcall` level.
fn config_state() -> mlua::Result<Lua> {
    use mlua::{HookTriggers, VmState};
    let lua = Lua::new_with(StdLib::ALL_SAFE, LuaOptions::default())?;
    lua.set_memory_limit(CONFIG_MEMORY)?;
    lua.load(
        "jit.off() jit.flush() jit = nil package.loaded.jit = nil
         for k in pairs(package.preload) do if k:find('^jit') then package.preload[k] = nil end end",
    )
    .set_name("=config-setup")
    .exec()?;
    let deadline = std::time::Instant::now() + CONFIG_TIMEOUT;
    lua.set_hook(HookTriggers::new().every_nth_instruction(1), move |_, _| {
        if std::time::Instant::now() < deadline {
            Ok(VmState::Continue)
        } else {
            Err(mlua::Error::runtime(timeout_message()))
        }
    })?;
    Ok(lua)
}

fn timeout_message() -> String {
    format!(
        "config.lua ran longer than {} s (an endless loop?): stopped",
        CONFIG_TIMEOUT.as_secs()
    )
}

/// What parsed, and every error (Err: the source does not run at all).
fn parse_partial(
    source: &str,
    file: &str,
    root: &Path,
) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
    let mut p = Parser {
        file: file.to_string(),
        errors: Vec::new(),
        warnings: Vec::new(),
        root: root.to_path_buf(),
    };
    let lua = config_state().map_err(|e| ConfigErrors(vec![p.err(None, None, e.to_string())]))?;
    if let Err(e) = lua.load(source).set_name(format!("@{file}")).exec() {
        let msg = e.to_string();
        let msg = msg.split("\nstack traceback:").next().unwrap_or(&msg);
        return Err(ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            entry: None,
            field: None,
            message: format!("Lua error: {}", msg.trim_start_matches("runtime error: ")),
        }]));
    }
    let g = lua.globals();
    let store = p.store(&g);
    let modules = p.list(
        &g,
        "modules",
        false,
        |p, entry, t| {
            let f = MODULE_FIELDS;
            Some(Module {
                entry: entry.to_string(),
                tag: p.string(entry, t, "tag", required(f, "tag"))?,
                module: p.string(entry, t, "module", required(f, "module"))?,
            })
        },
        MODULE_FIELDS,
    );
    let inputs = p.list(
        &g,
        "inputs",
        true,
        |p, entry, t| {
            let f = INPUT_FIELDS;
            let tag = p.string(entry, t, "tag", required(f, "tag"));
            let uri = p.string(entry, t, "uri", required(f, "uri"));
            let script = p.string(entry, t, "script", required(f, "script"));
            let default_analyzer = p
                .string(
                    entry,
                    t,
                    "default_analyzer",
                    required(f, "default_analyzer"),
                )
                .unwrap_or_default();
            let script_path = script.as_ref().and_then(|s| p.script(entry, "filter", s));
            let options = p.options(entry, t);
            Some(Input {
                entry: entry.to_string(),
                tag: tag?,
                uri: uri?,
                script: script?,
                script_path: script_path?,
                default_analyzer,
                options,
            })
        },
        INPUT_FIELDS,
    );
    let analyzers = p.list(
        &g,
        "analyzers",
        true,
        |p, entry, t| {
            let f = ANALYZER_FIELDS;
            let tag = p.string(entry, t, "tag", required(f, "tag"));
            let script = p.string(entry, t, "script", required(f, "script"));
            let default_analyzer = p
                .string(
                    entry,
                    t,
                    "default_analyzer",
                    required(f, "default_analyzer"),
                )
                .unwrap_or_default();
            let default_output = p
                .string(entry, t, "default_output", required(f, "default_output"))
                .unwrap_or_default();
            let script_path = script.as_ref().and_then(|s| p.script(entry, "analyzer", s));
            let concurrency = p.concurrency(entry, t);
            Some(Analyzer {
                entry: entry.to_string(),
                tag: tag?,
                script: script?,
                script_path: script_path?,
                default_analyzer,
                default_output,
                concurrency,
            })
        },
        ANALYZER_FIELDS,
    );
    let outputs = p.list(
        &g,
        "outputs",
        true,
        |p, entry, t| {
            let f = OUTPUT_FIELDS;
            let tag = p.string(entry, t, "tag", required(f, "tag"));
            let uri = p.string(entry, t, "uri", required(f, "uri"));
            let options = p.options(entry, t);
            Some(Output {
                entry: entry.to_string(),
                tag: tag?,
                uri: uri?,
                options,
            })
        },
        OUTPUT_FIELDS,
    );
    let engine = p.engine(&g);

    p.check_tags(&inputs, &analyzers, &outputs);
    Ok((
        Config {
            file: file.to_string(),
            store,
            modules,
            inputs,
            analyzers,
            outputs,
            engine,
            warnings: p.warnings,
        },
        p.errors,
    ))
}

struct Parser {
    file: String,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    root: PathBuf,
}

fn entry_name(list: &str, i: usize, t: &Table) -> String {
    match t.raw_get::<Value>("tag") {
        Ok(Value::String(s)) => format!("{list}[{i}] (tag \"{}\")", s.to_string_lossy()),
        _ => format!("{list}[{i}]"),
    }
}

impl Parser {
    fn err(
        &self,
        entry: Option<&str>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            entry: entry.map(str::to_string),
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    fn push(&mut self, entry: Option<&str>, field: Option<&str>, message: impl Into<String>) {
        let e = self.err(entry, field, message);
        self.errors.push(e);
    }

    /// An analyzer's `concurrency`: a whole number from 1 to 1024 (default 1).
    fn concurrency(&mut self, entry: &str, t: &Table) -> u32 {
        let n = match t.raw_get::<Value>("concurrency") {
            Ok(Value::Nil) | Err(_) => return 1,
            Ok(Value::Integer(n)) => n as f64,
            Ok(Value::Number(n)) => n,
            Ok(other) => {
                self.push(
                    Some(entry),
                    Some("concurrency"),
                    format!("must be a number, not a {}", other.type_name()),
                );
                return 1;
            }
        };
        if n.fract() != 0.0 || !(1.0..=1024.0).contains(&n) {
            self.push(
                Some(entry),
                Some("concurrency"),
                format!("{n} is not a whole number from 1 to 1024"),
            );
            return 1;
        }
        n as u32
    }

    fn string(&mut self, entry: &str, t: &Table, field: &str, required: bool) -> Option<String> {
        match t.raw_get::<Value>(field) {
            Ok(Value::String(s)) => Some(s.to_string_lossy()),
            Ok(Value::Integer(n)) => Some(n.to_string()),
            Ok(Value::Nil) if !required => None,
            Ok(Value::Nil) => {
                self.push(Some(entry), Some(field), "missing (required)");
                None
            }
            Ok(other) => {
                self.push(
                    Some(entry),
                    Some(field),
                    format!("must be a string, not a {}", other.type_name()),
                );
                None
            }
            Err(e) => {
                self.push(Some(entry), Some(field), e.to_string());
                None
            }
        }
    }

    /// `options = { key = value }` (strings, numbers, booleans), sorted by key.
    fn options(&mut self, entry: &str, t: &Table) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match t.raw_get::<Value>("options") {
            Ok(Value::Nil) => {}
            Ok(Value::Table(o)) => {
                for pair in o.pairs::<Value, Value>() {
                    let Ok((k, v)) = pair else { continue };
                    let key = match k {
                        Value::String(s) => s.to_string_lossy(),
                        other => {
                            self.push(
                                Some(entry),
                                Some("options"),
                                format!("keys must be strings, not a {}", other.type_name()),
                            );
                            continue;
                        }
                    };
                    let val = match v {
                        Value::String(s) => s.to_string_lossy(),
                        Value::Integer(n) => n.to_string(),
                        Value::Number(n) => n.to_string(),
                        Value::Boolean(b) => b.to_string(),
                        other => {
                            self.push(
                                Some(entry),
                                Some("options"),
                                format!(
                                    "'{key}' must be a string, number or boolean, not a {}",
                                    other.type_name()
                                ),
                            );
                            continue;
                        }
                    };
                    out.push((key, val));
                }
            }
            Ok(other) => self.push(
                Some(entry),
                Some("options"),
                format!("must be a table, not a {}", other.type_name()),
            ),
            Err(e) => self.push(Some(entry), Some("options"), e.to_string()),
        }
        out.sort();
        out
    }

    /// Resolve a script: absolute as given, else ROOT/<dir>/<script>, else ROOT/<script>.
    fn script(&mut self, entry: &str, dir: &str, script: &str) -> Option<PathBuf> {
        let p = Path::new(script);
        let candidates: Vec<PathBuf> = if p.is_absolute() {
            vec![p.to_path_buf()]
        } else {
            vec![self.root.join(dir).join(p), self.root.join(p)]
        };
        match candidates.iter().find(|c| c.is_file()) {
            Some(c) => Some(c.clone()),
            None => {
                self.push(
                    Some(entry),
                    Some("script"),
                    format!("script file not found: {}", candidates[0].display()),
                );
                None
            }
        }
    }

    fn list<T>(
        &mut self,
        g: &Table,
        name: &str,
        required: bool,
        mut item: impl FnMut(&mut Self, &str, &Table) -> Option<T>,
        fields: &[Field],
    ) -> Vec<T> {
        let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
        let t = match g.raw_get::<Value>(name) {
            Ok(Value::Table(t)) => t,
            Ok(Value::Nil) => {
                if required {
                    self.push(None, Some(name), "missing (required): a list of tables");
                }
                return Vec::new();
            }
            Ok(other) => {
                self.push(
                    None,
                    Some(name),
                    format!("must be a list of tables, not a {}", other.type_name()),
                );
                return Vec::new();
            }
            Err(e) => {
                self.push(None, Some(name), e.to_string());
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for i in 1..=t.raw_len() {
            match t.raw_get::<Value>(i) {
                Ok(Value::Table(e)) => {
                    let entry = entry_name(name, i, &e);
                    self.unknown_keys(&entry, &e, &known);
                    if let Some(v) = item(self, &entry, &e) {
                        out.push(v);
                    }
                }
                Ok(other) => self.push(
                    Some(&format!("{name}[{i}]")),
                    None,
                    format!("must be a table, not a {}", other.type_name()),
                ),
                Err(e) => self.push(Some(&format!("{name}[{i}]")), None, e.to_string()),
            }
        }
        out
    }

    fn unknown_keys(&mut self, entry: &str, t: &Table, known: &[&str]) {
        for pair in t.pairs::<Value, Value>() {
            let Ok((k, _)) = pair else { continue };
            let name = match &k {
                Value::String(s) => s.to_string_lossy(),
                other => format!("{other:?}"),
            };
            if !known.contains(&name.as_str()) {
                self.warnings.push(format!(
                    "{}: {entry}: unknown key '{name}' is ignored (known: {})",
                    self.file,
                    known.join(", ")
                ));
            }
        }
    }

    fn store(&mut self, g: &Table) -> Store {
        let host = match g.raw_get::<Value>("redis_host") {
            Ok(Value::String(s)) => Some(s.to_string_lossy()),
            Ok(Value::Nil) => None,
            Ok(other) => {
                self.push(
                    None,
                    Some("redis_host"),
                    format!("must be a string, not a {}", other.type_name()),
                );
                None
            }
            Err(_) => None,
        };
        let port: i64 = match g.raw_get::<Value>("redis_port") {
            Ok(Value::Integer(n)) => n,
            Ok(Value::Number(n)) => n as i64,
            Ok(Value::String(s)) => match s.to_string_lossy().trim().parse() {
                Ok(n) => n,
                Err(_) => {
                    self.push(
                        None,
                        Some("redis_port"),
                        format!("'{}' is not a number", s.to_string_lossy()),
                    );
                    6379
                }
            },
            Ok(Value::Nil) => 6379,
            Ok(other) => {
                self.push(
                    None,
                    Some("redis_port"),
                    format!("must be a number, not a {}", other.type_name()),
                );
                6379
            }
            Err(_) => 6379,
        };
        if let Some(nodes) = self.cluster(g) {
            if host
                .as_deref()
                .is_some_and(|h| !h.is_empty() && h != "embedded")
            {
                self.push(
                    None,
                    Some("redis_cluster"),
                    "set redis_cluster or redis_host, not both",
                );
            }
            return Store::Cluster { nodes };
        }
        match host {
            None => Store::Embedded,
            Some(h) if h.is_empty() || h == "embedded" => Store::Embedded,
            Some(h) if port <= 0 => Store::Unix { path: h },
            Some(h) => match u16::try_from(port) {
                Ok(port) => Store::Tcp { host: h, port },
                Err(_) => {
                    self.push(
                        None,
                        Some("redis_port"),
                        format!("{port} is not a TCP port"),
                    );
                    Store::Embedded
                }
            },
        }
    }

    /// `redis_cluster`, if set: a list of "host:port" strings.
    fn cluster(&mut self, g: &Table) -> Option<Vec<(String, u16)>> {
        let list = match g.raw_get::<Value>("redis_cluster") {
            Ok(Value::Table(t)) => t,
            Ok(Value::Nil) | Err(_) => return None,
            Ok(other) => {
                self.push(
                    None,
                    Some("redis_cluster"),
                    format!(
                        "must be a list of \"host:port\" strings, not a {}",
                        other.type_name()
                    ),
                );
                return None;
            }
        };
        let mut nodes = Vec::new();
        for (i, v) in list.sequence_values::<Value>().enumerate() {
            let node = match v {
                Ok(Value::String(s)) => {
                    let text = s.to_string_lossy();
                    text.rsplit_once(':')
                        .and_then(|(h, p)| {
                            Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?))
                        })
                        .filter(|(h, p): &(String, u16)| !h.is_empty() && *p > 0)
                        .ok_or_else(|| format!("entry {}: '{text}' is not host:port", i + 1))
                }
                Ok(other) => Err(format!(
                    "entry {}: must be a \"host:port\" string, not a {}",
                    i + 1,
                    other.type_name()
                )),
                Err(e) => Err(format!("entry {}: {e}", i + 1)),
            };
            match node {
                Ok(n) => nodes.push(n),
                Err(e) => self.push(None, Some("redis_cluster"), e),
            }
        }
        if nodes.is_empty() {
            self.push(
                None,
                Some("redis_cluster"),
                "needs at least one \"host:port\" node",
            );
            return None;
        }
        Some(nodes)
    }

    fn engine(&mut self, g: &Table) -> Engine {
        let mut e = Engine::default();
        let t = match g.raw_get::<Value>("engine") {
            Ok(Value::Table(t)) => t,
            Ok(Value::Nil) => return e,
            Ok(other) => {
                self.push(
                    None,
                    Some("engine"),
                    format!("must be a table, not a {}", other.type_name()),
                );
                return e;
            }
            Err(_) => return e,
        };
        let known: Vec<&str> = ENGINE_KEYS.iter().map(|k| k.name).collect();
        self.unknown_keys("engine", &t, &known);
        for key in ENGINE_KEYS {
            let v = match t.raw_get::<Value>(key.name) {
                Ok(Value::Nil) | Err(_) => continue,
                Ok(v) => v,
            };
            match key.kind.read(&v) {
                Ok(val) => (key.set)(&mut e, val),
                Err(msg) => self.push(Some("engine"), Some(key.name), msg),
            }
        }
        if !e.http.is_empty() {
            let port = e.http.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
            if !matches!(port, Some((h, Ok(_))) if !h.is_empty()) {
                self.push(
                    Some("engine"),
                    Some("http"),
                    format!(
                        "\"{}\" is not an address to listen on: expected HOST:PORT, a port from 0 to 65535 (e.g. \"127.0.0.1:7070\")",
                        e.http
                    ),
                );
                // (not kept: nothing later tries it again)
                e.http.clear();
            }
        }
        e
    }

    fn check_tags(&mut self, inputs: &[Input], analyzers: &[Analyzer], outputs: &[Output]) {
        // (entry, tag): entries name their real place, whatever failed before them
        let dup = |tags: Vec<(&str, &str)>, p: &mut Self| {
            let mut seen = std::collections::HashSet::new();
            for (entry, t) in tags {
                if !seen.insert(t) {
                    p.push(Some(entry), Some("tag"), "duplicate tag");
                }
            }
        };
        dup(
            inputs
                .iter()
                .map(|i| (i.entry.as_str(), i.tag.as_str()))
                .collect(),
            self,
        );
        dup(
            analyzers
                .iter()
                .map(|i| (i.entry.as_str(), i.tag.as_str()))
                .collect(),
            self,
        );
        dup(
            outputs
                .iter()
                .map(|i| (i.entry.as_str(), i.tag.as_str()))
                .collect(),
            self,
        );
        let atags: Vec<&str> = analyzers.iter().map(|a| a.tag.as_str()).collect();
        let otags: Vec<&str> = outputs.iter().map(|o| o.tag.as_str()).collect();
        for inp in inputs {
            if !inp.default_analyzer.is_empty() && !atags.contains(&inp.default_analyzer.as_str()) {
                self.push(
                    Some(&inp.entry),
                    Some("default_analyzer"),
                    format!(
                        "names no analyzer: '{}' (analyzers: {})",
                        inp.default_analyzer,
                        atags.join(", ")
                    ),
                );
            }
        }
        for a in analyzers {
            let entry = a.entry.as_str();
            if !a.default_analyzer.is_empty() && !atags.contains(&a.default_analyzer.as_str()) {
                self.push(
                    Some(entry),
                    Some("default_analyzer"),
                    format!(
                        "names no analyzer: '{}' (analyzers: {})",
                        a.default_analyzer,
                        atags.join(", ")
                    ),
                );
            }
            if !a.default_output.is_empty() && !otags.contains(&a.default_output.as_str()) {
                self.push(
                    Some(entry),
                    Some("default_output"),
                    format!(
                        "names no output: '{}' (outputs: {})",
                        a.default_output,
                        otags.join(", ")
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
