//! A worker: one Lua runtime running the whole chain (filter -> analyzers -> outputs) for the
//! events it is given. Events cross from one script to the next inside the runtime (a copy of
//! the Lua value per hand-off, no JSON round trip); only encoded output lines leave it, in
//! batches, one channel operation per output per input batch.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use dragonfly_io::Batch;
use dragonfly_lua::{LineError, Runtime, RuntimeSpec, ScriptError, TagKind};
use mlua::Value;

use crate::enginelog::EngineLog;
use crate::stats::Stats;

/// Work for a worker.
pub enum WorkItem {
    /// Raw lines from input `input`.
    Lines { input: usize, batch: Batch },
}

/// A hand-off chain longer than this for one event is a routing loop.
const MAX_HOPS: usize = 10_000;
/// Output lines collected before a batch is handed to its sink mid-input-batch.
const OUT_BATCH: usize = 512;
/// Bytes of an event copied into an error message.
const EVENT_EXCERPT: usize = 512;

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
        };
        // Anything setup() emitted (log lines, outputs) goes out first.
        chain.after_call();
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
                Ok(WorkItem::Lines { input, batch }) => {
                    for line in batch.iter() {
                        self.line(input, line);
                    }
                    self.fire_due_timers(Instant::now());
                    self.flush();
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

    fn line(&mut self, input: usize, line: &[u8]) {
        let counters = &self.w.stats.inputs[input].filter;
        match self.rt.run_filter(input, line) {
            Ok(()) => {
                counters.events.fetch_add(1, Relaxed);
            }
            Err(LineError::Malformed(e)) => {
                let n = counters.malformed.fetch_add(1, Relaxed) + 1;
                self.w
                    .log
                    .bad_line(&self.w.stats.inputs[input].tag, &e.to_string(), line, n);
            }
            Err(LineError::Script(e)) => {
                counters.events.fetch_add(1, Relaxed);
                let n = counters.errors.fetch_add(1, Relaxed) + 1;
                let mut excerpt = String::from_utf8_lossy(line).into_owned();
                dragonfly_lua::runtime::truncate(&mut excerpt, EVENT_EXCERPT);
                self.w.log.lua_error(&e, &excerpt, n);
            }
        }
        self.after_call();
        self.route();
    }

    /// Run analyzers until no event is waiting.
    fn route(&mut self) {
        let mut hops = 0;
        loop {
            let next = self.rt.mailbox().analyze.pop_front();
            let Some((idx, value)) = next else { break };
            hops += 1;
            if hops > MAX_HOPS {
                let dropped = {
                    let mut mb = self.rt.mailbox();
                    let n = mb.analyze.len() + 1;
                    mb.analyze.clear();
                    n
                };
                let n = self.w.stats.routing_loops.fetch_add(1, Relaxed) + 1;
                self.w
                    .log
                    .routing_loop(self.rt.analyzer_name(idx), dropped, n);
                break;
            }
            self.analyze(idx, value);
        }
    }

    fn analyze(&mut self, idx: usize, value: Value) {
        let c = &self.w.stats.analyzers[idx].c;
        c.events.fetch_add(1, Relaxed);
        let keep = value.clone();
        if let Err(e) = self.rt.run_analyzer(idx, value) {
            let n = c.errors.fetch_add(1, Relaxed) + 1;
            let excerpt = self.rt.describe(&keep, EVENT_EXCERPT);
            self.w.log.lua_error(&e, &excerpt, n);
        }
        self.after_call();
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
        self.analyze(t.analyzer, t.value);
        self.route();
    }

    /// Move what the last script call emitted to where it goes (except analyzer hand-offs,
    /// which `route` runs): timers into the heap, full output batches to their sinks.
    fn after_call(&mut self) {
        let (timers, unknown, full): (Vec<_>, Vec<_>, Vec<usize>) = {
            let mut mb = self.rt.mailbox();
            let full = mb
                .outputs
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= OUT_BATCH)
                .map(|(i, _)| i)
                .collect();
            (
                std::mem::take(&mut mb.timers),
                std::mem::take(&mut mb.unknown),
                full,
            )
        };
        for t in timers {
            if self.draining {
                self.w.stats.analyzers[t.analyzer]
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
        for (tag, kind) in unknown {
            let what = match kind {
                TagKind::Analyzer => "analyzer",
                TagKind::Output => "output",
            };
            let first = self.w.stats.unknown_tag(what, &tag);
            if first && self.unknown_seen.insert((tag.clone(), kind)) {
                self.w.log.unknown_tag(what, &tag);
            }
        }
        for i in full {
            self.send_output(i);
        }
    }

    fn send_output(&mut self, i: usize) {
        let batch = self.rt.mailbox().outputs[i].take();
        if batch.is_empty() {
            return;
        }
        // The sink counts what it writes; a closed sink means shutdown already went past it.
        let _ = self.w.sinks[i].send(batch);
    }

    /// Hand every collected output, log and stats line to its sink.
    fn flush(&mut self) {
        let n = self.w.sinks.len() - 2;
        for i in 0..n {
            self.send_output(i);
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
