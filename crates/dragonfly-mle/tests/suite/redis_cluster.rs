//! `redis_cluster`: the quick start's hello-world on a 3-master Redis Cluster that the test
//! starts, resharded while events flow (no event lost, every counter exact), and the
//! configuration's checks.

use crate::common::*;
use dragonfly_store::redis_backend::{RedisAddr, RedisTarget};
use dragonfly_store::{Connection, Reply};
use dragonfly_testkit::cluster::RedisCluster;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// The repository's sample events, as lines, and how many of each event type.
fn sample() -> (Vec<String>, BTreeMap<String, i64>) {
    use std::io::BufRead;
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/data/eve-sample.json.gz");
    let f = std::fs::File::open(p).unwrap();
    let lines: Vec<String> = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f))
        .lines()
        .take(8000)
        .map(Result::unwrap)
        .collect();
    let mut counts = BTreeMap::new();
    for l in &lines {
        let j: serde_json::Value = serde_json::from_str(l).unwrap();
        *counts
            .entry(j["event_type"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    (lines, counts)
}

/// Start the engine of `r` (input `unix://in.sock`) and send `lines` to it at a steady pace
/// from another thread (so that slots can move while events flow).
fn start_and_send(
    r: &Root,
    lines: Vec<String>,
) -> (std::process::Child, std::thread::JoinHandle<()>) {
    let child = r.spawn(&[]);
    wait_for(Duration::from_secs(30), "the socket", || {
        r.path().join("in.sock").exists()
    });
    let sock = r.path().join("in.sock");
    let sender = std::thread::spawn(move || {
        let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
        for chunk in lines.chunks(100) {
            for l in chunk {
                writeln!(s, "{l}").unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (child, sender)
}

#[test]
fn hello_world_counts_exactly_on_a_cluster_resharded_while_events_flow() {
    let cluster = RedisCluster::start(3, &[]);
    let (lines, counts) = sample();
    let r = Root::new();
    quickstart_scripts(&r);
    r.config(&format!(
        r#"
redis_cluster = {}
inputs = {{ {{ tag="eve", uri="unix://in.sock", script="filter.lua", default_analyzer="hello" }} }}
analyzers = {{
   {{ tag="hello",  script="hello-world.lua",  default_analyzer="output", default_output="eve" }},
   {{ tag="output", script="write-to-log.lua", default_analyzer="",       default_output="eve" }},
}}
outputs = {{ {{ tag="eve", uri="file://eve-mle.json" }} }}
engine = {{ stats_interval = 0.1 }}
"#,
        cluster.lua_list()
    ));
    let (child, sender) = start_and_send(&r, lines);
    wait_for(Duration::from_secs(60), "events flowing", || {
        r.log("eve-mle.json").exists() && r.lines("eve-mle.json").len() >= 500
    });
    // every slot of the first master (which holds count:dns and count:http) moves to the
    // second while events keep coming
    let before = r.lines("eve-mle.json").len();
    cluster.reshard(0, 1, 5461);
    let after = r.lines("eve-mle.json").len();
    assert!(
        after > before,
        "no event went through during the resharding"
    );
    sender.join().unwrap();
    let total: i64 = counts.values().sum();
    wait_for(Duration::from_secs(120), "every event out", || {
        r.lines("eve-mle.json").len() as i64 == total
    });
    let (status, err) = stop(child, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    // every event was counted once, on whichever node holds its counter now
    let mut c = RedisTarget::new(RedisAddr::Cluster {
        nodes: vec![("127.0.0.1".into(), cluster.servers[2].port)],
    })
    .connect()
    .unwrap();
    for (t, n) in &counts {
        let got = c.command(&[b"GET".to_vec(), format!("count:{t}").into_bytes()]);
        assert_eq!(got, Reply::Bulk(n.to_string().into_bytes()), "count:{t}");
    }
    let out = r.lines("eve-mle.json");
    assert!(
        out.iter().all(|l| l.contains("\"event_count\":")),
        "an event without its count (a failed INCR)"
    );
    let s = r.final_stats();
    assert_eq!(s["store"]["connection_errors"], 0, "{s}");
    assert!(
        s["store"]["backend"].as_str().unwrap().contains("cluster"),
        "{s}"
    );
}

/// Pipelines on a cluster (`append_command` then `get_reply`): each node gets its commands
/// in one write; while slots move, the commands a node no longer serves (MOVED, ASK) are sent
/// again through the cluster connection, and every counter is still exact.
#[test]
fn pipelines_count_exactly_on_a_cluster_resharded_while_events_flow() {
    let cluster = RedisCluster::start(3, &[]);
    let (lines, counts) = sample();
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write(
        "analyzer/piped.lua",
        r#"
function setup() conn = assert(hiredis.connect()) end
function loop(msg)
  -- four counters per event, on keys all over the slots
  for i = 1, 4 do conn:append_command("INCR", "p:" .. msg.event_type .. ":" .. i) end
  conn:append_command("PING")
  for i = 1, 4 do
    local n = conn:get_reply()
    assert(type(n) == "number", "INCR " .. i .. ": " .. tostring(type(n) == "table" and n.name or n))
  end
  assert(conn:get_reply() == hiredis.status.PONG, "PING")
  dragonfly.output_event("out", msg)
end"#,
    );
    r.config(&format!(
        r#"
redis_cluster = {}
inputs = {{ {{ tag="eve", uri="unix://in.sock", script="filter.lua", default_analyzer="piped" }} }}
analyzers = {{ {{ tag="piped", script="piped.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
"#,
        cluster.lua_list()
    ));
    let (child, sender) = start_and_send(&r, lines);
    wait_for(Duration::from_secs(60), "events flowing", || {
        r.lines("out.json").len() >= 500
    });
    cluster.reshard(0, 2, 5461);
    sender.join().unwrap();
    let total: i64 = counts.values().sum();
    wait_for(Duration::from_secs(120), "every event out", || {
        r.lines("out.json").len() as i64 == total
    });
    let (status, err) = stop(child, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    let mut c = RedisTarget::new(RedisAddr::Cluster {
        nodes: vec![("127.0.0.1".into(), cluster.servers[1].port)],
    })
    .connect()
    .unwrap();
    for (t, n) in &counts {
        for i in 1..=4 {
            let got = c.command(&[b"GET".to_vec(), format!("p:{t}:{i}").into_bytes()]);
            assert_eq!(got, Reply::Bulk(n.to_string().into_bytes()), "p:{t}:{i}");
        }
    }
    assert_eq!(r.final_stats()["errors"], 0);
}

#[test]
fn redis_cluster_entries_are_checked() {
    for (value, want) in [
        (
            r#"{ "127.0.0.1" }"#,
            "field 'redis_cluster': entry 1: '127.0.0.1' is not host:port",
        ),
        (
            r#"{ 7000 }"#,
            "field 'redis_cluster': entry 1: must be a \"host:port\" string, not a",
        ),
        (
            r#"{}"#,
            "field 'redis_cluster': needs at least one \"host:port\" node",
        ),
        (
            r#""127.0.0.1:7000""#,
            "field 'redis_cluster': must be a list of \"host:port\" strings, not a string",
        ),
    ] {
        let r = Root::passthrough("file://in.json");
        r.write("in.json", "{}\n");
        let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
        r.config(&format!("redis_cluster = {value}\n{cfg}"));
        let out = r.run_to_eof(Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {err}");
        assert!(err.contains(want), "{value}: {err}");
    }
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{}\n");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "redis_cluster = {{ \"127.0.0.1:7000\" }}\nredis_host = \"127.0.0.1\"\n{cfg}"
    ));
    let out = r.run_to_eof(Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("field 'redis_cluster': set redis_cluster or redis_host, not both"),
        "{err}"
    );
}

/// Commands on keys of different slots: what a script sees on a cluster.
#[test]
fn multi_key_commands_across_slots_on_a_cluster() {
    let cluster = RedisCluster::start(3, &[]);
    let mut c = RedisTarget::new(RedisAddr::Cluster {
        nodes: vec![("127.0.0.1".into(), cluster.servers[0].port)],
    })
    .connect()
    .unwrap();
    let cmd = |w: &str| -> Vec<Vec<u8>> { w.split(' ').map(|x| x.as_bytes().to_vec()).collect() };
    // "a" and "b" hash to different slots (15495 and 3300), on different masters
    assert_eq!(c.command(&cmd("SET a 1")), Reply::ok());
    assert_eq!(c.command(&cmd("SET b 2")), Reply::ok());
    // commands that only read or delete keys one by one are split per node and put together
    assert_eq!(
        c.command(&cmd("MGET a b")),
        Reply::Array(vec![Reply::Bulk(b"1".to_vec()), Reply::Bulk(b"2".to_vec())])
    );
    // commands that combine keys get Redis's own error
    for w in ["RENAME a b", "SINTERSTORE a b"] {
        match c.command(&cmd(w)) {
            Reply::Error(e) => assert!(e.starts_with("CROSSSLOT"), "{w}: {e}"),
            other => panic!("{w}: {other:?}"),
        }
    }
    // keys with one hash tag share a slot: combining them works
    assert_eq!(c.command(&cmd("SET {u}a 1")), Reply::ok());
    assert_eq!(c.command(&cmd("RENAME {u}a {u}b")), Reply::ok());
    assert_eq!(c.command(&cmd("GET {u}b")), Reply::Bulk(b"1".to_vec()));
}

/// `modules` is checked on every node of the cluster, not just on the one a command reaches.
#[test]
fn a_module_missing_from_cluster_nodes_names_each_node() {
    let modules = |m: &str| format!("modules = {{ {{ tag=\"redisml\", module=\"{m}\" }} }}\n");
    let run = |cluster: &RedisCluster, module: &str| {
        let r = Root::passthrough("file://in.json");
        r.write("in.json", "{}\n");
        let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
        r.config(&format!(
            "redis_cluster = {}\n{}{cfg}",
            cluster.lua_list(),
            modules(module)
        ));
        r.run_to_eof(Duration::from_secs(60))
    };
    let bare = RedisCluster::start(3, &[]);
    let out = run(&bare, "/usr/local/lib/redis-ml.so");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for s in &bare.servers {
        assert!(
            err.contains(&format!(
                "Redis at 127.0.0.1:{} does not have module",
                s.port
            )),
            "node {}: {err}",
            s.port
        );
    }
    drop(bare);
    let module = redisml_module();
    let loaded = RedisCluster::start(3, &["--loadmodule", module]);
    let out = run(&loaded, module);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
