//! The pipeline end to end: routing, numbers, bad input, timers, on real files.

use crate::common::*;
use std::io::Write;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// The original-style root (filter -> hello-world -> write-to-log, as in the original's
/// README), unchanged, over the whole Suricata corpus.
#[test]
fn original_style_root_passes_every_corpus_event() {
    let r = Root::new();
    quickstart_scripts(&r);
    r.config(&format!(
        r#"
inputs = {{ {{ tag="eve", uri="zfile://{}", script="filter.lua", default_analyzer="hello" }} }}
analyzers = {{
   {{ tag="hello",  script="hello-world.lua",  default_analyzer="output", default_output="eve" }},
   {{ tag="output", script="write-to-log.lua", default_analyzer="",       default_output="eve" }},
}}
outputs = {{ {{ tag="eve", uri="file://eve-mle.json" }} }}
"#,
        corpus().display()
    ));
    run_ok(&r, LIMIT);
    let out = r.lines("eve-mle.json");
    assert_eq!(out.len(), 63_935);
    // every event got its running count per type; the last count of each type is its total
    let mut max: std::collections::HashMap<String, u64> = Default::default();
    for l in &out {
        let j: serde_json::Value = serde_json::from_str(l).unwrap();
        let t = j["event_type"].as_str().unwrap().to_string();
        let c = j["event_count"].as_u64().expect("event_count stamped");
        assert!(j["mle_output_time"].is_string());
        let m = max.entry(t).or_default();
        *m = (*m).max(c);
    }
    assert_eq!(max["dns"], 28_438);
    assert_eq!(max["flow"], 24_557);
    assert_eq!(max["alert"], 1_912);
    let stats = r.final_stats();
    assert_eq!(stats["operations"]["input"], 63_935);
    assert_eq!(stats["operations"]["output"], 63_935);
    assert_eq!(stats["errors"], 0);
}

/// `flow_id` (up to 2^51) and every other integer survive a pass-through byte-exact.
#[test]
fn every_corpus_flow_id_survives_byte_exact() {
    let r = Root::passthrough(&format!("zfile://{}", corpus().display()));
    run_ok(&r, LIMIT);
    let flow_id = |l: &str| -> Option<String> {
        let i = l.find("\"flow_id\":")? + 10;
        Some(l[i..].chars().take_while(|c| c.is_ascii_digit()).collect())
    };
    let input = {
        use std::io::BufRead;
        let f = std::fs::File::open(corpus()).unwrap();
        std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f))
            .lines()
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    };
    let out = r.lines("out.json");
    assert_eq!(out.len(), input.len());
    let mut checked = 0;
    for (a, b) in input.iter().zip(&out) {
        assert_eq!(flow_id(a), flow_id(b), "in: {a}\nout: {b}");
        checked += flow_id(a).is_some() as usize;
        // and the whole event is the same bytes: field order, number text, escapes
        assert_eq!(a, b);
    }
    assert!(checked > 60_000, "{checked}");
}

/// Scripts that read, change, delete and add fields give byte-identical output in every run
/// (keys in input order, new ones in the order added, nested tables sorted), and the same
/// JSON values as the eager decoder (`engine.lazy_events = false`).
#[test]
fn changed_events_are_deterministic_and_equal_to_eager_ones() {
    let run = |lazy: bool| -> Vec<String> {
        let r = Root::passthrough(&format!("zfile://{}", corpus().display()));
        r.write(
            "analyzer/pass.lua",
            r#"
function setup() end
function loop(msg)
  if msg.event_type == "dns" and msg.dns then msg.dns.seen = true end
  if msg.flow then msg.flow.bytes = (msg.flow.bytes_toserver or 0) + (msg.flow.bytes_toclient or 0) end
  msg.in_iface = nil
  msg.mle = { zeta = 1, alpha = { 3, 2, 1 }, mid = { b = 2, a = 1 }, score = 0.25 }
  msg.tag = msg.event_type .. ":" .. tostring(msg.src_port)
  dragonfly.output_event(default_output, msg)
end
"#,
        );
        r.config(&format!(
            r#"
inputs = {{ {{ tag="in", uri="zfile://{}", script="filter.lua", default_analyzer="pass" }} }}
analyzers = {{ {{ tag="pass", script="pass.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
engine = {{ lazy_events = {lazy} }}
"#,
            corpus().display()
        ));
        run_ok(&r, LIMIT);
        r.lines("out.json")
    };
    let a = run(true);
    let b = run(true);
    assert_eq!(a.len(), 63_935);
    assert!(a == b, "two runs gave different bytes");
    for l in a.iter().take(1000) {
        assert!(l.starts_with("{\"timestamp\":"), "{l}");
        // added keys last, in the order added; a script's own table with sorted keys
        assert!(
            l.contains(
                r#","mle":{"alpha":[3,2,1],"mid":{"a":1,"b":2},"score":0.25,"zeta":1},"tag":""#
            ),
            "{l}"
        );
        assert!(!l.contains("\"in_iface\""), "{l}");
    }
    let eager = run(false);
    assert_eq!(eager.len(), a.len());
    for (x, y) in a.iter().zip(&eager) {
        let jx: serde_json::Value = serde_json::from_str(x).unwrap();
        let jy: serde_json::Value = serde_json::from_str(y).unwrap();
        assert_eq!(jx, jy);
    }
}

#[test]
fn numbers_print_like_the_original_without_losing_integers() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"n\":1}\n");
    r.write(
        "analyzer/pass.lua",
        r#"
function setup() end
function loop(msg)
  msg.third = 1/3
  msg.two_thirds = 2/3
  msg.big = 1234567890123
  msg.flow_id = 1251312473193421
  msg.neg = -42
  msg.empty_obj = {}
  msg.empty_arr = cjson.decode("[]")
  msg.list = {1, 2.5, "x"}
  msg.null = cjson.null
  dragonfly.output_event(default_output, msg)
  dragonfly.output_event(default_output, "just a string")
end
"#,
    );
    run_ok(&r, LIMIT);
    let out = r.lines("out.json");
    assert_eq!(out.len(), 2);
    let l = &out[0];
    for want in [
        r#""third":0.33333333333333"#,
        r#""two_thirds":0.66666666666667"#,
        r#""big":1234567890123"#,
        r#""flow_id":1251312473193421"#,
        r#""neg":-42"#,
        r#""empty_obj":{}"#,
        r#""empty_arr":[]"#,
        r#""list":[1,2.5,"x"]"#,
        r#""null":null"#,
        r#""n":1"#,
    ] {
        assert!(l.contains(want), "{want} not in {l}");
    }
    assert_eq!(out[1], r#""just a string""#);
}

#[test]
fn bad_input_is_counted_and_everything_else_arrives() {
    let r = Root::passthrough("file://in.json");
    let evs = events(50);
    let mut text = String::new();
    for (i, e) in evs.iter().enumerate() {
        text.push_str(e);
        text.push('\n');
        match i {
            5 => text.push_str("{\"truncated\": \n"),
            10 => text.push_str("\n   \n"),
            15 => text.push_str("not json at all\n"),
            20 => {
                // a valid 300 KB event (the original split and dropped anything over 32 KiB)
                let big = "x".repeat(300_000);
                text.push_str(&format!("{{\"seq\":1000,\"payload\":\"{big}\"}}\n"));
            }
            25 => text.push_str("{\"null_inside\": null, \"seq\": 1001, \"arr\": [null, 1]}\n"),
            _ => {}
        }
    }
    // the last line has no newline
    text.push_str(r#"{"seq":1002}"#);
    r.write("in.json", &text);
    r.write(
        "analyzer/pass.lua",
        r#"
function setup() end
function loop(msg)
  if msg.seq == 30 then error("analyzer broke on event 30") end
  dragonfly.output_event(default_output, msg)
end
"#,
    );
    run_with_script_failures(&r, LIMIT);
    let got = seqs(&r.lines("out.json"));
    let mut want: Vec<u64> = (0..50).filter(|&i| i != 30).collect();
    want.extend([1000, 1001, 1002]);
    assert_eq!(got, want);
    let s = r.final_stats();
    assert_eq!(s["inputs"]["in"]["malformed"], 2, "{s}");
    assert_eq!(s["inputs"]["in"]["empty"], 2, "{s}");
    assert_eq!(s["analyzers"]["pass"]["lua_errors"], 1, "{s}");
    let log = r.read_log("dragonfly-mle.log");
    assert!(
        log.contains("analyzer/pass.lua:4: analyzer broke on event 30"),
        "{log}"
    );
    assert!(
        log.contains(r#"\"seq\":30"#),
        "the failing event is quoted: {log}"
    );
    assert!(
        log.contains("malformed_json") && log.contains("not json at all"),
        "{log}"
    );
}

#[test]
fn oversized_lines_over_the_configured_maximum_are_skipped_and_counted() {
    let r = Root::passthrough("file://in.json");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!("{cfg}\nengine = {{ max_line_bytes = 1000 }}\n"));
    let big = "y".repeat(5000);
    r.write(
        "in.json",
        &format!("{{\"seq\":1}}\n{{\"seq\":2,\"p\":\"{big}\"}}\n{{\"seq\":3}}\n"),
    );
    let err = run_ok(&r, LIMIT);
    assert_eq!(seqs(&r.lines("out.json")), vec![1, 3]);
    assert_eq!(r.final_stats()["inputs"]["in"]["oversized"], 1);
    assert!(err.contains("longer than the maximum"), "{err}");
}

#[test]
fn a_filter_error_does_not_stop_the_engine() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", &(events(20).join("\n") + "\n"));
    r.write(
        "filter/filter.lua",
        r#"
function setup() end
function loop(msg)
  if msg.seq % 2 == 1 then local x = nil; return x.field end
  dragonfly.analyze_event(default_analyzer, msg)
end
"#,
    );
    run_with_script_failures(&r, LIMIT);
    assert_eq!(
        seqs(&r.lines("out.json")),
        (0..20).step_by(2).collect::<Vec<u64>>()
    );
    assert_eq!(r.final_stats()["inputs"]["in"]["lua_errors"], 10);
}

#[test]
fn each_analyzer_gets_its_own_copy_and_unknown_tags_are_counted() {
    let r = Root::new();
    r.write("in.json", "{\"seq\":1,\"nested\":{\"v\":1}}\n");
    r.write(
        "filter/filter.lua",
        r#"
function setup() end
function loop(msg)
  dragonfly.analyze_event("a", msg)
  dragonfly.analyze_event("b", msg)
  dragonfly.analyze_event("nowhere", msg)
  msg.nested.v = 99   -- after the hand-off: the analyzers must not see this
end"#,
    );
    r.write("analyzer/a.lua", r#"
function setup() end
function loop(msg) msg.nested.v = msg.nested.v + 1; msg.who = "a"; dragonfly.output_event("out", msg); dragonfly.output_event("nope", msg) end"#);
    r.write(
        "analyzer/b.lua",
        r#"
function setup() end
function loop(msg) msg.who = "b"; dragonfly.output_event("out", msg) end"#,
    );
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua" }, { tag="b", script="b.lua" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    let run = r.run_to_eof(LIMIT);
    let err = String::from_utf8_lossy(&run.stderr).into_owned();
    // events sent to undefined tags were dropped: not a clean exit
    assert_eq!(run.status.code(), Some(5), "{err}");
    let out = r.lines("out.json");
    assert_eq!(out.len(), 2);
    let a: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
    let b: serde_json::Value = serde_json::from_str(&out[1]).unwrap();
    assert_eq!(
        (a["who"].as_str(), a["nested"]["v"].as_u64()),
        (Some("a"), Some(2))
    );
    assert_eq!(
        (b["who"].as_str(), b["nested"]["v"].as_u64()),
        (Some("b"), Some(1))
    );
    let s = r.final_stats();
    assert_eq!(s["unknown_tags"]["analyzer:nowhere"], 1, "{s}");
    assert_eq!(s["unknown_tags"]["output:nope"], 1, "{s}");
    assert!(err.contains("analyzer 'nowhere'"), "{err}");
}

#[test]
fn wrong_argument_count_is_a_script_error_not_a_crash() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"seq\":1}\n{\"seq\":2}\n");
    r.write(
        "analyzer/pass.lua",
        r#"
function setup() end
function loop(msg)
  if msg.seq == 1 then dragonfly.analyze_event("pass") end
  dragonfly.output_event(default_output, msg)
end"#,
    );
    run_with_script_failures(&r, LIMIT);
    assert_eq!(seqs(&r.lines("out.json")), vec![2]);
    assert!(r
        .read_log("dragonfly-mle.log")
        .contains("analyze_event takes exactly 2 arguments, got 1"));
}

#[test]
fn timers_fire_into_the_analyzer_that_set_them() {
    let r = Root::new();
    r.write("in.json", "{\"seq\":1}\n");
    r.write(
        "filter/filter.lua",
        "function setup() end\nfunction loop(m) dragonfly.analyze_event('a', m) end\n",
    );
    // a sets two timers for itself and one for b; b must only see its own
    r.write(
        "analyzer/a.lua",
        r#"
function setup() end
function loop(msg)
  if msg.timer then dragonfly.output_event("out", {who="a", timer=msg.timer}) return end
  dragonfly.timer_event("a", 0.05, {timer=1})
  dragonfly.timer_event("a", 0.1, {timer=2})
  dragonfly.timer_event("b", 0.01, {timer=3})
  dragonfly.timer_event("a", 3600, {timer=4})  -- fires once at exit (drain)
end"#,
    );
    r.write(
        "analyzer/b.lua",
        r#"
function setup() end
function loop(msg) dragonfly.output_event("out", {who="b", timer=msg.timer}) end"#,
    );
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua" }, { tag="b", script="b.lua" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    run_ok(&r, LIMIT);
    let out = r.lines("out.json");
    assert_eq!(out.len(), 4, "{out:?}");
    let recs: Vec<serde_json::Value> = out
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let who: Vec<(String, u64)> = recs
        .iter()
        .map(|j| {
            (
                j["who"].as_str().unwrap().to_string(),
                j["timer"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(who.contains(&("b".into(), 3)));
    assert!(who.contains(&("a".into(), 1)));
    assert!(who.contains(&("a".into(), 2)));
    assert!(who.contains(&("a".into(), 4)));
}

#[test]
fn log_and_stats_events_go_to_the_engine_logs() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"seq\":1}\n");
    r.write(
        "analyzer/pass.lua",
        r#"
function setup() dragonfly.log_event("setup done") end
function loop(msg)
  dragonfly.log_event({note="seen", seq=msg.seq})
  dragonfly.stats_event({custom_counter=7})
end"#,
    );
    run_ok(&r, LIMIT);
    let log = r.lines("dragonfly-mle.log");
    assert!(log.contains(&r#""setup done""#.to_string()), "{log:?}");
    assert!(
        log.iter().any(|l| l.contains(r#""note":"seen""#)),
        "{log:?}"
    );
    let stats = r.read_log("dragonfly-mle-stats.log");
    assert!(stats.contains(r#"{"custom_counter":7}"#), "{stats}");
}

#[test]
fn require_resolves_relative_to_root_and_io_is_gone_after_setup() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"seq\":1}\n");
    r.write(
        "analyzer/lib/helper.lua",
        "local M = {} function M.double(x) return 2*x end return M\n",
    );
    r.write("data/list.txt", "alpha\n");
    r.write(
        "analyzer/pass.lua",
        r#"
local helper = require 'analyzer/lib/helper'
function setup()
  local f = io.open("data/list.txt")
  first = f:read("*l")
  f:close()
end
function loop(msg)
  msg.doubled = helper.double(msg.seq)
  msg.first = first
  msg.io_gone = (io == nil)
  dragonfly.output_event(default_output, msg)
end"#,
    );
    run_ok(&r, LIMIT);
    let out = r.lines("out.json");
    let j: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
    assert_eq!(j["doubled"], 2);
    assert_eq!(j["first"], "alpha");
    assert_eq!(j["io_gone"], true);
}

#[test]
fn scripts_keep_separate_globals() {
    let r = Root::new();
    r.write("in.json", "{\"seq\":1}\n");
    r.write("filter/filter.lua", "name = 'filter'\nfunction setup() end\nfunction loop(m) dragonfly.analyze_event('a', m) end\n");
    r.write("analyzer/a.lua", "name = 'a'\nfunction setup() end\nfunction loop(m) m.a = name; dragonfly.analyze_event('b', m) end\n");
    r.write("analyzer/b.lua", "name = 'b'\nfunction setup() end\nfunction loop(m) m.b = name; dragonfly.output_event('out', m) end\n");
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua" }, { tag="b", script="b.lua" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
    );
    run_ok(&r, LIMIT);
    let j: serde_json::Value = serde_json::from_str(&r.lines("out.json")[0]).unwrap();
    assert_eq!((j["a"].as_str(), j["b"].as_str()), (Some("a"), Some("b")));
}

#[test]
fn gzip_input_with_several_members_is_read_whole() {
    let r = Root::passthrough("zfile://in.json.gz");
    let evs = events(300);
    let mut bytes = Vec::new();
    for chunk in evs.chunks(100) {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for e in chunk {
            writeln!(enc, "{e}").unwrap();
        }
        bytes.extend(enc.finish().unwrap());
    }
    std::fs::write(r.path().join("in.json.gz"), bytes).unwrap();
    run_ok(&r, LIMIT);
    assert_eq!(seqs(&r.lines("out.json")), (0..300).collect::<Vec<u64>>());
}

/// Several workers: every event arrives once, and events of one flow keep their order.
#[test]
fn workers_split_by_flow_and_keep_per_flow_order() {
    let r = Root::passthrough("file://in.json");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "{cfg}\nengine = {{ workers = 3, batch_lines = 7 }}\n"
    ));
    // 40 flows, 50 events each, interleaved
    let mut lines = Vec::new();
    for seq in 0..2000u64 {
        let flow = 1251312473193421u64 + seq % 40;
        lines.push(format!(r#"{{"flow_id":{flow},"seq":{seq}}}"#));
    }
    lines.push(r#"{"event_type":"stats","seq":5000}"#.to_string());
    r.write("in.json", &(lines.join("\n") + "\n"));
    r.write(
        "analyzer/pass.lua",
        r#"
function setup() end
function loop(msg)
  -- each runtime numbers what it sees: per-flow order must hold within a runtime
  last = last or {}
  local f = msg.flow_id or 0
  if last[f] and last[f] > msg.seq then msg.out_of_order = true end
  last[f] = msg.seq
  dragonfly.output_event(default_output, msg)
end"#,
    );
    run_ok(&r, LIMIT);
    let out = r.lines("out.json");
    let mut want: Vec<u64> = (0..2000).collect();
    want.push(5000);
    assert_eq!(seqs(&out), want);
    assert!(!out.iter().any(|l| l.contains("out_of_order")));
    // and the output file holds each flow's events in input order
    let mut last: std::collections::HashMap<u64, u64> = Default::default();
    for l in &out {
        let j: serde_json::Value = serde_json::from_str(l).unwrap();
        if let Some(f) = j["flow_id"].as_u64() {
            let s = j["seq"].as_u64().unwrap();
            assert!(
                last.insert(f, s).is_none_or(|p| p < s),
                "flow {f} out of order"
            );
        }
    }
}

/// `dragonfly.http_get` downloads in setup() (e.g. a reputation list), `dnslookup` resolves.
#[test]
fn http_get_and_dnslookup_work_in_setup() {
    use std::io::{Read, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        let body = "203.0.113.7\n198.51.100.1\n";
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"seq\":1}\n");
    r.write(
        "analyzer/pass.lua",
        &format!(
            r#"
function setup()
  dragonfly.http_get("http://127.0.0.1:{port}/list.txt", "list.txt")
  bad = {{}}
  for line in io.lines("list.txt") do bad[#bad + 1] = line end
  addrs = dragonfly.dnslookup("localhost")
end
function loop(msg)
  msg.bad = bad
  msg.localhost = addrs[1]
  dragonfly.output_event(default_output, msg)
end"#
        ),
    );
    run_ok(&r, LIMIT);
    server.join().unwrap();
    let j: serde_json::Value = serde_json::from_str(&r.lines("out.json")[0]).unwrap();
    assert_eq!(j["bad"], serde_json::json!(["203.0.113.7", "198.51.100.1"]));
    let lh = j["localhost"].as_str().unwrap();
    assert!(lh == "127.0.0.1" || lh == "::1", "{lh}");
}

/// An analyzer that hands every event back to itself is cut off, counted and logged; the
/// engine goes on with the next event.
#[test]
fn a_routing_loop_is_cut_and_the_engine_goes_on() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"seq\":1}\n{\"seq\":2}\n");
    r.write(
        "analyzer/pass.lua",
        r#"
function setup() end
function loop(msg)
  if msg.seq == 1 then return dragonfly.analyze_event("pass", msg) end
  dragonfly.output_event(default_output, msg)
end"#,
    );
    run_with_script_failures(&r, LIMIT);
    assert_eq!(seqs(&r.lines("out.json")), vec![2]);
    let s = r.final_stats();
    assert_eq!(s["routing_loops"], 1, "{s}");
    assert!(r.read_log("dragonfly-mle.log").contains("routing loop"));
    let dead = r.lines("dead-letter.json");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains(r#""kind":"routing_loop""#), "{dead:?}");
}

/// `engine.clock = "event"`: a replay of ten minutes of events (one a second) in a fraction of
/// a second fires a 60-second timer nine times during the run, each before the first event of
/// its minute (so it has seen exactly the events before it), with `dragonfly.now()` the event
/// time — the same whatever the batch size; the tenth fires at the end of the input. Under the
/// wall clock the same replay fires it once, at the end.
#[test]
fn event_time_fires_timers_as_the_events_tell_time() {
    const ANALYZER: &str = r#"
function setup() armed = false; seen = 0 end
function loop(msg)
  if msg.tick then
    dragonfly.output_event("out", { tick = msg.tick, now = dragonfly.now(), seen = seen })
    if msg.tick < 100 then dragonfly.timer_event("a", 60, { tick = msg.tick + 1 }) end
    return
  end
  seen = seen + 1
  if seen == 30 then
    dragonfly.output_event("out", { now_at_30 = dragonfly.now() })
  end
  if not armed then armed = true; dragonfly.timer_event("a", 60, { tick = 1 }) end
end"#;
    let t0: i64 = 1_741_597_200; // 2025-03-10T09:00:00Z
    let input: String = (0..600)
        .map(|i| {
            format!(
                "{{\"timestamp\":\"2025-03-10T09:{:02}:{:02}.250000+0000\",\"seq\":{i}}}\n",
                i / 60,
                i % 60
            )
        })
        .collect();
    let run = |engine: &str| -> Vec<serde_json::Value> {
        let r = analyzer_root_with(ANALYZER, engine, &input);
        let out = r.run_to_eof(LIMIT);
        assert!(
            out.status.success(),
            "{engine}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        r.lines("out.json")
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let ticks = |lines: &[serde_json::Value]| -> Vec<(i64, i64, i64)> {
        lines
            .iter()
            .filter(|l| l.get("tick").is_some())
            .map(|l| {
                (
                    l["tick"].as_i64().unwrap(),
                    l["now"].as_f64().unwrap() as i64,
                    l["seen"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let event = run(r#"clock = "event", batch_lines = 7"#);
    let want: Vec<(i64, i64, i64)> = (1..=9)
        .map(|k| (k, t0 + 60 * k, 60 * k))
        // the tenth is due at the end of the input: it fires then, with the last event's time
        .chain([(10, t0 + 599, 600)])
        .collect();
    assert_eq!(ticks(&event), want);
    // dragonfly.now() in an event's call is that event's time (whole seconds)
    let at30 = event.iter().find_map(|l| l.get("now_at_30")).unwrap();
    assert_eq!(at30.as_f64().unwrap() as i64, t0 + 29);
    // the same with other batch sizes, and a lateness moves every firing by it
    assert_eq!(ticks(&run(r#"clock = "event", batch_lines = 1000"#)), want);
    assert_eq!(ticks(&run(r#"clock = "event", batch_lines = 1"#)), want);
    // a lateness keeps the clock that far behind the events: the same firings, each told
    // the lagging time
    let late = ticks(&run(r#"clock = "event", clock_lateness_s = 5"#));
    let lagging: Vec<_> = want
        .iter()
        .map(|&(k, now, seen)| (k, now - 5, seen))
        .collect();
    assert_eq!(late, lagging);
    // the wall clock: the replay takes far less than a minute, so only the exit fires it
    let wall = ticks(&run(r#"batch_lines = 7"#));
    assert_eq!(wall.len(), 1, "{wall:?}");
    assert_eq!(wall[0].2, 600);
}

/// Under the event clock a script that sets a timer on every event (a per-flow timeout) pauses
/// the batch after each one: every timer fires once, right before the first event 10 seconds
/// later, and every event comes out whole, in order.
#[test]
fn event_time_timers_set_by_every_event_fire_each_in_its_place() {
    const ANALYZER: &str = r#"
function setup() end
function loop(msg)
  if msg.fired then
    dragonfly.output_event("out", { fired = msg.fired })
    return
  end
  dragonfly.output_event("out", msg)
  dragonfly.timer_event("a", 10, { fired = msg.seq })
end"#;
    let input: String = (0..300)
        .map(|i| {
            format!(
                "{{\"timestamp\":\"2025-03-10T09:{:02}:{:02}.000000+0000\",\"seq\":{i},\"pad\":\"{}\"}}\n",
                i / 60,
                i % 60,
                "x".repeat(i % 7)
            )
        })
        .collect();
    let r = analyzer_root_with(ANALYZER, r#"clock = "event""#, &input);
    let out = r.run_to_eof(LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = r.lines("out.json");
    let mut want = Vec::new();
    for i in 0..300 {
        if i >= 10 {
            want.push(format!("{{\"fired\":{}}}", i - 10));
        }
        want.push(input.lines().nth(i).unwrap().to_string());
    }
    // the last ten are due after the input ends: they fire at its end
    for i in 290..300 {
        want.push(format!("{{\"fired\":{i}}}"));
    }
    assert_eq!(lines.len(), want.len());
    for (k, (got, w)) in lines.iter().zip(&want).enumerate() {
        assert_eq!(got, w, "line {k}");
    }
}
