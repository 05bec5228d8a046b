//! Watching a running engine from a terminal: `dragonfly-mle tap` and `GET /api/tap` (sampled
//! events at an input, an analyzer and an output, filtered, at most the asked rate,
//! attacker-shaped events escaped for the terminal, bad requests refused with a message, a tap
//! closed when its client goes: the `dragonfly_taps` gauge back to 0), and `dragonfly-mle top`
//! (each node's and edge's rate while events flow).

use crate::common::*;
use crate::http::http_root;
use dragonfly_testkit::free_port;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// The hostile name: an ANSI clear-screen, a C1 CSI, a right-to-left override, a line
/// separator and a zero-width space.
const HOSTILE: &str = "\u{1b}[2J\u{9b}31m\u{202e}exe.evil\u{2028}\u{200b}";

fn tap(root: &Root, args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .arg("-r")
        .arg(root.path())
        .arg("tap")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, T)
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn gauge(port: u16, name: &str) -> Option<u64> {
    let (_, body) = request(port, "GET", "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
}

#[test]
fn a_tap_shows_sampled_events_at_each_stage_filtered_rate_limited_and_escaped() {
    let port = free_port();
    let r = http_root(&format!("127.0.0.1:{port}"));
    let engine = r.spawn(&[]);
    wait_for(T, "start-up", || r.path().join("ready").exists());
    wait_for(T, "ready", || request(port, "GET", "/health").0 == 200);

    // events keep coming: dns queries (one in five for the hostile name), flows, a line that
    // is not JSON
    let stop_sending = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop_sending = stop_sending.clone();
        let sock = r.path().join("in.sock");
        std::thread::spawn(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            let hostile = serde_json::Value::from(HOSTILE).to_string();
            let mut i = 0u64;
            while !stop_sending.load(Ordering::Relaxed) {
                for _ in 0..10 {
                    i += 1;
                    let line = match i % 5 {
                        0 => format!(
                            r#"{{"event_type":"dns","seq":{i},"dns":{{"rrname":{hostile},"rcode":0}}}}"#
                        ),
                        1 | 2 => format!(
                            r#"{{"event_type":"dns","seq":{i},"dns":{{"rrname":"ok.example","rcode":3}}}}"#
                        ),
                        3 => format!(r#"{{"event_type":"flow","seq":{i},"dest_port":443}}"#),
                        _ => "\u{1b}]0;pwned\u{7} not json \u{9b}2J".to_string(),
                    };
                    writeln!(s, "{line}").unwrap();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // an analyzer, filtered on a nested string: only the hostile queries, escaped
    let out = tap(
        &r,
        &[
            "--stage",
            "analyzer:pass",
            "--filter",
            &format!("dns.rrname={HOSTILE}"),
            "--limit",
            "3",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lines(&out);
    assert_eq!(got.len(), 3, "{got:?}");
    for l in &got {
        assert!(l.contains(" analyzer:pass {"), "{l}");
        assert!(
            l.contains("\\u001b[2J\\u009b31m\\u202eexe.evil\\u2028\\u200b"),
            "{l}"
        );
        assert!(
            !l.chars()
                .any(|c| c.is_control() || "\u{202e}\u{2028}\u{200b}".contains(c)),
            "{l}"
        );
    }

    // the input, as JSON lines: the lines as read, including those that are not JSON, and
    // numbers compared by value
    let out = tap(
        &r,
        &[
            "--stage", "input:in", "--format", "json", "--rate", "1000", "--limit", "40",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<serde_json::Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 40);
    assert!(got
        .iter()
        .all(|v| v["stage"] == "input" && v["tag"] == "in"));
    let bad = got
        .iter()
        .find(|v| v["malformed"] == true)
        .expect("a line that is not JSON");
    assert_eq!(bad["text"], "\u{1b}]0;pwned\u{7} not json \u{9b}2J");
    assert!(lines(&out)
        .iter()
        .all(|l| !l.chars().any(|c| c.is_control())));
    let out = tap(
        &r,
        &[
            "--stage",
            "in",
            "--filter",
            "dest_port=443.0",
            "--limit",
            "2",
            "--format",
            "json",
        ],
    );
    let got: Vec<serde_json::Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 2, "{:?}", lines(&out));
    assert!(
        got.iter().all(|v| v["event"]["event_type"] == "flow"),
        "{got:?}"
    );

    // an output, every stage's events at most at the asked rate: 5 per second, one second's
    // worth at once, so 12 take at least 1.4 s
    let started = Instant::now();
    let out = tap(
        &r,
        &[
            "--stage",
            "output:out",
            "--rate",
            "5",
            "--limit",
            "12",
            "--format",
            "json",
        ],
    );
    let took = started.elapsed();
    let got: Vec<serde_json::Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 12);
    assert!(got
        .iter()
        .all(|v| v["stage"] == "output" && v["tag"] == "out"));
    assert!(
        took >= Duration::from_millis(1400),
        "12 events at 5/s came in {took:?}"
    );

    // refused: a stage that names nothing (the message lists what exists), a bad filter, a
    // rate out of range; over HTTP a 400 with the reason
    let out = tap(&r, &["--stage", "analyzer:nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"analyzer:nope\" names nothing") && err.contains("analyzers: pass"),
        "{err}"
    );
    let out = tap(&r, &["--filter", "noequals"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected FIELD=VALUE"));
    let (code, body) = request(port, "GET", "/api/tap?rate=5000");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("expected 1 to 1000"), "{body}");
    let (code, body) = request(port, "GET", "/api/tap?bogus=1");
    assert_eq!(code, 400);
    assert!(body.contains("unknown parameter \\\"bogus\\\""), "{body}");

    // a client that goes without reading to the end: its tap closes (heartbeats find it
    // gone even when nothing matches)
    {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(c, "GET /api/tap?filter=seq=-1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        wait_for(T, "the tap open", || {
            gauge(port, "dragonfly_taps") == Some(1)
        });
    }
    wait_for(T, "the tap closed", || {
        gauge(port, "dragonfly_taps") == Some(0)
    });
    assert!(gauge(port, "dragonfly_tap_events_total").unwrap() >= 57);

    // top: the same engine's numbers in a terminal, once; rates over half a second
    let out = Command::new(BIN)
        .arg("-r")
        .arg(r.path())
        .args(["top", "--once", "--interval", "0.5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rate_of = |prefix: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"));
        line[prefix.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(rate_of("input:in") > 0.0, "{text}");
    assert!(rate_of("analyzer:pass") > 0.0, "{text}");
    assert!(rate_of("filter:in > analyzer:pass") > 0.0, "{text}");
    assert!(rate_of("analyzer:pass > output:out") > 0.0, "{text}");
    assert!(text.contains("store embedded"), "{text}");

    stop_sending.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let (status, err) = stop(engine, T);
    assert!(status.success(), "{err}");

    // no listener configured: the tap says how to get one
    let quiet = Root::passthrough("unix://in.sock");
    let out = tap(&quiet, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("engine.http is not set"));
}
