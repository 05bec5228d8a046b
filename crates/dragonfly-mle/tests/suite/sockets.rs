//! Socket inputs under pressure and for other users: permissions Suricata can use, empty
//! datagrams counted, and the memory a flood can take bounded by `buffer_mb`.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::common::*;

const T: Duration = Duration::from_secs(60);

fn socket_root(uri: &str, options: &str, analyzer: &str) -> Root {
    let r = Root::passthrough(uri);
    r.write("analyzer/pass.lua", analyzer);
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        r#"default_analyzer="pass" }"#,
        &format!(r#"default_analyzer="pass", options = {{ {options} }} }}"#),
    ));
    r
}

fn ready(r: &Root) {
    wait_for(T, "engine start-up (setup marker)", || {
        r.path().join("ready").exists()
    });
}

#[test]
fn socket_mode_owner_and_group_are_applied() {
    let group = if nix::unistd::geteuid().is_root() {
        r#", owner = "nobody", group = "65534""#
    } else {
        ""
    };
    for uri in ["ipc://in.sock", "unix://in.sock"] {
        let r = socket_root(uri, &format!(r#"mode = "0660"{group}"#), PASS_READY);
        let child = r.spawn(&[]);
        ready(&r);
        let m = std::fs::symlink_metadata(r.path().join("in.sock")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o660, "{uri}");
        if !group.is_empty() {
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{uri}");
        }
        let (status, err) = stop(child, T);
        assert!(status.success(), "{err}");
    }
}

#[test]
fn bad_socket_options_are_config_errors_naming_the_field() {
    for (opts, want) in [
        (r#"mode = "rwx""#, "mode 'rwx' is not octal permissions"),
        (
            r#"owner = "no-such-user-here""#,
            "owner 'no-such-user-here': no such user",
        ),
        (
            r#"colour = "blue""#,
            "unknown option 'colour' for ipc:// (known: mode, owner, group, buffer_mb)",
        ),
    ] {
        let r = socket_root("ipc://in.sock", opts, PASS_READY);
        let out = r.run_to_eof(T);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(r#"inputs[1] (tag "in"): field 'options': "#) && err.contains(want),
            "{err}"
        );
    }
}

#[test]
fn an_empty_datagram_is_counted() {
    let r = socket_root("ipc://in.sock", "", PASS_READY);
    let child = r.spawn(&[]);
    ready(&r);
    let tx = UnixDatagram::unbound().unwrap();
    tx.connect(r.path().join("in.sock")).unwrap();
    tx.send(b"").unwrap();
    tx.send(b"{\"seq\":1}").unwrap();
    wait_for(T, "one line", || {
        r.log("out.json").exists() && r.lines("out.json").len() == 1
    });
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    let s = r.final_stats();
    assert_eq!(s["inputs"]["in"]["empty"], 1, "{s}");
}

fn rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// 30 s of one-datagram bursts (each its own batch) into an analyzer far slower than the
/// sender: the queued datagrams are held to `buffer_mb`, the rest is counted as overflow,
/// and the process stays within the cap plus a small constant.
#[test]
fn a_flood_into_a_slow_pipeline_stays_within_the_buffer_cap() {
    const CAP_MB: f64 = 8.0;
    let slow = r#"
-- slow (20 ms an event: 50 a second, far below any sender) for the flood's 30 s, fast
-- afterwards so that the drain is quick
local slow_until
function setup()
  slow_until = dragonfly.clock() + 32
  local f = io.open("ready", "w"); f:write("1"); f:close()
end
function loop(msg)
  if dragonfly.clock() < slow_until then
    local t = dragonfly.clock() + 0.02
    while dragonfly.clock() < t do end
  end
  dragonfly.output_event(default_output, msg)
end
"#;
    let r = socket_root("ipc://in.sock", "buffer_mb = 8", slow);
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "{cfg}\nengine = {{ queue_batches = 4, script_timeout_ms = 0 }}\n"
    ));
    let child = r.spawn(&[]);
    ready(&r);
    let base = rss_mb(child.id());
    let tx = UnixDatagram::unbound().unwrap();
    tx.connect(r.path().join("in.sock")).unwrap();
    tx.set_nonblocking(true).unwrap();
    let payload = format!("{{\"seq\":1,\"pad\":\"{}\"}}", "x".repeat(300));
    let start = Instant::now();
    let mut peak = base;
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(30) {
        // one datagram at a time, with a gap: the reader flushes a batch per datagram
        if tx.send(payload.as_bytes()).is_ok() {
            sent += 1;
        }
        if sent.is_multiple_of(200) {
            peak = peak.max(rss_mb(child.id()));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    peak = peak.max(rss_mb(child.id()));
    // past the slow phase, what was queued drains quickly
    std::thread::sleep(Duration::from_secs(3));
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    let s = r.final_stats();
    let overflow = s["inputs"]["in"]["overflow"].as_u64().unwrap();
    let written = s["outputs"]["out"]["events"].as_u64().unwrap();
    eprintln!(
        "flood: RSS {base:.0} MB at start, peak {peak:.0} MB (cap {CAP_MB} MB); sent {sent}, written {written}, overflow {overflow}"
    );
    assert!(overflow > 0, "the flood must overrun the buffer: {s}");
    assert!(
        peak < base + CAP_MB + 64.0,
        "RSS peaked at {peak:.0} MB (start {base:.0} MB, cap {CAP_MB} MB); sent {sent}, written {written}, overflow {overflow}"
    );
}

/// A peer that opens stream connections without end in a burst gets the first 128 served
/// and the rest closed as they come (counted as `refused`: none of the open ones has been
/// quiet long enough to give its place; boundaries.rs has the eviction of quiet ones).
/// Served connections keep delivering, and once they close new ones are served again.
#[test]
fn stream_connections_beyond_the_cap_are_refused_and_counted() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let r = socket_root("unix://in.sock", "", PASS_READY);
    let child = r.spawn(&[]);
    ready(&r);
    let path = r.path().join("in.sock");
    // the first connection is accepted (it delivers), then 200 more are opened and held
    let mut first = UnixStream::connect(&path).unwrap();
    writeln!(first, "{{\"seq\":0}}").unwrap();
    wait_for(T, "the first connection served", || {
        r.log("out.json").exists() && r.lines("out.json").len() == 1
    });
    let held: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    // a refused connection is closed by the engine: reading it gives end of file
    let closed = |s: &UnixStream| {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut r = s;
        matches!(r.read(&mut [0u8; 1]), Ok(0))
    };
    wait_for(T, "the connections past 128 closed", || {
        held.iter().filter(|s| closed(s)).count() >= 200 - 127
    });
    let open = held.iter().filter(|s| !closed(s)).count();
    assert_eq!(open, 127, "128 served with the first");
    // a served connection still delivers
    writeln!(first, "{{\"seq\":1}}").unwrap();
    wait_for(T, "a served connection delivers", || {
        r.lines("out.json").len() == 2
    });
    // when they close, new connections are served again
    drop(held);
    drop(first);
    wait_for(T, "a new connection served after the others closed", || {
        if let Ok(mut s) = UnixStream::connect(&path) {
            let _ = writeln!(s, "{{\"seq\":2}}");
        }
        std::thread::sleep(Duration::from_millis(100));
        r.lines("out.json").iter().any(|l| l.contains("\"seq\":2"))
    });
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    let s = r.final_stats();
    assert!(s["inputs"]["in"]["refused"].as_u64().unwrap() >= 73, "{s}");
    assert!(err.contains("128 connections are open"), "{err}");
}
