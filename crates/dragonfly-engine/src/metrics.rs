//! `GET /metrics`: the stats record in the Prometheus text format, named as Prometheus asks.
//!
//! Behaviour: every number of the stats record is one sample of a family declared beside its
//! field in [`crate::record`] — counters end in `_total`, a unit is the name's last word
//! (`_bytes`, `_seconds`), labels carry plain values (`tag` for an input, analyzer or
//! output's tag; `stage` and `tag` for a queue; `backend` and `address` for the store; `kind`
//! and `tag` for events sent to an undefined tag). Besides the record:
//! `dragonfly_build_info{version}` and the standard `process_*` family (resident and virtual
//! memory, CPU seconds, start time, open and maximum file descriptors) that every Prometheus
//! client library exports, read from `/proc/self` at the scrape. A unit test walks the
//! record's JSON, so nothing the stats log counts is missing here.
//!
//! Cost: one walk of the record and four small `/proc` reads per scrape; nothing between.

use std::fmt::Write;

use crate::record::{
    AnalyzerRecord, InputRecord, Metric, MetricKind, OutputRecord, StatsRecord, StoreRecord,
    WorkerRecord,
};
use MetricKind::{Counter, Gauge};

/// The families' names from the record and the other families, for the docs test.
pub fn family_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = [
        InputRecord::METRICS,
        AnalyzerRecord::METRICS,
        OutputRecord::METRICS,
        StoreRecord::METRICS,
        WorkerRecord::METRICS,
        StatsRecord::METRICS,
    ]
    .iter()
    .flat_map(|t| t.iter().map(|m| m.name))
    .collect();
    v.extend(OTHER);
    v
}

/// Families not declared on a field of the record.
const OTHER: &[&str] = &[
    "dragonfly_input_kafka_lag_messages",
    "dragonfly_operations_total",
    "dragonfly_queue_depth",
    "dragonfly_unknown_tag_events_total",
    "dragonfly_batch_seconds",
    "dragonfly_build_info",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_cpu_seconds_total",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
];

/// A label value, escaped as the text format asks (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Labels `{k="v",...}` (nothing when there are none).
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The text being written.
#[derive(Default)]
struct Text(String);

impl Text {
    /// One family: HELP, TYPE, its samples (nothing when it has none).
    fn family(&mut self, name: &str, kind: MetricKind, help: &str, samples: &[(String, f64)]) {
        if samples.is_empty() || name.is_empty() {
            return;
        }
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {}", kind.as_str());
        for (l, v) in samples {
            let _ = writeln!(self.0, "{name}{l} {v}");
        }
    }

    /// Parts of the record with their labels (one per tag, ...): one family per metric of
    /// `metrics`, a sample per part that has it.
    fn parts<'a>(
        &mut self,
        metrics: &'static [Metric],
        parts: impl Iterator<Item = (String, Vec<(&'static Metric, Option<f64>)>)> + 'a,
    ) {
        let parts: Vec<_> = parts.collect();
        for (i, m) in metrics.iter().enumerate() {
            let samples: Vec<(String, f64)> = parts
                .iter()
                .filter_map(|(l, s)| Some((l.clone(), s.get(i)?.1?)))
                .collect();
            self.family(m.name, m.kind, m.help, &samples);
        }
    }
}

/// The stats record's families, then the build's and the process's.
pub fn render(stats: &StatsRecord) -> String {
    let mut t = Text::default();
    record(&mut t, stats);
    let _ = writeln!(
        t.0,
        "# HELP dragonfly_build_info the running build (always 1)\n# TYPE dragonfly_build_info gauge\ndragonfly_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    process(&mut t);
    t.0
}

/// The families of the stats record.
fn record(t: &mut Text, r: &StatsRecord) {
    let tag = |tag: &str| labels(&[("tag", tag)]);
    t.parts(
        InputRecord::METRICS,
        r.inputs.iter().map(|(k, v)| (tag(k), v.samples())),
    );
    kafka_lag(t, r);
    t.parts(
        AnalyzerRecord::METRICS,
        r.analyzers.iter().map(|(k, v)| (tag(k), v.samples())),
    );
    t.parts(
        OutputRecord::METRICS,
        r.outputs.iter().map(|(k, v)| (tag(k), v.samples())),
    );
    store(t, r);
    operations(t, r);
    queues(t, r);
    unknown_tags(t, r);
    edges(t, r);
    workers(t, r);
    t.parts(
        StatsRecord::METRICS,
        std::iter::once((String::new(), r.samples())),
    );
}

/// `dragonfly_input_kafka_lag_messages{tag,partition}`.
fn kafka_lag(t: &mut Text, r: &StatsRecord) {
    let lag: Vec<(String, f64)> = r
        .inputs
        .iter()
        .flat_map(|(tag, i)| {
            i.kafka_lag
                .iter()
                .map(move |(p, n)| (labels(&[("tag", tag), ("partition", p)]), *n as f64))
        })
        .collect();
    t.family(
        "dragonfly_input_kafka_lag_messages",
        Gauge,
        "messages a Kafka input is behind the end of each assigned partition, as librdkafka last reported it",
        &lag,
    );
}

/// The store's families, labelled with its kind and address.
fn store(t: &mut Text, r: &StatsRecord) {
    // "redis 127.0.0.1:6379": the kind, then where
    let backend = r.store.backend.as_str();
    let (kind, address) = backend.split_once(' ').unwrap_or((backend, ""));
    let store = if address.is_empty() {
        labels(&[("backend", kind)])
    } else {
        labels(&[("backend", kind), ("address", address)])
    };
    t.parts(
        StoreRecord::METRICS,
        std::iter::once((store, r.store.samples())),
    );
}

/// `dragonfly_operations_total{stage}`.
fn operations(t: &mut Text, r: &StatsRecord) {
    let ops = r.operations;
    let ops: Vec<(String, f64)> = [
        ("input", ops.input),
        ("analyzer", ops.analyzer),
        ("output", ops.output),
    ]
    .iter()
    .map(|(k, v)| (labels(&[("stage", k)]), *v as f64))
    .collect();
    t.family(
        "dragonfly_operations_total",
        Counter,
        "events in at the inputs, analyzer calls, events out at the outputs (stage)",
        &ops,
    );
}

/// `dragonfly_queue_depth{stage,tag}`.
fn queues(t: &mut Text, r: &StatsRecord) {
    let queues: Vec<(String, f64)> = r
        .queues
        .iter()
        .map(|(q, n)| {
            let (stage, tag) = q.split_once(':').unwrap_or((q, ""));
            let l = if tag.is_empty() {
                labels(&[("stage", stage)])
            } else {
                labels(&[("stage", stage), ("tag", tag)])
            };
            (l, *n as f64)
        })
        .collect();
    t.family(
        "dragonfly_queue_depth",
        Gauge,
        "batches waiting before a stage: each worker, each output, the dead letters",
        &queues,
    );
}

/// `dragonfly_unknown_tag_events_total{kind,tag}`.
fn unknown_tags(t: &mut Text, r: &StatsRecord) {
    let unknown: Vec<(String, f64)> = r
        .unknown_tags
        .iter()
        .map(|(k, n)| {
            let (kind, tag) = k.split_once(':').unwrap_or(("", k));
            (labels(&[("kind", kind), ("tag", tag)]), *n as f64)
        })
        .collect();
    t.family(
        "dragonfly_unknown_tag_events_total",
        Counter,
        "events scripts sent to an output, analyzer or timer tag config.lua does not define, dropped",
        &unknown,
    );
}

/// `dragonfly_edge_events_total{from,to}`.
fn edges(t: &mut Text, r: &StatsRecord) {
    let edges: Vec<(String, f64)> = r
        .edges
        .iter()
        .map(|e| (labels(&[("from", &e.from), ("to", &e.to)]), e.events as f64))
        .collect();
    t.family(
        "dragonfly_edge_events_total",
        Counter,
        "events handed along each edge of the pipeline: input to filter, and every hand-off scripts made (to analyzers, outputs, unknown tags)",
        &edges,
    );
}

/// Each worker's gauges and its batch-time histogram.
fn workers(t: &mut Text, r: &StatsRecord) {
    t.parts(
        WorkerRecord::METRICS,
        r.workers
            .iter()
            .map(|(w, v)| (labels(&[("worker", w)]), v.samples())),
    );
    if !r.workers.is_empty() {
        let name = "dragonfly_batch_seconds";
        let _ = writeln!(
            t.0,
            "# HELP {name} time a worker takes for one batch, from its queue to its outputs\n# TYPE {name} histogram"
        );
        for (w, v) in &r.workers {
            let h = &v.batch_seconds;
            let w = label(w);
            for (le, n) in &h.buckets {
                let _ = writeln!(t.0, "{name}_bucket{{worker=\"{w}\",le=\"{le}\"}} {n}");
            }
            let _ = writeln!(t.0, "{name}_sum{{worker=\"{w}\"}} {}", h.sum);
            let _ = writeln!(t.0, "{name}_count{{worker=\"{w}\"}} {}", h.count);
        }
    }
}

/// The standard process metrics (as the Prometheus client libraries export them), from
/// `/proc/self`; a family that cannot be read is left out.
fn process(t: &mut Text) {
    // SAFETY: sysconf only reads system constants.
    let (tick, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let one = |v: f64| vec![(String::new(), v)];
    if let Ok(s) = std::fs::read_to_string("/proc/self/stat") {
        // the fields after the command name, which is in parentheses and may hold anything
        let f: Vec<&str> = s
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        // fields 14 and 15 (utime, stime), 22 (starttime), 23 (vsize), 24 (rss), counted
        // from 1 with the pid and the command as fields 1 and 2
        let at = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (at(14), at(15)) {
            if tick > 0 {
                t.family(
                    "process_cpu_seconds_total",
                    Counter,
                    "user and system CPU time spent, in seconds",
                    &one((u + s) / tick as f64),
                );
            }
        }
        if let Some(rss) = at(24) {
            t.family(
                "process_resident_memory_bytes",
                Gauge,
                "resident memory size in bytes",
                &one(rss * page.max(0) as f64),
            );
        }
        if let Some(v) = at(23) {
            t.family(
                "process_virtual_memory_bytes",
                Gauge,
                "virtual memory size in bytes",
                &one(v),
            );
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(start), Some(boot)) = (at(22), boot) {
            if tick > 0 {
                t.family(
                    "process_start_time_seconds",
                    Gauge,
                    "start time of the process since the Unix epoch, in seconds",
                    &one(boot + start / tick as f64),
                );
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        t.family(
            "process_open_fds",
            Gauge,
            "number of open file descriptors",
            &one(dir.count() as f64),
        );
    }
    if let Ok((soft, _)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        t.family(
            "process_max_fds",
            Gauge,
            "maximum number of open file descriptors",
            &one(soft as f64),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_text() -> String {
        let stats = serde_json::json!({
            "time": "2026-11-29T12:00:00Z",
            "operations": { "input": 3, "analyzer": 6, "output": 3 },
            "errors": 1,
            "inputs": {
                "eve": { "lines": 3, "bytes": 30, "ready": true, "state": "following",
                         "kafka_lag": { "0": 5, "3": 0 } },
                "we\"ird\n": { "lines": 1, "ready": false },
            },
            "analyzers": { "hello": { "events": 3 } },
            "outputs": { "out": { "events": 3, "dropped": 0 } },
            "store": { "backend": "redis 127.0.0.1:6379", "commands": 9 },
            "queues": { "worker:0": 2, "output:out": 0, "dead_letters": 0 },
            "rss_bytes": 1000, "rss_peak_bytes": 2000,
            "final": true,
        });
        render(&serde_json::from_value(stats).unwrap())
    }

    #[test]
    fn stats_become_prometheus_text() {
        let text = sample_text();
        for line in [
            "# TYPE dragonfly_input_kafka_lag_messages gauge",
            "dragonfly_input_kafka_lag_messages{tag=\"eve\",partition=\"0\"} 5",
            "dragonfly_input_kafka_lag_messages{tag=\"eve\",partition=\"3\"} 0",
            "# TYPE dragonfly_input_lines_total counter",
            "dragonfly_input_lines_total{tag=\"eve\"} 3",
            "dragonfly_input_lines_total{tag=\"we\\\"ird\\n\"} 1",
            "dragonfly_input_bytes_total{tag=\"eve\"} 30",
            "# TYPE dragonfly_input_ready gauge",
            "dragonfly_input_ready{tag=\"eve\"} 1",
            "dragonfly_input_ready{tag=\"we\\\"ird\\n\"} 0",
            "dragonfly_analyzer_events_total{tag=\"hello\"} 3",
            "dragonfly_output_dropped_total{tag=\"out\"} 0",
            "dragonfly_store_commands_total{backend=\"redis\",address=\"127.0.0.1:6379\"} 9",
            "# TYPE dragonfly_store_commands_total counter",
            "dragonfly_operations_total{stage=\"input\"} 3",
            "dragonfly_queue_depth{stage=\"worker\",tag=\"0\"} 2",
            "dragonfly_queue_depth{stage=\"output\",tag=\"out\"} 0",
            "dragonfly_queue_depth{stage=\"dead_letters\"} 0",
            "dragonfly_errors_total 1",
            "# TYPE dragonfly_resident_memory_peak_bytes gauge",
            "dragonfly_resident_memory_peak_bytes 2000",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_start_time_seconds gauge",
            "# TYPE process_open_fds gauge",
            "# TYPE process_max_fds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        let build = format!(
            "dragonfly_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == build), "{text}");
        // strings are not metrics; the resident memory is only the standard family
        for not in [
            "dragonfly_time",
            "dragonfly_final",
            "state",
            "dragonfly_rss_bytes",
        ] {
            assert!(!text.contains(not), "{not}: {text}");
        }
        // the process started before now, after 2020
        let start: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(start > 1.6e9 && start <= now + 1.0, "{start}");
    }

    #[test]
    fn names_follow_the_prometheus_conventions() {
        let text = sample_text();
        let mut kinds = std::collections::HashMap::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                kinds.insert(name.to_string(), kind.to_string());
                // counters end in _total; nothing else does
                assert_eq!(name.ends_with("_total"), kind == "counter", "{l}");
                continue;
            }
            if l.starts_with('#') {
                continue;
            }
            // NAME{LABELS} VALUE or NAME VALUE, with a valid name and label names
            let name: String = l.chars().take_while(|c| *c != '{' && *c != ' ').collect();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{l}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| kinds.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(&name);
            assert!(kinds.contains_key(family), "no TYPE before {l}");
            assert!(l.rsplit(' ').next().unwrap().parse::<f64>().is_ok(), "{l}");
        }
    }

    /// Every number the stats record has is in a table (or named as another family): what
    /// the stats log counts, /metrics shows.
    #[test]
    fn every_number_of_the_stats_record_is_a_metric() {
        let stats =
            || crate::stats::Stats::new(["in"].into_iter(), ["a"].into_iter(), ["out"].into_iter());
        let mut embedded = stats();
        embedded.embedded = Some(dragonfly_store::embedded::EmbeddedStore::new());
        let mut redis = stats();
        redis.store = Some(("redis 127.0.0.1:1".into(), Default::default()));
        let keys = |t: &[Metric]| t.iter().map(|m| m.key).collect::<Vec<_>>();
        let json = |r: StatsRecord| serde_json::to_value(r).unwrap();
        for (k, v) in json(redis.snapshot(false))["store"].as_object().unwrap() {
            if v.is_number() {
                assert!(
                    keys(StoreRecord::METRICS).contains(&k.as_str()),
                    "store.{k} is not a metric"
                );
            }
        }
        let record = json(embedded.snapshot(false));
        let check = |section: &str, table: &[Metric]| {
            for (k, v) in record[section]
                .as_object()
                .unwrap()
                .values()
                .next()
                .unwrap()
                .as_object()
                .unwrap()
            {
                if v.is_number() || v.is_boolean() {
                    assert!(
                        keys(table).contains(&k.as_str()),
                        "{section}.<tag>.{k} is not a metric"
                    );
                }
            }
        };
        check("inputs", InputRecord::METRICS);
        check("analyzers", AnalyzerRecord::METRICS);
        check("outputs", OutputRecord::METRICS);
        for (k, v) in record["store"].as_object().unwrap() {
            if v.is_number() {
                assert!(
                    keys(StoreRecord::METRICS).contains(&k.as_str()),
                    "store.{k} is not a metric"
                );
            }
        }
        for (k, v) in record.as_object().unwrap() {
            // in /metrics as the standard process_resident_memory_bytes and
            // process_start_time_seconds
            if v.is_number() && k != "rss_bytes" && k != "uptime_s" {
                assert!(
                    keys(StatsRecord::METRICS).contains(&k.as_str()),
                    "{k} is not a metric"
                );
            }
        }
    }
}
