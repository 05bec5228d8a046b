//! Every signal is true: what the final `done:` line, the exit code, `--check --sample`,
//! `/metrics` and the live page say is what the engine did — events sent to a tag nothing
//! defines are counted and shown everywhere, and dead letters keep the input line as it came.

mod common;
use common::*;
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
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "{cfg}\nengine = {{ http = \"127.0.0.1:{port}\" }}\n"
    ));
    let child = r.spawn(&[]);
    let sock = r.path().join("in.sock");
    wait_for(T, "the socket", || sock.exists());
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    for i in 0..6 {
        writeln!(s, "{{\"seq\":{i}}}").unwrap();
    }
    let metric = "dragonfly_unknown_tag_events{kind=\"output\",tag=\"report\"} 6";
    wait_for(T, "the metric", || {
        request(port, "GET", "/metrics").1.contains(metric)
    });
    let (_, metrics) = request(port, "GET", "/metrics");
    assert!(
        metrics.contains("dragonfly_unknown_tag_events{kind=\"analyzer\",tag=\"nobody\"} 2"),
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
