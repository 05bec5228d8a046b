//! `engine.http`: /health, /metrics (Prometheus text) and /api/stats from a running engine,
//! numbers that move while events flow, nothing else served (path traversal attempts
//! included), and start-up errors for an address that cannot be used.

use crate::common::*;
use dragonfly_testkit::free_port;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

pub(crate) fn http_root(addr: &str) -> Root {
    let r = Root::passthrough("unix://in.sock");
    r.write("analyzer/pass.lua", PASS_READY);
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!("{cfg}\nengine = {{ http = \"{addr}\" }}\n"));
    r
}

#[test]
fn health_metrics_and_stats_are_served_and_nothing_else() {
    let port = free_port();
    let r = http_root(&format!("127.0.0.1:{port}"));
    let child = r.spawn(&[]);
    wait_for(T, "start-up", || r.path().join("ready").exists());
    wait_for(T, "the listener", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // ready once the input listens too (its thread says so just after setup)
    wait_for(T, "ready", || request(port, "GET", "/health").0 == 200);
    let (code, body) = request(port, "GET", "/health");
    assert_eq!(code, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["ready"], true, "{body}");

    let (code, body) = request(port, "GET", "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("# TYPE dragonfly_input_lines_total counter"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l == "dragonfly_input_lines_total{tag=\"in\"} 0"),
        "{body}"
    );

    // the numbers move as events flow
    let mut s = std::os::unix::net::UnixStream::connect(r.path().join("in.sock")).unwrap();
    for i in 0..5 {
        writeln!(s, "{{\"seq\":{i}}}").unwrap();
    }
    drop(s);
    wait_for(T, "5 events in the metrics", || {
        let (_, body) = request(port, "GET", "/metrics");
        body.lines()
            .any(|l| l == "dragonfly_input_lines_total{tag=\"in\"} 5")
            && body
                .lines()
                .any(|l| l == "dragonfly_output_events_total{tag=\"out\"} 5")
    });
    // the edges the 5 events took, while the engine waits for more (not only at exit)
    wait_for(T, "the edges of 5 events", || {
        let (_, body) = request(port, "GET", "/metrics");
        body.lines()
            .any(|l| l == "dragonfly_edge_events_total{from=\"filter:in\",to=\"analyzer:pass\"} 5")
            && body.lines().any(|l| {
                l == "dragonfly_edge_events_total{from=\"analyzer:pass\",to=\"output:out\"} 5"
            })
    });
    let (code, body) = request(port, "GET", "/api/stats");
    assert_eq!(code, 200);
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["inputs"]["in"]["lines"], 5, "{body}");

    // the live page (self-contained: no URL to anywhere else), the graph it draws, the queues
    let (code, page) = request(port, "GET", "/");
    assert_eq!(code, 200);
    assert!(page.starts_with("<!doctype html>"), "{page}");
    for outside in ["<script src", "<link", "@import", "url(", "https://"] {
        assert!(
            !page.contains(outside),
            "the page loads nothing else: {outside}"
        );
    }
    let (code, body) = request(port, "GET", "/api/pipeline");
    assert_eq!(code, 200);
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["inputs"][0]["tag"], "in", "{body}");
    assert_eq!(p["analyzers"][0]["default_output"], "out", "{body}");
    assert_eq!(p["outputs"][0]["uri"], "file://out.json", "{body}");
    assert_eq!(request(port, "GET", "/api/errors"), (200, "[]".to_string()));
    let (_, metrics) = request(port, "GET", "/metrics");
    assert!(
        metrics.contains("# TYPE dragonfly_queue_depth gauge")
            && metrics.contains("dragonfly_queue_depth{stage=\"worker\",tag=\"0\"} 0"),
        "{metrics}"
    );
    // the process's memory, each runtime's, and how long batches take (a histogram)
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{prefix}: {metrics}"))
    };
    assert!(value("process_resident_memory_bytes ") > 1e6);
    // the high-water mark is read after the reading of the moment: never below it
    assert!(
        value("dragonfly_resident_memory_peak_bytes ") >= value("process_resident_memory_bytes ")
    );
    assert!(metrics.contains("# TYPE dragonfly_resident_memory_peak_bytes gauge"));
    assert!(value("process_open_fds ") >= 3.0);
    // (clock ticks: a quiet engine may not have used a whole one yet)
    assert!(value("process_cpu_seconds_total ") >= 0.0);
    assert_eq!(value("dragonfly_input_ready{tag=\"in\"} "), 1.0);
    assert!(value("dragonfly_worker_lua_bytes{worker=\"0\"} ") > 1e4);
    assert!(metrics.contains("# TYPE dragonfly_batch_seconds histogram"));
    let count = value("dragonfly_batch_seconds_count{worker=\"0\"} ");
    assert!(count >= 1.0, "{metrics}");
    assert_eq!(
        value("dragonfly_batch_seconds_bucket{worker=\"0\",le=\"+Inf\"} "),
        count
    );

    // nothing but those routes: no file is reachable through a path
    for path in [
        "/index.html",
        "/config/config.lua",
        "/../config/config.lua",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "//etc/passwd",
        "/metrics/../../etc/passwd",
        "/www/hello.json",
        "/api/stats/../../config/config.lua",
    ] {
        let (code, body) = request(port, "GET", path);
        assert_eq!(code, 404, "{path}: {body}");
        assert!(
            !body.contains("root:") && !body.contains("inputs"),
            "{path}: {body}"
        );
    }
    assert_eq!(request(port, "POST", "/metrics").0, 405);
    assert_eq!(request(port, "DELETE", "/health").0, 405);
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    assert!(
        err.contains(&format!("http: listening on 127.0.0.1:{port}")),
        "{err}"
    );
    // the console says what was opened, one line each
    assert!(err.contains("input 'in': unix://in.sock"), "{err}");
    assert!(err.contains("output 'out': "), "{err}");
}

#[test]
fn an_address_that_cannot_be_used_is_a_start_up_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    for (addr, want, code) in [
        // not an address at all: config.lua is wrong
        (
            "nonsense".to_string(),
            "config error: config/config.lua: engine: field 'http': \"nonsense\" is not an address to listen on",
            2,
        ),
        (taken.clone(), "engine.http: cannot listen on", 1),
    ] {
        let r = http_root(&addr);
        let out = r.run_to_eof(T);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{addr}: {err}");
        assert!(err.contains(want), "{addr}: {err}");
    }
}

/// `/api/analyzers`: the configuration plus the original's `www/<tag>.json` descriptions,
/// read from regular files only (a planted symlink is not followed).
#[test]
fn analyzers_are_described_from_www_without_following_symlinks() {
    let port = free_port();
    let r = http_root(&format!("127.0.0.1:{port}"));
    r.write(
        "www/pass.json",
        r#"{"name":"Pass","about":"hands every event on"}"#,
    );
    let child = r.spawn(&[]);
    wait_for(T, "start-up", || r.path().join("ready").exists());
    wait_for(T, "the listener", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (code, body) = request(port, "GET", "/api/analyzers");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["tag"], "pass", "{body}");
    assert_eq!(v[0]["script"], "pass.lua", "{body}");
    assert_eq!(v[0]["description"]["name"], "Pass", "{body}");
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");

    // the same root with the description replaced by a symlink to a file outside www
    std::fs::remove_file(r.path().join("www/pass.json")).unwrap();
    r.write("secret.json", r#"{"secret":true}"#);
    std::os::unix::fs::symlink(r.path().join("secret.json"), r.path().join("www/pass.json"))
        .unwrap();
    let _ = std::fs::remove_file(r.path().join("ready"));
    let child = r.spawn(&[]);
    wait_for(T, "start-up", || r.path().join("ready").exists());
    wait_for(T, "the listener", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (_, body) = request(port, "GET", "/api/analyzers");
    assert!(!body.contains("secret"), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["description"], serde_json::Value::Null, "{body}");
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
}

/// `/health` answers while the scripts set up — live, not ready (503) — and ready (200) once
/// every `setup()` ran and the inputs are open.
#[test]
fn health_says_ready_only_after_setup() {
    let port = free_port();
    let r = http_root(&format!("127.0.0.1:{port}"));
    r.write(
        "analyzer/pass.lua",
        r#"
function setup()
  local t = dragonfly.clock() + 1.5
  while dragonfly.clock() < t do end
  local f = io.open("ready", "w"); f:write("1"); f:close()
end
function loop(msg) dragonfly.output_event(default_output, msg) end"#,
    );
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace("engine = {", "engine = { script_timeout_ms = 10000,"));
    let child = r.spawn(&[]);
    wait_for(T, "the listener", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (code, body) = request(port, "GET", "/health");
    assert_eq!(code, 503, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "live", "{body}");
    assert_eq!(h["ready"], false, "{body}");
    assert!(h["reason"].as_str().unwrap().contains("setup()"), "{body}");
    wait_for(T, "ready", || request(port, "GET", "/health").0 == 200);
    let (_, body) = request(port, "GET", "/health");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["inputs"]["in"]["state"], "listening", "{body}");
    assert_eq!(h["inputs"]["in"]["ready"], true, "{body}");
    assert!(r.path().join("ready").exists());
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
}
