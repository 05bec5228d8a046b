//! The stats record: what the stats log writes each interval, `/api/stats` serves, `/metrics`
//! renders and the final `done:` line sums, as one typed value.
//!
//! Each number that is a Prometheus metric says so beside its field, in the [`record!`]
//! declaration: `pub lines: u64 => Counter "dragonfly_input_lines_total" "help"`. The macro
//! makes the struct (`Serialize`/`Deserialize`, field order = JSON key order) and its
//! `METRICS` table, in field order, with the fields' values read by [`Sample`]; a field
//! without `=>` is not a metric (a state, a reason, a time). So a number cannot be added to
//! the record without deciding what it is in `/metrics`, and `/metrics` cannot list a number
//! the record does not have.
//!
//! Cost: built by [`crate::stats::Stats::snapshot`] once per stats interval, per scrape of
//! `/metrics` or `/api/stats`, and at the end: a few allocations per tag.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// A metric's Prometheus type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MetricKind {
    /// Only goes up (the name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    /// As the text format's `# TYPE` line writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One number of the record as a metric.
#[derive(Debug)]
pub struct Metric {
    /// Its key in the record (the field's name).
    pub key: &'static str,
    /// The family's name.
    pub name: &'static str,
    /// The family's type.
    pub kind: MetricKind,
    /// The family's help text.
    pub help: &'static str,
}

/// A field's value as a sample: numbers as they are, a boolean as 1 or 0, an absent
/// `Option` as no sample.
pub trait Sample {
    /// The sample, if there is one.
    fn sample(&self) -> Option<f64>;
}

impl Sample for u64 {
    fn sample(&self) -> Option<f64> {
        Some(*self as f64)
    }
}

impl Sample for bool {
    fn sample(&self) -> Option<f64> {
        Some(f64::from(u8::from(*self)))
    }
}

impl<T: Sample> Sample for Option<T> {
    fn sample(&self) -> Option<f64> {
        self.as_ref().and_then(Sample::sample)
    }
}

/// A struct of the record with each metric declared beside its field (see the module doc).
macro_rules! record {
    (
        $(#[$sm:meta])*
        pub struct $name:ident {
            $(
                $(#[$fm:meta])*
                pub $field:ident : $ty:ty $( => $kind:ident $metric:literal $help:literal )?,
            )*
        }
    ) => {
        $(#[$sm])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $( $(#[doc = $help])? $(#[$fm])* pub $field: $ty, )*
        }

        impl $name {
            /// The fields that are metrics, in field order.
            pub const METRICS: &'static [Metric] = &[
                $( $( Metric {
                    key: stringify!($field),
                    name: $metric,
                    kind: MetricKind::$kind,
                    help: $help,
                }, )? )*
            ];

            /// Each metric with its sample (None: absent here), in the order of `METRICS`.
            pub fn samples(&self) -> Vec<(&'static Metric, Option<f64>)> {
                let mut metrics = Self::METRICS.iter();
                let mut out = Vec::with_capacity(Self::METRICS.len());
                $( $(
                    let _ = $metric;
                    if let Some(m) = metrics.next() {
                        out.push((m, Sample::sample(&self.$field)));
                    }
                )? )*
                out
            }
        }
    };
}

/// Entries keyed by tag (or worker number, partition, queue), in the engine's order.
pub type Tagged<T> = IndexMap<String, T>;

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

record! {
    /// The whole record.
    pub struct StatsRecord {
        /// When it was taken (RFC 3339, UTC, microseconds).
        pub time: String,
        /// The original engine's three totals.
        pub operations: Operations,
        pub errors: u64 => Counter "dragonfly_errors_total" "errors of every kind: script failures, malformed lines, input and output errors",
        /// Per input, by tag.
        pub inputs: Tagged<InputRecord>,
        /// Per analyzer, by tag.
        pub analyzers: Tagged<AnalyzerRecord>,
        /// Per output, by tag.
        pub outputs: Tagged<OutputRecord>,
        /// Events sent to a tag config.lua does not define, by `kind:tag`.
        pub unknown_tags: Tagged<u64>,
        /// Every edge events took: each input to its filter, then every hand-off a script
        /// made (to an analyzer, an output, or a tag that names nothing), with its events.
        pub edges: Vec<EdgeRecord>,
        /// The store.
        pub store: StoreRecord,
        pub routing_loops: u64 => Counter "dragonfly_routing_loops_total" "analyzer hand-offs cut because one event bounced between analyzers too often",
        /// Batches waiting before each stage (`worker:N`, `output:TAG`, `dead_letters`).
        pub queues: Tagged<u64>,
        /// Per worker, by number.
        pub workers: Tagged<WorkerRecord>,
        /// Resident memory now (in /metrics: `process_resident_memory_bytes`).
        pub rss_bytes: u64,
        pub rss_peak_bytes: u64 => Gauge "dragonfly_resident_memory_peak_bytes" "the most resident memory the process has had (VmHWM): what a memory limit must allow",
        pub reloads: u64 => Counter "dragonfly_reloads_total" "hot reloads done",
        pub reload_failures: u64 => Counter "dragonfly_reload_failures_total" "hot reloads refused (the running pipeline kept)",
        pub dead_letters: u64 => Counter "dragonfly_dead_letters_total" "dead letters written",
        pub dead_letters_dropped: u64 => Counter "dragonfly_dead_letters_dropped_total" "dead letters left out because they came faster than their byte budget (their failures are counted all the same)",
        pub http_connections_closed: u64 => Counter "dragonfly_http_connections_closed_total" "HTTP connections closed: header timeouts, the connection cap",
        pub http_accept_errors: u64 => Counter "dragonfly_http_accept_errors_total" "HTTP accepts that failed (out of file descriptors)",
        pub taps: u64 => Gauge "dragonfly_taps" "taps open now (dragonfly-mle tap, GET /api/tap)",
        pub tap_events: u64 => Counter "dragonfly_tap_events_total" "events handed to taps",
        pub tap_dropped: u64 => Counter "dragonfly_tap_dropped_total" "events a tap sampled but could not queue: its client read too slowly",
        pub log_events: u64 => Counter "dragonfly_log_events_total" "log_event records scripts wrote",
        pub stats_events: u64 => Counter "dragonfly_stats_events_total" "stats_event records scripts wrote",
        /// The engine's version (in /metrics: `dragonfly_build_info`).
        pub version: String,
        /// Seconds since the engine started (in /metrics: `process_start_time_seconds`).
        pub uptime_s: u64,
        /// The last record of a run.
        pub r#final: bool,
    }
}

/// One edge of the pipeline as events took it (`StatsRecord::edges`); in /metrics
/// `dragonfly_edge_events_total{from,to}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EdgeRecord {
    /// Node id: `input:TAG`, `filter:TAG` (the filter of input TAG), `analyzer:TAG`.
    pub from: String,
    /// Node id: `filter:TAG`, `analyzer:TAG`, `output:TAG`, or `unknown-analyzer:TAG` /
    /// `unknown-output:TAG` for a tag config.lua does not define (those events were dropped).
    pub to: String,
    /// Events handed along it.
    pub events: u64,
}

/// `operations`: events in at the inputs, analyzer calls, events out at the outputs (the
/// original engine's stats line); in /metrics `dragonfly_operations_total{stage}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Operations {
    /// Lines the inputs handed on.
    pub input: u64,
    /// Analyzer calls.
    pub analyzer: u64,
    /// Events written.
    pub output: u64,
}

record! {
    /// One input: its source's counters and its filter's; label `tag`.
    pub struct InputRecord {
        pub lines: u64 => Counter "dragonfly_input_lines_total" "lines (messages, datagrams) the input handed to the pipeline",
        pub bytes: u64 => Counter "dragonfly_input_bytes_total" "bytes of those lines",
        pub events: u64 => Counter "dragonfly_input_events_total" "events handed to the input's filter",
        pub malformed: u64 => Counter "dragonfly_input_malformed_total" "lines that were not a JSON object",
        pub empty: u64 => Counter "dragonfly_input_empty_total" "empty lines, skipped",
        pub oversized: u64 => Counter "dragonfly_input_oversized_total" "lines longer than engine.max_line_bytes, skipped whole",
        pub truncated: u64 => Counter "dragonfly_input_truncated_total" "datagrams larger than the receive buffer, skipped",
        pub lua_errors: u64 => Counter "dragonfly_input_lua_errors_total" "filter calls that failed, every kind (dead letters)",
        pub timeouts: u64 => Counter "dragonfly_input_timeouts_total" "filter calls stopped at engine.script_timeout_ms",
        pub memory_errors: u64 => Counter "dragonfly_input_memory_errors_total" "filter calls that hit engine.lua_memory_mb",
        pub io_errors: u64 => Counter "dragonfly_input_io_errors_total" "read, open, listen and connect failures (episodes)",
        pub rotations: u64 => Counter "dragonfly_input_rotations_total" "times a tailed file was rotated (renamed away and re-created)",
        pub truncations: u64 => Counter "dragonfly_input_truncations_total" "times a tailed file was truncated or replaced in place",
        pub overflow: u64 => Counter "dragonfly_input_overflow_total" "messages dropped because the input's buffer (buffer_mb) was full",
        pub refused: u64 => Counter "dragonfly_input_refused_total" "stream connections closed at once: at the cap and none could make room",
        pub evicted: u64 => Counter "dragonfly_input_evicted_total" "quiet stream connections closed to make room for a new one",
        pub idle_closed: u64 => Counter "dragonfly_input_idle_closed_total" "stream connections closed after idle_timeout_s without a whole line",
        pub partial_dropped: u64 => Counter "dragonfly_input_partial_dropped_total" "partial lines dropped at partial_mb",
        pub not_followed: u64 => Counter "dragonfly_input_not_followed_total" "followed paths that were a link, a FIFO or not a regular file",
        /// What the input is doing (reading, following, listening, waiting, error, ...).
        pub state: String,
        pub ready: bool => Gauge "dragonfly_input_ready" "1 when the input can take events, 0 when it cannot (/health says why)",
        /// Why it is not ready (absent when it is).
        #[serde(skip_serializing_if = "is_empty")]
        pub reason: String,
        /// A Kafka input: messages behind the end of each assigned partition (in /metrics
        /// `dragonfly_input_kafka_lag_messages{tag,partition}`).
        #[serde(skip_serializing_if = "IndexMap::is_empty")]
        pub kafka_lag: Tagged<i64>,
    }
}

record! {
    /// One analyzer; label `tag`.
    pub struct AnalyzerRecord {
        pub events: u64 => Counter "dragonfly_analyzer_events_total" "events handed to the analyzer",
        pub lua_errors: u64 => Counter "dragonfly_analyzer_lua_errors_total" "analyzer calls that failed, every kind (dead letters)",
        pub timeouts: u64 => Counter "dragonfly_analyzer_timeouts_total" "analyzer calls stopped at engine.script_timeout_ms",
        pub memory_errors: u64 => Counter "dragonfly_analyzer_memory_errors_total" "analyzer calls that hit engine.lua_memory_mb",
        pub timers_fired: u64 => Counter "dragonfly_analyzer_timers_fired_total" "timer callbacks run",
        pub timers_dropped: u64 => Counter "dragonfly_analyzer_timers_dropped_total" "timers still pending at exit that could not fire",
    }
}

record! {
    /// One output; label `tag`.
    pub struct OutputRecord {
        pub events: u64 => Counter "dragonfly_output_events_total" "events written",
        pub bytes: u64 => Counter "dragonfly_output_bytes_total" "bytes the output wrote",
        pub errors: u64 => Counter "dragonfly_output_errors_total" "write or flush failures (episodes)",
        pub dropped: u64 => Counter "dragonfly_output_dropped_total" "events the output could never write, dropped",
    }
}

record! {
    /// The store: a Redis server's client counters, or the embedded store's gauges; labels
    /// `backend` and `address`.
    pub struct StoreRecord {
        /// `embedded`, or `redis HOST:PORT` (`redis-cluster ...`, `redis unix:PATH`).
        pub backend: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub commands: Option<u64> => Counter "dragonfly_store_commands_total" "commands the store answered",
        #[serde(skip_serializing_if = "Option::is_none")]
        pub connection_errors: Option<u64> => Counter "dragonfly_store_connection_errors_total" "connections lost or refused while the engine ran",
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reconnects: Option<u64> => Counter "dragonfly_store_reconnects_total" "reconnections after a loss",
        #[serde(skip_serializing_if = "Option::is_none")]
        pub timeouts: Option<u64> => Counter "dragonfly_store_timeouts_total" "commands whose reply did not come in time (each also a connection error)",
        #[serde(skip_serializing_if = "Option::is_none")]
        pub keys: Option<u64> => Gauge "dragonfly_store_keys" "keys the embedded store holds",
        #[serde(skip_serializing_if = "Option::is_none")]
        pub memory_bytes: Option<u64> => Gauge "dragonfly_store_memory_bytes" "bytes the embedded store holds (estimated)",
        #[serde(skip_serializing_if = "Option::is_none")]
        pub evicted_keys: Option<u64> => Counter "dragonfly_store_evicted_keys_total" "keys the embedded store evicted at its limit",
        #[serde(skip_serializing_if = "Option::is_none")]
        pub oom_rejections: Option<u64> => Counter "dragonfly_store_oom_rejections_total" "writes the embedded store refused at its limit",
    }
}

record! {
    /// One worker; label `worker` (in /metrics with its batch histogram).
    pub struct WorkerRecord {
        pub lua_bytes: u64 => Gauge "dragonfly_worker_lua_bytes" "bytes the worker's Lua runtime holds",
        /// Batches run.
        pub batches: u64,
        /// How long its batches took (`dragonfly_batch_seconds`).
        pub batch_seconds: Histogram,
    }
}

/// A Prometheus histogram: cumulative counts per upper bound (`le`, the last `+Inf`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Histogram {
    /// Observations at or below each bound, by bound.
    pub buckets: Tagged<u64>,
    /// Their sum, in seconds.
    pub sum: f64,
    /// How many.
    pub count: u64,
}

impl StatsRecord {
    /// `kind 'tag' (N), ...` for the events sent to undefined tags.
    pub fn unknown_tags_text(&self) -> String {
        self.unknown_tags
            .iter()
            .map(|(k, n)| {
                let (kind, tag) = k.split_once(':').unwrap_or(("", k));
                format!("{kind} '{tag}' ({n})")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_declared_in_field_order_and_sampled_from_their_fields() {
        let i = InputRecord {
            lines: 3,
            ready: true,
            not_followed: 7,
            ..Default::default()
        };
        let s = i.samples();
        assert_eq!(s.len(), InputRecord::METRICS.len());
        assert_eq!(s[0].0.key, "lines");
        assert_eq!(s[0].1, Some(3.0));
        let get = |k: &str| s.iter().find(|(m, _)| m.key == k).unwrap().1;
        assert_eq!(get("not_followed"), Some(7.0));
        assert_eq!(get("ready"), Some(1.0));
        assert!(InputRecord::METRICS.iter().all(|m| m.key != "state"));
        // an absent Option is no sample
        let st = StoreRecord {
            backend: "embedded".into(),
            keys: Some(2),
            ..Default::default()
        };
        let s = st.samples();
        assert_eq!(
            s.iter().find(|(m, _)| m.key == "keys").unwrap().1,
            Some(2.0)
        );
        assert_eq!(s.iter().find(|(m, _)| m.key == "commands").unwrap().1, None);
    }

    #[test]
    fn the_json_is_the_stats_log_s() {
        let mut r = StatsRecord {
            time: "t".into(),
            r#final: true,
            ..Default::default()
        };
        r.inputs.insert("eve".into(), InputRecord::default());
        r.store.backend = "embedded".into();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["final"], true);
        assert!(v["inputs"]["eve"].get("reason").is_none());
        assert!(v["inputs"]["eve"].get("kafka_lag").is_none());
        assert_eq!(v["store"], serde_json::json!({"backend": "embedded"}));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys[..3], ["time", "operations", "errors"]);
        assert_eq!(keys.last().unwrap().as_str(), "final");
        // and it reads back
        let back: StatsRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
