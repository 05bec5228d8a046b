//! The running topology, built by [`Prepared::start`]: the engine's own log sinks first (so
//! every later problem has somewhere to go), then the outputs, the workers (each runs every
//! `setup()` before anything is read), and last the inputs, which hand their batches to the
//! workers split by partition key.

use dragonfly_event::sync::Locked;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use dragonfly_io::{Batch, Sink};
use dragonfly_lua::Backend;

use crate::enginelog::EngineLog;
use crate::parts::{depth, spawn, spawn_sink, Inputs, OwnLogs};
use crate::plan::Prepared;
use crate::running::{Running, Supervision};
use crate::stats::{QueueDepth, Stats};
use crate::worker::{self, WorkItem, Worker, WorkerSinks};
use crate::{store, Control, EngineError, LOG_FILE, STATS_FILE};

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
            http,
        } = self;
        let engine = &plan.config.engine;
        let stats = new_stats(&plan);
        if let Some(h) = http {
            start_http(h, &stats, &control);
        }
        let out = SpawnedOutputs::spawn(&plan, own, dead, sinks, &stats, &control);
        let mut spec = plan.runtime.clone();
        spec.root = runtime_root.clone();
        let reload = crate::running::ReloadBase {
            root: spec.root.clone(),
            options: plan.options.clone(),
            config: plan.config.clone(),
            spec: spec.clone(),
        };
        let mut ws =
            SpawnedWorkers::spawn(engine, &spec, out.worker_sinks.clone(), &stats, &out.log);
        let mut queues = std::mem::take(&mut ws.queues);
        queues.extend(out.queues);
        *stats.queues.locked() = queues;
        ws.wait_ready()?;
        let inputs = Inputs::spawn(&plan.config, sources, &stats, &ws.txs);
        stats.ready.store(true, std::sync::atomic::Ordering::SeqCst);
        announce(&plan);
        let described = plan
            .config
            .outputs
            .iter()
            .zip(&plan.sinks)
            .map(|(o, s)| (o.tag.clone(), s.describe()))
            .collect();
        Ok(Running {
            control,
            inputs,
            workers: crate::parts::Workers::new(ws.txs, ws.threads, ws.templates),
            outputs: crate::parts::Outputs::new(out.output_threads, out.outputs_done, described),
            own: OwnLogs::new(out.log_tx, out.stats_tx, out.own_threads, out.own_done),
            stats,
            log: out.log,
            supervision: Supervision {
                exit_on_eof: exit_on_eof(&plan),
                stats_interval: Duration::from_secs_f64(engine.stats_interval),
                drain_timeout: Duration::from_secs_f64(engine.drain_timeout_s),
                snapshot: snapshotter(&plan, &runtime_root),
                logdir: plan.options.logdir.clone(),
            },
            reload,
            reloads_handled: 0,
        })
    }
}

/// Zeroed counters for the plan's tags, with the store's.
fn new_stats(plan: &crate::Plan) -> Arc<Stats> {
    let mut stats = Stats::new(
        plan.config.inputs.iter().map(|i| i.tag.as_str()),
        plan.config.analyzers.iter().map(|a| a.tag.as_str()),
        plan.config.outputs.iter().map(|o| o.tag.as_str()),
    );
    stats.store = match &plan.runtime.backend {
        Backend::Redis(t) => Some((format!("redis {}", t.addr), t.counters.clone())),
        Backend::Embedded(_) | Backend::Unavailable(_) => None,
    };
    if let Backend::Embedded(db) = &plan.runtime.backend {
        stats.embedded = Some(db.clone());
    }
    Arc::new(stats)
}

/// The HTTP listener on its thread (a failure is logged: the engine runs without it).
fn start_http(h: crate::http::HttpListener, stats: &Arc<Stats>, control: &Control) {
    let addr = h.addr();
    match h.start(stats.clone(), control.reload.clone()) {
        Ok(_) => {
            tracing::info!(
                "http: listening on {addr} (/health, /metrics, /api/stats, POST /api/reload)"
            )
        }
        Err(e) => tracing::error!("engine.http: {addr}: cannot start the listener: {e}"),
    }
}

/// The engine's own log sinks, the dead letters and every output, each on its thread.
struct SpawnedOutputs {
    log_tx: Sender<Batch>,
    stats_tx: Sender<Batch>,
    log: EngineLog,
    own_threads: Vec<JoinHandle<()>>,
    output_threads: Vec<JoinHandle<()>>,
    worker_sinks: WorkerSinks,
    queues: Vec<QueueDepth>,
    own_done: Arc<AtomicBool>,
    outputs_done: Arc<AtomicBool>,
}

impl SpawnedOutputs {
    /// The engine's own logs first, so every later problem has somewhere to go.
    fn spawn(
        plan: &crate::Plan,
        own: crate::plan::OwnLogs,
        dead: Option<Box<dyn Sink>>,
        sinks: Vec<Box<dyn Sink>>,
        stats: &Arc<Stats>,
        control: &Control,
    ) -> SpawnedOutputs {
        let engine = &plan.config.engine;
        let own_done = Arc::new(AtomicBool::new(false));
        let outputs_done = Arc::new(AtomicBool::new(false));
        let (log_tx, _, log_thread) =
            spawn_sink(LOG_FILE, own.log, 1024, None, control, None, &own_done);
        let (stats_tx, _, stats_thread) =
            spawn_sink(STATS_FILE, own.stats, 1024, None, control, None, &own_done);
        let mut own_threads = vec![log_thread, stats_thread];
        let log = EngineLog::new(log_tx.clone());
        let mut queues = Vec::new();
        let dead_tx = dead.map(|sink| {
            let (tx, rx, h) = spawn_sink(
                "dead-letter",
                sink,
                engine.queue_batches,
                None,
                control,
                Some(log.clone()),
                &own_done,
            );
            queues.push(depth("dead_letters".to_string(), rx));
            own_threads.push(h);
            tx
        });
        let mut output_threads = Vec::new();
        let mut senders = Vec::new();
        for (i, sink) in sinks.into_iter().enumerate() {
            let tag = &plan.config.outputs[i].tag;
            let (tx, rx, h) = spawn_sink(
                tag,
                sink,
                engine.queue_batches,
                Some((stats.clone(), i)),
                control,
                Some(log.clone()),
                &outputs_done,
            );
            senders.push(tx);
            queues.push(depth(format!("output:{tag}"), rx));
            output_threads.push(h);
        }
        let worker_sinks = WorkerSinks {
            outputs: senders,
            log: log_tx.clone(),
            stats: stats_tx.clone(),
            dead: dead_tx,
        };
        SpawnedOutputs {
            log_tx,
            stats_tx,
            log,
            own_threads,
            output_threads,
            worker_sinks,
            queues,
            own_done,
            outputs_done,
        }
    }
}

/// The workers: each owns a Lua runtime with every script and its own queue; sources split
/// their batches over them by partition key. Each runs every `setup()` before anything is
/// read (`readies` says when).
struct SpawnedWorkers {
    txs: Vec<Sender<WorkItem>>,
    queues: Vec<QueueDepth>,
    threads: Vec<JoinHandle<()>>,
    templates: Vec<Worker>,
    readies: Vec<Receiver<Result<(), Vec<dragonfly_lua::ScriptError>>>>,
}

impl SpawnedWorkers {
    /// Wait for every worker's `setup()`: the first failure (every setup error, or why a
    /// worker never got ready) refuses the start.
    fn wait_ready(&self) -> Result<(), EngineError> {
        for (id, ready_rx) in self.readies.iter().enumerate() {
            let t = &self.templates[id];
            match worker::wait_ready(ready_rx, &t.status, &t.spec.limits) {
                Ok(Ok(())) => {}
                Ok(Err(errs)) => {
                    return Err(EngineError::Setup(
                        errs.iter().map(|e| format!("{e} (in setup)")).collect(),
                    ));
                }
                Err(why) => return Err(EngineError::Setup(vec![format!("worker {id}: {why}")])),
            }
        }
        Ok(())
    }

    fn spawn(
        engine: &dragonfly_config::Engine,
        spec: &dragonfly_lua::RuntimeSpec,
        sinks: WorkerSinks,
        stats: &Arc<Stats>,
        log: &EngineLog,
    ) -> SpawnedWorkers {
        let mut w = SpawnedWorkers {
            txs: Vec::new(),
            queues: Vec::new(),
            threads: Vec::new(),
            templates: Vec::new(),
            readies: Vec::new(),
        };
        for id in 0..engine.workers.max(1) {
            let (work_tx, work_rx) = bounded::<WorkItem>(engine.queue_batches);
            w.txs.push(work_tx);
            w.queues
                .push(depth(format!("worker:{id}"), work_rx.clone()));
            let (ready_tx, ready_rx) = bounded(1);
            w.readies.push(ready_rx);
            let gauges = Arc::new(crate::stats::WorkerGauges::default());
            stats.workers.locked().push(gauges.clone());
            let worker = Worker {
                id,
                spec: spec.clone(),
                rx: work_rx,
                sinks: sinks.clone(),
                stats: stats.clone(),
                log: log.clone(),
                status: Arc::new(worker::WorkerStatus::default()),
                gauges,
            };
            w.templates.push(worker.clone());
            w.threads.push(spawn(format!("worker-{id}"), move || {
                worker.run(ready_tx, None, None)
            }));
        }
        w
    }
}

/// What the engine opened, one line each, so a console shows where events come from and go.
fn announce(plan: &crate::Plan) {
    for input in &plan.config.inputs {
        tracing::info!("input '{}': {}", input.tag, input.uri);
    }
    for (o, sink) in plan.config.outputs.iter().zip(&plan.sinks) {
        tracing::info!("output '{}': {}", o.tag, sink.describe());
    }
}

/// The embedded store's snapshotter (`engine.store_snapshot`), if any.
fn snapshotter(
    plan: &crate::Plan,
    runtime_root: &std::path::Path,
) -> Option<(store::Snapshotter, Duration)> {
    match (&plan.snapshot, &plan.runtime.backend) {
        (Some(path), Backend::Embedded(db)) => Some((
            store::Snapshotter {
                db: db.clone(),
                path: store::Snapshotter::relocate(path, &plan.options.root, runtime_root),
            },
            Duration::from_secs_f64(plan.config.engine.store_snapshot_interval),
        )),
        _ => None,
    }
}

/// `--exit-on-eof` holds when every input ends by itself (said when it does not).
fn exit_on_eof(plan: &crate::Plan) -> bool {
    let exit_on_eof = plan.options.exit_on_eof && plan.all_inputs_finite();
    if plan.options.exit_on_eof && !exit_on_eof {
        tracing::warn!(
            "--exit-on-eof is ignored: not every input ends by itself ({})",
            dragonfly_io::sources::SCHEMES
                .iter()
                .filter(|s| s.finite)
                .map(|s| format!("{}://", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    exit_on_eof
}
