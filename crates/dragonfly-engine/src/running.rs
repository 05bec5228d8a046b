//! The engine running: supervision (stats lines, snapshots, runtimes the watchdog gave up,
//! threads that died), then the drain at shutdown — inputs stop, every queue empties, timers
//! fire once, outputs flush — within `engine.drain_timeout_s`.

use dragonfly_event::sync::Locked;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use dragonfly_io::Batch;

use crate::enginelog::EngineLog;
use crate::stats::Stats;
use crate::topology::spawn;
use crate::worker::{self, WorkItem, Worker};
use crate::{exit, store, Control};

/// The engine running.
pub struct Running {
    pub(crate) control: Control,
    /// Each input's stop flag.
    pub(crate) sources_stop: Vec<Arc<AtomicBool>>,
    /// How inputs split their batches over the workers.
    pub(crate) partitioner: Arc<crate::partition::Partitioner>,
    pub(crate) exit_on_eof: bool,
    pub(crate) keepalive: Vec<Sender<WorkItem>>,
    /// Tell the sink runners that no more batches will come (see [`SinkRunner::done`]).
    pub(crate) own_done: Arc<AtomicBool>,
    pub(crate) outputs_done: Arc<AtomicBool>,
    pub(crate) source_threads: Vec<JoinHandle<()>>,
    pub(crate) workers: Vec<JoinHandle<()>>,
    /// What each worker was built from, to replace its runtime when the watchdog parks it.
    pub(crate) templates: Vec<Worker>,
    /// Runtimes given up so far.
    pub(crate) parked: usize,
    pub(crate) output_threads: Vec<JoinHandle<()>>,
    pub(crate) own_threads: Vec<JoinHandle<()>>,
    /// The engine log's and the stats log's queues (None once closed at the end).
    pub(crate) own_senders: Option<(Sender<Batch>, Sender<Batch>)>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) stats_interval: Duration,
    /// How long the drain at shutdown may take.
    pub(crate) drain_timeout: Duration,
    pub(crate) log: EngineLog,
    pub(crate) logdir: PathBuf,
    pub(crate) outputs: Vec<(String, String)>,
    pub(crate) snapshot: Option<(store::Snapshotter, Duration)>,
    /// What a hot reload compares with and builds from.
    pub(crate) reload: ReloadBase,
    /// The newest reload request handled.
    pub(crate) reloads_handled: u64,
}

/// What the running pipeline was built from (for hot reload).
pub(crate) struct ReloadBase {
    /// Where config.lua is read from now (ROOT, or `/` after a chroot into it).
    pub root: PathBuf,
    pub options: crate::Options,
    pub config: dragonfly_config::Config,
    pub spec: dragonfly_lua::RuntimeSpec,
}

/// What a run did, for the CLI's last words.
pub struct Summary {
    /// The final stats record.
    pub stats: crate::record::StatsRecord,
    /// LOGDIR.
    pub logdir: PathBuf,
    /// Each output's tag and where it wrote.
    pub outputs: Vec<(String, String)>,
    /// Events whose script failed.
    pub script_failures: u64,
    /// Dead-letter records written.
    pub dead_letters: u64,
    /// Events the outputs dropped (could never write), all outputs together.
    pub output_drops: u64,
    /// Events scripts sent to tags config.lua does not define (dropped), all together.
    pub unknown_tag_events: u64,
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
        } else if self.output_drops > 0 || self.unknown_tag_events > 0 {
            exit::DROPPED
        } else {
            exit::OK
        }
    }
}

/// How often `-v` logs a rate line (or every stats interval, if shorter).
const RATE_EVERY: Duration = Duration::from_secs(5);

/// Runtimes the engine gives up (each keeps its memory) before it stops.
pub const MAX_PARKED: usize = 8;

impl Running {
    /// The counters (for tests and tools).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn write_stats(&self, final_line: bool) {
        let mut line = serde_json::to_vec(&self.stats.snapshot(final_line)).unwrap_or_default();
        line.push(b'\n');
        let mut b = Batch::default();
        b.push(&line);
        if let Some((_, stats)) = &self.own_senders {
            let _ = stats.send(b);
        }
    }

    /// Run until told to stop (or, with `--exit-on-eof`, until every input has ended), then
    /// drain every queue, flush every output and return.
    pub fn wait(mut self) -> Summary {
        let abnormal = self.supervise();
        self.drain(abnormal)
    }

    /// Whether to stop now: `Some(None)` on a stop signal or, with `--exit-on-eof`, once every
    /// input has ended; `Some(Some(why))` when a part of the engine failed.
    fn should_stop(&mut self) -> Option<Option<String>> {
        if self.control.shutdown.load(Ordering::Relaxed) {
            tracing::info!("stopping: inputs stop, queued events are drained");
            return Some(None);
        }
        if let Err(why) = self.replace_parked() {
            tracing::error!("{why}; stopping the engine");
            return Some(Some(why));
        }
        self.reload_if_asked();
        if self.workers.iter().any(|h| h.is_finished()) {
            tracing::error!("a worker stopped unexpectedly; stopping the engine");
            return Some(Some("a worker stopped unexpectedly".to_string()));
        }
        if self.output_threads.iter().any(|h| h.is_finished()) {
            tracing::error!("an output stopped unexpectedly; stopping the engine");
            return Some(Some("an output stopped unexpectedly".to_string()));
        }
        if self.exit_on_eof && self.source_threads.iter().all(|h| h.is_finished()) {
            tracing::info!("every input has ended: draining and exiting");
            return Some(None);
        }
        None
    }

    /// The supervision loop (every 20 ms at most): replace parked runtimes, reload when asked,
    /// write stats lines and store snapshots, until [`Running::should_stop`] says so; the
    /// reason when the engine stops abnormally.
    fn supervise(&mut self) -> Option<String> {
        let mut ticks = Ticks::new(self);
        loop {
            if let Some(stop) = self.should_stop() {
                return stop;
            }
            let now = Instant::now();
            let next = ticks.run(self, now);
            std::thread::sleep(
                Duration::from_millis(20)
                    .min(next.saturating_duration_since(now))
                    .max(Duration::from_millis(1)),
            );
        }
    }

    /// Stop the inputs, drain the workers and outputs (under `engine.drain_timeout_s`), write
    /// the last stats line and say what the run did.
    fn drain(mut self, mut abnormal: Option<String>) -> Summary {
        for stop in &self.sources_stop {
            stop.store(true, Ordering::Relaxed);
        }
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
        self.own_senders = None;
        self.log = EngineLog::stderr_only();
        self.own_done.store(true, Ordering::SeqCst);
        for h in self.own_threads.drain(..) {
            let _ = h.join();
        }
        Summary {
            script_failures: self.stats.script_failures(),
            dead_letters: self.stats.dead_letters.load(Ordering::Relaxed),
            output_drops: self
                .stats
                .outputs
                .iter()
                .map(|o| o.c.dropped.load(Ordering::Relaxed))
                .sum(),
            unknown_tag_events: self.stats.unknown_tag_events(),
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
    pub(crate) fn replace_parked(&mut self) -> Result<(), String> {
        for i in 0..self.templates.len() {
            let Some(w) = self.templates[i].status.watched() else {
                continue;
            };
            if !w.parked() {
                continue;
            }
            // SAFETY: parked() is true; each runtime is salvaged once (its status is cleared
            // below, and the replacement sets its own).
            let salvage = unsafe { dragonfly_lua::watchdog::salvage(&w) };
            let t = &self.templates[i];
            *t.status.watched.locked() = None;
            self.parked += 1;
            let inflight = t.status.take_inflight();
            let resume_at = salvage
                .overlap
                .as_ref()
                .map(|o| o.0)
                .or(salvage.input_index);
            report_parked(&self.stats, &self.log, t, salvage, inflight.as_ref());
            if self.parked > MAX_PARKED {
                return Err(format!(
                    "{} script runtimes had to be given up (more than {MAX_PARKED}): a script keeps running away",
                    self.parked
                ));
            }
            self.respawn(i, inflight, resume_at)?;
        }
        Ok(())
    }

    /// Start worker `i` again on a new runtime, resuming its in-flight batch after index
    /// `resume_at` (none: parked in a timer call, only the batch's flush is left).
    fn respawn(
        &mut self,
        i: usize,
        inflight: Option<worker::InFlight>,
        resume_at: Option<usize>,
    ) -> Result<(), String> {
        let resume = match (inflight, resume_at) {
            (Some(f), Some(idx)) => Some((f, idx + 1)),
            // parked in a timer call: the batch it ran after was done, only its flush is left
            (Some(f), None) => Some((f, usize::MAX)),
            (None, _) => None,
        };
        let worker = self.templates[i].clone();
        let (ready_tx, ready_rx) = bounded(1);
        let id = worker.id;
        self.workers[i] = spawn(format!("worker-{id}"), move || {
            worker.run(ready_tx, resume, None)
        });
        match worker::wait_ready(
            &ready_rx,
            &self.templates[i].status,
            &self.templates[i].spec.limits,
        ) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(errs)) => Err(format!(
                "worker {id}: the replacement runtime failed in setup: {}",
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            Err(why) => Err(format!("worker {id}: the replacement runtime: {why}")),
        }
    }

    /// Give the drain `drain_timeout`: past it, say what is still queued and exit
    /// [`exit::INTERNAL`] (a script stuck where it cannot be stopped, an output that hangs).
    fn drain_deadline(&mut self, drained: Arc<AtomicBool>) {
        let stats = self.stats.clone();
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
            let left: Vec<String> = stats
                .queue_depths()
                .iter()
                .map(|(name, n)| format!("{name}: {n} batches"))
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

/// What a runtime given up leaves: its output lines are sent on (with the batch's receipts),
/// the failures it had recorded, the call that never ended and the events it had in flight
/// are counted, logged and written to the dead letters.
fn report_parked(
    stats: &Stats,
    log: &EngineLog,
    t: &Worker,
    salvage: dragonfly_lua::watchdog::Salvage,
    inflight: Option<&worker::InFlight>,
) {
    for (o, mut b) in salvage.outputs.into_iter().enumerate() {
        if !b.is_empty() {
            if let Some(f) = inflight {
                b.acks.extend(f.acks.iter().cloned());
            }
            let _ = t.sinks.outputs[o].send(b);
        }
    }
    let script_of = |caller: dragonfly_lua::Caller| {
        match caller {
            dragonfly_lua::Caller::Filter(f) => t.spec.filters.get(f),
            dragonfly_lua::Caller::Analyzer(a) => t.spec.analyzers.get(a),
        }
        .map(|s| s.display.clone())
        .unwrap_or_default()
    };
    // failures the runtime had recorded before it was given up (earlier events of the
    // batch): counted, logged and dead-lettered as the worker would have
    let recorded = salvage.failures;
    for f in &recorded {
        let n = worker::count_failure(stats, f);
        stats.remember_error(&f.error.script, f.kind.name(), &f.error.message, &f.event);
        log.lua_error(&f.error, &f.event, n);
    }
    let (errors, timeouts) = match salvage.caller {
        dragonfly_lua::Caller::Filter(f) => (
            &stats.inputs[f].filter.errors,
            &stats.inputs[f].filter.timeouts,
        ),
        dragonfly_lua::Caller::Analyzer(a) => {
            (&stats.analyzers[a].c.errors, &stats.analyzers[a].c.timeouts)
        }
    };
    let n = errors.fetch_add(1, Ordering::Relaxed) + 1;
    timeouts.fetch_add(1, Ordering::Relaxed);
    let dropped = salvage.overlap.map(|o| o.1).unwrap_or_default();
    if !dropped.is_empty() {
        errors.fetch_add(dropped.len() as u64, Ordering::Relaxed);
        tracing::error!(worker = t.id, dropped = dropped.len(),
            "the runtime given up had {} other events in flight (concurrency): their runs are lost with it (counted as errors, each to the dead letters); the batch goes on after the last event it had started", dropped.len());
    }
    let error = dragonfly_lua::ScriptError {
        script: script_of(salvage.caller),
        message: format!(
            "{} ({} ms) and could not be interrupted (a loop LuaJIT compiled, or one that catches the timeout); worker {}'s runtime was replaced",
            dragonfly_lua::watchdog::TIMEOUT_TEXT,
            t.spec.limits.script_timeout.as_millis(),
            t.id
        ),
    };
    let failure = dragonfly_lua::Failure::bare(
        salvage.caller,
        dragonfly_lua::FailureKind::Timeout,
        error,
        salvage.input_index,
    );
    stats.remember_error(
        &failure.error.script,
        failure.kind.name(),
        &failure.error.message,
        "",
    );
    log.lua_error(&failure.error, "", n);
    if let Some(dead) = &t.sinks.dead {
        dead_letter_parked(stats, t, dead, &recorded, &failure, &dropped, inflight);
    }
}

/// The dead letters of a runtime given up: its recorded failures, the call that never ended,
/// and each event it had in flight besides (with the batch's receipts).
fn dead_letter_parked(
    stats: &Stats,
    t: &Worker,
    dead: &Sender<Batch>,
    recorded: &[dragonfly_lua::Failure],
    failure: &dragonfly_lua::Failure,
    dropped: &[usize],
    inflight: Option<&worker::InFlight>,
) {
    let mut b = Batch::default();
    let batch = inflight.map(|f| (f.input, &*f.batch));
    for f in recorded {
        worker::dead_letter_record(stats, f, batch, &mut b);
    }
    worker::dead_letter_record(stats, failure, batch, &mut b);
    for &idx in dropped {
        let lost = dragonfly_lua::Failure {
            input_index: Some(idx),
            error: dragonfly_lua::ScriptError {
                script: failure.error.script.clone(),
                message: format!(
                    "dropped: in flight (concurrency) when worker {}'s runtime was replaced",
                    t.id
                ),
            },
            ..failure.clone()
        };
        worker::dead_letter_record(stats, &lost, batch, &mut b);
    }
    if let Some(f) = inflight {
        b.acks.extend(f.acks.iter().cloned());
    }
    let _ = dead.send(b);
}

/// The supervision loop's periodic work: stats lines, store snapshots, `-v`'s rate lines.
struct Ticks {
    next_stats: Instant,
    next_snapshot: Option<Instant>,
    rate_every: Duration,
    verbose: bool,
    rate_base: (Instant, [u64; 4]),
}

impl Ticks {
    fn new(r: &Running) -> Self {
        let now = Instant::now();
        Ticks {
            next_stats: now + r.stats_interval,
            next_snapshot: r.snapshot.as_ref().map(|(_, every)| now + *every),
            // -v: a rate line every few seconds (debug level)
            rate_every: r.stats_interval.min(RATE_EVERY),
            verbose: tracing::enabled!(tracing::Level::DEBUG),
            rate_base: (now, r.stats.totals()),
        }
    }

    /// Do what is due at `now`; returns when the next stats line is due.
    fn run(&mut self, r: &Running, now: Instant) -> Instant {
        if let (Some((snap, every)), Some(at)) = (&r.snapshot, self.next_snapshot) {
            if now >= at {
                snap.save();
                self.next_snapshot = Some(now + *every);
            }
        }
        if self.verbose && now >= self.rate_base.0 + self.rate_every {
            let totals = r.stats.totals();
            let base = self.rate_base.1;
            let secs = now.duration_since(self.rate_base.0).as_secs_f64();
            let per = |k: usize| (totals[k] - base[k]) as f64 / secs;
            tracing::debug!(
                "rate: in {:.0} ev/s, analyzers {:.0} ev/s, out {:.0} ev/s, errors +{} (so far: in {}, out {}, errors {})",
                per(0),
                per(1),
                per(2),
                totals[3] - base[3],
                totals[0],
                totals[2],
                totals[3]
            );
            self.rate_base = (now, totals);
        }
        if now >= self.next_stats {
            r.write_stats(false);
            self.next_stats = now + r.stats_interval;
        }
        self.next_stats
    }
}
