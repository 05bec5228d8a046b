//! Every signal is true: what the final `done:` line, the exit code, `--check --sample`,
//! `/metrics` and the live page say is what the engine did — events sent to a tag nothing
//! defines are counted and shown everywhere, and dead letters keep the input line as it came.

use crate::common::*;
use std::io::Write;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// An analyzer that sends every event to output "report" (config.lua defines "reports"),
/// every third to analyzer "nobody" and asks a timer of analyzer "later" once.
const MISROUTED: &str = r#"
local asked = false
function setup() end
function loop(msg)
  dragonfly.output_event("report", msg)
  if msg.seq % 3 == 0 then dragonfly.analyze_event("nobody", msg) end
  if not asked then asked = true dragonfly.timer_event("later", 1, msg) end
end
"#;

fn misrouted_root(input_uri: &str) -> Root {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/a.lua", MISROUTED);
    r.config(&format!(
        r#"
inputs = {{ {{ tag="in", uri="{input_uri}", script="filter.lua", default_analyzer="a" }} }}
analyzers = {{ {{ tag="a", script="a.lua", default_analyzer="", default_output="reports" }} }}
outputs = {{ {{ tag="reports", uri="file://reports.json" }} }}
"#
    ));
    let text: String = (0..6).map(|i| format!("{{\"seq\":{i}}}\n")).collect();
    r.write("in.json", &text);
    r
}

#[test]
fn events_sent_to_undefined_tags_are_counted_shown_and_not_a_clean_exit() {
    let r = misrouted_root("file://in.json");
    let out = r.run_to_eof(T);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("9 events were sent to tags config.lua does not define"),
        "{err}"
    );
    for want in [
        "output 'report' (6)",
        "analyzer 'nobody' (2)",
        "timer 'later' (1)",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(!r.log("reports.json").exists() || r.lines("reports.json").is_empty());
    let s = r.final_stats();
    assert_eq!(s["unknown_tags"]["output:report"], 6, "{s}");
    assert_eq!(s["unknown_tags"]["timer:later"], 1, "{s}");

    // --check --sample says so too, and fails the same way
    let out = r
        .command(&["--check", "--sample"])
        .arg(r.path().join("in.json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{stdout}");
    assert!(stdout.contains("== unknown tags: 3"), "{stdout}");
    assert!(stdout.contains("output 'report' (6)"), "{stdout}");
}

#[test]
fn metrics_and_the_live_page_show_events_sent_to_undefined_tags() {
    let port = dragonfly_testkit::free_port();
    let r = misrouted_root("unix://in.sock");
    with_http(&r, port);
    let child = r.spawn(&[]);
    let sock = r.path().join("in.sock");
    wait_for(T, "the socket", || sock.exists());
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    for i in 0..6 {
        writeln!(s, "{{\"seq\":{i}}}").unwrap();
    }
    let metric = "dragonfly_unknown_tag_events_total{kind=\"output\",tag=\"report\"} 6";
    wait_for(T, "the metric", || {
        request(port, "GET", "/metrics").1.contains(metric)
    });
    let (_, metrics) = request(port, "GET", "/metrics");
    assert!(
        metrics.contains("dragonfly_unknown_tag_events_total{kind=\"analyzer\",tag=\"nobody\"} 2"),
        "{metrics}"
    );
    let (code, page) = request(port, "GET", "/");
    assert_eq!(code, 200);
    assert!(page.contains("unknown-tags") && page.contains("s.unknown_tags"));
    drop(s);
    let (status, err) = stop(child, T);
    assert_eq!(status.code(), Some(5), "{err}");
}

#[test]
fn a_dead_letter_holds_the_input_line_byte_for_byte() {
    let line = r#"{"seq":0,"flow_id":1.2856699708456e+14,"rate":1.50,"big":18446744073709551616,"s":"\u0041"}"#;
    let r = analyzer_root("function loop(msg) error('no') end", 0);
    r.write("in.json", &format!("{line}\n"));
    let out = r.run_to_eof(T);
    assert_eq!(out.status.code(), Some(3));
    let dead = r.lines("dead-letter.json");
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].contains(&format!("\"event\":{line}")),
        "the input line as it came: {}",
        dead[0]
    );
}

/// `r`'s config.lua with the HTTP listener on `port`.
fn with_http(r: &Root, port: u16) {
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "{cfg}\nengine = {{ http = \"127.0.0.1:{port}\" }}\n"
    ));
}

/// `/health` once input "in" is in `state` (the listener up first).
fn health_once(port: u16, state: &str) -> (u16, serde_json::Value) {
    wait_for(T, "the listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    wait_for(T, state, || {
        health(port).1["inputs"]["in"]["state"] == state
    });
    health(port)
}

/// `/health`'s answer: the code and the body as JSON.
fn health(port: u16) -> (u16, serde_json::Value) {
    let (code, body) = request(port, "GET", "/health");
    (code, serde_json::from_str(&body).unwrap_or_default())
}

/// An engine that cannot read its input is not ready: `/health` says 503 and why, the log
/// says it once (not at every retry), and once the file can be read it is ready and reads it.
/// Run as the unprivileged user (`-p`) with eve.json created root-only after the start, as
/// Suricata does when it starts second.
#[test]
fn health_says_when_an_input_cannot_be_read_and_why() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        dragonfly_testkit::skip("not root: -p cannot be tested here");
        return;
    }
    let port = dragonfly_testkit::free_port();
    let r = Root::passthrough("tail://eve.json");
    std::fs::set_permissions(r.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    with_http(&r, port);
    std::fs::create_dir_all(&r.logdir).unwrap();
    let err_log = std::fs::File::create(r.logdir.join("stderr.log")).unwrap();
    let child = r
        .command(&["-p"])
        .stdout(std::process::Stdio::null())
        .stderr(err_log)
        .spawn()
        .unwrap();
    // no file yet: waiting for it, not ready
    let (code, h) = health_once(port, "waiting");
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["ready"], false, "{h}");
    assert!(
        h["inputs"]["in"]["reason"]
            .as_str()
            .unwrap()
            .contains("does not exist yet"),
        "{h}"
    );
    // the file comes, readable only by root: the engine (nobody) cannot open it
    let eve = r.path().join("eve.json");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&eve)
            .unwrap();
        f.write_all(b"{\"seq\":1}\n").unwrap();
    }
    let (code, h) = health_once(port, "error");
    assert_eq!(code, 503, "{h}");
    let reason = h["inputs"]["in"]["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("eve.json") && reason.contains("ermission denied"),
        "{h}"
    );
    // the stats say it too
    let (_, stats) = request(port, "GET", "/api/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["inputs"]["in"]["state"], "error", "{stats}");
    assert_eq!(stats["inputs"]["in"]["ready"], false, "{stats}");
    // a second of retries (every 50 ms) is one line in the log, not twenty
    std::thread::sleep(Duration::from_secs(1));
    let log = r.read_log("stderr.log");
    assert_eq!(log.matches("ermission denied").count(), 1, "{log}");
    assert!(!log.contains("rotated"), "{log}");

    // readable now: ready, and the event is read
    std::fs::set_permissions(&eve, std::fs::Permissions::from_mode(0o644)).unwrap();
    wait_for(T, "ready", || health(port).0 == 200);
    let (_, h) = health(port);
    assert_eq!(h["inputs"]["in"]["state"], "following", "{h}");
    wait_for(T, "the event", || r.lines("out.json").len() == 1);
    let (status, _) = stop(child, T);
    assert!(status.success());
}

/// A network input whose server cannot be reached is not ready either, and says why.
#[test]
fn health_says_when_a_redis_input_cannot_reach_its_server() {
    let port = dragonfly_testkit::free_port();
    let nothing = dragonfly_testkit::free_port();
    let r = Root::passthrough(&format!("redis://127.0.0.1:{nothing}/eve"));
    with_http(&r, port);
    let child = r.spawn(&[]);
    let (code, h) = health_once(port, "error");
    assert_eq!(code, 503, "{h}");
    let reason = h["inputs"]["in"]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("127.0.0.1:{nothing}")), "{h}");
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
}
