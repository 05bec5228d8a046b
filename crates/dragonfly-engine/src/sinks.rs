//! Runs each sink on its own thread: writes batches as they come, flushes when its queue is
//! empty (or every HOLD_MAX batches / HOLD_TIME, so receipts do not wait behind a busy queue),
//! reopens on request (SIGHUP/SIGUSR1), retries a failed write once after reopening.
//! Input receipts ([`dragonfly_io::Ack`]) are held until the flush that covers their messages
//! succeeded (for a sink that settles only when its files close, Parquet: until the sink says
//! those writes are settled, [`Sink::settled_writes`]); a dropped write or a failed flush
//! marks them failed. While such a sink holds open files the runner flushes it even when idle,
//! so files close by age; the last flush closes everything.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use dragonfly_io::{Ack, Batch, Sink};

/// Flush at least this often while receipts wait, even when the queue never empties.
const HOLD_TIME: Duration = Duration::from_millis(500);
const HOLD_MAX: usize = 64;

use crate::enginelog::EngineLog;
use crate::stats::OutputCounters;

/// One output on its thread (see the module doc).
pub struct SinkRunner {
    /// The output's tag, for messages.
    pub tag: String,
    /// The opened destination.
    pub sink: Box<dyn Sink>,
    /// Its queue.
    pub rx: Receiver<Batch>,
    /// Counters of a configured output (None for the engine's own log files).
    pub counters: Option<Arc<Stats>>,
    /// Its index in the stats' outputs.
    pub index: usize,
    /// Bumped to reopen (SIGHUP/SIGUSR1).
    pub reopen: Arc<AtomicU64>,
    /// Where problems go (None: tracing only).
    pub log: Option<EngineLog>,
    /// Set once every producer that will ever send has finished: the runner ends when its
    /// queue is empty, even if a sender is still held (by a parked worker that never ends).
    pub done: Arc<AtomicBool>,
}

use crate::stats::Stats;

impl SinkRunner {
    fn counters(&self) -> Option<&OutputCounters> {
        self.counters.as_ref().map(|s| &s.outputs[self.index].c)
    }

    /// Write what comes until the queue is closed or `done` and empty.
    pub fn run(mut self) {
        // receipts with the number of `write` calls made before their batch's (a sink that
        // settles only when files close releases them by that count)
        let mut held: Vec<(u64, Ack)> = Vec::new();
        let mut writes = 0u64;
        let mut since = Instant::now();
        let mut generation = self.reopen.load(Relaxed);
        loop {
            let g = self.reopen.load(Relaxed);
            if g != generation {
                generation = g;
                if let Err(e) = self.sink.reopen() {
                    self.error(&format!("reopen failed: {e}"));
                }
            }
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(mut batch) => {
                    let index = writes;
                    let ok = self.write(&batch, &mut writes);
                    if held.is_empty() {
                        since = Instant::now();
                    }
                    for a in batch.acks.drain(..) {
                        if !ok {
                            a.fail();
                        }
                        held.push((index, a));
                    }
                    if self.rx.is_empty() || held.len() >= HOLD_MAX || since.elapsed() >= HOLD_TIME
                    {
                        self.flush(&mut held, "flush failed", false);
                        since = Instant::now();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !held.is_empty() || self.sink.pending() {
                        self.flush(&mut held, "flush failed", false);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.done.load(SeqCst) && self.rx.is_empty() {
                break;
            }
        }
        self.flush(&mut held, "final flush failed", true);
    }

    /// Flush the sink (or close it: `last`), then let go of the receipts it settled (failed
    /// if the flush failed; a sink that settles when files close keeps the others held).
    fn flush(&mut self, held: &mut Vec<(u64, Ack)>, what: &str, last: bool) {
        let mut res = if last {
            self.sink.close()
        } else {
            self.sink.flush()
        };
        if let Err(e) = res {
            res = if self.sink.retains_on_error() {
                self.retry_until_written(e)
            } else {
                Err(e)
            };
        }
        let mut settled = held.len();
        if let Err(e) = res {
            self.error(&format!("{what}: {e}"));
            held.iter().for_each(|(_, a)| a.fail());
        } else if let Some(n) = self.sink.settled_writes() {
            settled = held.partition_point(|(i, _)| *i < n);
        }
        let dropped = self.sink.take_dropped();
        if dropped > 0 {
            if let Some(c) = self.counters() {
                c.dropped.fetch_add(dropped, Relaxed);
            }
        }
        held.drain(..settled);
    }

    /// A sink that keeps what it could not write (a file on a full disk): hold everything,
    /// which stalls the pipeline behind this output (backpressure), and retry with backoff —
    /// reopening now and then — until it is written. Logged once when it starts and once when
    /// it ends; counted as one error. At shutdown, `engine.drain_timeout_s` bounds the wait.
    fn retry_until_written(&mut self, first: std::io::Error) -> std::io::Result<()> {
        self.error(&format!(
            "{first}; holding its lines and retrying until they can be written (the pipeline waits)"
        ));
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        for attempt in 1u64.. {
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
            let res = if attempt % 8 == 0 {
                self.sink.reopen()
            } else {
                self.sink.flush()
            };
            if res.is_ok() {
                let msg = format!(
                    "writing again after {:.1} s; nothing was lost",
                    started.elapsed().as_secs_f64()
                );
                match &self.log {
                    Some(l) => l.sink_recovered(&self.tag, &msg),
                    None => tracing::info!(output = %self.tag, "{msg}"),
                }
                return Ok(());
            }
        }
        unreachable!("the retry loop ends only by writing")
    }

    /// Write a batch (retrying once after a reopen); false if its messages were dropped.
    fn write(&mut self, batch: &Batch, writes: &mut u64) -> bool {
        *writes += 1;
        let mut res = self.sink.write(batch);
        if let Err(e) = res {
            res = if self.sink.retains_on_error() {
                self.retry_until_written(e)
            } else {
                Err(e)
            };
        }
        if let Err(e) = &res {
            self.error(&format!("write failed ({e}); reopening and retrying"));
            *writes += 1;
            res = self.sink.reopen().and_then(|_| self.sink.write(batch));
        }
        match res {
            Ok(()) => {
                if let Some(c) = self.counters() {
                    c.events.fetch_add(batch.len() as u64, Relaxed);
                    c.bytes.fetch_add(batch.bytes() as u64, Relaxed);
                }
                true
            }
            Err(e) => {
                if let Some(c) = self.counters() {
                    c.dropped.fetch_add(batch.len() as u64, Relaxed);
                }
                self.error(&format!(
                    "write failed again ({e}); {} messages dropped",
                    batch.len()
                ));
                false
            }
        }
    }

    fn error(&self, msg: &str) {
        let n = self
            .counters()
            .map(|c| c.errors.fetch_add(1, Relaxed) + 1)
            .unwrap_or(1);
        match &self.log {
            Some(l) => l.sink_error(&self.tag, msg, n),
            None => tracing::error!(output = %self.tag, "{msg}"),
        }
    }
}
