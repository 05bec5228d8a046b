//! The outputs (each sink on a thread of its own) and the engine's own logs (the engine log,
//! the stats log, the dead letters), and how each ends: once nothing can write to it any more,
//! it writes what is queued and its thread returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use dragonfly_config::Config;
use dragonfly_event::sync::Locked;
use dragonfly_io::Batch;

use super::depth;
use crate::stats::Stats;

/// Every output's sink thread.
pub(crate) struct Outputs {
    threads: Vec<JoinHandle<()>>,
    /// Set once the workers are gone: the sinks end when their queues are empty.
    done: Arc<AtomicBool>,
    /// Each output's tag and where it writes (for the run's last words).
    described: Vec<(String, String)>,
}

/// An output opened anew by a reload, for the new runtimes.
pub(crate) struct Reopened {
    pub index: usize,
    pub thread: JoinHandle<()>,
    pub queue: Receiver<Batch>,
    pub describe: String,
}

impl Outputs {
    pub(crate) fn new(
        threads: Vec<JoinHandle<()>>,
        done: Arc<AtomicBool>,
        described: Vec<(String, String)>,
    ) -> Outputs {
        Outputs {
            threads,
            done,
            described,
        }
    }

    /// The flag a sink of these outputs ends by (for a sink reopened by a reload).
    pub(crate) fn done_flag(&self) -> &Arc<AtomicBool> {
        &self.done
    }

    /// Whether an output's thread has ended (before the drain: it failed).
    pub(crate) fn any_finished(&self) -> bool {
        self.threads.iter().any(|h| h.is_finished())
    }

    /// The workers are gone: every output writes what is queued and ends. An output that
    /// panicked is said.
    pub(crate) fn finish(&mut self) -> Result<(), String> {
        self.done.store(true, Ordering::SeqCst);
        let mut result = Ok(());
        for h in self.threads.drain(..) {
            if h.join().is_err() {
                result = Err("an output panicked".to_string());
            }
        }
        result
    }

    /// The outputs a reload reopened take their places (their queues in the stats, their
    /// descriptions); the old sinks end (and flush) once the old runtimes that wrote to them
    /// are gone.
    pub(crate) fn swap(&mut self, reopened: Vec<Reopened>, config: &Config, stats: &Stats) {
        let mut old_sinks = Vec::new();
        for r in reopened {
            old_sinks.push(std::mem::replace(&mut self.threads[r.index], r.thread));
            let tag = &config.outputs[r.index].tag;
            let name = format!("output:{tag}");
            let mut queues = stats.queues.locked();
            if let Some(q) = queues.iter_mut().find(|q| q.0 == name) {
                *q = depth(name, r.queue);
            }
            if let Some(o) = self.described.iter_mut().find(|o| &o.0 == tag) {
                o.1 = r.describe.clone();
            }
            tracing::info!("output '{tag}': reopened: {}", r.describe);
        }
        for h in old_sinks {
            let _ = h.join();
        }
    }

    /// Each output's tag and where it writes.
    pub(crate) fn take_described(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.described)
    }
}

/// The engine log's and the stats log's sinks, and the dead letters'.
pub(crate) struct OwnLogs {
    /// The engine log's and the stats log's queues (None once closed at the end).
    senders: Option<(Sender<Batch>, Sender<Batch>)>,
    threads: Vec<JoinHandle<()>>,
    done: Arc<AtomicBool>,
}

impl OwnLogs {
    pub(crate) fn new(
        log: Sender<Batch>,
        stats: Sender<Batch>,
        threads: Vec<JoinHandle<()>>,
        done: Arc<AtomicBool>,
    ) -> OwnLogs {
        OwnLogs {
            senders: Some((log, stats)),
            threads,
            done,
        }
    }

    /// Queue a stats line (nothing once closed).
    pub(crate) fn write_stats(&self, line: Batch) {
        if let Some((_, stats)) = &self.senders {
            let _ = stats.send(line);
        }
    }

    /// Close them, last: each writes what is queued and ends. The caller drops its own
    /// engine-log handles first.
    pub(crate) fn close(&mut self) {
        self.senders = None;
        self.done.store(true, Ordering::SeqCst);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}
