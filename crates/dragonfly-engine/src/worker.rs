//! A worker: one Lua runtime running the whole chain (filter -> analyzers -> outputs) for the
//! events it is given. A batch of raw lines is decoded straight into Lua tables in one call,
//! events cross from one script to the next inside the runtime (a copy of the Lua value per
//! hand-off, no JSON round trip), and only encoded output lines leave it, one channel
//! operation per output per input batch.

use dragonfly_event::sync::Locked;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use dragonfly_io::Batch;
use dragonfly_lua::{Caller, Failure, FailureKind, Runtime, RuntimeSpec, ScriptError, TagKind};
use mlua::Value;

use crate::clock::EventClock;
use crate::enginelog::EngineLog;
use crate::stats::Stats;

/// Work for a worker.
pub enum WorkItem {
    /// Raw lines from input `input`.
    Lines {
        /// The input, by index.
        input: usize,
        /// The lines.
        batch: Batch,
    },
    /// Hot reload: finish here (timers fire once, outputs flush) and exit; the worker's
    /// successor takes the queue from the next item on.
    Retire,
}

/// Output lines collected before a batch is handed to its sink between timer firings.
const OUT_BATCH: usize = 512;

/// How often a busy worker takes its runtime's hand-off counters into the stats (an idle one
/// takes them before it waits, and at exit).
const EDGES_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Where a worker's lines go.
#[derive(Clone)]
pub struct WorkerSinks {
    /// One sender per configured output, in config order.
    pub outputs: Vec<Sender<Batch>>,
    /// The engine log (`log_event` records).
    pub log: Sender<Batch>,
    /// The stats log (`stats_event` records).
    pub stats: Sender<Batch>,
    /// Dead letters: events whose script failed (None: `engine.dead_letter = ""`).
    pub dead: Option<Sender<Batch>>,
}

/// The input batch a worker is running, kept where the engine can reach it if the worker's
/// runtime has to be given up (see [`dragonfly_lua::watchdog`]).
pub struct InFlight {
    /// The input it came from.
    pub input: usize,
    /// Its lines.
    pub batch: Arc<Batch>,
    /// Its receipts.
    pub acks: Vec<dragonfly_io::Ack>,
}

/// What the engine can see of a worker from outside.
#[derive(Default)]
pub struct WorkerStatus {
    /// The watchdog's view of the worker's runtime.
    pub watched: Mutex<Option<Arc<dragonfly_lua::watchdog::Watched>>>,
    /// The batch being run.
    pub inflight: Mutex<Option<InFlight>>,
}

/// Wait for a worker's start-up report. A worker whose runtime the watchdog parked while it
/// ran what `setup()` handed on (an analyzer that never returns) never reports: that is an
/// error too, not a wait forever; so is a report that has not come within the setup budget
/// (twice `limits.setup_timeout`: the scripts' top level, then every `setup()`) and a margin.
pub fn wait_ready(
    ready: &Receiver<Result<(), Vec<ScriptError>>>,
    status: &WorkerStatus,
    limits: &dragonfly_lua::Limits,
) -> Result<Result<(), Vec<ScriptError>>, String> {
    let deadline = Instant::now() + 2 * limits.setup_timeout + READY_MARGIN;
    loop {
        match ready.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(r) => return Ok(r),
            Err(RecvTimeoutError::Disconnected) => return Err("it died during start-up".into()),
            Err(RecvTimeoutError::Timeout) => {
                if status.watched().is_some_and(|w| w.parked()) {
                    return Err(format!(
                        "a script it ran at start-up (a script's top level, a setup(), or an event a setup() handed on) ran past its budget (engine.setup_timeout_ms = {}, or engine.script_timeout_ms) and could not be stopped",
                        limits.setup_timeout.as_millis()
                    ));
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "its scripts did not finish loading and setup() within engine.setup_timeout_ms ({} ms, twice) and could not be stopped",
                        limits.setup_timeout.as_millis()
                    ));
                }
            }
        }
    }
}

/// Past twice the setup budget, how much longer a worker's start-up report is waited for.
pub const READY_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

impl WorkerStatus {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.locked()
    }
    /// The watchdog's view of the runtime, once it runs.
    pub fn watched(&self) -> Option<Arc<dragonfly_lua::watchdog::Watched>> {
        Self::lock(&self.watched).clone()
    }
    /// Take the batch being run (from a parked worker).
    pub fn take_inflight(&self) -> Option<InFlight> {
        Self::lock(&self.inflight).take()
    }
}

#[derive(Clone)]
/// One worker: what it is built from (cloned to replace a parked runtime).
pub struct Worker {
    /// Its number.
    pub id: usize,
    /// What its runtime is built from.
    pub spec: RuntimeSpec,
    /// Its queue of work.
    pub rx: Receiver<WorkItem>,
    /// Where its lines go.
    pub sinks: WorkerSinks,
    /// The engine's counters.
    pub stats: Arc<Stats>,
    /// The engine log.
    pub log: EngineLog,
    /// What the engine sees of it.
    pub status: Arc<WorkerStatus>,
    /// Its gauges (Lua memory, batch latency), kept across replacements.
    pub gauges: Arc<crate::stats::WorkerGauges>,
}

struct Timer {
    /// When it is due: under the wall clock `due` (`at` is 0), under the event-time clock
    /// `at` (seconds since the epoch; `due` is when it was set).
    due: Instant,
    at: f64,
    seq: u64,
    analyzer: usize,
    value: Value,
}

impl PartialEq for Timer {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
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
        self.at
            .total_cmp(&o.at)
            .then((self.due, self.seq).cmp(&(o.due, o.seq)))
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
    /// `engine.clock = "event"`: the worker's event-time clock (clock.rs); None: the wall
    /// clock.
    clock: Option<EventClock>,
    /// Under the event clock, timers set before any event had a time: their delays, counted
    /// from the first time the clock has.
    unanchored: Vec<Timer>,
    /// Receipts of the input batch being processed: every output batch made from it holds
    /// them, so the input learns when the sinks have flushed what it became.
    acks: Vec<dragonfly_io::Ack>,
    /// Dead-letter records waiting for the next flush.
    dead: Batch,
    /// The runtime has tap plans set (tap.rs): they are renewed each batch until no tap is
    /// left, then cleared once.
    tapping: bool,
    /// When the hand-off counters were last taken into the stats (every
    /// [`EDGES_EVERY`], and at exit).
    edges_taken: Instant,
    #[cfg(feature = "test-hooks")]
    panic_on_first_batch: bool,
}

impl Worker {
    /// Build the runtime and run every `setup()`. Reports the outcome on `ready`, then
    /// processes work until every producer is gone, fires pending timers once and flushes.
    ///
    /// `resume`: the rest of a batch that a parked runtime left (the batch and the index of
    /// the first event still to run), run before anything else. `gate` (hot reload): after
    /// reporting ready, wait for `true` before taking any work (`false` or a dropped gate:
    /// exit without touching the queue).
    pub fn run(
        self,
        ready: Sender<Result<(), Vec<ScriptError>>>,
        resume: Option<(InFlight, usize)>,
        gate: Option<Receiver<bool>>,
    ) {
        let mut rt = match Runtime::new(&self.spec) {
            Ok(rt) => rt,
            Err(errs) => {
                let _ = ready.send(Err(errs));
                return;
            }
        };
        // seen from outside before setup() runs: a setup() parked by the watchdog is noticed
        *WorkerStatus::lock(&self.status.watched) = rt.watched().cloned();
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
            clock: self.spec.event_clock.map(EventClock::new),
            unanchored: Vec::new(),
            acks: Vec::new(),
            dead: Batch::default(),
            tapping: false,
            edges_taken: Instant::now(),
            #[cfg(feature = "test-hooks")]
            panic_on_first_batch: false,
        };
        // Anything setup() emitted (hand-offs, log lines, outputs) goes out first.
        if let Err(e) = chain.rt.drain() {
            tracing::error!("worker {}: {e}", self.id);
        }
        chain.collect(None);
        chain.flush();
        let _ = ready.send(Ok(()));
        drop(ready);
        if let Some(gate) = gate {
            if gate.recv() != Ok(true) {
                return;
            }
        }
        if let Some((inflight, from)) = resume {
            chain.run_lines(inflight, from);
        }
        // Test hook (dragonfly-mle/tests/suite/hardening.rs, feature `test-hooks`): a worker that panics on its
        // first batch, to check that a panic is logged once and the engine stops non-zero.
        #[cfg(feature = "test-hooks")]
        {
            chain.panic_on_first_batch =
                std::env::var_os("DRAGONFLY_TEST_PANIC_IN_WORKER").is_some();
        }
        chain.run();
    }
}

impl Chain<'_> {
    fn run(&mut self) {
        loop {
            let next = match self.timers.peek() {
                // under the event clock only events move time
                Some(Reverse(t)) if self.clock.is_none() => self.w.rx.recv_deadline(t.due),
                _ => self.w.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(WorkItem::Lines { input, mut batch }) => {
                    #[cfg(feature = "test-hooks")]
                    if self.panic_on_first_batch {
                        panic!("test panic (DRAGONFLY_TEST_PANIC_IN_WORKER)");
                    }
                    let acks = std::mem::take(&mut batch.acks);
                    let inflight = InFlight {
                        input,
                        batch: Arc::new(batch),
                        acks,
                    };
                    self.run_lines(inflight, 0);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.fire_due_timers(Instant::now());
                    self.flush();
                    self.take_edges();
                }
                Ok(WorkItem::Retire) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Exit: every pending timer fires once, in order; timers they set are dropped.
        self.draining = true;
        for t in std::mem::take(&mut self.unanchored) {
            self.timers.push(Reverse(t));
        }
        while let Some(Reverse(t)) = self.timers.pop() {
            self.fire(t);
        }
        self.flush();
        self.take_edges();
    }

    /// Move the runtime's hand-off counters into the stats (the live page's edges).
    fn take_edges(&mut self) {
        self.w.stats.count_edges(self.rt.take_edges());
        self.edges_taken = Instant::now();
    }

    /// Run a batch from event `from` on, then due timers, then flush.
    fn run_lines(&mut self, inflight: InFlight, from: usize) {
        let started = Instant::now();
        let (input, batch) = (inflight.input, inflight.batch.clone());
        self.acks = inflight.acks.clone();
        *WorkerStatus::lock(&self.w.status.inflight) = Some(inflight);
        self.tap(input, &batch, from);
        if self.clock.is_some() {
            self.batch_by_event_time(input, &batch, from);
        } else {
            self.batch(input, &batch, 0..batch.len(), from);
            self.fire_due_timers(Instant::now());
        }
        self.flush();
        // every EDGES_EVERY under load; at once when the queue is empty (the worker is about
        // to wait, and what it counted must not wait with it)
        if self.edges_taken.elapsed() >= EDGES_EVERY || self.w.rx.is_empty() {
            self.take_edges();
        }
        *WorkerStatus::lock(&self.w.status.inflight) = None;
        let g = &self.w.gauges;
        g.observe(started.elapsed());
        g.lua_bytes.store(self.rt.used_memory() as u64, Relaxed);
        // the worker's part is done; the sinks hold the receipts from here
        self.acks.clear();
    }

    /// Taps (tap.rs): offer the lines from `from` on as they leave the input, and tell the
    /// runtime what the analyzers' taps may take from this batch. With no tap open (and none
    /// just closed): one atomic load.
    fn tap(&mut self, input: usize, batch: &Batch, from: usize) {
        let taps = &self.w.stats.taps;
        if !taps.on() && !self.tapping {
            return;
        }
        taps.offer(crate::tap::Kind::Input, input, batch, from);
        let plans = taps.analyzer_plans();
        self.tapping = !plans.is_empty();
        if let Err(e) = self.rt.set_taps(&plans) {
            tracing::debug!("worker {}: setting the taps: {e}", self.w.id);
        }
    }

    /// Run lines `from..` of a batch under the event clock (clock.rs): in pieces, each ending
    /// where the clock reaches the next timer, which fires before the line that moves the
    /// clock there runs.
    fn batch_by_event_time(&mut self, input: usize, batch: &Batch, from: usize) {
        let n = batch.len();
        let clock = self.clock.as_mut().expect("event clock");
        clock.scan(batch);
        self.rt.set_event_times(clock.times());
        let mut start = from;
        while start < n {
            self.move_clock_to(start);
            self.fire_due_event_timers();
            // at least this line runs: a timer that re-arms with no delay cannot stall it
            let next = self.timers.peek().map(|Reverse(t)| t.at);
            let clock = self.clock.as_ref().expect("event clock");
            let end = next
                .and_then(|due| {
                    (start + 1..n).find(|&j| clock.at_line(j).is_some_and(|c| c >= due))
                })
                .unwrap_or(n);
            let stop = self.batch(input, batch, start..end, start).unwrap_or(end);
            self.move_clock_to(stop - 1);
            start = stop;
        }
        self.fire_due_event_timers();
    }

    /// Move the event clock to line `line` of the batch being run, tell the runtime
    /// (`dragonfly.now()`), and anchor the timers that waited for a first time.
    fn move_clock_to(&mut self, line: usize) {
        let Some(clock) = self.clock.as_mut() else {
            return;
        };
        clock.advance_to(line);
        let now = clock.now();
        self.rt.set_event_now(now);
        if let Some(now) = now {
            for mut t in std::mem::take(&mut self.unanchored) {
                t.at += now;
                self.timers.push(Reverse(t));
            }
        }
    }

    /// Under the event clock: fire every timer due by the clock now, in due order (those they
    /// set wait for the clock to move).
    fn fire_due_event_timers(&mut self) {
        let Some(now) = self.clock.as_ref().and_then(EventClock::now) else {
            return;
        };
        let mut due = Vec::new();
        while self.timers.peek().is_some_and(|Reverse(t)| t.at <= now) {
            due.push(self.timers.pop().expect("peeked").0);
        }
        for t in due {
            self.fire(t);
        }
    }

    /// Run lines `range` of a batch, starting at `from` (the rest of a batch a parked runtime
    /// left starts past the range's start).
    /// Returns where the batch paused (a timer set under the event clock), if it did.
    fn batch(
        &mut self,
        input: usize,
        batch: &Batch,
        range: std::ops::Range<usize>,
        from: usize,
    ) -> Option<usize> {
        let stats = &self.w.stats.inputs[input];
        let mut paused = None;
        match self.rt.run_batch_range(input, batch, from, range.end) {
            Ok(res) => {
                paused = res.paused_at;
                stats.filter.events.fetch_add(res.events as u64, Relaxed);
                for (i, e) in res.malformed {
                    let n = stats.filter.malformed.fetch_add(1, Relaxed) + 1;
                    self.w
                        .log
                        .bad_line(&stats.tag, &e.to_string(), batch.get(i), n);
                }
            }
            // run_batch itself failing before any event ran (decoding ran out of memory) means
            // no line of the batch was processed: each goes to the dead letters.
            Err(e) => {
                let n = stats.filter.errors.fetch_add(batch.len() as u64, Relaxed) + 1;
                let err = ScriptError {
                    script: "<runtime>".into(),
                    message: e.to_string(),
                };
                self.w.log.lua_error(&err, "", n);
                for i in range {
                    let f = Failure {
                        caller: Caller::Filter(input),
                        kind: FailureKind::Memory,
                        error: err.clone(),
                        traceback: None,
                        event: String::new(),
                        event_full: None,
                        value_cut: 0,
                        input_index: Some(i),
                    };
                    self.dead_letter(&f, Some((input, batch)));
                }
            }
        }
        self.collect(Some((input, batch)));
        paused
    }

    fn dead_letter(&mut self, f: &Failure, batch: Option<(usize, &Batch)>) {
        if self.w.sinks.dead.is_some() {
            dead_letter_record(&self.w.stats, f, batch, &mut self.dead);
        }
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
        self.collect(None);
        if (0..self.w.sinks.outputs.len()).any(|i| self.rt.output_len(i) >= OUT_BATCH) {
            self.flush();
        }
    }

    /// Account for what the last calls did: failures, analyzer counts, unknown tags, timers.
    /// `batch` is the input batch being run, if any (for dead letters).
    fn collect(&mut self, batch: Option<(usize, &Batch)>) {
        let stats = &self.w.stats;
        let res = self.rt.take_results();
        for (i, n) in res.counts.into_iter().enumerate() {
            if n > 0 {
                stats.analyzers[i].c.events.fetch_add(n, Relaxed);
            }
        }
        let cut = res.loops_cut;
        if cut > 0 {
            stats.routing_loops.fetch_add(cut, Relaxed);
        }
        for f in res.failures {
            let n = count_failure(stats, &f);
            stats.remember_error(&f);
            self.w.log.lua_error(&f.error, &f.event, n);
            self.dead_letter(&f, batch);
        }
        for (id, analyzer, json) in res.tapped {
            stats.taps.taken(id, analyzer, &json);
        }
        for (tag, kind) in res.unknown {
            let what = kind.name();
            if let Some(shown) = stats.unknown_tag(what, &tag) {
                if self.unknown_seen.insert((shown.clone(), kind)) {
                    self.w.log.unknown_tag(what, &shown);
                }
            }
        }
        for t in res.timers {
            if self.draining {
                stats.analyzers[t.analyzer]
                    .c
                    .timers_dropped
                    .fetch_add(1, Relaxed);
                continue;
            }
            self.seq += 1;
            let now = Instant::now();
            let mut timer = Timer {
                // dragonfly.timer_event bounds the delay; saturate all the same
                due: now.checked_add(t.after).unwrap_or(now),
                at: 0.0,
                seq: self.seq,
                analyzer: t.analyzer,
                value: t.value,
            };
            if let Some(clock) = &self.clock {
                // from the time of the event whose call set it, or the clock's now
                let from = match (batch, t.event) {
                    (Some(_), p) if p > 0 => clock.at_line(p - 1),
                    _ => clock.now(),
                };
                timer.due = now;
                timer.at = t.after.as_secs_f64();
                match from {
                    Some(f) => timer.at += f,
                    None => {
                        self.unanchored.push(timer);
                        continue;
                    }
                }
            }
            self.timers.push(Reverse(timer));
        }
    }

    /// Hand every collected output, log, stats and dead-letter line to its sink.
    fn flush(&mut self) {
        let sinks = &self.w.sinks;
        let lines = self.rt.take_lines();
        let taps = &self.w.stats.taps;
        for (i, (tx, mut batch)) in sinks.outputs.iter().zip(lines.outputs).enumerate() {
            if !batch.is_empty() {
                if taps.on() {
                    taps.offer(crate::tap::Kind::Output, i, &batch, 0);
                }
                batch.acks.extend(self.acks.iter().cloned());
                // The sink counts what it writes; a closed sink means shutdown went past it.
                let _ = tx.send(batch);
            }
        }
        if let Some(tx) = &sinks.dead {
            if !self.dead.is_empty() {
                let mut batch = self.dead.take();
                // an input is acknowledged only once its dead letters are written too
                batch.acks.extend(self.acks.iter().cloned());
                let _ = tx.send(batch);
            }
        }
        let (log, stats) = (lines.log, lines.stats);
        if !log.is_empty() {
            self.w.stats.log_events.fetch_add(log.len() as u64, Relaxed);
            let _ = sinks.log.send(log);
        }
        if !stats.is_empty() {
            self.w
                .stats
                .stats_events
                .fetch_add(stats.len() as u64, Relaxed);
            let _ = sinks.stats.send(stats);
        }
    }
}

/// Add a dead-letter record for `f` to `out`: the script, the error, the time, the input line
/// the chain started from (the event before any script ran), and, for analyzers and timers,
/// the value as the failing script left it.
///
/// Bounded: the error and traceback come cut by the runtime, the value to
/// [`dragonfly_lua::runtime::MAX_VALUE_BYTES`] (then it is a JSON string and `value_cut`
/// says how many bytes went); the input line is embedded as it was read (no copy is parsed).
/// A record the dead-letter budget cannot take ([`crate::stats::DeadLetterBudget`]) is left
/// out and counted in `dead_letters_dropped`.
pub fn dead_letter_record(
    stats: &Stats,
    f: &Failure,
    batch: Option<(usize, &Batch)>,
    out: &mut Batch,
) {
    let (input_tag, line) = match (batch, f.input_index) {
        (Some((input, b)), Some(i)) if i < b.len() => {
            (Some(stats.inputs[input].tag.as_str()), Some(b.get(i)))
        }
        _ => (None, None),
    };
    let kind = f.kind.name();
    let mut rec = serde_json::Map::new();
    rec.insert(
        "time".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .into(),
    );
    rec.insert("script".into(), f.error.script.clone().into());
    rec.insert("kind".into(), kind.into());
    rec.insert("error".into(), f.error.message.clone().into());
    if let Some(tb) = &f.traceback {
        rec.insert("traceback".into(), tb.clone().into());
    }
    if let Some(tag) = input_tag {
        rec.insert("input".into(), tag.into());
    }
    let value = if !matches!(f.caller, Caller::Filter(_)) || line.is_none() {
        f.event_full.as_deref()
    } else {
        None
    };
    if f.value_cut > 0 && value.is_some() {
        rec.insert("value_cut".into(), f.value_cut.into());
    }
    let mut bytes = serde_json::Value::Object(rec).to_string().into_bytes();
    // the input line (the event before any script ran) and, for analyzers and timers, the
    // value as the failing script left it: embedded as they are when they are JSON, as
    // strings when not (or when cut)
    let mut embed = |name: &str, raw: &[u8], as_is: bool| {
        bytes.pop(); // the closing brace
        bytes.extend_from_slice(format!(",\"{name}\":").as_bytes());
        if as_is && dragonfly_event::json::Scanner::new().validate(raw).is_ok() {
            bytes.extend_from_slice(raw.trim_ascii());
        } else {
            let text = serde_json::Value::String(String::from_utf8_lossy(raw).into_owned());
            bytes.extend_from_slice(text.to_string().as_bytes());
        }
        bytes.push(b'}');
    };
    if let Some(line) = line {
        embed("event", line, true);
    }
    if let Some(v) = value {
        embed("value", v.as_bytes(), f.value_cut == 0);
    }
    bytes.push(b'\n');
    if !stats.dead_letter_allowed(bytes.len()) {
        let (n, log) = dragonfly_io::ratelimit::bump(&stats.dead_letters_dropped);
        if log {
            tracing::warn!(count = n, bytes = bytes.len(), script = %f.error.script,
                "a dead letter was left out: dead letters are coming faster than twice the input plus 1 MiB/s (the failure is counted all the same)");
        }
        return;
    }
    out.push(&bytes);
    stats.dead_letters.fetch_add(1, Relaxed);
}

/// Count failure `f` in its script's counters; returns its script's error count (for the
/// log's rate limit).
pub(crate) fn count_failure(stats: &Stats, f: &Failure) -> u64 {
    let (counter, timeouts, memory) = match f.caller {
        Caller::Filter(i) => {
            let c = &stats.inputs[i].filter;
            (&c.errors, &c.timeouts, &c.memory_errors)
        }
        Caller::Analyzer(i) => {
            let c = &stats.analyzers[i].c;
            (&c.errors, &c.timeouts, &c.memory_errors)
        }
    };
    let n = counter.fetch_add(1, Relaxed) + 1;
    match f.kind {
        FailureKind::Timeout => {
            timeouts.fetch_add(1, Relaxed);
        }
        FailureKind::Memory => {
            memory.fetch_add(1, Relaxed);
        }
        _ => {}
    }
    n
}
