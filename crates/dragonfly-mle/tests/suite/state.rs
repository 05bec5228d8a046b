//! The hiredis API on both backends, through the real binary: the embedded store and a real
//! redis-server started by the test.

use crate::common::*;
use dragonfly_store::embedded::EmbeddedStore;
use dragonfly_store::redis_backend::{RedisAddr, RedisTarget};
use dragonfly_store::Reply;
use dragonfly_testkit::RedisServer;
use std::collections::BTreeMap;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);

fn hello_config(input: &str, store: &str) -> String {
    format!(
        r#"{store}
inputs = {{ {{ tag="eve", uri="{input}", script="filter.lua", default_analyzer="hello" }} }}
analyzers = {{
   {{ tag="hello",  script="hello-world.lua",  default_analyzer="output", default_output="eve" }},
   {{ tag="output", script="write-to-log.lua", default_analyzer="",       default_output="eve" }},
}}
outputs = {{ {{ tag="eve", uri="file://eve-mle.json" }} }}
"#
    )
}

/// Event types of the corpus and how many of each.
fn corpus_counts() -> BTreeMap<String, i64> {
    use std::io::BufRead;
    let f = std::fs::File::open(corpus()).unwrap();
    let mut m = BTreeMap::new();
    for l in std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f)).lines() {
        let j: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
        *m.entry(j["event_type"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    m
}

fn get_int(r: Reply) -> i64 {
    match r {
        Reply::Bulk(b) => String::from_utf8(b).unwrap().parse().unwrap(),
        other => panic!("not a counter: {other:?}"),
    }
}

fn cmd(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

#[test]
fn hello_world_counts_every_type_in_the_embedded_store() {
    let r = Root::new();
    quickstart_scripts(&r);
    let input = format!("zfile://{}", corpus().display());
    r.config(&format!(
        "{}\nengine = {{ store_snapshot = \"state/store.snap\" }}\n",
        hello_config(&input, "")
    ));
    run_ok(&r, LIMIT);
    assert_eq!(r.lines("eve-mle.json").len(), 63_935);
    // the snapshot written at exit holds the counters
    let db = EmbeddedStore::new();
    db.load(&r.path().join("state/store.snap")).unwrap();
    let counts = corpus_counts();
    for (t, n) in &counts {
        assert_eq!(
            get_int(db.execute(&cmd(&["GET", &format!("count:{t}")]))),
            *n,
            "count:{t}"
        );
    }
    // the stats show the store's live keys: one counter per event type
    let s = r.final_stats();
    assert_eq!(s["store"]["keys"], counts.len(), "{s}");
}

#[test]
fn embedded_store_snapshot_survives_a_restart() {
    let r = Root::new();
    quickstart_scripts(&r);
    r.write("in.json", &(events(10).join("\n") + "\n"));
    r.config(&format!(
        "{}\nengine = {{ store_snapshot = \"store.snap\" }}\n",
        hello_config("file://in.json", "")
    ));
    for _ in 0..2 {
        let out = r.run_to_eof(LIMIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = EmbeddedStore::new();
    db.load(&r.path().join("store.snap")).unwrap();
    assert_eq!(get_int(db.execute(&cmd(&["GET", "count:dns"]))), 20);
    // the second run continued counting where the first stopped
    let counts: Vec<u64> = r
        .lines("eve-mle.json")
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event_count"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(counts, (1..=20).collect::<Vec<u64>>());
}

#[test]
fn hello_world_counts_every_type_in_a_real_redis() {
    let server = RedisServer::start();
    let r = Root::new();
    quickstart_scripts(&r);
    let input = format!("zfile://{}", corpus().display());
    r.config(&hello_config(
        &input,
        &format!(
            "redis_host = \"127.0.0.1\"\nredis_port = \"{}\"",
            server.port
        ),
    ));
    run_ok(&r, LIMIT);
    assert_eq!(r.lines("eve-mle.json").len(), 63_935);
    let redis = RedisTarget::new(RedisAddr::Tcp {
        host: "127.0.0.1".into(),
        port: server.port,
    });
    for (t, n) in corpus_counts() {
        assert_eq!(
            get_int(
                redis
                    .execute(&cmd(&["GET", &format!("count:{t}")]))
                    .unwrap()
            ),
            n,
            "count:{t}"
        );
    }
    let s = r.final_stats();
    assert_eq!(
        s["store"]["backend"],
        format!("redis 127.0.0.1:{}", server.port)
    );
    assert!(s["store"]["commands"].as_u64().unwrap() >= 63_935);
}

#[test]
fn redis_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("redis.sock");
    let server = RedisServer::start_with(&["--unixsocket", sock.to_str().unwrap()]);
    let r = Root::new();
    quickstart_scripts(&r);
    r.write("in.json", &(events(5).join("\n") + "\n"));
    r.config(&hello_config(
        "file://in.json",
        &format!("redis_host = \"{}\"\nredis_port = 0", sock.display()),
    ));
    run_ok(&r, LIMIT);
    let redis = RedisTarget::new(RedisAddr::Tcp {
        host: "127.0.0.1".into(),
        port: server.port,
    });
    assert_eq!(
        get_int(redis.execute(&cmd(&["GET", "count:dns"])).unwrap()),
        5
    );
}

/// A running engine whose analyzer INCRs a counter on `server` per event read from
/// `unix://in.sock` and outputs `{seq, count}` or `{seq, error}`; `engine` adds to the engine
/// table, `analyzer` to the analyzer's entry. Returns once `setup()` has run.
fn counting_on_redis(
    server: &RedisServer,
    engine: &str,
    analyzer: &str,
) -> (Root, std::process::Child) {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/count.lua", r#"
function setup() conn = hiredis.connect(); local f = io.open("ready", "w"); f:write("1"); f:close() end
function loop(msg)
  local reply = conn:command("INCR", "seen")
  if type(reply) == "table" then
    dragonfly.output_event("out", {seq = msg.seq, error = reply.name})
  else
    dragonfly.output_event("out", {seq = msg.seq, count = reply})
  end
end"#);
    r.config(&format!(
        r#"
redis_host = "127.0.0.1"
redis_port = {}
inputs = {{ {{ tag="in", uri="unix://in.sock", script="filter.lua", default_analyzer="count" }} }}
analyzers = {{ {{ tag="count", script="count.lua"{analyzer} }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
engine = {{ stats_interval = 0.05{engine} }}
"#,
        server.port
    ));
    let child = r.spawn(&[]);
    wait_for(Duration::from_secs(30), "start-up", || {
        r.path().join("ready").exists()
    });
    (r, child)
}

/// Send `{"seq":i}` lines for `range` to the root's `unix://in.sock`.
fn send_seqs(r: &Root, range: std::ops::Range<u64>) {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(r.path().join("in.sock")).unwrap();
    for i in range {
        writeln!(s, "{{\"seq\":{i}}}").unwrap();
    }
}

/// Keep sending one event at a time from `next` until one is counted again (the reconnect
/// backoff is at most 5 s), stop the engine cleanly and return every output line (checked to
/// be one per event sent) and its stderr.
fn count_again_then_stop(
    r: &Root,
    child: std::process::Child,
    mut next: u64,
) -> (Vec<serde_json::Value>, String) {
    wait_for(Duration::from_secs(30), "a successful INCR again", || {
        send_seqs(r, next..next + 1);
        next += 1;
        std::thread::sleep(Duration::from_millis(100));
        r.lines("out.json")
            .last()
            .is_some_and(|l| l.contains("\"count\""))
    });
    let (status, err) = stop(child, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    let lines: Vec<serde_json::Value> = r
        .lines("out.json")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, next, "every event came out");
    (lines, err)
}

/// Both ways of running: one event at a time, and events overlapping in the analyzer
/// (`concurrency`, their commands pipelined).
const MODES: [&str; 2] = ["", ", concurrency = 8"];

#[test]
fn a_redis_restart_costs_errors_not_the_engine() {
    for mode in MODES {
        let mut server = RedisServer::start();
        let (r, child) = counting_on_redis(&server, "", mode);
        let send = |range| send_seqs(&r, range);
        let outs = |r: &Root| r.read_log("out.json").lines().count();
        send(0..10);
        wait_for(Duration::from_secs(30), "10 counted", || outs(&r) == 10);
        server.kill();
        send(10..15);
        wait_for(Duration::from_secs(30), "5 failed", || outs(&r) == 15);
        server.restart();
        let (lines, err) = count_again_then_stop(&r, child, 15);
        for l in &lines[..10] {
            assert!(l["count"].is_number(), "{l}");
        }
        for l in &lines[10..15] {
            assert!(
                l["error"].as_str().unwrap().contains("Redis at 127.0.0.1"),
                "{l}"
            );
        }
        let s = r.final_stats();
        assert!(
            s["store"]["connection_errors"].as_u64().unwrap() >= 1,
            "{s}"
        );
        assert!(s["store"]["reconnects"].as_u64().unwrap() >= 1, "{s}");
        assert!(err.contains("connection to Redis lost"), "{err}");
    }
}

/// A Redis that stops answering (SIGSTOP: connections stay open, nothing comes back) costs
/// each command in flight a timeout error, never a hung worker; once it answers again the
/// engine reconnects and counts again.
#[test]
fn a_redis_that_stops_answering_costs_timeouts_not_a_hung_worker() {
    for mode in MODES {
        let server = RedisServer::start();
        let (r, child) = counting_on_redis(&server, ", redis_timeout_ms = 300", mode);
        let send = |range| send_seqs(&r, range);
        send(0..10);
        wait_for(Duration::from_secs(30), "10 counted", || {
            r.lines("out.json").len() == 10
        });
        server.pause();
        send(10..15);
        // each waits at most the timeout (the first) or the backoff's next connect attempt
        wait_for(Duration::from_secs(30), "5 failed", || {
            r.lines("out.json").len() == 15
        });
        server.resume();
        let (lines, err) = count_again_then_stop(&r, child, 15);
        let first = lines[10]["error"].as_str().unwrap_or_default();
        assert!(first.contains("did not answer within 300 ms"), "{first}");
        for l in &lines[10..15] {
            assert!(
                l["error"].as_str().unwrap().contains("Redis at 127.0.0.1"),
                "{l}"
            );
        }
        // the counter kept every INCR that was answered, and only those
        let answered = lines.iter().filter(|l| l["count"].is_number()).count() as i64;
        let last = lines
            .iter()
            .rev()
            .find_map(|l| l["count"].as_i64())
            .unwrap();
        assert!(last >= answered, "{last} < {answered}");
        let s = r.final_stats();
        assert!(s["store"]["timeouts"].as_u64().unwrap() >= 1, "{s}");
        assert!(s["store"]["reconnects"].as_u64().unwrap() >= 1, "{s}");
        assert!(err.contains("did not answer within 300 ms"), "{err}");
    }
}

#[test]
fn a_missing_module_says_how_to_load_it() {
    let server = RedisServer::start();
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{}\n");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "redis_host = \"127.0.0.1\"\nredis_port = {}\nmodules = {{ {{ tag=\"redisml\", module=\"/usr/local/lib/redis-ml.so\" }} }}\n{cfg}",
        server.port
    ));
    let out = r.run_to_eof(LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"modules[1] (tag "redisml")"#), "{err}");
    assert!(
        err.contains("redis-server --loadmodule /usr/local/lib/redis-ml.so"),
        "{err}"
    );
}

/// Signals landing while a worker waits for a Redis reply (the watchdog ticks every 10 ms
/// here) must not fail the command: a socket read with a timeout is not restarted after a
/// signal handler, so the connection restarts it itself. Run with the poll before each read
/// off (every wait is a blocking read) and on (the default).
#[test]
fn watchdog_ticks_during_redis_reads_cost_nothing() {
    let server = RedisServer::start();
    let input = format!(
        "zfile://{}",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/data/eve-sample.json.gz")
            .display()
    );
    for spin in ["0", "100"] {
        let r = Root::new();
        quickstart_scripts(&r);
        r.config(&format!(
            "{}\nengine = {{ script_timeout_ms = 40, redis_spin_us = {spin} }}\n",
            hello_config(
                &input,
                &format!("redis_host = \"127.0.0.1\"\nredis_port = {}", server.port)
            )
        ));
        let out = r.run_to_eof(LIMIT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let s = r.final_stats();
        assert_eq!(s["store"]["connection_errors"], 0, "spin {spin}: {err}");
        let lines = r.lines("eve-mle.json");
        assert_eq!(lines.len(), 22349);
        assert!(
            lines.iter().all(|l| l.contains("\"event_count\":")),
            "spin {spin}: a failed INCR"
        );
    }
}

/// `engine.store_maxmemory_mb`: a script that keeps one 2 KB key per event, 3000 events, on a
/// 1 MiB embedded store. With `allkeys-lru` the store stays at its limit by evicting and every
/// write succeeds; with `noeviction` writes past it get Redis's OOM error (an error table the
/// script sees) while the engine carries on and every event comes out.
#[test]
fn the_embedded_store_keeps_to_its_memory_limit() {
    for (policy, evicts) in [("allkeys-lru", true), ("noeviction", false)] {
        let r = Root::new();
        r.write("filter/filter.lua", FILTER);
        r.write(
            "analyzer/keep.lua",
            r#"
function setup() conn = hiredis.connect() end
function loop(msg)
  local reply = conn:command("SET", "seen:" .. msg.seq, string.rep("x", 2000))
  if type(reply) == "table" and reply.name then msg.error = reply.name end
  dragonfly.output_event("out", msg)
end"#,
        );
        let input: String = (0..3000).map(|i| format!("{{\"seq\":{i}}}\n")).collect();
        r.write("in.json", &input);
        r.config(&format!(
            r#"
inputs = {{ {{ tag="in", uri="file://in.json", script="filter.lua", default_analyzer="keep" }} }}
analyzers = {{ {{ tag="keep", script="keep.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
engine = {{ store_maxmemory_mb = 1, store_maxmemory_policy = "{policy}" }}
"#
        ));
        let out = r.run_to_eof(LIMIT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{policy}: {err}");
        let lines = r.lines("out.json");
        assert_eq!(lines.len(), 3000, "{policy}: every event comes out");
        let refused = lines
            .iter()
            .filter(|l| l.contains("OOM command not allowed when used memory > 'maxmemory'."))
            .count();
        let store = &r.final_stats()["store"];
        let bytes = store["memory_bytes"].as_u64().unwrap();
        assert!(bytes <= (1 << 20) + 8192, "{policy}: {store}");
        if evicts {
            assert_eq!(refused, 0, "{policy}");
            assert!(store["evicted_keys"].as_u64().unwrap() > 2000, "{store}");
            assert_eq!(store["oom_rejections"], 0, "{store}");
        } else {
            assert!(refused > 2000, "{policy}: {refused}");
            assert_eq!(store["evicted_keys"], 0, "{store}");
            assert_eq!(store["oom_rejections"].as_u64().unwrap() as usize, refused);
        }
        assert!(store["keys"].as_u64().unwrap() < 600, "{policy}: {store}");
    }
}
