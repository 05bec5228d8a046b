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
use dragonfly_lua::{Backend, Runtime, RuntimeSpec, ScriptKind, ScriptSpec};
use dragonfly_store::embedded::EmbeddedStore;
use dragonfly_store::redis_backend::{RedisAddr, RedisTarget};

pub mod store;

use enginelog::EngineLog;
use sinks::SinkRunner;
use stats::Stats;
use worker::{WorkItem, Worker};

/// The engine log (script `log_event` records and engine problems), in LOGDIR.
pub const LOG_FILE: &str = "dragonfly-mle.log";
/// The stats log, in LOGDIR.
pub const STATS_FILE: &str = "dragonfly-mle-stats.log";

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
            match SourceSpec::parse(&inp.uri).and_then(|s| s.with_options(&inp.options)) {
                Ok(s) => sources.push(s),
                Err(e) => problems.push(format!(
                    "{file}: inputs[{}] (tag \"{}\"): field 'uri': {e}",
                    i + 1,
                    inp.tag
                )),
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
        };
        Ok(Plan {
            config,
            options,
            runtime,
            sources,
            sinks,
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
        std::fs::create_dir_all(&self.options.logdir).map_err(|e| {
            EngineError::Io(format!(
                "cannot create log directory {}: {e}",
                self.options.logdir.display()
            ))
        })?;
        let mut problems = store::check_modules(&self.config, &self.runtime.backend);
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
        let mut own = Vec::new();
        for f in [LOG_FILE, STATS_FILE] {
            let p = self.options.logdir.join(f);
            match FileSink::open(&p) {
                Ok(s) => own.push(Box::new(s) as Box<dyn Sink>),
                Err(e) => problems.push(format!("engine log {}: {e}", p.display())),
            }
        }
        if !problems.is_empty() {
            return Err(EngineError::Problems(problems));
        }
        Ok(Prepared {
            plan: self,
            sources,
            sinks,
            own,
        })
    }
}

/// Files open, sockets bound; nothing runs yet.
pub struct Prepared {
    plan: Plan,
    sources: Vec<PreparedSource>,
    sinks: Vec<Box<dyn Sink>>,
    own: Vec<Box<dyn Sink>>,
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
    source_threads: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    output_threads: Vec<JoinHandle<()>>,
    own_threads: Vec<JoinHandle<()>>,
    own_senders: Vec<Sender<Batch>>,
    stats: Arc<Stats>,
    stats_interval: Duration,
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
            };
            own_threads.push(spawn(format!("sink-{name}"), move || runner.run()));
        }
        let log = EngineLog::new(own_senders[0].clone());

        let mut output_threads = Vec::new();
        let mut sink_senders = Vec::new();
        for (i, sink) in sinks.into_iter().enumerate() {
            let (tx, rx) = bounded::<Batch>(engine.queue_batches);
            sink_senders.push(tx);
            let runner = SinkRunner {
                tag: plan.config.outputs[i].tag.clone(),
                sink,
                rx,
                counters: Some(stats.clone()),
                index: i,
                reopen: control.reopen.clone(),
                log: Some(log.clone()),
            };
            output_threads.push(spawn(
                format!("out-{}", plan.config.outputs[i].tag),
                move || runner.run(),
            ));
        }
        sink_senders.extend(own_senders.iter().cloned());

        // Workers: each owns a Lua runtime with every script and its own queue; sources split
        // their batches over them by partition key.
        let mut spec = plan.runtime.clone();
        let runtime_root_copy = runtime_root.clone();
        spec.root = runtime_root;
        let n_workers = engine.workers.max(1);
        let mut work_txs = Vec::new();
        let mut workers = Vec::new();
        let mut readies = Vec::new();
        for id in 0..n_workers {
            let (work_tx, work_rx) = bounded::<WorkItem>(engine.queue_batches);
            work_txs.push(work_tx);
            let (ready_tx, ready_rx) = bounded(1);
            readies.push(ready_rx);
            let worker = Worker {
                id,
                spec: spec.clone(),
                rx: work_rx,
                sinks: sink_senders.clone(),
                stats: stats.clone(),
                log: log.clone(),
            };
            workers.push(spawn(format!("worker-{id}"), move || worker.run(ready_tx)));
        }
        drop(sink_senders);
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
            source_threads,
            workers,
            output_threads,
            own_threads,
            own_senders,
            stats,
            stats_interval: Duration::from_secs_f64(engine.stats_interval),
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
            if self.exit_on_eof && self.source_threads.iter().all(|h| h.is_finished()) {
                tracing::info!("every input has ended: draining and exiting");
                break;
            }
            if self.workers.iter().any(|h| h.is_finished()) {
                tracing::error!("a worker stopped unexpectedly; stopping the engine");
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
        for h in self.source_threads.drain(..) {
            let _ = h.join();
        }
        self.keepalive.clear();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        for h in self.output_threads.drain(..) {
            let _ = h.join();
        }
        if let Some((snap, _)) = &self.snapshot {
            snap.save();
        }
        self.write_stats(true);
        let stats = self.stats.snapshot(true);
        self.own_senders.clear();
        self.log = EngineLog::stderr_only();
        for h in self.own_threads.drain(..) {
            let _ = h.join();
        }
        Summary {
            stats,
            logdir: self.logdir.clone(),
            outputs: std::mem::take(&mut self.outputs),
        }
    }
}
