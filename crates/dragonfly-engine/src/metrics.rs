//! `GET /metrics`: the stats record in the Prometheus text format, named as Prometheus asks.
//!
//! Behaviour: every number of the stats record is one sample of a family named from the
//! tables below — counters end in `_total`, a unit is the name's last word (`_bytes`,
//! `_seconds`), labels carry plain values (`tag` for an input, analyzer or output's tag;
//! `stage` and `tag` for a queue; `backend` and `address` for the store; `kind` and `tag` for
//! events sent to an undefined tag). Besides the record: `dragonfly_build_info{version}` and
//! the standard `process_*` family (resident and virtual memory, CPU seconds, start time,
//! open and maximum file descriptors) that every Prometheus client library exports, read
//! from `/proc/self` at the scrape. A unit test keeps every number of the record in a table,
//! so nothing the stats log counts is missing here.
//!
//! Cost: one walk of the record and four small `/proc` reads per scrape; nothing between.

use std::fmt::Write;

use serde_json::{Map, Value};

/// A family's type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
}
use Kind::{Counter, Gauge};

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Counter => "counter",
            Gauge => "gauge",
        }
    }
}

/// One number of the stats record as a metric: its key in the record, the family's name,
/// type and help.
type Field = (&'static str, &'static str, Kind, &'static str);

/// `inputs.<tag>.<key>` (the source's counters and its filter's), label `tag`.
#[rustfmt::skip]
const INPUT: &[Field] = &[
    ("lines", "dragonfly_input_lines_total", Counter, "lines (messages, datagrams) the input handed to the pipeline"),
    ("bytes", "dragonfly_input_bytes_total", Counter, "bytes of those lines"),
    ("events", "dragonfly_input_events_total", Counter, "events handed to the input's filter"),
    ("malformed", "dragonfly_input_malformed_total", Counter, "lines that were not a JSON object"),
    ("empty", "dragonfly_input_empty_total", Counter, "empty lines, skipped"),
    ("oversized", "dragonfly_input_oversized_total", Counter, "lines longer than engine.max_line_bytes, skipped whole"),
    ("truncated", "dragonfly_input_truncated_total", Counter, "datagrams larger than the receive buffer, skipped"),
    ("lua_errors", "dragonfly_input_lua_errors_total", Counter, "filter calls that failed, every kind (dead letters)"),
    ("timeouts", "dragonfly_input_timeouts_total", Counter, "filter calls stopped at engine.script_timeout_ms"),
    ("memory_errors", "dragonfly_input_memory_errors_total", Counter, "filter calls that hit engine.lua_memory_mb"),
    ("io_errors", "dragonfly_input_io_errors_total", Counter, "read, open, listen and connect failures (episodes)"),
    ("rotations", "dragonfly_input_rotations_total", Counter, "times a tailed file was rotated (renamed away and re-created)"),
    ("truncations", "dragonfly_input_truncations_total", Counter, "times a tailed file was truncated or replaced in place"),
    ("overflow", "dragonfly_input_overflow_total", Counter, "messages dropped because the input's buffer (buffer_mb) was full"),
    ("refused", "dragonfly_input_refused_total", Counter, "stream connections closed at once: at the cap and none could make room"),
    ("evicted", "dragonfly_input_evicted_total", Counter, "quiet stream connections closed to make room for a new one"),
    ("idle_closed", "dragonfly_input_idle_closed_total", Counter, "stream connections closed after idle_timeout_s without a whole line"),
    ("partial_dropped", "dragonfly_input_partial_dropped_total", Counter, "partial lines dropped at partial_mb"),
    ("not_followed", "dragonfly_input_not_followed_total", Counter, "followed paths that were a link, a FIFO or not a regular file"),
    ("ready", "dragonfly_input_ready", Gauge, "1 when the input can take events, 0 when it cannot (/health says why)"),
];

/// `analyzers.<tag>.<key>`, label `tag`.
#[rustfmt::skip]
const ANALYZER: &[Field] = &[
    ("events", "dragonfly_analyzer_events_total", Counter, "events handed to the analyzer"),
    ("lua_errors", "dragonfly_analyzer_lua_errors_total", Counter, "analyzer calls that failed, every kind (dead letters)"),
    ("timeouts", "dragonfly_analyzer_timeouts_total", Counter, "analyzer calls stopped at engine.script_timeout_ms"),
    ("memory_errors", "dragonfly_analyzer_memory_errors_total", Counter, "analyzer calls that hit engine.lua_memory_mb"),
    ("timers_fired", "dragonfly_analyzer_timers_fired_total", Counter, "timer callbacks run"),
    ("timers_dropped", "dragonfly_analyzer_timers_dropped_total", Counter, "timers still pending at exit that could not fire"),
];

/// `outputs.<tag>.<key>`, label `tag`.
#[rustfmt::skip]
const OUTPUT: &[Field] = &[
    ("events", "dragonfly_output_events_total", Counter, "events written"),
    ("bytes", "dragonfly_output_bytes_total", Counter, "bytes the output wrote"),
    ("errors", "dragonfly_output_errors_total", Counter, "write or flush failures (episodes)"),
    ("dropped", "dragonfly_output_dropped_total", Counter, "events the output could never write, dropped"),
];

/// `store.<key>`, labels `backend` and `address`.
#[rustfmt::skip]
const STORE: &[Field] = &[
    ("commands", "dragonfly_store_commands_total", Counter, "commands the store answered"),
    ("connection_errors", "dragonfly_store_connection_errors_total", Counter, "connections lost or refused while the engine ran"),
    ("reconnects", "dragonfly_store_reconnects_total", Counter, "reconnections after a loss"),
    ("timeouts", "dragonfly_store_timeouts_total", Counter, "commands whose reply did not come in time (each also a connection error)"),
    ("keys", "dragonfly_store_keys", Gauge, "keys the embedded store holds"),
    ("memory_bytes", "dragonfly_store_memory_bytes", Gauge, "bytes the embedded store holds (estimated)"),
    ("evicted_keys", "dragonfly_store_evicted_keys_total", Counter, "keys the embedded store evicted at its limit"),
    ("oom_rejections", "dragonfly_store_oom_rejections_total", Counter, "writes the embedded store refused at its limit"),
];

/// Numbers at the top of the record, no label. `rss_bytes` is `process_resident_memory_bytes`.
#[rustfmt::skip]
const TOP: &[Field] = &[
    ("errors", "dragonfly_errors_total", Counter, "errors of every kind: script failures, malformed lines, input and output errors"),
    ("routing_loops", "dragonfly_routing_loops_total", Counter, "analyzer hand-offs cut because one event bounced between analyzers too often"),
    ("reloads", "dragonfly_reloads_total", Counter, "hot reloads done"),
    ("reload_failures", "dragonfly_reload_failures_total", Counter, "hot reloads refused (the running pipeline kept)"),
    ("dead_letters", "dragonfly_dead_letters_total", Counter, "dead letters written"),
    ("dead_letters_dropped", "dragonfly_dead_letters_dropped_total", Counter, "dead letters left out because they came faster than their byte budget (their failures are counted all the same)"),
    ("http_connections_closed", "dragonfly_http_connections_closed_total", Counter, "HTTP connections closed: header timeouts, the connection cap"),
    ("http_accept_errors", "dragonfly_http_accept_errors_total", Counter, "HTTP accepts that failed (out of file descriptors)"),
    ("log_events", "dragonfly_log_events_total", Counter, "log_event records scripts wrote"),
    ("stats_events", "dragonfly_stats_events_total", Counter, "stats_event records scripts wrote"),
    ("rss_peak_bytes", "dragonfly_resident_memory_peak_bytes", Gauge, "the most resident memory the process has had (VmHWM): what a memory limit must allow"),
    ("rss_bytes", "", Gauge, "see process_resident_memory_bytes"),
];

/// The families' names from the tables and the other families, for the docs test.
pub fn family_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = [INPUT, ANALYZER, OUTPUT, STORE, TOP]
        .iter()
        .flat_map(|t| t.iter().map(|f| f.1))
        .filter(|n| !n.is_empty())
        .collect();
    v.extend(OTHER);
    v
}

/// Families not from a table.
const OTHER: &[&str] = &[
    "dragonfly_input_kafka_lag_messages",
    "dragonfly_operations_total",
    "dragonfly_queue_depth",
    "dragonfly_unknown_tag_events_total",
    "dragonfly_worker_lua_bytes",
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

/// A number of the record (a boolean is 1 or 0).
fn number(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
}

/// The text being written.
#[derive(Default)]
struct Text(String);

impl Text {
    /// One family: HELP, TYPE, its samples (nothing when it has none).
    fn family(&mut self, name: &str, kind: Kind, help: &str, samples: &[(String, f64)]) {
        if samples.is_empty() || name.is_empty() {
            return;
        }
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {}", kind.as_str());
        for (l, v) in samples {
            let _ = writeln!(self.0, "{name}{l} {v}");
        }
    }

    /// A section of per-tag objects (`inputs`, ...): one family per field, a sample per tag.
    fn per_tag(&mut self, section: Option<&Map<String, Value>>, table: &[Field]) {
        let Some(tags) = section else { return };
        for (key, name, kind, help) in table {
            let samples: Vec<(String, f64)> = tags
                .iter()
                .filter_map(|(tag, o)| Some((labels(&[("tag", tag)]), number(o.get(*key)?)?)))
                .collect();
            self.family(name, *kind, help, &samples);
        }
    }
}

/// The stats record's families, then the build's and the process's.
pub fn render(stats: &Value) -> String {
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
fn record(t: &mut Text, stats: &Value) {
    let section = |k: &str| stats.get(k).and_then(Value::as_object);
    t.per_tag(section("inputs"), INPUT);
    let lag: Vec<(String, f64)> = section("inputs")
        .into_iter()
        .flatten()
        .flat_map(|(tag, i)| {
            i.get("kafka_lag")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(move |(p, n)| {
                    Some((labels(&[("tag", tag), ("partition", p)]), n.as_f64()?))
                })
        })
        .collect();
    t.family(
        "dragonfly_input_kafka_lag_messages",
        Gauge,
        "messages a Kafka input is behind the end of each assigned partition, as librdkafka last reported it",
        &lag,
    );
    t.per_tag(section("analyzers"), ANALYZER);
    t.per_tag(section("outputs"), OUTPUT);
    if let Some(store) = section("store") {
        let backend = store.get("backend").and_then(Value::as_str).unwrap_or("");
        // "redis 127.0.0.1:6379": the kind, then where
        let (kind, address) = backend.split_once(' ').unwrap_or((backend, ""));
        let l = if address.is_empty() {
            labels(&[("backend", kind)])
        } else {
            labels(&[("backend", kind), ("address", address)])
        };
        for (key, name, kind, help) in STORE {
            if let Some(v) = store.get(*key).and_then(number) {
                t.family(name, *kind, help, &[(l.clone(), v)]);
            }
        }
    }
    let ops: Vec<(String, f64)> = section("operations")
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((labels(&[("stage", k)]), v.as_f64()?)))
        .collect();
    t.family(
        "dragonfly_operations_total",
        Counter,
        "events in at the inputs, analyzer calls, events out at the outputs (stage)",
        &ops,
    );
    let queues: Vec<(String, f64)> = section("queues")
        .into_iter()
        .flatten()
        .filter_map(|(q, n)| {
            let (stage, tag) = q.split_once(':').unwrap_or((q, ""));
            let l = if tag.is_empty() {
                labels(&[("stage", stage)])
            } else {
                labels(&[("stage", stage), ("tag", tag)])
            };
            Some((l, n.as_f64()?))
        })
        .collect();
    t.family(
        "dragonfly_queue_depth",
        Gauge,
        "batches waiting before a stage: each worker, each output, the dead letters",
        &queues,
    );
    let unknown: Vec<(String, f64)> = section("unknown_tags")
        .into_iter()
        .flatten()
        .filter_map(|(k, n)| {
            let (kind, tag) = k.split_once(':').unwrap_or(("", k));
            Some((labels(&[("kind", kind), ("tag", tag)]), n.as_f64()?))
        })
        .collect();
    t.family(
        "dragonfly_unknown_tag_events_total",
        Counter,
        "events scripts sent to an output, analyzer or timer tag config.lua does not define, dropped",
        &unknown,
    );
    let workers = section("workers");
    let lua: Vec<(String, f64)> = workers
        .into_iter()
        .flatten()
        .filter_map(|(w, v)| Some((labels(&[("worker", w)]), v["lua_bytes"].as_f64()?)))
        .collect();
    t.family(
        "dragonfly_worker_lua_bytes",
        Gauge,
        "bytes the worker's Lua runtime holds",
        &lua,
    );
    if let Some(workers) = workers.filter(|w| !w.is_empty()) {
        let name = "dragonfly_batch_seconds";
        let _ = writeln!(
            t.0,
            "# HELP {name} time a worker takes for one batch, from its queue to its outputs\n# TYPE {name} histogram"
        );
        for (w, v) in workers {
            let h = &v["batch_seconds"];
            let w = label(w);
            for (le, n) in h["buckets"].as_object().into_iter().flatten() {
                let _ = writeln!(t.0, "{name}_bucket{{worker=\"{w}\",le=\"{le}\"}} {n}");
            }
            let _ = writeln!(t.0, "{name}_sum{{worker=\"{w}\"}} {}", h["sum"]);
            let _ = writeln!(t.0, "{name}_count{{worker=\"{w}\"}} {}", h["count"]);
        }
    }
    for (key, name, kind, help) in TOP {
        if let Some(v) = stats.get(*key).and_then(Value::as_f64) {
            t.family(name, *kind, help, &[(String::new(), v)]);
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
        render(&stats)
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
        let keys = |t: &[Field]| t.iter().map(|f| f.0).collect::<Vec<_>>();
        for (k, v) in redis.snapshot(false)["store"].as_object().unwrap() {
            if v.is_number() {
                assert!(
                    keys(STORE).contains(&k.as_str()),
                    "store.{k} is not a metric"
                );
            }
        }
        let record = embedded.snapshot(false);
        let check = |section: &str, table: &[Field]| {
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
        check("inputs", INPUT);
        check("analyzers", ANALYZER);
        check("outputs", OUTPUT);
        for (k, v) in record["store"].as_object().unwrap() {
            if v.is_number() {
                assert!(
                    keys(STORE).contains(&k.as_str()),
                    "store.{k} is not a metric"
                );
            }
        }
        for (k, v) in record.as_object().unwrap() {
            if v.is_number() {
                assert!(keys(TOP).contains(&k.as_str()), "{k} is not a metric");
            }
        }
    }
}
