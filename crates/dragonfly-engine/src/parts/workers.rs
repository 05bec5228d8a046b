//! The workers: each runs one Lua runtime on its own thread, fed by its own queue. This part
//! replaces a runtime the watchdog gave up (what it had done is sent on, the rest of its batch
//! goes to a new runtime), hands workers over to new runtimes at a reload, and drains them at
//! shutdown.

use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use dragonfly_event::sync::Locked;
use dragonfly_io::Batch;

use super::spawn;
use crate::enginelog::EngineLog;
use crate::stats::Stats;
use crate::worker::{self, WorkItem, Worker};

/// Runtimes the engine gives up (each keeps its memory) before it stops.
pub const MAX_PARKED: usize = 8;

/// Every worker's thread and queue, and what each was built from.
pub(crate) struct Workers {
    /// Each worker's queue (the inputs hold clones; closed here at the drain).
    queues: Vec<Sender<WorkItem>>,
    threads: Vec<JoinHandle<()>>,
    /// What each worker was built from, to replace its runtime when the watchdog parks it.
    templates: Vec<Worker>,
    /// Runtimes given up so far.
    parked: usize,
}

/// A new runtime set up aside, waiting at its gate.
pub(crate) struct Fresh {
    pub template: Worker,
    pub thread: JoinHandle<()>,
    pub gate: Sender<bool>,
}

impl Workers {
    pub(crate) fn new(
        queues: Vec<Sender<WorkItem>>,
        threads: Vec<JoinHandle<()>>,
        templates: Vec<Worker>,
    ) -> Workers {
        Workers {
            queues,
            threads,
            templates,
            parked: 0,
        }
    }

    /// Each worker's queue.
    pub(crate) fn queues(&self) -> &[Sender<WorkItem>] {
        &self.queues
    }

    /// What each worker was built from.
    pub(crate) fn templates(&self) -> &[Worker] {
        &self.templates
    }

    /// Whether a worker's thread has ended (before the drain: it failed).
    pub(crate) fn any_finished(&self) -> bool {
        self.threads.iter().any(|h| h.is_finished())
    }

    /// The inputs are stopped: close the queues, let every worker finish what is queued
    /// (replacing runtimes the watchdog gives up meanwhile, as a SIGTERM during an endless
    /// loop parks one too) and join them. What went wrong, if anything.
    pub(crate) fn drain(&mut self, stats: &Stats, log: &EngineLog) -> Option<String> {
        let mut abnormal = None;
        self.queues.clear();
        while self.threads.iter().any(|h| !h.is_finished()) {
            if let Err(why) = self.replace_parked(stats, log) {
                tracing::error!("{why}");
                abnormal.get_or_insert(why);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for (i, h) in self.threads.drain(..).enumerate() {
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
        abnormal
    }

    /// Replace every worker whose runtime the watchdog parked (a script stuck in a compiled
    /// loop, or one that kept running after its timeout): what it had produced for its batch
    /// is sent on, the event it was stuck on goes to the dead letters, and a new runtime (with
    /// every `setup()` run again) takes over the rest of the batch and the worker's queue.
    /// Fails once more than [`MAX_PARKED`] runtimes were given up.
    pub(crate) fn replace_parked(&mut self, stats: &Stats, log: &EngineLog) -> Result<(), String> {
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
            report_parked(stats, log, t, salvage, inflight.as_ref());
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
        self.threads[i] = spawn(format!("worker-{id}"), move || {
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

    /// Hand over, worker by worker, between batches: the old runtime gets a retire item,
    /// finishes what was queued before it and exits; the new one passes its gate.
    pub(crate) fn hand_over(
        &mut self,
        fresh: Vec<Fresh>,
        stats: &Stats,
        log: &EngineLog,
        problems: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        let mut fresh = fresh.into_iter().enumerate();
        while let Some((i, f)) = fresh.next() {
            let handed = self.queues[i].send(WorkItem::Retire).is_ok() && {
                // the old runtime finishes what was queued before the retire item; one the
                // watchdog gives up meanwhile is replaced as usual, and its replacement
                // retires in its place
                loop {
                    if self.threads[i].is_finished() {
                        break true;
                    }
                    if let Err(why) = self.replace_parked(stats, log) {
                        problems.push(why);
                        break false;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            };
            if !handed {
                let _ = f.gate.send(false);
                for (_, rest) in fresh {
                    let _ = rest.gate.send(false);
                }
                problems.push(format!(
                    "worker {i}: the handover failed; workers before it run the new scripts"
                ));
                return Err(std::mem::take(problems));
            }
            let old = std::mem::replace(&mut self.threads[i], f.thread);
            let _ = old.join();
            self.templates[i] = f.template;
            let _ = f.gate.send(true);
        }
        Ok(())
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
        stats.remember_error(f);
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
    stats.remember_error(&failure);
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
