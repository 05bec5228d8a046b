//! `/metrics` as a Prometheus user meets it: `promtool check metrics` finds nothing to say,
//! and a real Prometheus (Debian's package) scrapes the engine and answers queries on its
//! counters, the build and the process metrics with what the engine did.

use crate::common::*;
use std::io::Write;
use std::time::Duration;

use dragonfly_testkit::prometheus::promtool_check_metrics;
use dragonfly_testkit::PrometheusServer;

const T: Duration = Duration::from_secs(60);

/// An engine reading a unix socket, with its HTTP listener on `port`, whose analyzer `pass`
/// (`analyzer`, or the pass-through) has run on `n` events.
fn engine_with_events(port: u16, n: usize, analyzer: Option<&str>) -> (Root, std::process::Child) {
    let r = Root::passthrough("unix://in.sock");
    if let Some(a) = analyzer {
        r.write("analyzer/pass.lua", a);
    }
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "{cfg}\nengine = {{ http = \"127.0.0.1:{port}\" }}\n"
    ));
    let child = r.spawn(&[]);
    let sock = r.path().join("in.sock");
    wait_for(T, "the socket", || sock.exists());
    // the unix socket can exist before the HTTP listener is bound: connect first (request
    // panics on a refused connection)
    wait_for(T, "the listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && request(port, "GET", "/health").0 == 200
    });
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    for i in 0..n {
        writeln!(s, "{{\"seq\":{i}}}").unwrap();
    }
    drop(s);
    let done = format!("dragonfly_analyzer_events_total{{tag=\"pass\"}} {n}");
    wait_for(T, "the events analyzed", || {
        request(port, "GET", "/metrics")
            .1
            .lines()
            .any(|l| l == done)
    });
    (r, child)
}

/// The value of the first sample of an instant query's answer (None when it has none).
fn value(answer: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(answer).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn promtool_finds_nothing_to_say_about_the_metrics() {
    let port = dragonfly_testkit::free_port();
    // a script failure and an unknown tag put every family in the text
    let analyzer = r#"
function setup() end
function loop(msg)
  if msg.seq == 1 then error("boom") end
  if msg.seq == 2 then dragonfly.output_event("nowhere", msg) return end
  dragonfly.output_event(default_output, msg)
end"#;
    let (_r, child) = engine_with_events(port, 3, Some(analyzer));
    let (code, metrics) = request(port, "GET", "/metrics");
    assert_eq!(code, 200);
    let (ok, said) = promtool_check_metrics(&metrics);
    assert!(ok && said.trim().is_empty(), "promtool: {said}\n{metrics}");
    for family in [
        "dragonfly_unknown_tag_events_total",
        "dragonfly_analyzer_lua_errors_total",
        "dragonfly_dead_letters_total",
        "dragonfly_batch_seconds",
        "dragonfly_store_keys",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family}: {metrics}"
        );
    }
    stop(child, T);
}

#[test]
fn a_real_prometheus_scrapes_the_engine_and_queries_its_counters() {
    let port = dragonfly_testkit::free_port();
    let (_r, child) = engine_with_events(port, 7, None);
    let prom = PrometheusServer::start(&format!("127.0.0.1:{port}"));
    wait_for(T, "a scrape with the events", || {
        value(&prom.query("dragonfly_input_lines_total{tag=\"in\"}")) == Some(7.0)
    });
    assert_eq!(value(&prom.query("up{job=\"dragonfly\"}")), Some(1.0));
    assert_eq!(
        value(&prom.query("dragonfly_output_events_total{tag=\"out\"}")),
        Some(7.0)
    );
    assert_eq!(
        value(&prom.query("sum(dragonfly_operations_total{stage=\"input\"})")),
        Some(7.0)
    );
    assert_eq!(
        value(&prom.query("dragonfly_input_ready{tag=\"in\"}")),
        Some(1.0)
    );
    let build = prom.query("dragonfly_build_info");
    assert!(
        build.contains(&format!("\"version\":\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(value(&prom.query("process_resident_memory_bytes")).unwrap() > 1e6);
    assert!(value(&prom.query("process_open_fds")).unwrap() >= 3.0);
    // the start time is this process's: seconds since the epoch, before now
    let start = value(&prom.query("process_start_time_seconds")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start > now - 600.0 && start <= now + 1.0,
        "{start} vs {now}"
    );
    // Prometheus found nothing wrong with what it scraped
    let targets = prom.get("/api/v1/targets").unwrap().1;
    assert!(targets.contains("\"health\":\"up\""), "{targets}");
    assert!(targets.contains("\"lastError\":\"\""), "{targets}");
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
}
