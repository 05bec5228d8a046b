//! Config errors and `--check`, through the real binary.

use crate::common::*;
use std::time::Duration;

fn stderr_of(root: &Root, extra: &[&str]) -> (i32, String) {
    output_of(root.command(extra))
}

/// The exit code and stderr then stdout of `c`.
fn output_of(mut c: std::process::Command) -> (i32, String) {
    let out = wait_output(
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
    );
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn missing_field_is_named_with_file_entry_and_field() {
    let r = Root::passthrough("file://in.json");
    r.config(
        r#"
inputs = { { tag="in", script="filter.lua", default_analyzer="pass" } }
analyzers = { { tag="pass", script="pass.lua", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    let (code, err) = stderr_of(&r, &["--exit-on-eof"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(r#"config error: config/config.lua: inputs[1] (tag "in"): field 'uri': missing (required)"#),
        "{err}"
    );
}

#[test]
fn missing_script_is_named() {
    let r = Root::passthrough("file://in.json");
    std::fs::remove_file(r.path().join("analyzer/pass.lua")).unwrap();
    let (code, err) = stderr_of(&r, &["--check"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(r#"analyzers[1] (tag "pass"): field 'script': script file not found"#),
        "{err}"
    );
    assert!(err.contains("analyzer/pass.lua"), "{err}");
}

#[test]
fn unknown_default_tags_are_start_up_errors() {
    let r = Root::passthrough("file://in.json");
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="nope" } }
analyzers = { { tag="pass", script="pass.lua", default_analyzer="", default_output="missing" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    let (code, err) = stderr_of(&r, &["--exit-on-eof"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            r#"inputs[1] (tag "in"): field 'default_analyzer': names no analyzer: 'nope'"#
        ),
        "{err}"
    );
    assert!(
        err.contains(
            r#"analyzers[1] (tag "pass"): field 'default_output': names no output: 'missing'"#
        ),
        "{err}"
    );
}

#[test]
fn unsupported_uri_scheme_is_named() {
    let r = Root::passthrough("gopher://x");
    let (code, err) = stderr_of(&r, &["--check"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            r#"inputs[1] (tag "in"): field 'uri': scheme 'gopher://' is not supported as an input"#
        ),
        "{err}"
    );
}

#[test]
fn check_accepts_a_good_root_and_runs_nothing() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"a\":1}\n");
    let (code, out) = stderr_of(&r, &["--check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OK (1 inputs, 1 analyzers, 1 outputs)"),
        "{out}"
    );
    assert!(
        !r.log("out.json").exists(),
        "--check must not run the pipeline"
    );
}

/// `--check` opens what finite inputs read and looks for the directory of the others, and
/// reports a missing one with the script problems, at once.
#[test]
fn check_reports_inputs_that_cannot_be_read() {
    let r = Root::passthrough("file://missing.json");
    let (code, out) = stderr_of(&r, &["--check"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("input 'in' (file://missing.json): ")
            && out.contains("missing.json: No such file"),
        "{out}"
    );
    let r = Root::passthrough("tail://no-such-dir/eve.json");
    let (code, out) = stderr_of(&r, &["--check"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no-such-dir does not exist"), "{out}");
    // a tailed file that does not exist yet is fine when its directory does
    let r = Root::passthrough("tail://eve.json");
    let (code, out) = stderr_of(&r, &["--check"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn check_reports_every_script_problem_with_file_and_line() {
    let r = Root::passthrough("file://in.json");
    r.write("filter/filter.lua", "function setup()\n  local x = \nend\n");
    r.write(
        "analyzer/pass.lua",
        "function setup()\n  error('no model file')\nend\nfunction loop(m) end\n",
    );
    let (code, err) = stderr_of(&r, &["--check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("filter/filter.lua:3:"),
        "syntax error with its line: {err}"
    );
    // both scripts are reported, not just the first
    let r2 = Root::passthrough("file://in.json");
    r2.write(
        "analyzer/pass.lua",
        "function setup()\n  error('no model file')\nend\nfunction loop(m) end\n",
    );
    r2.write("filter/filter.lua", "function setup() end\n-- no loop\n");
    let (code, err) = stderr_of(&r2, &["--check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("analyzer/pass.lua:2: no model file (in setup)"),
        "{err}"
    );
    assert!(
        err.contains("filter/filter.lua: the script defines no loop(msg) function"),
        "{err}"
    );
}

#[test]
fn setup_failure_stops_start_up_with_the_script_named() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{}\n");
    r.write(
        "analyzer/pass.lua",
        "function setup()\n  error('boom')\nend\nfunction loop(m) end\n",
    );
    let (code, err) = stderr_of(&r, &["--exit-on-eof"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("analyzer/pass.lua:2: boom (in setup)"),
        "{err}"
    );
}

#[test]
fn unknown_keys_warn_but_run() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"a\":1}\n");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        r#"uri="file://out.json""#,
        r#"uri="file://out.json", format="json""#,
    ));
    let (code, err) = stderr_of(&r, &["--exit-on-eof"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("unknown key 'format' is ignored"), "{err}");
    assert_eq!(r.lines("out.json"), vec![r#"{"a":1}"#]);
}

#[test]
fn version_flag_prints_version() {
    let out = std::process::Command::new(BIN).arg("-V").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("dragonfly-mle "));
}

/// Every problem is one line, `dragonfly-mle: <kind>: <problem>`, and the kind picks the exit
/// code (README).
#[test]
fn problems_are_one_line_each_with_one_prefix_and_their_exit_code() {
    let lines = |err: &str, kind: &str| -> Vec<String> {
        err.lines()
            .filter(|l| l.starts_with(&format!("dragonfly-mle: {kind}: ")))
            .map(str::to_string)
            .collect()
    };
    // config.lua: two problems, two lines, exit 2
    let r = Root::passthrough("gopher://x");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(r#"uri="file://out.json""#, r#"uri="zfile://out.json""#));
    let (code, err) = stderr_of(&r, &["--exit-on-eof"]);
    assert_eq!(code, 2, "{err}");
    let l = lines(&err, "config error");
    assert_eq!(l.len(), 2, "{err}");
    assert!(l[0].starts_with(r#"dragonfly-mle: config error: config/config.lua: inputs[1] (tag "in"): field 'uri': scheme 'gopher://' is not supported as an input"#), "{err}");
    assert!(
        l[1].contains(r#"outputs[1] (tag "out"): field 'uri'"#),
        "{err}"
    );
    // something that cannot be opened: exit 1
    let r = Root::passthrough("file://missing.json");
    let (code, err) = stderr_of(&r, &["--exit-on-eof"]);
    assert_eq!(code, 1, "{err}");
    let l = lines(&err, "start-up error");
    assert_eq!(l.len(), 1, "{err}");
    assert!(l[0].contains("input 'in' (file://missing.json)"), "{err}");
    // a setup() that fails: exit 1
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{}\n");
    r.write(
        "analyzer/pass.lua",
        "function setup() error('boom') end\nfunction loop(m) end\n",
    );
    let (code, err) = stderr_of(&r, &["--exit-on-eof"]);
    assert_eq!(code, 1, "{err}");
    let l = lines(&err, "script error");
    assert_eq!(
        l,
        vec!["dragonfly-mle: script error: analyzer/pass.lua:1: boom (in setup)"],
        "{err}"
    );
}

/// One `--check` finds every problem: a bad value, an unsupported scheme, a URI without a
/// path, and (as warnings) misspelled keys — all in one run, not one per fix.
#[test]
fn check_reports_every_problem_at_once_and_strict_makes_warnings_errors() {
    let r = Root::passthrough("fil://x.json");
    r.config(
        r#"
inputs = { { tag="in", uri="fil://x.json", script="filter.lua", default_analyzer="pass" } }
analyzers = { { tag="pass", script="pass.lua", default_analyzer="", default_ouput="out" } }
outputs = { { tag="out", uri="file://out.json" }, { tag="o2", uri="kafka://" } }
engine = { workerz = 2, batch_lines = -5 }
"#,
    );
    let (code, err) = stderr_of(&r, &["--check"]);
    assert_eq!(code, 2, "{err}");
    for want in [
        "field 'batch_lines'",
        "scheme 'fil://' is not supported",
        "outputs[2] (tag \"o2\")",
        "unknown key 'default_ouput'",
        "unknown key 'workerz'",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    // only warnings left: fine without --strict, errors with it
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="pass" } }
analyzers = { { tag="pass", script="pass.lua", default_analyzer="", default_output="out", colour="red" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    r.write("in.json", "{}\n");
    let (code, err) = stderr_of(&r, &["--check"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("unknown key 'colour'"), "{err}");
    let (code, err) = stderr_of(&r, &["--check", "--strict"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("dragonfly-mle: config error: ")
            && err.contains("unknown key 'colour'")
            && err.contains("--strict"),
        "{err}"
    );
}

/// `--check --sample FILE` runs the pipeline on FILE with outputs captured (the configured
/// outputs and store untouched) and prints what came out and every script error.
#[test]
fn check_sample_shows_what_each_output_got_and_every_script_error() {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write(
        "analyzer/a.lua",
        r#"
function setup() conn = hiredis.connect() end
function loop(msg)
  if msg.bad then error("bad event " .. msg.seq) end
  msg.n = conn:command("INCR", "k")
  dragonfly.output_event(default_output, msg)
end"#,
    );
    // a Redis nobody runs and a tail of a file that is not there: the sample needs neither
    r.config(
        r#"
redis_host = "127.0.0.1"
redis_port = 1
inputs = { { tag="in", uri="tail:///nonexistent/eve.json", script="filter.lua", default_analyzer="a" },
           { tag="other", uri="tail:///nonexistent/other.json", script="other.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://real.json" } }
"#,
    );
    r.write(
        "sample.json",
        "{\"seq\":1}\n{\"seq\":2,\"bad\":true}\nnot json\n{\"seq\":3}\n",
    );
    r.write(
        "filter/other.lua",
        "function setup() end\nfunction loop(msg) msg.via = 'other' dragonfly.analyze_event(default_analyzer, msg) end\n",
    );
    let sample = r.path().join("sample.json");
    // its own temporary directory, to see that the run leaves nothing behind
    let tmp = tempfile::tempdir().unwrap();
    let mut c = r.command(&["--check", "--sample", sample.to_str().unwrap()]);
    c.env("TMPDIR", tmp.path());
    let (code, out) = output_of(c);
    assert_eq!(code, 3, "a script failed: {out}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    for want in [
        "== output 'out': 2 events",
        r#"{"seq":1,"n":1}"#,
        r#"{"seq":3,"n":2}"#,
        "== script errors: 1",
        "analyzer/a.lua:4: bad event 2",
        "filter of 'in': 3 events, 0 errors, 1 not JSON",
        "analyzer 'a': 3 events, 1 errors",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert!(
        !r.log("real.json").exists(),
        "the configured output is untouched"
    );
    // another input's filter, and counts only
    let sample_via = |tag: &str, extra: &[&str]| {
        let mut args = vec![
            "--check",
            "--sample",
            sample.to_str().unwrap(),
            "--sample-input",
        ];
        args.push(tag);
        args.extend_from_slice(extra);
        stderr_of(&r, &args)
    };
    let (code, out) = sample_via("other", &["-q"]);
    assert_eq!(code, 3, "{out}");
    for want in [
        "through input 'other' (filter other.lua)",
        "== output 'out': 2 events",
        "== script errors: 1",
        "... 1 more errors not shown",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    for absent in [r#"{"seq":1,"#, "== per script", "  event: {"] {
        assert!(!out.contains(absent), "{absent}: {out}");
    }
    let (code, out) = sample_via("nope", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--sample-input: no input 'nope'"), "{out}");
}
