//! Runs each sink on its own thread: writes batches as they come, flushes when its queue is
//! empty, reopens on request (SIGHUP/SIGUSR1), retries a failed write once after reopening.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use dragonfly_io::{Batch, Sink};

use crate::enginelog::EngineLog;
use crate::stats::OutputCounters;

pub struct SinkRunner {
    pub tag: String,
    pub sink: Box<dyn Sink>,
    pub rx: Receiver<Batch>,
    /// Counters of a configured output (None for the engine's own log files).
    pub counters: Option<Arc<Stats>>,
    pub index: usize,
    pub reopen: Arc<AtomicU64>,
    pub log: Option<EngineLog>,
}

use crate::stats::Stats;

impl SinkRunner {
    fn counters(&self) -> Option<&OutputCounters> {
        self.counters.as_ref().map(|s| &s.outputs[self.index].c)
    }

    pub fn run(mut self) {
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
                Ok(batch) => {
                    self.write(&batch);
                    if self.rx.is_empty() {
                        if let Err(e) = self.sink.flush() {
                            self.error(&format!("flush failed: {e}"));
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Err(e) = self.sink.flush() {
            self.error(&format!("final flush failed: {e}"));
        }
    }

    fn write(&mut self, batch: &Batch) {
        let mut res = self.sink.write(batch);
        if let Err(e) = &res {
            self.error(&format!("write failed ({e}); reopening and retrying"));
            res = self.sink.reopen().and_then(|_| self.sink.write(batch));
        }
        match res {
            Ok(()) => {
                if let Some(c) = self.counters() {
                    c.events.fetch_add(batch.len() as u64, Relaxed);
                    c.bytes.fetch_add(batch.bytes() as u64, Relaxed);
                }
            }
            Err(e) => {
                if let Some(c) = self.counters() {
                    c.dropped.fetch_add(batch.len() as u64, Relaxed);
                }
                self.error(&format!(
                    "write failed again ({e}); {} messages dropped",
                    batch.len()
                ));
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
