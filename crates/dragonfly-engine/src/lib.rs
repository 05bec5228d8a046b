//! The Dragonfly pipeline: inputs -> filter script -> analyzers -> outputs.
//!
//! ```text
//!  source thread ──Batch of raw lines──▶ worker (one Lua runtime: filter + analyzers) ──Batch of
//!  (one per input)   bounded channel       events cross scripts as Lua values          encoded lines──▶ sink thread
//!                                                                                       bounded channel  (one per output)
//! ```
//!
//! Building happens in phases so the CLI can drop privileges and chroot in between:
//! [`Plan::new`] (read config and scripts) -> [`Plan::prepare`] (open files, bind sockets) ->
//! [`Prepared::start`] (spawn threads, run every `setup()`) -> [`Running::wait`] (until
//! SIGTERM, or end of input with `--exit-on-eof`; then drain and flush).

pub mod enginelog;
pub mod partition;
pub mod sinks;
pub mod stats;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use dragonfly_config::{Config, Store};
use dragonfly_io::sinks::file::FileSink;
use dragonfly_io::sources::Prepared as PreparedSource;
use dragonfly_io::{open_sink, Batch, Emit, Sink, SinkSpec, SourceCtx, SourceSpec};
use dragonfly_lua::{Backend, Limits, Runtime, RuntimeSpec, ScriptKind, ScriptSpec};
use dragonfly_store::embedded::EmbeddedStore;
use dragonfly_store::redis_backend::{RedisAddr, RedisTarget};

pub mod store;

/// Where scripts' `dragonfly.echo` lines go (the CLI points it at its non-blocking stderr).
pub use dragonfly_lua::libs::dragonfly::set_echo;

use enginelog::EngineLog;
use sinks::SinkRunner;
use stats::Stats;
use worker::{WorkItem, Worker, WorkerSinks};

/// The engine log (script `log_event` records and engine problems), in LOGDIR.
pub const LOG_FILE: &str = "dragonfly-mle.log";
/// The stats log, in LOGDIR.
pub const STATS_FILE: &str = "dragonfly-mle-stats.log";

/// Process exit codes (documented in the README).
pub mod exit {
    /// Every event was processed without a script failure.
    pub const OK: u8 = 0;
    /// Start-up failed: a script, a file, a socket, a `setup()`.
    pub const START_UP: u8 = 1;
    /// config.lua is wrong.
    pub const CONFIG: u8 = 2;
    /// The run finished, but some events failed in a script (they are in the dead letters).
    pub const SCRIPT_FAILURES: u8 = 3;
    /// The engine stopped abnormally: an internal failure (a panic, a thread that died) or a
    /// drain that did not finish within `engine.drain_timeout_s`.
    pub const INTERNAL: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{}", .0.join("\n"))]
    Problems(Vec<String>),
    #[error("{0}")]
    Io(String),
}

/// Command-line settings that shape the engine.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    pub logdir: PathBuf,
    pub exit_on_eof: bool,
    /// `-c`: the engine will chroot into ROOT once everything is open.
    pub chroot: bool,
}

/// With `-c`: a path the engine opens again after the chroot (an output or log reopened for
/// rotation, a followed file, a checkpoint) must lie under ROOT; it is rewritten relative to
/// ROOT, which names the same file before the chroot (the engine runs in ROOT) and after it.
/// Anything else is refused, naming the path.
fn confine(root: &Path, what: &str, p: &Path) -> Result<PathBuf, String> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    // compare real locations: resolve the deepest directory that exists
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut real = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    for name in rest.iter().rev() {
        real.push(name);
    }
    let root_real = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    match real.strip_prefix(&root_real) {
        Ok(rel) if rel.as_os_str().is_empty() => Ok(PathBuf::from(".")),
        Ok(rel) => Ok(rel.to_path_buf()),
        Err(_) => Err(format!(
            "{what} {}: with -c it must be under ROOT ({}): after the chroot the engine could not reopen it \
             (rotation, SIGHUP); move it under ROOT or run without -c",
            p.display(),
            root.display()
        )),
    }
}

/// Signals from outside (the CLI's signal handler).
#[derive(Clone, Default)]
pub struct Control {
    /// Stop: inputs stop, everything accepted is drained and flushed.
    pub shutdown: Arc<AtomicBool>,
    /// Bumped to make every file output reopen (log rotation).
    pub reopen: Arc<AtomicU64>,
}

/// A configuration with its scripts read and its URIs understood.
pub struct Plan {
    config: Config,
    options: Options,
    runtime: RuntimeSpec,
    sources: Vec<SourceSpec>,
    sinks: Vec<SinkSpec>,
    /// Where failed events go (`engine.dead_letter`).
    dead_letter: Option<SinkSpec>,
    /// Snapshot file of the embedded store, if any.
    snapshot: Option<PathBuf>,
}

fn display_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

impl Plan {
    pub fn new(config: Config, options: Options) -> Result<Plan, EngineError> {
        let mut problems = Vec::new();
        let file = config.file.clone();
        let mut read = |tag: &str, kind: ScriptKind, path: &Path, da: &str, dout: &str| {
            match std::fs::read_to_string(path) {
                Ok(src) => Some(ScriptSpec {
                    tag: tag.to_string(),
                    kind,
                    display: display_path(&options.root, path),
                    source: src.into(),
                    default_analyzer: da.to_string(),
                    default_output: dout.to_string(),
                }),
                Err(e) => {
                    problems.push(format!("{}: cannot read script: {e}", path.display()));
                    None
                }
            }
        };
        let filters: Vec<_> = config
            .inputs
            .iter()
            .filter_map(|i| {
                read(
                    &i.tag,
                    ScriptKind::Filter,
                    &i.script_path,
                    &i.default_analyzer,
                    "",
                )
            })
            .collect();
        let analyzers: Vec<_> = config
            .analyzers
            .iter()
            .filter_map(|a| {
                read(
                    &a.tag,
                    ScriptKind::Analyzer,
                    &a.script_path,
                    &a.default_analyzer,
                    &a.default_output,
                )
            })
            .collect();
        let mut sources = Vec::new();
        for (i, inp) in config.inputs.iter().enumerate() {
            let entry = format!("{file}: inputs[{}] (tag \"{}\")", i + 1, inp.tag);
            match SourceSpec::parse(&inp.uri) {
                Ok(s) => match s.with_options(&inp.options) {
                    Ok(s) => sources.push(s),
                    Err(e) => problems.push(format!("{entry}: field 'options': {e}")),
                },
                Err(e) => problems.push(format!("{entry}: field 'uri': {e}")),
            }
        }
        let mut sinks = Vec::new();
        for (i, out) in config.outputs.iter().enumerate() {
            match SinkSpec::parse(&out.uri, &options.logdir)
                .and_then(|s| s.with_options(&out.options))
            {
                Ok(s) => sinks.push(s),
                Err(e) => problems.push(format!(
                    "{file}: outputs[{}] (tag \"{}\"): field 'uri': {e}",
                    i + 1,
                    out.tag
                )),
            }
        }
        if options.chroot {
            for (i, s) in sources.iter_mut().enumerate() {
                let what = format!(
                    "{file}: inputs[{}] (tag \"{}\"):",
                    i + 1,
                    config.inputs[i].tag
                );
                if let Err(e) =
                    s.confine(&mut |kind, p| confine(&options.root, &format!("{what} {kind}"), p))
                {
                    problems.push(e);
                }
            }
            for (i, s) in sinks.iter_mut().enumerate() {
                let what = format!(
                    "{file}: outputs[{}] (tag \"{}\"): file",
                    i + 1,
                    config.outputs[i].tag
                );
                if let SinkSpec::File(p) | SinkSpec::Ipc(p) = s {
                    match confine(&options.root, &what, p) {
                        Ok(rel) => *p = rel,
                        Err(e) => problems.push(e),
                    }
                }
            }
        }
        let dead_letter = if config.engine.dead_letter.is_empty() {
            None
        } else {
            match SinkSpec::parse(&config.engine.dead_letter, &options.logdir) {
                Ok(SinkSpec::File(p)) if options.chroot => {
                    match confine(&options.root, &format!("{file}: engine.dead_letter"), &p) {
                        Ok(rel) => Some(SinkSpec::File(rel)),
                        Err(e) => {
                            problems.push(e);
                            None
                        }
                    }
                }
                Ok(s) => Some(s),
                Err(e) => {
                    problems.push(format!("{file}: engine: field 'dead_letter': {e}"));
                    None
                }
            }
        };
        let backend = match &config.store {
            Store::Embedded => Backend::Embedded(EmbeddedStore::new()),
            Store::Tcp { host, port } => Backend::Redis(RedisTarget::new(RedisAddr::Tcp {
                host: host.clone(),
                port: *port,
            })),
            Store::Unix { path } => {
                Backend::Redis(RedisTarget::new(RedisAddr::Unix { path: path.clone() }))
            }
        };
        let snapshot = (!config.engine.store_snapshot.is_empty())
            .then(|| options.root.join(&config.engine.store_snapshot));
        if snapshot.is_some() && !matches!(backend, Backend::Embedded(_)) {
            tracing::warn!("engine.store_snapshot applies to the embedded store only; it is ignored with redis_host set");
        }
        if !problems.is_empty() {
            return Err(EngineError::Problems(problems));
        }
        let runtime = RuntimeSpec {
            root: options.root.clone(),
            filters,
            analyzers,
            outputs: config.outputs.iter().map(|o| o.tag.clone()).collect(),
            backend,
            limits: Limits {
                memory: config.engine.lua_memory_mb << 20,
                script_timeout: Duration::from_millis(config.engine.script_timeout_ms),
            },
        };
        Ok(Plan {
            config,
            options,
            runtime,
            sources,
            sinks,
            dead_letter,
            snapshot,
        })
    }

    /// The store scripts reach through `hiredis.connect()`.
    pub fn backend(&self) -> &Backend {
        &self.runtime.backend
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `--check`: build a runtime and run every `setup()`, without any input or output.
    /// Returns every problem found.
    pub fn check(&self) -> Vec<String> {
        match Runtime::new(&self.runtime) {
            Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
            Ok(mut rt) => rt
                .setup()
                .iter()
                .map(|e| format!("{e} (in setup)"))
                .collect(),
        }
    }

    /// Whether every input ends by itself.
    pub fn all_inputs_finite(&self) -> bool {
        self.sources.iter().all(SourceSpec::is_finite)
    }

    /// Open every file and bind every socket (before privileges are dropped).
    pub fn prepare(self) -> Result<Prepared, EngineError> {
        let logdir_existed = self.options.logdir.is_dir();
        std::fs::create_dir_all(&self.options.logdir).map_err(|e| {
            EngineError::Io(format!(
                "cannot create log directory {}: {e}",
                self.options.logdir.display()
            ))
        })?;
        let mut problems = store::check_modules(&self.config, &self.runtime.backend);
        // The directories of state files (checkpoints, the store snapshot) must exist: the
        // files are written later, by then perhaps as `nobody` or inside a chroot.
        let mut state_dirs = Vec::new();
        let state_files = self
            .sources
            .iter()
            .zip(&self.config.inputs)
            .filter_map(|(s, i)| {
                s.checkpoint()
                    .map(|c| (format!("input '{}': checkpoint", i.tag), c.to_path_buf()))
            })
            .chain(
                self.snapshot
                    .iter()
                    .map(|p| ("engine.store_snapshot".to_string(), p.clone())),
            );
        for (what, file) in state_files {
            let file = self.options.root.join(file);
            let Some(dir) = file.parent().map(Path::to_path_buf) else {
                continue;
            };
            let existed = dir.is_dir();
            match std::fs::create_dir_all(&dir) {
                Ok(()) => state_dirs.push(StateDir {
                    what,
                    dir,
                    created: !existed,
                }),
                Err(e) => problems.push(format!(
                    "{what} {}: cannot create its directory {}: {e}",
                    file.display(),
                    dir.display()
                )),
            }
        }
        if let (Some(path), Backend::Embedded(db)) = (&self.snapshot, &self.runtime.backend) {
            match db.load(path) {
                Ok(n) => tracing::info!(path = %path.display(), keys = n, "embedded store loaded"),
                Err(e) => problems.push(format!(
                    "engine.store_snapshot: cannot load {}: {e}",
                    path.display()
                )),
            }
        }
        let mut sources = Vec::new();
        for (spec, inp) in self.sources.iter().zip(&self.config.inputs) {
            match spec.prepare(self.config.engine.max_line_bytes) {
                Ok(p) => sources.push(p),
                Err(e) => problems.push(format!("input '{}' ({}): {e}", inp.tag, inp.uri)),
            }
        }
        let mut sinks = Vec::new();
        for (spec, out) in self.sinks.iter().zip(&self.config.outputs) {
            match open_sink(spec) {
                Ok(s) => sinks.push(s),
                Err(e) => problems.push(format!("output '{}' ({}): {e}", out.tag, out.uri)),
            }
        }
        let dead = match &self.dead_letter {
            None => None,
            Some(spec) => match open_sink(spec) {
                Ok(s) => Some(s),
                Err(e) => {
                    problems.push(format!(
                        "engine.dead_letter ({}): {e}",
                        self.config.engine.dead_letter
                    ));
                    None
                }
            },
        };
        let mut own = Vec::new();
        for f in [LOG_FILE, STATS_FILE] {
            let mut p = self.options.logdir.join(f);
            if self.options.chroot {
                match confine(&self.options.root, "engine log", &p) {
                    Ok(rel) => p = rel,
                    Err(e) => {
                        problems.push(
                            e.replace("move it under ROOT", "give -l a directory under ROOT"),
                        );
                        continue;
                    }
                }
            }
            match FileSink::open(&p) {
                Ok(s) => own.push(Box::new(s) as Box<dyn Sink>),
                Err(e) => problems.push(format!("engine log {}: {e}", p.display())),
            }
        }
        if !problems.is_empty() {
            return Err(EngineError::Problems(problems));
        }
        let logdir = StateDir {
            what: "log directory (-l)".into(),
            dir: self.options.logdir.clone(),
            created: !logdir_existed,
        };
        Ok(Prepared {
            plan: self,
            sources,
            sinks,
            own,
            dead,
            state_dirs,
            logdir,
        })
    }
}

/// Files open, sockets bound; nothing runs yet.
pub struct Prepared {
    plan: Plan,
    sources: Vec<PreparedSource>,
    sinks: Vec<Box<dyn Sink>>,
    own: Vec<Box<dyn Sink>>,
    dead: Option<Box<dyn Sink>>,
    /// Directories the engine writes state files into.
    state_dirs: Vec<StateDir>,
    /// LOGDIR, and whether this start made it.
    logdir: StateDir,
}

/// A directory holding a state file (checkpoint, snapshot).
struct StateDir {
    /// What writes there, for messages.
    what: String,
    dir: PathBuf,
    /// Made by this start (so it is ours to hand over).
    created: bool,
}

/// Whether `uid`/`gid` may create files in the directory `m` describes.
fn dir_writable_by(m: &std::fs::Metadata, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = m.mode();
    (m.uid() == uid && mode & 0o300 == 0o300)
        || (m.gid() == gid && mode & 0o030 == 0o030)
        || mode & 0o003 == 0o003
}

/// `fchown` a directory opened without following a final symbolic link.
fn chown_dir(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_directory_nofollow())
        .open(dir)?;
    std::os::unix::fs::fchown(&d, Some(uid), Some(gid))
}

fn libc_o_directory_nofollow() -> i32 {
    nix::fcntl::OFlag::O_DIRECTORY.bits() | nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

impl Prepared {
    /// Before dropping privileges to `uid`/`gid` (`-p`): give every file the engine opened for
    /// writing (outputs, its logs, the dead letters) and LOGDIR to that user, by descriptor,
    /// so they keep working and can be reopened after rotation; and make sure every directory
    /// a state file is written into will be writable: one this start created is handed over,
    /// one that exists already and is not writable by the user is a problem named here.
    /// Nothing is changed through a path a symbolic link could redirect.
    pub fn hand_over(&self, uid: u32, gid: u32) -> Result<(), EngineError> {
        let mut problems = Vec::new();
        for s in self.sinks.iter().chain(&self.own).chain(&self.dead) {
            if let Err(e) = s.hand_over(uid, gid) {
                problems.push(format!("cannot hand {e} to the unprivileged user"));
            }
        }
        // LOGDIR goes to the user only if this start made it (never a shared /var/log); one
        // that exists and is not the user's only means rotated files cannot be re-created
        let d = &self.logdir;
        if d.created {
            if let Err(e) = chown_dir(&d.dir, uid, gid) {
                problems.push(format!("{}: {}: {e}", d.what, d.dir.display()));
            }
        } else if !std::fs::metadata(&d.dir).is_ok_and(|m| dir_writable_by(&m, uid, gid)) {
            tracing::warn!(
                "{} {} is not writable by the unprivileged user (-p): after log rotation the \
                 engine cannot create new files there (rotate with copytruncate, or give the \
                 user the directory)",
                d.what,
                d.dir.display()
            );
        }
        for d in &self.state_dirs {
            if d.created {
                if let Err(e) = chown_dir(&d.dir, uid, gid) {
                    problems.push(format!("{}: directory {}: {e}", d.what, d.dir.display()));
                }
                continue;
            }
            match std::fs::metadata(&d.dir) {
                Ok(m) if dir_writable_by(&m, uid, gid) => {}
                Ok(_) => problems.push(format!(
                    "{}: directory {} is not writable by the unprivileged user (uid {uid}) that -p drops to: \
                     the file could never be saved. Give that user the directory, or use a new one (it is created for you)",
                    d.what,
                    d.dir.display()
                )),
                Err(e) => problems.push(format!("{}: directory {}: {e}", d.what, d.dir.display())),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Problems(problems))
        }
    }
}

/// Hands a source's batches to the workers, split by partition key.
struct ToWorkers {
    input: usize,
    txs: Vec<Sender<WorkItem>>,
    partitioner: Arc<partition::Partitioner>,
}

impl Emit for ToWorkers {
    fn emit(&mut self, batch: Batch) -> bool {
        let parts = self.partitioner.split(batch);
        let mut alive = true;
        for (tx, batch) in self.txs.iter().zip(parts) {
            if batch.is_empty() {
                continue;
            }
            alive &= tx
                .send(WorkItem::Lines {
                    input: self.input,
                    batch,
                })
                .is_ok();
        }
        alive
    }
    fn clone_box(&self) -> Box<dyn Emit> {
        Box::new(ToWorkers {
            input: self.input,
            txs: self.txs.clone(),
            partitioner: self.partitioner.clone(),
        })
    }
}

/// The engine running.
pub struct Running {
    control: Control,
    sources_stop: Arc<AtomicBool>,
    exit_on_eof: bool,
    keepalive: Vec<Sender<WorkItem>>,
    /// Tell the sink runners that no more batches will come (see [`SinkRunner::done`]).
    own_done: Arc<AtomicBool>,
    outputs_done: Arc<AtomicBool>,
    source_threads: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    /// What each worker was built from, to replace its runtime when the watchdog parks it.
    templates: Vec<Worker>,
    /// Runtimes given up so far.
    parked: usize,
    output_threads: Vec<JoinHandle<()>>,
    own_threads: Vec<JoinHandle<()>>,
    own_senders: Vec<Sender<Batch>>,
    stats: Arc<Stats>,
    stats_interval: Duration,
    /// How long the drain at shutdown may take.
    drain_timeout: Duration,
    /// Every queue between stages, by name, for reporting what is left after a drain timeout.
    queues: Vec<QueueDepth>,
    log: EngineLog,
    logdir: PathBuf,
    outputs: Vec<(String, String)>,
    snapshot: Option<(store::Snapshotter, Duration)>,
}

fn describe_sink(s: &SinkSpec) -> String {
    match s {
        SinkSpec::File(p) => p.display().to_string(),
        SinkSpec::Ipc(p) => format!("ipc://{}", p.display()),
        SinkSpec::Redis(u) => format!("redis://{}:{}/{} ({:?})", u.host, u.port, u.key, u.mode),
        SinkSpec::Kafka(u) => format!("kafka://{}/{}", u.brokers, u.topic),
        SinkSpec::Nats(u) => format!("nats://{}/{}", u.server, u.subject),
    }
}

/// What a run did, for the CLI's last words.
pub struct Summary {
    pub stats: serde_json::Value,
    pub logdir: PathBuf,
    pub outputs: Vec<(String, String)>,
    /// Events whose script failed.
    pub script_failures: u64,
    /// Dead-letter records written.
    pub dead_letters: u64,
    /// Why the engine stopped early, if it did.
    pub abnormal: Option<String>,
}

impl Summary {
    /// The process exit code for this run (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        if self.abnormal.is_some() {
            exit::INTERNAL
        } else if self.script_failures > 0 {
            exit::SCRIPT_FAILURES
        } else {
            exit::OK
        }
    }
}

/// Runtimes the engine gives up (each keeps its memory) before it stops.
pub const MAX_PARKED: usize = 8;

/// A parked timer call has no batch position: the batch it interrupted (if any) was done.
fn f_len_done() -> usize {
    usize::MAX
}

/// A queue's name and a way to read how many batches wait in it.
type QueueDepth = (String, Box<dyn Fn() -> usize + Send + Sync>);

fn depth<T: Send + 'static>(name: String, rx: crossbeam_channel::Receiver<T>) -> QueueDepth {
    (name, Box::new(move || rx.len()))
}

fn spawn<F: FnOnce() + Send + 'static>(name: String, f: F) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .expect("spawning a thread")
}

impl Prepared {
    /// Spawn every thread and run every script's `setup()`. `runtime_root` is where `require`
    /// looks (`/` after a chroot into ROOT).
    pub fn start(self, runtime_root: PathBuf, control: Control) -> Result<Running, EngineError> {
        let Prepared {
            plan,
            sources,
            sinks,
            own,
            dead,
            state_dirs: _,
            logdir: _,
        } = self;
        let engine = &plan.config.engine;
        let mut stats = Stats::new(
            plan.config.inputs.iter().map(|i| i.tag.as_str()),
            plan.config.analyzers.iter().map(|a| a.tag.as_str()),
            plan.config.outputs.iter().map(|o| o.tag.as_str()),
        );
        stats.store = match &plan.runtime.backend {
            Backend::Redis(t) => Some((format!("redis {}", t.addr), t.counters.clone())),
            Backend::Embedded(_) => None,
            Backend::Unavailable(_) => None,
        };
        let stats = Arc::new(stats);

        // The engine's own logs first, so every later problem has somewhere to go.
        let own_done = Arc::new(AtomicBool::new(false));
        let outputs_done = Arc::new(AtomicBool::new(false));
        let mut own_threads = Vec::new();
        let mut own_senders = Vec::new();
        for (sink, name) in own.into_iter().zip([LOG_FILE, STATS_FILE]) {
            let (tx, rx) = bounded::<Batch>(1024);
            own_senders.push(tx);
            let runner = SinkRunner {
                tag: name.to_string(),
                sink,
                rx,
                counters: None,
                index: 0,
                reopen: control.reopen.clone(),
                log: None,
                done: own_done.clone(),
            };
            own_threads.push(spawn(format!("sink-{name}"), move || runner.run()));
        }
        let log = EngineLog::new(own_senders[0].clone());
        let mut queues = Vec::new();
        let dead_tx = dead.map(|sink| {
            let (tx, rx) = bounded::<Batch>(engine.queue_batches);
            queues.push(depth("dead letters".to_string(), rx.clone()));
            let runner = SinkRunner {
                tag: "dead-letter".into(),
                sink,
                rx,
                counters: None,
                index: 0,
                reopen: control.reopen.clone(),
                log: Some(log.clone()),
                done: own_done.clone(),
            };
            own_threads.push(spawn("sink-dead-letter".into(), move || runner.run()));
            tx
        });

        let mut output_threads = Vec::new();
        let mut sink_senders = Vec::new();
        for (i, sink) in sinks.into_iter().enumerate() {
            let (tx, rx) = bounded::<Batch>(engine.queue_batches);
            sink_senders.push(tx);
            queues.push(depth(
                format!("output '{}'", plan.config.outputs[i].tag),
                rx.clone(),
            ));
            let runner = SinkRunner {
                tag: plan.config.outputs[i].tag.clone(),
                sink,
                rx,
                counters: Some(stats.clone()),
                index: i,
                reopen: control.reopen.clone(),
                log: Some(log.clone()),
                done: outputs_done.clone(),
            };
            output_threads.push(spawn(
                format!("out-{}", plan.config.outputs[i].tag),
                move || runner.run(),
            ));
        }
        let worker_sinks = WorkerSinks {
            outputs: sink_senders,
            log: own_senders[0].clone(),
            stats: own_senders[1].clone(),
            dead: dead_tx,
        };

        // Workers: each owns a Lua runtime with every script and its own queue; sources split
        // their batches over them by partition key.
        let mut spec = plan.runtime.clone();
        let runtime_root_copy = runtime_root.clone();
        spec.root = runtime_root;
        let n_workers = engine.workers.max(1);
        let mut work_txs = Vec::new();
        let mut work_queues = Vec::new();
        let mut workers = Vec::new();
        let mut templates = Vec::new();
        let mut readies = Vec::new();
        for id in 0..n_workers {
            let (work_tx, work_rx) = bounded::<WorkItem>(engine.queue_batches);
            work_txs.push(work_tx);
            work_queues.push(depth(format!("worker {id}"), work_rx.clone()));
            let (ready_tx, ready_rx) = bounded(1);
            readies.push(ready_rx);
            let worker = Worker {
                id,
                spec: spec.clone(),
                rx: work_rx,
                sinks: worker_sinks.clone(),
                stats: stats.clone(),
                log: log.clone(),
                status: Arc::new(worker::WorkerStatus::default()),
            };
            templates.push(worker.clone());
            workers.push(spawn(format!("worker-{id}"), move || {
                worker.run(ready_tx, None)
            }));
        }
        drop(worker_sinks);
        work_queues.extend(queues);
        for ready_rx in readies {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(errs)) => {
                    drop(work_txs);
                    return Err(EngineError::Problems(
                        errs.iter().map(|e| format!("{e} (in setup)")).collect(),
                    ));
                }
                Err(_) => return Err(EngineError::Io("a worker died during setup".into())),
            }
        }
        let partitioner = Arc::new(partition::Partitioner::new(
            &engine.partition_key,
            n_workers,
        ));
        let sources_stop = Arc::new(AtomicBool::new(false));
        let mut source_threads = Vec::new();
        for (i, src) in sources.into_iter().enumerate() {
            let ctx = SourceCtx {
                tag: plan.config.inputs[i].tag.clone(),
                counters: stats.inputs[i].io.clone(),
                shutdown: sources_stop.clone(),
                max_line: engine.max_line_bytes,
                batch_lines: engine.batch_lines,
                out: Box::new(ToWorkers {
                    input: i,
                    txs: work_txs.clone(),
                    partitioner: partitioner.clone(),
                }),
            };
            source_threads.push(spawn(
                format!("in-{}", plan.config.inputs[i].tag),
                move || src.run(ctx),
            ));
        }
        let snapshot = match (&plan.snapshot, &plan.runtime.backend) {
            (Some(path), Backend::Embedded(db)) => Some((
                store::Snapshotter {
                    db: db.clone(),
                    path: store::Snapshotter::relocate(
                        path,
                        &plan.options.root,
                        &runtime_root_copy,
                    ),
                },
                Duration::from_secs_f64(engine.store_snapshot_interval),
            )),
            _ => None,
        };
        let exit_on_eof = plan.options.exit_on_eof && plan.all_inputs_finite();
        if plan.options.exit_on_eof && !exit_on_eof {
            tracing::warn!(
                "--exit-on-eof is ignored: not every input is a file:// or zfile:// input"
            );
        }
        Ok(Running {
            control,
            sources_stop,
            exit_on_eof,
            keepalive: work_txs,
            own_done,
            outputs_done,
            source_threads,
            workers,
            templates,
            parked: 0,
            output_threads,
            own_threads,
            own_senders,
            stats,
            stats_interval: Duration::from_secs_f64(engine.stats_interval),
            drain_timeout: Duration::from_secs_f64(engine.drain_timeout_s),
            queues: work_queues,
            log,
            logdir: plan.options.logdir.clone(),
            outputs: plan
                .config
                .outputs
                .iter()
                .zip(&plan.sinks)
                .map(|(o, s)| (o.tag.clone(), describe_sink(s)))
                .collect(),
            snapshot,
        })
    }
}

impl Running {
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn write_stats(&self, final_line: bool) {
        let mut line = self.stats.snapshot(final_line).to_string().into_bytes();
        line.push(b'\n');
        let mut b = Batch::default();
        b.push(&line);
        let _ = self.own_senders[1].send(b);
    }

    /// Run until told to stop (or, with `--exit-on-eof`, until every input has ended), then
    /// drain every queue, flush every output and return.
    pub fn wait(mut self) -> Summary {
        let mut abnormal = None;
        let mut next_stats = Instant::now() + self.stats_interval;
        let mut next_snapshot = self
            .snapshot
            .as_ref()
            .map(|(_, every)| Instant::now() + *every);
        loop {
            if self.control.shutdown.load(Ordering::Relaxed) {
                tracing::info!("stopping: inputs stop, queued events are drained");
                break;
            }
            if let Err(why) = self.replace_parked() {
                tracing::error!("{why}; stopping the engine");
                abnormal = Some(why);
                break;
            }
            if self.workers.iter().any(|h| h.is_finished()) {
                tracing::error!("a worker stopped unexpectedly; stopping the engine");
                abnormal = Some("a worker stopped unexpectedly".to_string());
                break;
            }
            if self.output_threads.iter().any(|h| h.is_finished()) {
                tracing::error!("an output stopped unexpectedly; stopping the engine");
                abnormal = Some("an output stopped unexpectedly".to_string());
                break;
            }
            if self.exit_on_eof && self.source_threads.iter().all(|h| h.is_finished()) {
                tracing::info!("every input has ended: draining and exiting");
                break;
            }
            let now = Instant::now();
            if let (Some((snap, every)), Some(at)) = (&self.snapshot, next_snapshot) {
                if now >= at {
                    snap.save();
                    next_snapshot = Some(now + *every);
                }
            }
            if now >= next_stats {
                self.write_stats(false);
                next_stats = now + self.stats_interval;
            }
            std::thread::sleep(
                Duration::from_millis(20)
                    .min(next_stats.saturating_duration_since(now))
                    .max(Duration::from_millis(1)),
            );
        }
        self.sources_stop.store(true, Ordering::Relaxed);
        let drained = Arc::new(AtomicBool::new(false));
        self.drain_deadline(drained.clone());
        for h in self.source_threads.drain(..) {
            let _ = h.join();
        }
        self.keepalive.clear();
        // the drain may park a runtime too (SIGTERM during an endless loop): keep replacing
        // them until every worker has finished
        while self.workers.iter().any(|h| !h.is_finished()) {
            if let Err(why) = self.replace_parked() {
                tracing::error!("{why}");
                abnormal.get_or_insert(why);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for (i, h) in self.workers.drain(..).enumerate() {
            // a parked thread never ends: leave it
            let parked = self.templates[i]
                .status
                .watched()
                .is_some_and(|w| w.parked());
            if !parked && h.join().is_err() {
                abnormal.get_or_insert_with(|| format!("worker {i} panicked"));
            }
        }
        self.templates.clear();
        self.outputs_done.store(true, Ordering::SeqCst);
        for h in self.output_threads.drain(..) {
            if h.join().is_err() {
                abnormal.get_or_insert_with(|| "an output panicked".to_string());
            }
        }
        drained.store(true, Ordering::SeqCst);
        if let Some((snap, _)) = &self.snapshot {
            snap.save();
        }
        self.write_stats(true);
        let stats = self.stats.snapshot(true);
        self.own_senders.clear();
        self.log = EngineLog::stderr_only();
        self.own_done.store(true, Ordering::SeqCst);
        for h in self.own_threads.drain(..) {
            let _ = h.join();
        }
        Summary {
            script_failures: self.stats.script_failures(),
            dead_letters: self.stats.dead_letters.load(Ordering::Relaxed),
            stats,
            logdir: self.logdir.clone(),
            outputs: std::mem::take(&mut self.outputs),
            abnormal,
        }
    }

    /// Replace every worker whose runtime the watchdog parked (a script stuck in a compiled
    /// loop, or one that kept running after its timeout): what it had produced for its batch
    /// is sent on, the event it was stuck on goes to the dead letters, and a new runtime (with
    /// every `setup()` run again) takes over the rest of the batch and the worker's queue.
    /// Fails once more than [`MAX_PARKED`] runtimes were given up.
    fn replace_parked(&mut self) -> Result<(), String> {
        for i in 0..self.templates.len() {
            let t = &self.templates[i];
            let Some(w) = t.status.watched() else {
                continue;
            };
            if !w.parked() {
                continue;
            }
            // SAFETY: parked() is true; each runtime is salvaged once (its status is cleared
            // below, and the replacement sets its own).
            let salvage = unsafe { dragonfly_lua::watchdog::salvage(&w) };
            *t.status.watched.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.parked += 1;
            let inflight = t.status.take_inflight();
            for (o, mut b) in salvage.outputs.into_iter().enumerate() {
                if !b.is_empty() {
                    if let Some(f) = &inflight {
                        b.acks.extend(f.acks.iter().cloned());
                    }
                    let _ = t.sinks.outputs[o].send(b);
                }
            }
            let (script, counters) = match salvage.caller {
                dragonfly_lua::Caller::Filter(f) => (
                    t.spec.filters.get(f).map(|s| s.display.clone()),
                    (
                        &self.stats.inputs[f].filter.errors,
                        &self.stats.inputs[f].filter.timeouts,
                    ),
                ),
                dragonfly_lua::Caller::Analyzer(a) => (
                    t.spec.analyzers.get(a).map(|s| s.display.clone()),
                    (
                        &self.stats.analyzers[a].c.errors,
                        &self.stats.analyzers[a].c.timeouts,
                    ),
                ),
            };
            let n = counters.0.fetch_add(1, Ordering::Relaxed) + 1;
            counters.1.fetch_add(1, Ordering::Relaxed);
            let failure = dragonfly_lua::Failure {
                caller: salvage.caller,
                kind: dragonfly_lua::FailureKind::Timeout,
                error: dragonfly_lua::ScriptError {
                    script: script.unwrap_or_default(),
                    message: format!(
                        "{} ({} ms) and could not be interrupted (a loop LuaJIT compiled, or one that catches the timeout); worker {}'s runtime was replaced",
                        dragonfly_lua::watchdog::TIMEOUT_TEXT,
                        t.spec.limits.script_timeout.as_millis(),
                        t.id
                    ),
                },
                traceback: None,
                event: String::new(),
                event_full: None,
                input_index: salvage.input_index,
            };
            self.log.lua_error(&failure.error, "", n);
            if let Some(dead) = &t.sinks.dead {
                let mut b = Batch::default();
                let batch = inflight.as_ref().map(|f| (f.input, &*f.batch));
                worker::dead_letter_record(&self.stats, &failure, batch, &mut b);
                if let Some(f) = &inflight {
                    b.acks.extend(f.acks.iter().cloned());
                }
                let _ = dead.send(b);
            }
            if self.parked > MAX_PARKED {
                return Err(format!(
                    "{} script runtimes had to be given up (more than {MAX_PARKED}): a script keeps running away",
                    self.parked
                ));
            }
            let resume = match (inflight, salvage.input_index) {
                (Some(f), Some(idx)) => Some((f, idx + 1)),
                (Some(f), None) => Some((f, f_len_done())),
                (None, _) => None,
            };
            let worker = t.clone();
            let (ready_tx, ready_rx) = bounded(1);
            let id = t.id;
            self.workers[i] = spawn(format!("worker-{id}"), move || worker.run(ready_tx, resume));
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(errs)) => {
                    return Err(format!(
                        "worker {id}: the replacement runtime failed in setup: {}",
                        errs.iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                }
                Err(_) => return Err(format!("worker {id}: the replacement runtime died")),
            }
        }
        Ok(())
    }

    /// Give the drain `drain_timeout`: past it, say what is still queued and exit
    /// [`exit::INTERNAL`] (a script stuck where it cannot be stopped, an output that hangs).
    fn drain_deadline(&mut self, drained: Arc<AtomicBool>) {
        let queues = std::mem::take(&mut self.queues);
        let timeout = self.drain_timeout;
        let log = self.log.clone();
        spawn("drain-deadline".into(), move || {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if drained.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let left: Vec<String> = queues
                .iter()
                .map(|(name, len)| format!("{name}: {} batches", len()))
                .collect();
            let msg = format!(
                "the drain did not finish within engine.drain_timeout_s ({} s); still queued: {}; exiting",
                timeout.as_secs_f64(),
                left.join(", ")
            );
            log.engine_error("drain_timeout", &msg);
            tracing::error!("{msg}");
            // give the engine log a moment to take the record, then go
            std::thread::sleep(Duration::from_millis(200));
            std::process::exit(exit::INTERNAL as i32);
        });
    }
}
