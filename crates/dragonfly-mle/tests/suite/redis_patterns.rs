//! The public analyzers' Redis patterns, through the real binary on a real redis-server, in
//! the default configuration: each gives what processing the events one at a time, in input
//! order, gives (the test replays the same arithmetic in Rust).
//!
//! - read-modify-write of a total: HMGET, then HMSET of the sums;
//! - a sliding window: ZADD, then ZRANGEBYSCORE over the last 100 events of the same source;
//! - one analyzer's SETEX read back by the next one's GET.

use crate::common::*;
use dragonfly_store::redis_backend::{RedisAddr, RedisTarget};
use dragonfly_store::{Connection, Reply};
use dragonfly_testkit::RedisServer;
use serde_json::Value as J;
use std::collections::HashMap;
use std::time::Duration;

const EVENTS: usize = 3000;

/// The first EVENTS events of the repository's sample, each with its position as `seq`.
fn events() -> Vec<J> {
    use std::io::BufRead;
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/data/eve-sample.json.gz");
    let f = std::fs::File::open(p).unwrap();
    std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f))
        .lines()
        .take(EVENTS)
        .enumerate()
        .map(|(i, l)| {
            let mut j: J = serde_json::from_str(&l.unwrap()).unwrap();
            j["seq"] = J::from(i as u64);
            j
        })
        .collect()
}

const TOTALS: &str = r#"
function setup() conn = assert(hiredis.connect()) end
function loop(msg)
  if msg.src_ip and msg.flow then
    local key = "totals:" .. msg.src_ip
    local r = conn:command("HMGET", key, "bytes", "events")
    local bytes = (tonumber(r[1]) or 0) + (msg.flow.bytes_toserver or 0)
    local events = (tonumber(r[2]) or 0) + 1
    local ok = conn:command("HMSET", key, "bytes", bytes, "events", events)
    assert(ok == hiredis.status.OK, "HMSET")
    msg.total_bytes, msg.total_events = bytes, events
  end
  dragonfly.analyze_event("window", msg)
end"#;

const WINDOW: &str = r#"
function setup() conn = assert(hiredis.connect()) end
function loop(msg)
  local key = "seen:" .. (msg.src_ip or "none")
  conn:command("ZADD", key, msg.seq, msg.seq)
  local r = conn:command("ZRANGEBYSCORE", key, msg.seq - 100, msg.seq)
  msg.recent = #r
  dragonfly.analyze_event("mark", msg)
end"#;

const MARK: &str = r#"
function setup() conn = assert(hiredis.connect()) end
function loop(msg)
  conn:command("SETEX", "last:" .. (msg.src_ip or "none"), 600, msg.seq)
  dragonfly.analyze_event("check", msg)
end"#;

const CHECK: &str = r#"
function setup() conn = assert(hiredis.connect()) end
function loop(msg)
  msg.last_seen = tonumber(conn:command("GET", "last:" .. (msg.src_ip or "none")))
  dragonfly.output_event("out", msg)
end"#;

const COUNT: &str = r#"
function setup() conn = assert(hiredis.connect()) end
local inside, active = {}, 0
function loop(msg)
  local f = msg.flow_id and string.format("%.0f", msg.flow_id) or "none"
  -- never two events of one flow inside at once
  assert(f == "none" or not inside[f], "two events of flow " .. f .. " inside at once")
  inside[f] = true
  active = active + 1
  msg.active = active
  conn:command("INCR", "count:" .. msg.event_type)
  conn:command("RPUSH", "flow:" .. f, msg.seq)
  inside[f] = nil
  active = active - 1
  dragonfly.output_event("out", msg)
end"#;

/// Run `events` from a file through the filter to `first` and the analyzers (`scripts`, as
/// `analyzer/<name>.lua`; `analyzers` is the inside of config.lua's list) on `server`; the
/// run must succeed.
fn run_on_redis(
    server: &RedisServer,
    events: &[J],
    scripts: &[(&str, &str)],
    first: &str,
    analyzers: &str,
) -> Root {
    let r = Root::new();
    let input: String = events.iter().map(|e| format!("{e}\n")).collect();
    r.write("in.json", &input);
    r.write("filter/filter.lua", FILTER);
    for (name, src) in scripts {
        r.write(&format!("analyzer/{name}.lua"), src);
    }
    r.config(&format!(
        r#"
redis_host = "127.0.0.1"
redis_port = {}
inputs = {{ {{ tag="in", uri="file://{}", script="filter.lua", default_analyzer="{first}" }} }}
analyzers = {{
  {analyzers}
}}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
"#,
        server.port,
        r.path().join("in.json").display()
    ));
    let out = r.run_to_eof(Duration::from_secs(180));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r
}

fn connect(server: &RedisServer) -> impl Connection {
    RedisTarget::new(RedisAddr::Tcp {
        host: "127.0.0.1".into(),
        port: server.port,
    })
    .connect()
    .unwrap()
}

#[test]
fn public_analyzer_patterns_give_sequential_results_on_redis() {
    let server = RedisServer::start();
    let events = events();
    let r = run_on_redis(
        &server,
        &events,
        &[
            ("totals", TOTALS),
            ("window", WINDOW),
            ("mark", MARK),
            ("check", CHECK),
        ],
        "totals",
        r#"{ tag="totals", script="totals.lua" }, { tag="window", script="window.lua" },
  { tag="mark", script="mark.lua" }, { tag="check", script="check.lua" },"#,
    );

    // the same arithmetic, one event at a time in input order
    let mut totals: HashMap<String, (i64, i64)> = HashMap::new();
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    let mut want = Vec::new();
    for e in &events {
        let seq = e["seq"].as_i64().unwrap();
        let src = e["src_ip"].as_str().unwrap_or("none").to_string();
        let mut w = serde_json::Map::new();
        if e["src_ip"].is_string() && e["flow"].is_object() {
            let t = totals.entry(src.clone()).or_default();
            t.0 += e["flow"]["bytes_toserver"].as_i64().unwrap_or(0);
            t.1 += 1;
            w.insert("total_bytes".into(), J::from(t.0));
            w.insert("total_events".into(), J::from(t.1));
        }
        let s = seen.entry(src).or_default();
        s.push(seq);
        let recent = s.iter().filter(|&&x| x >= seq - 100).count();
        w.insert("recent".into(), J::from(recent));
        w.insert("last_seen".into(), J::from(seq));
        want.push((seq, w));
    }
    let got: Vec<J> = r
        .lines("out.json")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), EVENTS, "every event came out");
    for (g, (seq, w)) in got.iter().zip(&want) {
        assert_eq!(g["seq"].as_i64(), Some(*seq), "output in input order");
        for (k, v) in w {
            assert_eq!(g[k].as_i64(), v.as_i64(), "seq {seq}: {k}: {g}");
        }
        assert_eq!(
            g.get("total_bytes").is_some(),
            w.contains_key("total_bytes"),
            "{g}"
        );
    }
    // and Redis holds the totals the events added up to
    let mut c = connect(&server);
    assert!(!totals.is_empty());
    for (src, (bytes, events)) in &totals {
        let key = format!("totals:{src}").into_bytes();
        let r = c.command(&[
            b"HMGET".to_vec(),
            key,
            b"bytes".to_vec(),
            b"events".to_vec(),
        ]);
        assert_eq!(
            r,
            Reply::Array(vec![
                Reply::Bulk(bytes.to_string().into_bytes()),
                Reply::Bulk(events.to_string().into_bytes())
            ]),
            "{src}"
        );
    }
}

/// `concurrency = 32`: events of different flows overlap inside the analyzer, each flow's
/// events still pass in order, and every single-command update is counted exactly.
#[test]
fn concurrency_keeps_each_flows_order_and_exact_counters() {
    let server = RedisServer::start();
    let events = events();
    let r = run_on_redis(
        &server,
        &events,
        &[("count", COUNT)],
        "count",
        r#"{ tag="count", script="count.lua", concurrency = 32 },"#,
    );
    let lines = r.lines("out.json");
    assert_eq!(lines.len(), EVENTS);
    // events did overlap: some found others inside
    let most = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<J>(l).unwrap()["active"]
                .as_i64()
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(most > 1, "no two events were ever inside at once");
    let mut c = connect(&server);
    let mut types: HashMap<String, i64> = HashMap::new();
    let mut flows: HashMap<String, Vec<i64>> = HashMap::new();
    for e in &events {
        *types
            .entry(e["event_type"].as_str().unwrap().to_string())
            .or_default() += 1;
        let f = match &e["flow_id"] {
            J::Number(n) => n.to_string(),
            _ => "none".into(),
        };
        flows.entry(f).or_default().push(e["seq"].as_i64().unwrap());
    }
    for (t, n) in &types {
        let r = c.command(&[b"GET".to_vec(), format!("count:{t}").into_bytes()]);
        assert_eq!(r, Reply::Bulk(n.to_string().into_bytes()), "count:{t}");
    }
    for (f, seqs) in &flows {
        let r = c.command(&[
            b"LRANGE".to_vec(),
            format!("flow:{f}").into_bytes(),
            b"0".to_vec(),
            b"-1".to_vec(),
        ]);
        let want = Reply::Array(
            seqs.iter()
                .map(|s| Reply::Bulk(s.to_string().into_bytes()))
                .collect(),
        );
        assert_eq!(r, want, "flow {f}: its events in input order");
    }
}

/// With `concurrency`, events whose script fails, loops (hands the event to itself until the
/// hop limit cuts it), yields into the engine's scheduler (`coroutine.yield` of its own) or
/// runs away uninterruptibly (its runtime is given up and replaced) cost
/// their own event and, for a runaway, the events in flight beside it — each to the dead
/// letters: every event comes out or is a dead letter, exactly once, no event runs twice
/// (each output's `RPUSH` applied once, none for the others), and the run ends normally.
#[test]
fn concurrency_survives_failing_looping_and_runaway_scripts() {
    const ROUGH: &str = r#"
function setup() conn = assert(hiredis.connect()) end
function loop(msg)
  if msg.seq % 10 == 1 then error("boom " .. msg.seq) end
  if msg.seq % 10 == 2 then dragonfly.analyze_event("rough", msg) return end
  -- a yield of the script's own, into the engine's scheduler: an error for this event only
  if msg.seq % 10 == 4 then coroutine.yield("hijack") end
  conn:command("INCR", "rough:calls")
  if msg.seq % 1000 == 3 then
    local t = dragonfly.clock() + 5
    while dragonfly.clock() < t do end
  end
  conn:command("RPUSH", "rough:ok", msg.seq)
  dragonfly.output_event("out", msg)
end"#;
    let server = RedisServer::start();
    let events = events();
    let r = Root::new();
    let input: String = events.iter().map(|e| format!("{e}\n")).collect();
    r.write("in.json", &input);
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/rough.lua", ROUGH);
    r.config(&format!(
        r#"
redis_host = "127.0.0.1"
redis_port = {}
inputs = {{ {{ tag="in", uri="file://{}", script="filter.lua", default_analyzer="rough" }} }}
analyzers = {{ {{ tag="rough", script="rough.lua", concurrency = 16 }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
engine = {{ script_timeout_ms = 50, dead_letter = "file://dead.json" }}
"#,
        server.port,
        r.path().join("in.json").display()
    ));
    let out = r.run_to_eof(Duration::from_secs(180));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "script failures exit 3: {err}");
    assert!(!err.contains("stuck"), "{err}");
    let seq = |j: &J| j["seq"].as_i64().unwrap();
    let outs: Vec<i64> = r
        .lines("out.json")
        .iter()
        .map(|l| seq(&serde_json::from_str::<J>(l).unwrap()))
        .collect();
    let dead: Vec<J> = r
        .lines("dead.json")
        .iter()
        .map(|l| serde_json::from_str::<J>(l).unwrap())
        .collect();
    let mut all: Vec<i64> = outs.clone();
    all.extend(dead.iter().map(|d| seq(&d["event"])));
    all.sort();
    assert_eq!(
        all,
        (0..EVENTS as i64).collect::<Vec<_>>(),
        "out + dead letters"
    );
    // the scripts' own failures are among the dead letters, with their reasons
    let reason = |s: i64| {
        dead.iter()
            .find(|d| seq(&d["event"]) == s)
            .map(|d| d["error"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    // (or, had it not reached its script yet, it was in flight when a runtime was given up)
    const DROPPED: &str = "dropped: in flight (concurrency)";
    for s in (0..EVENTS as i64).filter(|s| s % 10 == 1) {
        let why = reason(s);
        assert!(
            why.contains(&format!("boom {s}")) || why.contains(DROPPED),
            "{s}: {why}"
        );
    }
    for s in (0..EVENTS as i64).filter(|s| s % 10 == 2) {
        let why = reason(s);
        assert!(
            why.contains("routing loop") || why.contains(DROPPED),
            "{s}: {why}"
        );
    }
    for s in (0..EVENTS as i64).filter(|s| s % 10 == 4) {
        let why = reason(s);
        assert!(
            why.contains("attempt to yield") || why.contains(DROPPED),
            "{s}: {why}"
        );
    }
    assert!(dead
        .iter()
        .any(|d| d["error"].as_str().unwrap().contains("boom")));
    assert!(dead
        .iter()
        .any(|d| d["error"].as_str().unwrap().contains("routing loop")));
    for s in [3, 1003, 2003] {
        assert!(
            reason(s).contains("could not be interrupted"),
            "{s}: {}",
            reason(s)
        );
    }
    assert!(
        dead.iter().all(|d| {
            let s = seq(&d["event"]);
            s % 10 == 1
                || s % 10 == 2
                || s % 10 == 4
                || s % 1000 == 3
                || d["error"].as_str().unwrap().contains(DROPPED)
        }),
        "every other dead letter was dropped with a runtime"
    );
    let mut c = connect(&server);
    let Reply::Array(items) = c.command(&[
        b"LRANGE".to_vec(),
        b"rough:ok".to_vec(),
        b"0".to_vec(),
        b"-1".to_vec(),
    ]) else {
        panic!("a list")
    };
    let mut pushed: Vec<i64> = items
        .iter()
        .map(|i| match i {
            Reply::Bulk(b) => std::str::from_utf8(b).unwrap().parse().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    pushed.sort();
    let mut want = outs.clone();
    want.sort();
    assert_eq!(
        pushed, want,
        "each output's RPUSH applied once, none for the others"
    );
}

#[test]
fn concurrency_must_be_a_whole_number_from_1_to_1024() {
    for (v, want) in [
        ("0", "0 is not a whole number from 1 to 1024"),
        ("2.5", "2.5 is not a whole number from 1 to 1024"),
        ("\"8\"", "must be a number, not a string"),
    ] {
        let r = Root::passthrough("file://in.json");
        r.write("in.json", "{}\n");
        let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
        r.config(&cfg.replace(
            r#"script="pass.lua""#,
            &format!(r#"script="pass.lua", concurrency = {v}"#),
        ));
        let out = r.run_to_eof(Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{v}: {err}");
        assert!(
            err.contains(&format!("field 'concurrency': {want}")),
            "{v}: {err}"
        );
    }
}
