//! Scripts cannot take the engine down: isolation between scripts, the sandbox of `loop()`,
//! memory and time limits, dead letters, exit codes, a broken stderr, SIGTERM during a runaway
//! script. Every test runs the real binary; each hostile case runs alone and mixed into a
//! 10,000-event run where every other event must arrive.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A root: input `in.json` -> filter -> analyzer "a" (the given loop body runs for the event
/// whose `seq` is `bad`, every event is then written) -> out.json.
fn hostile_root(body: &str, engine: &str, seqs: std::ops::Range<u64>, bad: u64) -> Root {
    let a_lua = format!(
        r#"
function setup() end
function loop(msg)
  if msg.seq == {bad} then
    {body}
  end
  dragonfly.output_event(default_output, msg)
end
"#
    );
    let mut text = String::new();
    for i in seqs {
        text.push_str(&format!("{{\"seq\":{i},\"event_type\":\"x\"}}\n"));
    }
    analyzer_root_with(&a_lua, engine, &text)
}

fn dead_letters(r: &Root) -> Vec<serde_json::Value> {
    r.lines("dead-letter.json")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

struct Case {
    name: &'static str,
    body: &'static str,
    /// The dead letter's `kind`.
    kind: &'static str,
    /// Text the error must contain.
    error: &'static str,
    engine: &'static str,
}

const FAST: &str = "script_timeout_ms = 300";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "string doubling memory bomb",
            body: r#"local s = "x" while true do s = s .. s end"#,
            kind: "memory",
            error: "not enough memory",
            engine: "lua_memory_mb = 64, script_timeout_ms = 20000",
        },
        Case {
            name: "growing table memory bomb",
            body: "local t = {} local i = 0 while true do i = i + 1 t[i] = { i } end",
            kind: "memory",
            error: "not enough memory",
            engine: "lua_memory_mb = 64, script_timeout_ms = 20000",
        },
        Case {
            name: "endless while loop (compiled)",
            body: "while true do end",
            kind: "timeout",
            error: "script timeout",
            engine: FAST,
        },
        Case {
            name: "numeric for over a huge range (compiled)",
            body: "local x = 0 for i = 1, 1e18 do x = x + i end msg.x = x",
            kind: "timeout",
            error: "script timeout",
            engine: FAST,
        },
        Case {
            name: "endless loop inside a coroutine",
            body: "coroutine.wrap(function() while true do end end)()",
            kind: "timeout",
            error: "script timeout",
            engine: FAST,
        },
        Case {
            name: "endless interpreted loop",
            // (getfenv is not compiled by LuaJIT: the loop runs where the hook reaches it)
            body: "local n = 0 while true do n = n + 1 local _ = getfenv(1) end",
            kind: "timeout",
            error: "script timeout",
            engine: FAST,
        },
        Case {
            name: "a loop that swallows the timeout in its own pcall",
            body: "while true do pcall(function() local n = 0 while true do n = n + 1 end end) end",
            kind: "timeout",
            error: "script timeout",
            engine: FAST,
        },
        Case {
            name: "os.exit",
            body: "os.exit(3)",
            kind: "error",
            error: "os.exit is not allowed",
            engine: FAST,
        },
        Case {
            name: "require io",
            body: r#"require("io").open("/tmp/x", "w")"#,
            kind: "error",
            error: "module 'io' not found",
            engine: FAST,
        },
        Case {
            name: "io.popen",
            body: r#"io.popen("id")"#,
            kind: "error",
            error: "attempt to index global 'io'",
            engine: FAST,
        },
        Case {
            name: "os.execute",
            body: r#"os.execute("id")"#,
            kind: "error",
            error: "attempt to call field 'execute'",
            engine: FAST,
        },
        Case {
            name: "package.loadlib",
            body: r#"package.loadlib("libc.so.6", "system")"#,
            kind: "error",
            error: "attempt to call field 'loadlib'",
            engine: FAST,
        },
        Case {
            name: "an error object whose __tostring fails",
            body: r#"error(setmetatable({}, { __tostring = function() error("x") end }))"#,
            kind: "error",
            error: "its __tostring failed",
            engine: FAST,
        },
        Case {
            name: "a timer 2^63 seconds away",
            body: r#"dragonfly.timer_event("a", 2^63, {})"#,
            kind: "error",
            error: "seconds must be a number from 0",
            engine: FAST,
        },
        Case {
            name: "a NaN timer",
            body: r#"dragonfly.timer_event("a", 0/0, {})"#,
            kind: "error",
            error: "seconds must be a number from 0",
            engine: FAST,
        },
        Case {
            name: "a negative timer",
            body: r#"dragonfly.timer_event("a", -1, {})"#,
            kind: "error",
            error: "seconds must be a number from 0",
            engine: FAST,
        },
        Case {
            name: "an infinite timer",
            body: r#"dragonfly.timer_event("a", math.huge, {})"#,
            kind: "error",
            error: "seconds must be a number from 0",
            engine: FAST,
        },
    ]
}

/// Run `r` to the end; the bad event (seq `bad`) is the one dead letter, every other event
/// arrives, the counters say so, and the exit code is 3.
fn check_case(c: &Case, r: &Root, n: u64, bad: u64) {
    let started = Instant::now();
    let out = r.run_to_eof(LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}: script failures exit 3: {err}",
        c.name
    );
    let got = seqs(&r.lines("out.json"));
    let want: Vec<u64> = (0..n).filter(|s| *s != bad).collect();
    assert_eq!(got, want, "{}: every other event arrives", c.name);
    let dead = dead_letters(r);
    assert_eq!(dead.len(), 1, "{}: {dead:?}", c.name);
    let d = &dead[0];
    assert_eq!(d["kind"], c.kind, "{}: {d}", c.name);
    assert_eq!(d["script"], "analyzer/a.lua", "{}: {d}", c.name);
    assert_eq!(d["input"], "in", "{}: {d}", c.name);
    assert_eq!(d["event"]["seq"], bad, "{}: the input event: {d}", c.name);
    assert!(
        d["error"].as_str().unwrap().contains(c.error),
        "{}: {d}",
        c.name
    );
    let s = r.final_stats();
    assert_eq!(s["analyzers"]["a"]["lua_errors"], 1, "{}: {s}", c.name);
    assert_eq!(s["dead_letters"], 1, "{}: {s}", c.name);
    match c.kind {
        "timeout" => assert_eq!(s["analyzers"]["a"]["timeouts"], 1, "{}: {s}", c.name),
        "memory" => assert_eq!(s["analyzers"]["a"]["memory_errors"], 1, "{}: {s}", c.name),
        _ => {}
    }
    if c.kind == "timeout" {
        // stopped within the budget (300 ms) plus the watchdog's ticks, not at the end of time
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{}: {:?}",
            c.name,
            started.elapsed()
        );
    }
}

#[test]
fn each_hostile_script_alone_is_stopped_and_its_event_dead_lettered() {
    for c in cases() {
        let r = hostile_root(c.body, c.engine, 0..1, 0);
        check_case(&c, &r, 1, 0);
    }
}

#[test]
fn each_hostile_script_mixed_into_10000_events_loses_nothing_else() {
    for c in cases() {
        let r = hostile_root(c.body, c.engine, 0..10_000, 5_000);
        check_case(&c, &r, 10_000, 5_000);
    }
}

#[test]
fn with_two_workers_a_runaway_loop_costs_only_its_own_event() {
    let r = hostile_root(
        "while true do end",
        "script_timeout_ms = 300, workers = 2, partition_key = 'seq'",
        0..10_000,
        1234,
    );
    let out = r.run_to_eof(LIMIT);
    assert_eq!(out.status.code(), Some(3));
    let got = seqs(&r.lines("out.json"));
    assert_eq!(got.len(), 9_999);
    assert!(!got.contains(&1234));
    assert_eq!(dead_letters(&r).len(), 1);
}

#[test]
fn module_globals_are_the_requiring_scripts_globals_as_in_the_original() {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write(
        "analyzer/mod.lua",
        "function make(n) t = { n = n } return t end\nfunction get_limit() return limit end\n",
    );
    r.write(
        "analyzer/a.lua",
        r#"
require 'analyzer/mod'
function setup() end
function loop(msg)
  limit = 7; t = make(1); make(2)
  msg.t_n = t.n; msg.limit = get_limit()
  dragonfly.output_event(default_output, msg)
end
"#,
    );
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    r.write("in.json", "{\"event_type\":\"x\"}\n");
    run_ok(&r, LIMIT);
    let got: serde_json::Value = serde_json::from_str(&r.lines("out.json")[0]).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"limit":7,"event_type":"x","t_n":2}),
        "the original's output"
    );
}

#[test]
fn each_script_requires_its_own_copy_of_a_module() {
    let r = Root::new();
    r.write(
        "filter/filter.lua",
        r#"
local counter = require 'lib/counter'
function setup() end
function loop(msg) counter.n = counter.n + 1; msg.f = counter.n; dragonfly.analyze_event(default_analyzer, msg) end
"#,
    );
    r.write("lib/counter.lua", "return { n = 0 }\n");
    r.write(
        "analyzer/a.lua",
        r#"
local counter = require 'lib/counter'
function setup() end
function loop(msg) counter.n = counter.n + 10; msg.a = counter.n; dragonfly.output_event(default_output, msg) end
"#,
    );
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    r.write("in.json", "{\"seq\":0}\n{\"seq\":1}\n");
    run_ok(&r, LIMIT);
    let lines = r.lines("out.json");
    let last: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(last["f"], 2);
    assert_eq!(last["a"], 20);
}

#[test]
fn a_monkey_patch_in_one_script_does_not_affect_another() {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write(
        "analyzer/patcher.lua",
        r#"
function setup() end
function loop(msg)
  dragonfly.output_event = function() end
  dragonfly.analyze_event_saved = dragonfly.analyze_event
  string.upper = function() return "patched" end
  table.insert = nil
  cjson.encode = function() return "patched" end
  os.time = function() return 0 end
  math.floor = nil
  leaked_global = "from patcher"
  getfenv(0).leaked_through_getfenv = true
  dragonfly.analyze_event_saved("b", msg)
end
"#,
    );
    r.write(
        "analyzer/b.lua",
        r#"
function setup() end
function loop(msg)
  msg.upper = string.upper("q")
  local t = {} table.insert(t, 1)
  msg.n = #t
  msg.json = cjson.encode({ 1 })
  msg.time_ok = os.time() > 0
  msg.floor = math.floor(1.5)
  msg.leak = tostring(leaked_global) .. tostring(leaked_through_getfenv)
  dragonfly.output_event(default_output, msg)
end
"#,
    );
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="patcher" } }
analyzers = {
  { tag="patcher", script="patcher.lua", default_analyzer="b", default_output="out" },
  { tag="b", script="b.lua", default_analyzer="", default_output="out" },
}
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    r.write("in.json", "{\"seq\":0}\n{\"seq\":1}\n");
    run_ok(&r, LIMIT);
    let lines = r.lines("out.json");
    assert_eq!(
        lines.len(),
        2,
        "b's output is not silenced by patcher's patch"
    );
    let got: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(got["upper"], "Q");
    assert_eq!(got["n"], 1);
    assert_eq!(got["json"], "[1]");
    assert_eq!(got["time_ok"], true);
    assert_eq!(got["floor"], 1);
    assert_eq!(got["leak"], "nilnil");
}

#[test]
fn setup_keeps_io_and_what_it_opened_loop_does_not() {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write("list.txt", "a\nb\n");
    r.write(
        "analyzer/a.lua",
        r#"
local lines = 0
function setup()
  for _ in io.lines("list.txt") do lines = lines + 1 end
end
function loop(msg)
  msg.lines = lines
  msg.io = type(io)
  msg.os_keys = (os.execute == nil and os.remove == nil and os.rename == nil) and "sealed" or "open"
  msg.kept = type(os.time) == "function" and type(os.date) == "function" and type(os.clock) == "function" and type(os.getenv) == "function"
  msg.loaded_io = tostring(package.loaded.io)
  msg.template_io = tostring(getfenv(print) and getfenv(print).io)
  msg.tb = type(debug.traceback)
  msg.debug_getinfo = type(debug.getinfo)
  -- no way to make bytecode (string.dump is gone), and none is loaded
  msg.bytecode = string.dump == nil and select(1, loadstring("\27LJ\2\0\0")) == nil
  dragonfly.output_event(default_output, msg)
end
"#,
    );
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    r.write("in.json", "{\"seq\":0}\n");
    run_ok(&r, LIMIT);
    let got: serde_json::Value = serde_json::from_str(&r.lines("out.json")[0]).unwrap();
    assert_eq!(got["lines"], 2, "{got}");
    assert_eq!(got["io"], "nil", "{got}");
    assert_eq!(got["os_keys"], "sealed", "{got}");
    assert_eq!(got["kept"], true, "{got}");
    assert_eq!(got["loaded_io"], "nil", "{got}");
    assert_eq!(got["template_io"], "nil", "{got}");
    assert_eq!(got["tb"], "function", "{got}");
    assert_eq!(got["debug_getinfo"], "nil", "{got}");
    assert_eq!(got["bytecode"], true, "binary chunks are refused: {got}");
}

#[test]
fn a_dead_letter_says_what_failed_where_and_keeps_the_event() {
    let r = hostile_root(
        "msg.touched = true\n    local x = nil\n    x.field = 1",
        FAST,
        0..3,
        1,
    );
    let out = r.run_to_eof(LIMIT);
    assert_eq!(out.status.code(), Some(3));
    let dead = dead_letters(&r);
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d["kind"], "error");
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .starts_with("analyzer/a.lua:7: attempt to index local 'x'"),
        "{d}"
    );
    assert!(
        d["traceback"]
            .as_str()
            .unwrap()
            .starts_with("analyzer/a.lua:7:"),
        "{d}"
    );
    // the event before any script ran, and the value as the failing analyzer left it
    assert_eq!(d["event"], serde_json::json!({"seq":1,"event_type":"x"}));
    assert_eq!(d["value"]["touched"], true);
    assert!(d["time"].as_str().unwrap().contains('T'));
}

#[test]
fn dead_letters_go_to_the_configured_output_or_nowhere() {
    let r = hostile_root(
        "error('bad')",
        "dead_letter = 'file://failed/dl.json'",
        0..3,
        1,
    );
    let out = r.run_to_eof(LIMIT);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(r.lines("failed/dl.json").len(), 1);
    assert!(!r.log("dead-letter.json").exists());

    let r = hostile_root("error('bad')", "dead_letter = ''", 0..3, 1);
    let out = r.run_to_eof(LIMIT);
    assert_eq!(
        out.status.code(),
        Some(3),
        "failures still set the exit code"
    );
    assert!(!r.log("dead-letter.json").exists());
}

#[test]
fn exit_codes_tell_what_happened() {
    // 0: every event processed without a script error
    let r = hostile_root("", FAST, 0..10, 99);
    assert_eq!(r.run_to_eof(LIMIT).status.code(), Some(0));
    // 3: finished, but events went to dead letters
    let r = hostile_root("error('x')", FAST, 0..10, 3);
    assert_eq!(r.run_to_eof(LIMIT).status.code(), Some(3));
    // 2: configuration
    let r = hostile_root("", "workers = 'two'", 0..10, 99);
    let out = r.run_to_eof(LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("config/config.lua: engine: field 'workers': must be a number"));
    // 1: start-up (a setup() failure)
    let r = hostile_root("", FAST, 0..10, 99);
    r.write(
        "analyzer/a.lua",
        "function setup() error('no model') end\nfunction loop(m) end\n",
    );
    assert_eq!(r.run_to_eof(LIMIT).status.code(), Some(1));
}

/// A tail:// input into an analyzer whose `loop` is `body`, with `engine`; the engine is
/// started, `lines` are appended, and the call returns once the engine spins in the loop.
fn spinning_engine(body: &str, engine: &str, lines: &str) -> (Root, std::process::Child) {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write(
        "analyzer/a.lua",
        &format!("{READY}\nfunction loop(msg) {body} end\n"),
    );
    r.config(&format!(
        r#"
inputs = {{ {{ tag="in", uri="tail://in.json", script="filter.lua", default_analyzer="a" }} }}
analyzers = {{ {{ tag="a", script="a.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
engine = {{ {engine} }}
"#
    ));
    r.write("in.json", "");
    let child = r.spawn(&[]);
    wait_ready(&r);
    r.write("in.json", lines);
    wait_spinning(&child);
    (r, child)
}

#[test]
fn sigterm_during_an_endless_loop_with_no_time_limit_exits_after_the_drain_timeout() {
    let (r, child) = spinning_engine(
        "while true do end",
        "script_timeout_ms = 0, drain_timeout_s = 1",
        "{\"seq\":0}\n",
    );
    let t = Instant::now();
    let (status, err) = stop(child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(4), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(err.contains("drain_timeout_s"), "{err}");
    assert!(
        r.read_log("dragonfly-mle.log").contains("drain_timeout"),
        "the engine log has the record"
    );
}

#[test]
fn sigterm_during_an_endless_loop_completes_once_the_loop_is_stopped() {
    let (r, child) = spinning_engine(
        "if msg.seq == 0 then while true do end end dragonfly.output_event(default_output, msg)",
        "script_timeout_ms = 500, drain_timeout_s = 30",
        "{\"seq\":0}\n{\"seq\":1}\n",
    );
    let (status, err) = stop(child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "{err}");
    assert_eq!(seqs(&r.lines("out.json")), vec![1]);
    assert_eq!(dead_letters(&r).len(), 1);
}

/// A setup() that leaves a marker once the engine has started.
const READY: &str =
    r#"function setup() local f = io.open("ready", "w"); f:write("1"); f:close() end"#;

fn wait_ready(r: &Root) {
    wait_for(LIMIT, "engine start-up (setup marker)", || {
        r.path().join("ready").exists()
    });
}

/// CPU seconds the process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the fields after the command name (which may hold spaces) start after the last ')'
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Wait until the engine is spinning in a script (it has burnt 0.2 s of CPU).
fn wait_spinning(child: &std::process::Child) {
    wait_for(LIMIT, "the engine to spin in the endless loop", || {
        cpu_seconds(child.id()) >= 0.2
    });
}

fn errors_and_echo_root() -> Root {
    analyzer_root(
        r#"
function setup() end
function loop(msg)
  dragonfly.echo("seq", msg.seq)
  if msg.seq % 100 == 7 then error("every hundredth fails") end
  dragonfly.output_event(default_output, msg)
end
"#,
        1000,
    )
}

/// Wait for the engine to exit on its own, never reading its stderr; killed (and failed)
/// after LIMIT.
fn exit_status(mut child: std::process::Child, what: &str) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > LIMIT {
            child.kill().unwrap();
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_full_stderr_loses_nothing() {
    let r = errors_and_echo_root();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let child = r
        .command(&["--exit-on-eof"])
        .stdout(Stdio::null())
        .stderr(full)
        .spawn()
        .unwrap();
    let status = exit_status(child, "did not finish");
    assert_eq!(status.code(), Some(3));
    assert_eq!(r.lines("out.json").len(), 990);
    assert_eq!(r.lines("dead-letter.json").len(), 10);
}

#[test]
fn a_closed_stderr_pipe_loses_nothing() {
    let r = errors_and_echo_root();
    let mut child = r
        .command(&["--exit-on-eof"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take()); // the reader is gone: every write to stderr fails (EPIPE)
    let status = exit_status(child, "did not finish");
    assert_eq!(status.code(), Some(3));
    assert_eq!(r.lines("out.json").len(), 990);
}

#[test]
fn a_panic_is_logged_once_and_the_engine_stops_non_zero() {
    for verbose in [false, true] {
        let r = hostile_root("", FAST, 0..100, 999);
        let mut cmd = r.command(if verbose {
            &["--exit-on-eof", "-v"][..]
        } else {
            &["--exit-on-eof"][..]
        });
        cmd.env("DRAGONFLY_TEST_PANIC_IN_WORKER", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = wait_output(cmd.spawn().unwrap(), LIMIT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("panicked at")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(
            lines[0].contains("internal error: thread 'worker-0' panicked at"),
            "{err}"
        );
        assert_eq!(
            err.contains("stack backtrace") || err.contains("Backtrace"),
            verbose,
            "a backtrace only with -v: {err}"
        );
        assert!(err.contains("stopped abnormally"), "{err}");
    }
}

#[test]
fn a_stderr_pipe_nobody_reads_never_stalls_the_engine() {
    // every event echoes a line: far more than a pipe holds (64 KiB)
    let r = analyzer_root(
        r#"
function setup() end
function loop(msg)
  dragonfly.echo("a line on stderr for event", msg.seq, string.rep("x", 100))
  dragonfly.output_event(default_output, msg)
end
"#,
        5000,
    );
    let child = r
        .command(&["--exit-on-eof"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exit_status(child, "the engine stalled on a stderr nobody reads");
    assert_eq!(status.code(), Some(0));
    assert_eq!(r.lines("out.json").len(), 5000);
}

#[test]
fn an_endless_loop_in_what_setup_hands_on_fails_start_up_instead_of_hanging() {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write(
        "analyzer/a.lua",
        r#"
function setup() dragonfly.analyze_event("a", { warm = true }) end
function loop(msg) if msg.warm then while true do end end end
"#,
    );
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
engine = { script_timeout_ms = 200 }
"#,
    );
    r.write("in.json", "{}\n");
    let t = Instant::now();
    let out = r.run_to_eof(LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("worker 0: a script it ran at start-up"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}
