//! A worker: one Lua runtime running the whole chain (filter -> analyzers -> outputs) for the
//! events it is given. A batch of raw lines is decoded straight into Lua tables in one call,
//! events cross from one script to the next inside the runtime (a copy of the Lua value per
//! hand-off, no JSON round trip), and only encoded output lines leave it, one channel
//! operation per output per input batch.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use dragonfly_io::Batch;
use dragonfly_lua::{Caller, Runtime, RuntimeSpec, ScriptError, TagKind};
use mlua::Value;

use crate::enginelog::EngineLog;
use crate::stats::Stats;

/// Work for a worker.
pub enum WorkItem {
    /// Raw lines from input `input`.
    Lines { input: usize, batch: Batch },
}

/// Output lines collected before a batch is handed to its sink between timer firings.
const OUT_BATCH: usize = 512;

pub struct Worker {
    pub id: usize,
    pub spec: RuntimeSpec,
    pub rx: Receiver<WorkItem>,
    /// One sender per output, then the engine log, then the stats log.
    pub sinks: Vec<Sender<Batch>>,
    pub stats: Arc<Stats>,
    pub log: EngineLog,
}

struct Timer {
    due: Instant,
    seq: u64,
    analyzer: usize,
    value: Value,
}

impl PartialEq for Timer {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timer {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(o.due, o.seq))
    }
}

struct Chain<'a> {
    w: &'a Worker,
    rt: Runtime,
    timers: BinaryHeap<Reverse<Timer>>,
    seq: u64,
    unknown_seen: HashSet<(String, TagKind)>,
    /// New timers are refused once the worker is draining for exit.
    draining: bool,
    /// Receipts of the input batch being processed: every output batch made from it holds
    /// them, so the input learns when the sinks have flushed what it became.
    acks: Vec<dragonfly_io::Ack>,
}

impl Worker {
    /// Build the runtime and run every `setup()`. Reports the outcome on `ready`, then
    /// processes work until every producer is gone, fires pending timers once and flushes.
    pub fn run(self, ready: Sender<Result<(), Vec<ScriptError>>>) {
        let mut rt = match Runtime::new(&self.spec) {
            Ok(rt) => rt,
            Err(errs) => {
                let _ = ready.send(Err(errs));
                return;
            }
        };
        let errs = rt.setup();
        if !errs.is_empty() {
            let _ = ready.send(Err(errs));
            return;
        }
        let mut chain = Chain {
            w: &self,
            rt,
            timers: BinaryHeap::new(),
            seq: 0,
            unknown_seen: HashSet::new(),
            draining: false,
            acks: Vec::new(),
        };
        // Anything setup() emitted (hand-offs, log lines, outputs) goes out first.
        if let Err(e) = chain.rt.drain() {
            tracing::error!("worker {}: {e}", self.id);
        }
        chain.collect();
        chain.flush();
        let _ = ready.send(Ok(()));
        drop(ready);
        chain.run();
    }
}

impl Chain<'_> {
    fn run(&mut self) {
        loop {
            let next = match self.timers.peek() {
                Some(Reverse(t)) => self.w.rx.recv_deadline(t.due),
                None => self.w.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(WorkItem::Lines { input, mut batch }) => {
                    self.acks = std::mem::take(&mut batch.acks);
                    self.batch(input, &batch);
                    drop(batch);
                    self.fire_due_timers(Instant::now());
                    self.flush();
                    // the worker's part is done; the sinks hold the receipts from here
                    self.acks.clear();
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.fire_due_timers(Instant::now());
                    self.flush();
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Exit: every pending timer fires once, in order; timers they set are dropped.
        self.draining = true;
        while let Some(Reverse(t)) = self.timers.pop() {
            self.fire(t);
        }
        self.flush();
    }

    fn batch(&mut self, input: usize, batch: &Batch) {
        let stats = &self.w.stats.inputs[input];
        match self.rt.run_batch(input, batch) {
            Ok(res) => {
                stats.filter.events.fetch_add(res.events as u64, Relaxed);
                for (i, e) in res.malformed {
                    let n = stats.filter.malformed.fetch_add(1, Relaxed) + 1;
                    self.w
                        .log
                        .bad_line(&stats.tag, &e.to_string(), batch.get(i), n);
                }
            }
            // run_batch itself failing (not a script error, which is caught per call) means
            // the runtime is broken: count every line of the batch as failed and say so.
            Err(e) => {
                let n = stats.filter.errors.fetch_add(batch.len() as u64, Relaxed) + 1;
                let err = ScriptError {
                    script: "<runtime>".into(),
                    message: e.to_string(),
                };
                self.w.log.lua_error(&err, "", n);
            }
        }
        self.collect();
    }

    fn fire_due_timers(&mut self, now: Instant) {
        while self.timers.peek().is_some_and(|Reverse(t)| t.due <= now) {
            let Reverse(t) = self.timers.pop().expect("peeked");
            self.fire(t);
        }
    }

    fn fire(&mut self, t: Timer) {
        self.w.stats.analyzers[t.analyzer]
            .c
            .timers_fired
            .fetch_add(1, Relaxed);
        if let Err(e) = self.rt.run_timer(t.analyzer, t.value) {
            tracing::error!("worker {}: timer: {e}", self.w.id);
        }
        self.collect();
        if (0..self.w.sinks.len() - 2).any(|i| self.rt.output_len(i) >= OUT_BATCH) {
            self.flush();
        }
    }

    /// Account for what the last calls did: failures, analyzer counts, unknown tags, timers.
    fn collect(&mut self) {
        let stats = &self.w.stats;
        for (i, n) in self.rt.take_counts().into_iter().enumerate() {
            if n > 0 {
                stats.analyzers[i].c.events.fetch_add(n, Relaxed);
            }
        }
        let cut = self.rt.take_loops_cut();
        if cut > 0 {
            stats.routing_loops.fetch_add(cut, Relaxed);
        }
        for f in self.rt.take_failures() {
            let counter = match f.caller {
                Caller::Filter(i) => &stats.inputs[i].filter.errors,
                Caller::Analyzer(i) => &stats.analyzers[i].c.errors,
            };
            let n = counter.fetch_add(1, Relaxed) + 1;
            self.w.log.lua_error(&f.error, &f.event, n);
        }
        for (tag, kind) in self.rt.take_unknown() {
            let what = match kind {
                TagKind::Analyzer => "analyzer",
                TagKind::Output => "output",
            };
            let first = stats.unknown_tag(what, &tag);
            if first && self.unknown_seen.insert((tag.clone(), kind)) {
                self.w.log.unknown_tag(what, &tag);
            }
        }
        let timers = std::mem::take(&mut self.rt.mailbox().timers);
        for t in timers {
            if self.draining {
                stats.analyzers[t.analyzer]
                    .c
                    .timers_dropped
                    .fetch_add(1, Relaxed);
                continue;
            }
            self.seq += 1;
            self.timers.push(Reverse(Timer {
                due: Instant::now() + t.after,
                seq: self.seq,
                analyzer: t.analyzer,
                value: t.value,
            }));
        }
    }

    /// Hand every collected output, log and stats line to its sink.
    fn flush(&mut self) {
        let n = self.w.sinks.len() - 2;
        for i in 0..n {
            let mut batch = self.rt.take_output(i);
            if !batch.is_empty() {
                batch.acks.extend(self.acks.iter().cloned());
                // The sink counts what it writes; a closed sink means shutdown went past it.
                let _ = self.w.sinks[i].send(batch);
            }
        }
        let (log, stats) = {
            let mut mb = self.rt.mailbox();
            (mb.log.take(), mb.stats.take())
        };
        if !log.is_empty() {
            self.w.stats.log_events.fetch_add(log.len() as u64, Relaxed);
            let _ = self.w.sinks[n].send(log);
        }
        if !stats.is_empty() {
            self.w
                .stats
                .stats_events
                .fetch_add(stats.len() as u64, Relaxed);
            let _ = self.w.sinks[n + 1].send(stats);
        }
    }
}
