//! The engine's own messages about problems: every one goes to tracing (stderr) and, as a JSON
//! record, to dragonfly-mle.log in LOGDIR beside the scripts' `log_event` records. Repeated
//! problems are rate limited (the first ten, then every power of ten) but always counted.

use crossbeam_channel::Sender;
use dragonfly_io::{ratelimit::should_log, Batch};
use dragonfly_lua::ScriptError;
use serde_json::json;

#[derive(Clone)]
/// Where the engine reports problems (see the module doc).
pub struct EngineLog {
    tx: Option<Sender<Batch>>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl EngineLog {
    /// A log writing its records to `tx` (the engine log's sink).
    pub fn new(tx: Sender<Batch>) -> Self {
        Self { tx: Some(tx) }
    }

    /// A log that only goes to tracing (for `--check`).
    pub fn stderr_only() -> Self {
        Self { tx: None }
    }

    fn record(&self, v: serde_json::Value) {
        if let Some(tx) = &self.tx {
            let mut b = Batch::default();
            let mut line = v.to_string().into_bytes();
            line.push(b'\n');
            b.push(&line);
            // never wait on the log: when its file cannot keep up (a full disk), the record
            // is on stderr already
            let _ = tx.try_send(b);
        }
    }

    /// A script failed (the `count`-th time for its counter).
    pub fn lua_error(&self, e: &ScriptError, event: &str, count: u64) {
        if !should_log(count) {
            return;
        }
        tracing::error!(script = %e.script, count, event = %event, "Lua error: {}", e.message);
        self.record(json!({
            "timestamp": now(), "level": "error", "kind": "lua_error",
            "script": e.script, "error": e.message, "count": count, "event": event,
        }));
    }

    /// An input line was skipped.
    pub fn bad_line(&self, input: &str, err: &str, line: &[u8], count: u64) {
        if !should_log(count) {
            return;
        }
        let mut excerpt = String::from_utf8_lossy(line).into_owned();
        dragonfly_event::text::truncate(&mut excerpt, 256);
        tracing::warn!(input, count, line = %excerpt, "skipped a malformed JSON line: {err}");
        self.record(json!({
            "timestamp": now(), "level": "warn", "kind": "malformed_json",
            "input": input, "error": err, "count": count, "line": excerpt,
        }));
    }

    /// An event was routed to a tag that names nothing (once per tag).
    pub fn unknown_tag(&self, what: &str, tag: &str) {
        tracing::warn!(tag, "an event was routed to {what} '{tag}', which config.lua does not define; such events are dropped and counted in the stats (unknown_tags)");
        self.record(json!({
            "timestamp": now(), "level": "warn", "kind": "unknown_tag",
            "target": what, "tag": tag,
        }));
    }

    /// A problem of the engine itself (`kind` names it).
    pub fn engine_error(&self, kind: &str, msg: &str) {
        self.record(json!({
            "timestamp": now(), "level": "error", "kind": kind, "error": msg,
        }));
    }

    /// An output that had failed works again.
    pub fn sink_recovered(&self, output: &str, msg: &str) {
        tracing::info!(output, "{msg}");
        self.record(json!({
            "timestamp": now(), "level": "info", "kind": "output_recovered",
            "output": output, "message": msg,
        }));
    }

    /// An output failed.
    pub fn sink_error(&self, output: &str, err: &str, count: u64) {
        if !should_log(count) {
            return;
        }
        tracing::error!(output, count, "output failed: {err}");
        self.record(json!({
            "timestamp": now(), "level": "error", "kind": "output_error",
            "output": output, "error": err, "count": count,
        }));
    }
}
