//! Counters of every stage, and the stats line written to dragonfly-mle-stats.log.

use dragonfly_event::sync::Locked;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use dragonfly_io::InputCounters;
use dragonfly_lua::{Caller, EdgeTo};
use dragonfly_store::redis_backend::StoreCounters;
use serde_json::{json, Map, Value};

use crate::record::{
    AnalyzerRecord, Histogram, InputRecord, OutputRecord, StatsRecord, StoreRecord, WorkerRecord,
};

/// Counters of an input's filter script.
#[derive(Debug, Default)]
pub struct FilterCounters {
    /// Events handed to the filter's loop().
    pub events: AtomicU64,
    /// Lines that were not valid JSON.
    pub malformed: AtomicU64,
    /// Lua errors in loop() (all kinds, including the two below).
    pub errors: AtomicU64,
    /// Calls stopped by engine.script_timeout_ms.
    pub timeouts: AtomicU64,
    /// Calls that hit engine.lua_memory_mb.
    pub memory_errors: AtomicU64,
}

#[derive(Debug, Default)]
/// Counters of one analyzer.
pub struct AnalyzerCounters {
    /// Events handed to its loop().
    pub events: AtomicU64,
    /// Failed calls (all kinds).
    pub errors: AtomicU64,
    /// Calls stopped by engine.script_timeout_ms.
    pub timeouts: AtomicU64,
    /// Calls that hit engine.lua_memory_mb.
    pub memory_errors: AtomicU64,
    /// Timer callbacks run.
    pub timers_fired: AtomicU64,
    /// Timers still pending at exit that could not fire.
    pub timers_dropped: AtomicU64,
}

#[derive(Debug, Default)]
/// Counters of one output.
pub struct OutputCounters {
    /// Messages written.
    pub events: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Write or flush failures (episodes).
    pub errors: AtomicU64,
    /// Messages that could not be written even after retrying.
    pub dropped: AtomicU64,
}

/// Counters of one input.
pub struct InputStats {
    /// Its tag.
    pub tag: String,
    /// What the source counts.
    pub io: Arc<InputCounters>,
    /// What its filter counts.
    pub filter: FilterCounters,
}

/// Counters with their config tag.
pub struct Named<T> {
    /// The tag.
    pub tag: String,
    /// The counters.
    pub c: T,
}

/// Upper bounds of the batch latency histogram's buckets, in seconds (Prometheus `le`).
pub const BATCH_BUCKETS: [f64; 10] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// One worker's gauges: its Lua runtime's memory and how long its batches take (from a batch
/// taken off its queue to its outputs handed on). Kept across runtime replacements and hot
/// reloads (one per worker number).
#[derive(Debug, Default)]
pub struct WorkerGauges {
    /// Bytes the worker's Lua runtime holds, after its last batch.
    pub lua_bytes: AtomicU64,
    /// Batches run, per bucket of [`BATCH_BUCKETS`] (the last: longer than all).
    pub buckets: [AtomicU64; BATCH_BUCKETS.len() + 1],
    /// Total time of the batches, in microseconds.
    pub sum_us: AtomicU64,
}

impl WorkerGauges {
    /// A batch took `d`.
    pub fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = BATCH_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BATCH_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn snapshot(&self) -> WorkerRecord {
        let l = |a: &AtomicU64| a.load(Relaxed);
        // cumulative, as Prometheus histograms count
        let mut acc = 0;
        let mut buckets = crate::record::Tagged::new();
        for (i, b) in BATCH_BUCKETS.iter().enumerate() {
            acc += l(&self.buckets[i]);
            buckets.insert(b.to_string(), acc);
        }
        acc += l(&self.buckets[BATCH_BUCKETS.len()]);
        buckets.insert("+Inf".into(), acc);
        WorkerRecord {
            lua_bytes: l(&self.lua_bytes),
            batches: acc,
            batch_seconds: Histogram {
                buckets,
                sum: l(&self.sum_us) as f64 / 1e6,
                count: acc,
            },
        }
    }
}

/// The most resident memory this process has had, in bytes (Linux: `VmHWM` in
/// /proc/self/status): what a memory limit has to allow, unlike the reading of the moment.
pub fn rss_peak_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// The resident memory of this process, in bytes (Linux: /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

/// A queue between stages: its name (`worker:<n>`, `output:<tag>`, `dead_letters`: the
/// stage, then its tag) and how many batches wait in it now.
pub type QueueDepth = (String, Box<dyn Fn() -> usize + Send + Sync>);

/// Script failures the live page shows (the newest last).
pub const RECENT_ERRORS: usize = 20;

/// Most tags that name nothing counted each by name (per kind together); events to further
/// ones are counted under [`OTHER_TAGS`].
pub const MAX_UNKNOWN_TAGS: usize = 256;
/// Where events to tags past [`MAX_UNKNOWN_TAGS`] are counted.
pub const OTHER_TAGS: &str = "(other tags)";
/// Longest tag kept in a counter's name or a log line, in bytes (cut with `...`).
pub const MAX_TAG_SHOWN: usize = 128;

/// A tag as counters and logs show it: cut to [`MAX_TAG_SHOWN`] bytes.
pub fn shown_tag(tag: &str) -> String {
    let mut s = tag.to_string();
    dragonfly_event::text::truncate(&mut s, MAX_TAG_SHOWN);
    s
}

/// Every counter of the engine. Shared by all threads; updated with relaxed atomics.
pub struct Stats {
    /// Per input, in config order.
    pub inputs: Vec<InputStats>,
    /// Per analyzer.
    pub analyzers: Vec<Named<AnalyzerCounters>>,
    /// Per output.
    pub outputs: Vec<Named<OutputCounters>>,
    /// Events routed to a tag that names nothing, per tag.
    pub unknown_tags: Mutex<BTreeMap<String, u64>>,
    /// `log_event` records.
    pub log_events: AtomicU64,
    /// `stats_event` records.
    pub stats_events: AtomicU64,
    /// Analyzer hand-offs cut because one event bounced between analyzers too often.
    pub routing_loops: AtomicU64,
    /// Records written to the dead-letter output.
    pub dead_letters: AtomicU64,
    /// Dead-letter records left out because they came faster than their budget
    /// ([`DeadLetterBudget`]); their failures are counted all the same.
    pub dead_letters_dropped: AtomicU64,
    /// What the dead letters may still write.
    pub dead_letter_budget: Mutex<DeadLetterBudget>,
    /// HTTP connections the listener closed: headers not sent in time, or the oldest closed
    /// to make room for a new one (see [`crate::http`]).
    pub http_connections_closed: AtomicU64,
    /// HTTP accepts that failed (out of file descriptors); the listener went on.
    pub http_accept_errors: AtomicU64,
    /// Every queue between stages (set once the topology is built).
    pub queues: Mutex<Vec<QueueDepth>>,
    /// Per worker, by number (set once the topology is built).
    pub workers: Mutex<Vec<Arc<WorkerGauges>>>,
    /// The last [`RECENT_ERRORS`] script failures: time, script, kind, message, event excerpt.
    pub recent_errors: Mutex<std::collections::VecDeque<Value>>,
    /// Every `setup()` ran and the inputs are open (`/health`'s readiness).
    pub ready: std::sync::atomic::AtomicBool,
    /// Hot reloads done.
    pub reloads: AtomicU64,
    /// Hot reloads refused (the running pipeline kept).
    pub reload_failures: AtomicU64,
    /// The Redis backend's counters (None for the embedded store).
    pub store: Option<(String, Arc<StoreCounters>)>,
    /// The embedded store, for its key count (None with Redis).
    pub embedded: Option<dragonfly_store::embedded::EmbeddedStore>,
    /// The taps open on the pipeline ([`crate::tap`]).
    pub taps: Arc<crate::tap::Taps>,
    /// Hand-offs by script and destination, as the scripts made them (the live page's edges).
    pub edges: Mutex<HashMap<(Caller, EdgeTo), u64>>,
    /// Script failures grouped by script, line and kind ([`crate::errgroups`]).
    pub error_groups: Mutex<crate::errgroups::ErrorGroups>,
    /// When the engine started (the record's `uptime_s`).
    pub started: std::time::Instant,
}

/// How many bytes the dead letters may write: a token bucket refilled with twice the bytes
/// the inputs read since it was last looked at, plus [`DeadLetterBudget::PER_SECOND`] per
/// second (for failures no input line caused: timers), holding at most
/// [`DeadLetterBudget::BURST`]. So dead letters never fill a disk faster than twice the input
/// plus 1 MiB/s, whatever the scripts do; past the budget a record is left out and counted
/// (`dead_letters_dropped`).
#[derive(Debug)]
pub struct DeadLetterBudget {
    tokens: f64,
    last: std::time::Instant,
    input_seen: u64,
}

impl DeadLetterBudget {
    /// Bytes per second the budget grows by on its own.
    pub const PER_SECOND: f64 = (1 << 20) as f64;
    /// Most bytes the budget holds.
    pub const BURST: f64 = (16 << 20) as f64;
    /// Dead-letter bytes allowed per input byte read.
    pub const PER_INPUT_BYTE: f64 = 2.0;

    fn new() -> Self {
        Self {
            tokens: Self::BURST,
            last: std::time::Instant::now(),
            input_seen: 0,
        }
    }

    /// Spend `bytes` if the budget, refilled up to now with `input_total` bytes read in all,
    /// holds them.
    pub fn spend(&mut self, bytes: usize, input_total: u64) -> bool {
        let now = std::time::Instant::now();
        let read = input_total.saturating_sub(self.input_seen);
        self.input_seen = input_total;
        self.tokens = (self.tokens
            + Self::PER_INPUT_BYTE * read as f64
            + Self::PER_SECOND * now.duration_since(self.last).as_secs_f64())
        .min(Self::BURST);
        self.last = now;
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

impl Stats {
    /// Whether a dead-letter record of `bytes` may be written now ([`DeadLetterBudget`]).
    pub fn dead_letter_allowed(&self, bytes: usize) -> bool {
        let read: u64 = self.inputs.iter().map(|i| i.io.bytes.load(Relaxed)).sum();
        self.dead_letter_budget.locked().spend(bytes, read)
    }

    /// Zeroed counters for these tags.
    pub fn new<'a>(
        inputs: impl Iterator<Item = &'a str>,
        analyzers: impl Iterator<Item = &'a str>,
        outputs: impl Iterator<Item = &'a str>,
    ) -> Self {
        let inputs: Vec<&str> = inputs.collect();
        let analyzers: Vec<&str> = analyzers.collect();
        let outputs: Vec<&str> = outputs.collect();
        let owned = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let taps = crate::tap::Taps::new(owned(&inputs), owned(&analyzers), owned(&outputs));
        Self {
            inputs: inputs
                .into_iter()
                .map(|t| InputStats {
                    tag: t.to_string(),
                    io: Arc::new(InputCounters::default()),
                    filter: FilterCounters::default(),
                })
                .collect(),
            analyzers: analyzers
                .into_iter()
                .map(|t| Named {
                    tag: t.to_string(),
                    c: AnalyzerCounters::default(),
                })
                .collect(),
            outputs: outputs
                .into_iter()
                .map(|t| Named {
                    tag: t.to_string(),
                    c: OutputCounters::default(),
                })
                .collect(),
            unknown_tags: Mutex::new(BTreeMap::new()),
            log_events: AtomicU64::new(0),
            stats_events: AtomicU64::new(0),
            routing_loops: AtomicU64::new(0),
            queues: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            recent_errors: Mutex::new(std::collections::VecDeque::new()),
            ready: std::sync::atomic::AtomicBool::new(false),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            dead_letters_dropped: AtomicU64::new(0),
            dead_letter_budget: Mutex::new(DeadLetterBudget::new()),
            http_connections_closed: AtomicU64::new(0),
            http_accept_errors: AtomicU64::new(0),
            store: None,
            embedded: None,
            taps: Arc::new(taps),
            edges: Mutex::new(HashMap::new()),
            error_groups: Mutex::new(crate::errgroups::ErrorGroups::default()),
            started: std::time::Instant::now(),
        }
    }

    /// Count hand-offs a worker's runtime made (one lock per call). Edges to tags that name
    /// nothing are bounded as [`Stats::unknown_tag`] bounds their counters.
    pub fn count_edges(&self, edges: Vec<dragonfly_lua::Edge>) {
        if edges.is_empty() {
            return;
        }
        let mut m = self.edges.locked();
        for e in edges {
            let mut key = match e.to {
                EdgeTo::Unknown(kind, tag) => (e.from, EdgeTo::Unknown(kind, shown_tag(&tag))),
                to => (e.from, to),
            };
            if let EdgeTo::Unknown(kind, _) = &key.1 {
                if !m.contains_key(&key)
                    && m.keys()
                        .filter(|k| matches!(&k.1, EdgeTo::Unknown(x, _) if x == kind))
                        .count()
                        >= MAX_UNKNOWN_TAGS
                {
                    key.1 = EdgeTo::Unknown(*kind, OTHER_TAGS.to_string());
                }
            }
            *m.entry(key).or_insert(0) += e.events;
        }
    }

    /// The edges as the stats record shows them: each input to its filter, then every
    /// hand-off taken, by node id (`input:TAG`, `filter:TAG` (the input's), `analyzer:TAG`,
    /// `output:TAG`, `unknown-analyzer:TAG`, `unknown-output:TAG`), sorted.
    fn edge_records(&self) -> Vec<crate::record::EdgeRecord> {
        let from = |c: &Caller| match *c {
            Caller::Filter(i) => format!(
                "filter:{}",
                self.inputs.get(i).map_or("?", |x| x.tag.as_str())
            ),
            Caller::Analyzer(i) => {
                format!(
                    "analyzer:{}",
                    self.analyzers.get(i).map_or("?", |x| x.tag.as_str())
                )
            }
        };
        let to = |t: &EdgeTo| match t {
            EdgeTo::Analyzer(i) => {
                format!(
                    "analyzer:{}",
                    self.analyzers.get(*i).map_or("?", |x| x.tag.as_str())
                )
            }
            EdgeTo::Output(i) => {
                format!(
                    "output:{}",
                    self.outputs.get(*i).map_or("?", |x| x.tag.as_str())
                )
            }
            EdgeTo::Unknown(kind, tag) => format!("unknown-{}:{tag}", kind.name()),
        };
        let mut list: Vec<crate::record::EdgeRecord> = self
            .inputs
            .iter()
            .map(|i| crate::record::EdgeRecord {
                from: format!("input:{}", i.tag),
                to: format!("filter:{}", i.tag),
                events: i.filter.events.load(Relaxed),
            })
            .collect();
        let mut taken: Vec<crate::record::EdgeRecord> = self
            .edges
            .locked()
            .iter()
            .map(|((f, t), &n)| crate::record::EdgeRecord {
                from: from(f),
                to: to(t),
                events: n,
            })
            .collect();
        taken.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        list.extend(taken);
        list
    }

    /// Events sent to tags that name nothing, all tags together.
    pub fn unknown_tag_events(&self) -> u64 {
        self.unknown_tags.locked().values().sum()
    }

    /// Count an event sent to a tag that names nothing; the tag as counted (cut to
    /// [`MAX_TAG_SHOWN`], or [`OTHER_TAGS`] past [`MAX_UNKNOWN_TAGS`] tags) the first time it
    /// is counted, for the log. Tags a script makes from event fields are the attacker's: so
    /// many and so long as they like, they cost at most this many counters.
    pub fn unknown_tag(&self, what: &str, tag: &str) -> Option<String> {
        let mut m = self.unknown_tags.locked();
        let mut shown = shown_tag(tag);
        let mut key = format!("{what}:{shown}");
        let prefix = format!("{what}:");
        if !m.contains_key(&key)
            && m.keys().filter(|k| k.starts_with(&prefix)).count() >= MAX_UNKNOWN_TAGS
        {
            shown = OTHER_TAGS.to_string();
            key = format!("{what}:{OTHER_TAGS}");
        }
        let n = m.entry(key).or_insert(0);
        *n += 1;
        (*n == 1).then_some(shown)
    }

    /// Events whose script failed (errors, timeouts, memory, routing loops), every script.
    pub fn script_failures(&self) -> u64 {
        let l = |a: &AtomicU64| a.load(Relaxed);
        self.inputs.iter().map(|i| l(&i.filter.errors)).sum::<u64>()
            + self.analyzers.iter().map(|a| l(&a.c.errors)).sum::<u64>()
    }

    /// Each queue's name and how many batches wait in it now.
    pub fn queue_depths(&self) -> Vec<(String, usize)> {
        self.queues
            .locked()
            .iter()
            .map(|(name, len)| (name.clone(), len()))
            .collect()
    }

    /// Remember a script failure for the live page (the oldest goes past [`RECENT_ERRORS`]).
    pub fn remember_error(&self, f: &dragonfly_lua::Failure) {
        self.error_groups.locked().add(f);
        let (script, kind, message) = (&f.error.script, f.kind.name(), &f.error.message);
        let mut event = f.event.clone();
        if event.len() > 300 {
            let mut cut = 300;
            while !event.is_char_boundary(cut) {
                cut -= 1;
            }
            event.truncate(cut);
            event.push_str("...");
        }
        let mut q = self.recent_errors.locked();
        if q.len() >= RECENT_ERRORS {
            q.pop_front();
        }
        q.push_back(json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "script": script, "kind": kind, "error": message, "event": event,
        }));
    }

    /// The failures [`Stats::remember_error`] kept, oldest first.
    pub fn recent_errors(&self) -> Value {
        Value::Array(self.recent_errors.locked().iter().cloned().collect())
    }

    /// Events in (input lines), through analyzers, out, and errors so far (cheap: counters
    /// only), for rate lines.
    pub fn totals(&self) -> [u64; 4] {
        let l = |a: &AtomicU64| a.load(Relaxed);
        let input = self.inputs.iter().map(|i| l(&i.io.lines)).sum();
        let analyzer = self.analyzers.iter().map(|a| l(&a.c.events)).sum();
        let output = self.outputs.iter().map(|o| l(&o.c.events)).sum();
        let errors = self
            .inputs
            .iter()
            .map(|i| l(&i.filter.errors) + l(&i.filter.malformed) + l(&i.io.errors))
            .sum::<u64>()
            + self.analyzers.iter().map(|a| l(&a.c.errors)).sum::<u64>()
            + self.outputs.iter().map(|o| l(&o.c.errors)).sum::<u64>();
        [input, analyzer, output, errors]
    }

    /// The store's part of the record: a Redis server's client counters, or the embedded
    /// store's gauges.
    fn store_record(&self) -> StoreRecord {
        let l = |a: &AtomicU64| a.load(Relaxed);
        match (&self.store, &self.embedded) {
            (Some((name, c)), _) => StoreRecord {
                backend: name.clone(),
                commands: Some(l(&c.commands)),
                connection_errors: Some(l(&c.connection_errors)),
                reconnects: Some(l(&c.reconnects)),
                timeouts: Some(l(&c.timeouts)),
                ..Default::default()
            },
            // DBSIZE: live keys (expired ones are swept first)
            (None, Some(db)) => {
                let (keys, bytes, evicted, oom) = db.memory();
                StoreRecord {
                    backend: "embedded".into(),
                    keys: Some(keys as u64),
                    memory_bytes: Some(bytes as u64),
                    evicted_keys: Some(evicted),
                    oom_rejections: Some(oom),
                    ..Default::default()
                }
            }
            (None, None) => StoreRecord {
                backend: "embedded".into(),
                ..Default::default()
            },
        }
    }

    /// `/health`: ready when every `setup()` ran and every input is open (a file read,
    /// followed or ended, a socket listening, a broker consumed); each input's state, and
    /// why it is not ready.
    pub fn health(&self) -> (bool, Value) {
        let started = self.ready.load(std::sync::atomic::Ordering::SeqCst);
        let mut all = started;
        let mut inputs = Map::new();
        for i in &self.inputs {
            let st = i.io.state.locked().clone();
            all &= st.ready;
            let mut o = json!({"ready": st.ready, "state": st.what});
            if !st.reason.is_empty() {
                o["reason"] = json!(st.reason);
            }
            inputs.insert(i.tag.clone(), o);
        }
        let mut body = json!({"status": "live", "ready": all, "inputs": inputs});
        if !started {
            body["reason"] = json!("starting: setup() runs and inputs open");
        }
        (all, body)
    }

    /// The stats record: the original's `time` and `operations`, then per-stage detail.
    pub fn snapshot(&self, final_line: bool) -> StatsRecord {
        let l = |a: &AtomicU64| a.load(Relaxed);
        let mut r = StatsRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            r#final: final_line,
            ..Default::default()
        };
        for i in &self.inputs {
            let rec = input_record(i);
            r.operations.input += rec.lines;
            r.errors += rec.lua_errors + rec.malformed + rec.io_errors;
            r.inputs.insert(i.tag.clone(), rec);
        }
        for a in &self.analyzers {
            let rec = AnalyzerRecord {
                events: l(&a.c.events),
                lua_errors: l(&a.c.errors),
                timeouts: l(&a.c.timeouts),
                memory_errors: l(&a.c.memory_errors),
                timers_fired: l(&a.c.timers_fired),
                timers_dropped: l(&a.c.timers_dropped),
            };
            r.operations.analyzer += rec.events;
            r.errors += rec.lua_errors;
            r.analyzers.insert(a.tag.clone(), rec);
        }
        for o in &self.outputs {
            let rec = OutputRecord {
                events: l(&o.c.events),
                bytes: l(&o.c.bytes),
                errors: l(&o.c.errors),
                dropped: l(&o.c.dropped),
            };
            r.operations.output += rec.events;
            r.errors += rec.errors;
            r.outputs.insert(o.tag.clone(), rec);
        }
        r.unknown_tags = self
            .unknown_tags
            .locked()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        r.store = self.store_record();
        r.routing_loops = l(&self.routing_loops);
        r.queues = self
            .queue_depths()
            .into_iter()
            .map(|(k, v)| (k, v as u64))
            .collect();
        r.workers = self
            .workers
            .locked()
            .iter()
            .enumerate()
            .map(|(i, w)| (i.to_string(), w.snapshot()))
            .collect();
        r.rss_bytes = rss_bytes();
        r.rss_peak_bytes = rss_peak_bytes();
        r.reloads = l(&self.reloads);
        r.reload_failures = l(&self.reload_failures);
        r.dead_letters = l(&self.dead_letters);
        r.dead_letters_dropped = l(&self.dead_letters_dropped);
        r.http_connections_closed = l(&self.http_connections_closed);
        r.http_accept_errors = l(&self.http_accept_errors);
        r.edges = self.edge_records();
        r.version = env!("CARGO_PKG_VERSION").to_string();
        r.uptime_s = self.started.elapsed().as_secs();
        r.taps = self.taps.count() as u64;
        r.tap_events = l(&self.taps.events);
        r.tap_dropped = l(&self.taps.dropped);
        r.log_events = l(&self.log_events);
        r.stats_events = l(&self.stats_events);
        r
    }
}

/// One input's part of the record: its source's counters, its filter's, its state.
fn input_record(i: &InputStats) -> InputRecord {
    let l = |a: &AtomicU64| a.load(Relaxed);
    let (io, f) = (&i.io, &i.filter);
    let st = io.state.locked().clone();
    InputRecord {
        lines: l(&io.lines),
        bytes: l(&io.bytes),
        events: l(&f.events),
        malformed: l(&f.malformed),
        empty: l(&io.empty),
        oversized: l(&io.oversized),
        truncated: l(&io.truncated),
        lua_errors: l(&f.errors),
        timeouts: l(&f.timeouts),
        memory_errors: l(&f.memory_errors),
        io_errors: l(&io.errors),
        rotations: l(&io.rotations),
        truncations: l(&io.truncations),
        overflow: l(&io.overflow),
        refused: l(&io.refused),
        evicted: l(&io.evicted),
        idle_closed: l(&io.idle_closed),
        partial_dropped: l(&io.partial_dropped),
        not_followed: l(&io.not_followed),
        state: st.what.to_string(),
        ready: st.ready,
        reason: st.reason,
        kafka_lag: io
            .lag
            .locked()
            .iter()
            .map(|(p, n)| (p.to_string(), *n))
            .collect(),
    }
}
