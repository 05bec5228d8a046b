//! Hot reload on a running stream: ten reloads (SIGUSR2 and `POST /api/reload`), one of them
//! with a broken script (refused), one moving the output to another file and the next moving
//! it back, and one adding an output (refused: needs a restart); no event is lost or repeated,
//! each event is handled by one version of the script and the versions only move forward, the
//! refused reloads keep the running pipeline and say why.

use crate::common::*;
use dragonfly_testkit::free_port;
use std::io::Write;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn version(v: u32) -> String {
    format!(
        r#"
function setup() end
function loop(msg)
  msg.version = {v}
  dragonfly.output_event(default_output, msg)
end"#
    )
}

fn config(port: u16, output: &str) -> String {
    format!(
        r#"
inputs = {{ {{ tag="in", uri="unix://in.sock", script="filter.lua", default_analyzer="a" }} }}
analyzers = {{ {{ tag="a", script="a.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="{output}" }} }}
engine = {{ workers = 2, http = "127.0.0.1:{port}", batch_lines = 32, stats_interval = 0.05 }}
"#
    )
}

/// Reloads handled so far (done or refused), from the last stats line.
fn handled(r: &Root) -> u64 {
    r.lines("dragonfly-mle-stats.log")
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map_or(0, |s| {
            s["reloads"].as_u64().unwrap_or(0) + s["reload_failures"].as_u64().unwrap_or(0)
        })
}

#[test]
fn a_stream_runs_through_ten_reloads_without_losing_or_repeating_an_event() {
    let port = free_port();
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/a.lua", &version(0));
    r.config(&config(port, "file://out.json"));
    let child = r.spawn(&[]);
    let sock = r.path().join("in.sock");
    wait_for(T, "the socket", || sock.exists());
    wait_for(T, "the listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // a sender that keeps events flowing through every reload, until told to stop
    let stop_sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let sock = sock.clone();
        let stop_sending = stop_sending.clone();
        std::thread::spawn(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            let mut i = 0u64;
            while !stop_sending.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..50 {
                    writeln!(s, "{{\"seq\":{i},\"flow_id\":{}}}", i % 13).unwrap();
                    i += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            i
        })
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut refused = Vec::new();
    for v in 1..=10u32 {
        match v {
            // a broken script: refused, version 3 keeps running
            4 => {
                r.write("analyzer/a.lua", "function setup( end");
            }
            // a changed output: opened anew, version 7 writes there (8 goes back to out.json)
            7 => {
                r.write("analyzer/a.lua", &version(v));
                r.config(&config(port, "file://other.json"));
            }
            _ => {
                r.write("analyzer/a.lua", &version(v));
                r.config(&config(port, "file://out.json"));
            }
        }
        let body = if v % 2 == 0 {
            let (code, body) = request(port, "POST", "/api/reload");
            let ok = code == 200;
            assert_eq!(ok, v != 4, "reload {v}: {code} {body}");
            body
        } else {
            let before = handled(&r);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).unwrap();
            // the stats count the outcome; wait for it
            wait_for(T, "the reload's outcome", || handled(&r) > before);
            String::new()
        };
        if v == 4 {
            refused.push((v, body));
        }
        if v == 8 {
            // an output added is refused (a restart adds it)
            let mut c = config(port, "file://out.json");
            c = c.replace(
                r#"outputs = { { tag="out", uri="file://out.json" } }"#,
                r#"outputs = { { tag="out", uri="file://out.json" }, { tag="more", uri="file://more.json" } }"#,
            );
            r.config(&c);
            let (code, body) = request(port, "POST", "/api/reload");
            assert_eq!(code, 422, "{body}");
            assert!(
                body.contains("outputs were added, removed or reordered"),
                "{body}"
            );
            r.config(&config(port, "file://out.json"));
        }
        // let some events through this version
        std::thread::sleep(Duration::from_millis(100));
    }
    // and some more after the last one
    std::thread::sleep(Duration::from_millis(200));
    stop_sending.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = sender.join().unwrap();
    let both = || {
        let mut l = r.lines("out.json");
        l.extend(r.lines("other.json"));
        l
    };
    wait_for(T, "every event", || both().len() as u64 >= n);
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    // every event exactly once (out.json, or other.json while version 7 ran); within a flow,
    // later events never ran an older version
    let mut seen = vec![0u32; n as usize];
    let mut flows: std::collections::HashMap<u64, Vec<(u64, u64)>> = Default::default();
    let mut versions = std::collections::BTreeSet::new();
    for l in both() {
        let j: serde_json::Value = serde_json::from_str(&l).unwrap();
        let seq = j["seq"].as_u64().unwrap();
        let v = j["version"].as_u64().unwrap();
        seen[seq as usize] += 1;
        flows
            .entry(j["flow_id"].as_u64().unwrap())
            .or_default()
            .push((seq, v));
        versions.insert(v);
    }
    assert!(seen.iter().all(|&c| c == 1), "every event exactly once");
    for (flow, mut evs) in flows {
        evs.sort();
        for w in evs.windows(2) {
            assert!(w[1].1 >= w[0].1, "flow {flow}: {:?} after {:?}", w[1], w[0]);
        }
    }
    assert!(!versions.contains(&4), "{versions:?}");
    assert_eq!(versions.last(), Some(&10), "{versions:?}");
    // version 7 wrote to the output it was given, and only there
    let other: Vec<serde_json::Value> = r
        .lines("other.json")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!other.is_empty());
    assert!(other.iter().all(|j| j["version"] == 7), "{other:?}");
    assert!(err.contains("output 'out': reopened"), "{err}");
    let (_, body4) = &refused[0];
    assert!(body4.contains("analyzer/a.lua"), "{body4}");
    assert!(err.contains("reload refused"), "{err}");
    let s = r.final_stats();
    assert_eq!(s["reloads"], 9, "{s}");
    assert_eq!(s["reload_failures"], 2, "{s}");
}

/// A reload that moves an input to another socket: the new one is bound before anything
/// changes, the old one hands on what it had read and closes; every datagram sent to either
/// comes out once.
#[test]
fn a_reload_moves_an_input_to_another_socket() {
    let port = free_port();
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/a.lua", &version(1));
    let cfg = |input: &str| config(port, "file://out.json").replace("unix://in.sock", input);
    r.config(&cfg("ipc://a.sock"));
    let child = r.spawn(&[]);
    let a = r.path().join("a.sock");
    wait_for(T, "the first socket", || a.exists());
    wait_for(T, "the listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let send = |path: &std::path::Path, range: std::ops::Range<u32>| {
        let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
        for i in range {
            s.send_to(
                format!("{{\"seq\":{i},\"flow_id\":{}}}", i % 5).as_bytes(),
                path,
            )
            .unwrap();
        }
    };
    send(&a, 0..500);
    wait_for(T, "the first 500", || r.lines("out.json").len() == 500);
    r.write("analyzer/a.lua", &version(2));
    r.config(&cfg("ipc://b.sock"));
    let (code, body) = request(port, "POST", "/api/reload");
    assert_eq!(code, 200, "{body}");
    let b = r.path().join("b.sock");
    assert!(
        b.exists(),
        "the new socket is bound once the reload answers"
    );
    send(&b, 500..1000);
    wait_for(T, "all 1000", || r.lines("out.json").len() == 1000);
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    assert!(err.contains("input 'in': reopened: ipc://b.sock"), "{err}");
    let mut seqs: Vec<(u64, u64)> = r
        .lines("out.json")
        .iter()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            (j["seq"].as_u64().unwrap(), j["version"].as_u64().unwrap())
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs.len(), 1000);
    for (i, (seq, v)) in seqs.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(*v, if i < 500 { 1 } else { 2 }, "seq {seq}");
    }
}
