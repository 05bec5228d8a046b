//! Redis as an input and an output, the shapes of Suricata's `redis` eve output, against a
//! real redis-server started by the test.

use crate::common::*;
use dragonfly_store::redis_backend::{RedisAddr, RedisTarget};
use dragonfly_store::{Connection, Reply};
use dragonfly_testkit::RedisServer;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn client(server: &RedisServer) -> impl Connection {
    RedisTarget::new(RedisAddr::Tcp {
        host: "127.0.0.1".into(),
        port: server.port,
    })
    .connect()
    .unwrap()
}

fn cmd(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

fn out_lines(r: &Root) -> usize {
    r.read_log("out.json").lines().count()
}

/// A redis-server and an engine reading `redis://.../{key_and_mode}` into out.json.
fn engine_reading(key_and_mode: &str) -> (RedisServer, Root, std::process::Child) {
    let server = RedisServer::start();
    let r = Root::passthrough(&format!("redis://127.0.0.1:{}/{key_and_mode}", server.port));
    r.write("analyzer/pass.lua", PASS_READY);
    let child = r.spawn(&[]);
    (server, r, child)
}

/// Events pushed the way Suricata pushes them arrive once each, in order.
fn list_input(mode: &str, push: &str) {
    let (server, r, child) = engine_reading(&format!("suricata?mode={mode}"));
    wait_for(T, "start-up", || r.path().join("ready").exists());
    let mut c = client(&server);
    for i in 0..1000 {
        c.command(&cmd(&[
            push,
            "suricata",
            &format!("{{\"seq\":{i},\"host\":\"sensor1\"}}"),
        ]));
    }
    wait_for(T, "1000 events", || out_lines(&r) == 1000);
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    assert_eq!(
        seq_order(&r.lines("out.json")),
        (0..1000).collect::<Vec<u64>>(),
        "FIFO"
    );
    assert_eq!(c.command(&cmd(&["LLEN", "suricata"])), Reply::Integer(0));
}

#[test]
fn redis_list_input_like_suricata_list_mode() {
    list_input("list", "LPUSH");
}

#[test]
fn redis_rpush_input_like_suricata_rpush_mode() {
    list_input("rpush", "RPUSH");
}

#[test]
fn redis_channel_input() {
    let (server, r, child) = engine_reading("eve?mode=channel");
    let mut c = client(&server);
    wait_for(
        T,
        "the engine subscribed",
        || matches!(c.command(&cmd(&["PUBSUB", "NUMSUB", "eve"])), Reply::Array(v) if v.get(1) == Some(&Reply::Integer(1))),
    );
    for i in 0..500 {
        c.command(&cmd(&["PUBLISH", "eve", &format!("{{\"seq\":{i}}}")]));
    }
    wait_for(T, "500 events", || out_lines(&r) == 500);
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    assert_eq!(seqs(&r.lines("out.json")), (0..500).collect::<Vec<u64>>());
}

#[test]
fn redis_list_output() {
    let server = RedisServer::start();
    let r = Root::passthrough("file://in.json");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        "file://out.json",
        &format!("redis://127.0.0.1:{}/alerts", server.port),
    ));
    r.write("in.json", &(events(300).join("\n") + "\n"));
    run_ok(&r, T);
    let mut c = client(&server);
    assert_eq!(c.command(&cmd(&["LLEN", "alerts"])), Reply::Integer(300));
    // LPUSHed: a consumer popping the other end (RPOP) sees input order
    let mut got = Vec::new();
    while let Reply::Bulk(b) = c.command(&cmd(&["RPOP", "alerts"])) {
        got.push(String::from_utf8(b).unwrap());
    }
    assert_eq!(seq_order(&got), (0..300).collect::<Vec<u64>>());
}

/// At-least-once from a Redis list: two engines (consumer names a and b) share Suricata's
/// list; a is killed with SIGKILL mid-stream and restarted; every event comes out, what a had
/// taken and not finished is read again (from its processing list), and at the end both the
/// list and the processing lists are empty.
#[test]
fn redis_list_input_at_least_once_across_sigkill() {
    const N: usize = 6000;
    let server = RedisServer::start();
    let mut c = client(&server);
    for i in 0..N {
        c.command(&cmd(&[
            "LPUSH",
            "eve",
            &format!("{{\"seq\":{i},\"flow_id\":{}}}", 1000 + i),
        ]));
    }
    let uri = |name: &str| {
        format!(
            "redis://127.0.0.1:{}/eve?mode=list&consumer={name}",
            server.port
        )
    };
    let a = slow_consumer(&uri("a"), "");
    let b = slow_consumer(&uri("b"), "");
    let mut ea = spawn_logged(&a);
    let eb = spawn_logged(&b);
    wait_for(T, "both consuming", || {
        a.lines("out.json").len() >= 800 && !b.lines("out.json").is_empty()
    });
    kill9(&mut ea);
    let a_before = a.lines("out.json").len();
    let left = c.command(&cmd(&["LLEN", "eve:processing:a"]));
    assert!(
        matches!(left, Reply::Integer(n) if n > 0),
        "a's unfinished events wait on its processing list: {left:?}"
    );
    let ea = spawn_logged(&a);
    wait_all_seqs(&[&a, &b], N, Duration::from_secs(120));
    let (sa, ea_err) = stop(ea, T);
    let (sb, eb_err) = stop(eb, T);
    assert!(sa.success() && sb.success(), "{ea_err}{eb_err}");
    assert!(stderr_log(&a).contains("reading again events a previous run took"));

    let seen = count_seqs(&[&a, &b]);
    assert_eq!(seen.len(), N);
    let dups = seen.values().sum::<usize>() - N;
    // at most what a had written but not yet confirmed: one flush hold (0.5 s) at ~5,000/s
    eprintln!("redis list: {N} events, a wrote {a_before} before SIGKILL, {dups} duplicates");
    assert!(dups <= 3_000, "{dups} duplicates");
    for key in ["eve", "eve:processing:a", "eve:processing:b"] {
        assert_eq!(c.command(&cmd(&["LLEN", key])), Reply::Integer(0), "{key}");
    }
}
