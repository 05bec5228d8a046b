//! `dragonfly-mle test`: the test cases every example root ships pass; a broken detection
//! fails them, naming the case and what it expected; a case that cannot run says why; the
//! JSON report is the only thing on stdout; nothing is left in the temporary directory.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

/// `dragonfly-mle -r ROOT test ARGS`, with a temporary directory of its own (returned, to
/// look into afterwards).
fn test(root: &Path, args: &[&str]) -> (Output, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let out = wait_output(
        Command::new(BIN)
            .arg("-r")
            .arg(root)
            .arg("-l")
            .arg(logs.path())
            .arg("test")
            .args(args)
            .env("TMPDIR", tmp.path())
            .env_remove("DRAGONFLY_EVE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        LIMIT,
    );
    (out, tmp)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_example_roots_tests_pass_and_leave_nothing_behind() {
    for (root, cases) in [
        ("dns", 6),
        ("flow", 1),
        ("tls", 1),
        ("triage", 1),
        ("quickstart", 2),
    ] {
        let (out, tmp) = test(&examples().join(root), &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{root}: {t}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("{cases} passed, 0 failed")),
            "{root}: {t}"
        );
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "{root} left {left:?}");
    }
}

/// The DGA threshold raised from 5 names to 6: the case that plants five names fails, with
/// the case, the count it expected and the event it looked for; the others still pass.
#[test]
fn a_broken_detection_fails_its_case_and_says_what_it_expected() {
    let root = copy_example("dns");
    let script = root.path().join("analyzer/dns-dga.lua");
    let src = std::fs::read_to_string(&script).unwrap();
    assert!(src.contains("local DGA_NAMES = 5"));
    std::fs::write(
        &script,
        src.replace("local DGA_NAMES = 5", "local DGA_NAMES = 6"),
    )
    .unwrap();
    let (out, _tmp) = test(root.path(), &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    for want in [
        "FAILED tests/detections.json: five DGA names from one host in ten minutes are one dns.dga finding",
        "output 'findings': expected 1 events, got 0",
        r#"no event matches {"finding":"dns.dga","host":"10.9.9.9""#,
        "ok     tests/detections.json: four DGA names are not enough",
        "5 passed, 1 failed",
    ] {
        assert!(t.contains(want), "{want}: {t}");
    }
    // the filter picks cases by "FILE: NAME"
    let (out, _tmp) = test(root.path(), &["four DGA"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("1 passed, 0 failed"));
}

/// Cases that cannot run or are written wrong fail with the reason; script errors fail a case
/// unless it expects them, and the failure quotes the event; the JSON report is all that is on
/// stdout, even when scripts print.
#[test]
fn bad_cases_say_why_and_the_json_report_is_alone_on_stdout() {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write(
        "analyzer/a.lua",
        r#"
function setup() print("a script printing on stdout"); conn = hiredis.connect() end
function loop(msg)
  if msg.bad then error("bad event " .. msg.seq) end
  conn:command("INCR", "n")
  dragonfly.output_event(default_output, msg)
end"#,
    );
    r.config(
        r#"
inputs = { { tag="in", uri="file://nowhere.json", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    r.write(
        "tests/cases.json",
        r#"{"cases": [
  {"name": "passes", "events": [{"seq": 1}, {"seq": 2}],
   "expect": {"outputs": {"out": {"count": 2, "contains": [{"seq": 2}], "absent": [{"seq": 3}]}},
              "store": [{"command": ["GET", "n"], "reply": "2"}, {"command": ["TYPE", "n"], "reply": "string"}]}},
  {"name": "store not as expected", "events": [{"seq": 1}],
   "expect": {"store": [{"command": ["GET", "n"], "reply": "/^[2-9]$/"}, {"command": ["GET", "nope"], "reply": null}]}},
  {"name": "errors expected", "events": [{"seq": 1, "bad": true}], "expect": {"script_errors": 1}},
  {"name": "errors not expected", "events": [{"seq": 7, "bad": true}], "expect": {}},
  {"name": "no events file", "events_file": "nope.json", "expect": {}},
  {"name": "bad pattern", "events": [{"seq": 1}],
   "expect": {"outputs": {"out": {"contains": [{"seq": "/(/"}]}}}},
  {"name": "no such output", "events": [{"seq": 1}], "expect": {"outputs": {"nope": {"count": 1}}}},
  {"name": "no such input", "input": "other", "events": [{"seq": 1}], "expect": {}},
  {"name": "straight to the analyzer", "analyzer": "a", "events": [{"seq": 5}],
   "expect": {"outputs": {"out": {"count": 1, "contains": [{"seq": 5}]}}}},
  {"name": "no such analyzer", "analyzer": "nope", "events": [{"seq": 1}], "expect": {}}
]}"#,
    );
    r.write("tests/broken.json", "{ not json");
    let (out, tmp) = test(r.path(), &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    for want in [
        "ok     tests/cases.json: passes",
        "ok     tests/cases.json: errors expected",
        "FAILED tests/cases.json: errors not expected",
        "script errors: expected 0, got 1",
        "analyzer/a.lua:4: bad event 7",
        r#"event: {"seq":7,"bad":true}"#,
        "cannot run: events_file",
        "nope.json: no such file",
        "the pattern /(/ is not a regular expression",
        "output 'nope': config.lua has no such output",
        "no input 'other'",
        r#"store: ["GET","n"] replied "1", expected "/^[2-9]$/""#,
        "tests/broken.json: not JSON",
        "ok     tests/cases.json: straight to the analyzer",
        "no analyzer 'nope'",
        "3 passed, 8 failed",
    ] {
        assert!(t.contains(want), "{want}: {t}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("a script printing"),
        "scripts print to stderr during tests"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left {left:?}");

    // JUnit XML: a testsuite per file, failures with their text escaped
    let (out, _tmp) = test(r.path(), &["--format", "junit"]);
    let x = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{x}");
    for want in [
        r#"<testsuites name="dragonfly-mle test" tests="11" failures="8">"#,
        r#"<testsuite name="tests/cases.json" tests="10" failures="7">"#,
        r#"<testcase classname="tests/cases.json" name="passes"/>"#,
        r#"<failure message="script errors: expected 0, got 1">"#,
        r#"event: {&quot;seq&quot;:7,&quot;bad&quot;:true}"#,
        r#"<testsuite name="tests/broken.json" tests="1" failures="1">"#,
    ] {
        assert!(x.contains(want), "{want}: {x}");
    }

    let (out, _tmp) = test(r.path(), &["--format", "json", "passes"]);
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(report["passed"], 1, "{report}");
    // the broken file still counts as a failure
    assert_eq!(report["failed"], 1, "{report}");
    let cases = report["cases"].as_array().unwrap();
    let passes = cases.iter().find(|c| c["name"] == "passes").unwrap();
    assert_eq!(passes["ok"], true, "{report}");
    let broken = cases
        .iter()
        .find(|c| c["file"] == "tests/broken.json")
        .unwrap();
    assert!(
        broken["failures"][0].as_str().unwrap().contains("not JSON"),
        "{report}"
    );
}
