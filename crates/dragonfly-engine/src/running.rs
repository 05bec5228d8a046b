//! The engine running: supervision (stats lines, snapshots, runtimes the watchdog gave up,
//! threads that died), then the drain at shutdown — inputs stop, every queue empties, timers
//! fire once, outputs flush — within `engine.drain_timeout_s`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dragonfly_io::Batch;

use crate::enginelog::EngineLog;
use crate::parts::{spawn, Inputs, Outputs, OwnLogs, Workers};
use crate::stats::Stats;
use crate::{exit, store, Control};

pub use crate::parts::MAX_PARKED;

/// The engine running: its parts (each owns its threads and knows how to stop them), what
/// supervises them, and what a reload builds from.
pub struct Running {
    pub(crate) control: Control,
    pub(crate) inputs: Inputs,
    pub(crate) workers: Workers,
    pub(crate) outputs: Outputs,
    pub(crate) own: OwnLogs,
    pub(crate) stats: Arc<Stats>,
    pub(crate) log: EngineLog,
    pub(crate) supervision: Supervision,
    /// What a hot reload compares with and builds from.
    pub(crate) reload: ReloadBase,
    /// The newest reload request handled.
    pub(crate) reloads_handled: u64,
}

/// How the running engine is watched and stopped.
pub(crate) struct Supervision {
    /// Stop once every input has ended (`--exit-on-eof`, when every input is finite).
    pub exit_on_eof: bool,
    pub stats_interval: Duration,
    /// How long the drain at shutdown may take.
    pub drain_timeout: Duration,
    /// The embedded store's snapshots, and how often.
    pub snapshot: Option<(store::Snapshotter, Duration)>,
    pub logdir: PathBuf,
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
        self.own.write_stats(b);
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
        if let Err(why) = self.workers.replace_parked(&self.stats, &self.log) {
            tracing::error!("{why}; stopping the engine");
            return Some(Some(why));
        }
        self.reload_if_asked();
        if self.workers.any_finished() {
            tracing::error!("a worker stopped unexpectedly; stopping the engine");
            return Some(Some("a worker stopped unexpectedly".to_string()));
        }
        if self.outputs.any_finished() {
            tracing::error!("an output stopped unexpectedly; stopping the engine");
            return Some(Some("an output stopped unexpectedly".to_string()));
        }
        if self.supervision.exit_on_eof && self.inputs.all_ended() {
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
        let drained = Arc::new(AtomicBool::new(false));
        self.drain_deadline(drained.clone());
        self.inputs.stop();
        if let Some(why) = self.workers.drain(&self.stats, &self.log) {
            abnormal.get_or_insert(why);
        }
        if let Err(why) = self.outputs.finish() {
            abnormal.get_or_insert(why);
        }
        drained.store(true, Ordering::SeqCst);
        if let Some((snap, _)) = &self.supervision.snapshot {
            snap.save();
        }
        self.write_stats(true);
        let stats = self.stats.snapshot(true);
        self.log = EngineLog::stderr_only();
        self.own.close();
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
            logdir: self.supervision.logdir.clone(),
            outputs: self.outputs.take_described(),
            abnormal,
        }
    }

    /// Give the drain `drain_timeout`: past it, say what is still queued and exit
    /// [`exit::INTERNAL`] (a script stuck where it cannot be stopped, an output that hangs).
    fn drain_deadline(&mut self, drained: Arc<AtomicBool>) {
        let stats = self.stats.clone();
        let timeout = self.supervision.drain_timeout;
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
            next_stats: now + r.supervision.stats_interval,
            next_snapshot: r
                .supervision
                .snapshot
                .as_ref()
                .map(|(_, every)| now + *every),
            // -v: a rate line every few seconds (debug level)
            rate_every: r.supervision.stats_interval.min(RATE_EVERY),
            verbose: tracing::enabled!(tracing::Level::DEBUG),
            rate_base: (now, r.stats.totals()),
        }
    }

    /// Do what is due at `now`; returns when the next stats line is due.
    fn run(&mut self, r: &Running, now: Instant) -> Instant {
        if let (Some((snap, every)), Some(at)) = (&r.supervision.snapshot, self.next_snapshot) {
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
            self.next_stats = now + r.supervision.stats_interval;
        }
        self.next_stats
    }
}
