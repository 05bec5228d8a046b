//! Live Suricata: real Suricata 7 reads a pcap this test builds (scapy) and writes EVE through
//! every eve-log output docs/suricata.md recommends (the snippets in deploy/suricata/, read
//! here): a regular eve.json (followed with `tail://`), a unix datagram socket (`ipc://`), a
//! unix stream socket (`unix://`) and a Redis list (`redis://...&consumer=`). Every event in
//! eve.json must come out of the engine once per transport, equal as JSON.
//!
//! Needs `suricata` and scapy (scripts/install-suricata). Runs when
//! DRAGONFLY_LIVE_SURICATA=1, which scripts/test and .ci/run set; a plain `cargo test`
//! without it says so and passes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

const RULES: &str = r#"alert http any any -> any any (msg:"LIVE big response"; flow:established,to_client; content:"LIVETEST-BIG"; sid:1000001; rev:1;)
alert dns any any -> any any (msg:"LIVE nx lookup"; dns.query; content:"qzx"; sid:1000002; rev:1;)
"#;

/// One of the eve-log snippets docs/suricata.md shows (deploy/suricata/NAME), its socket
/// paths and Redis port moved to this test's.
fn snippet(name: &str, dgram: &Path, stream: &Path, redis_port: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/suricata")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace(
            "/run/dragonfly-mle/eve-dgram.sock",
            &dgram.display().to_string(),
        )
        .replace(
            "/run/dragonfly-mle/eve-stream.sock",
            &stream.display().to_string(),
        )
        .replace("port: 6379", &format!("port: {redis_port}"))
}

fn suricata_yaml(dir: &Path, dgram: &Path, stream: &Path, redis_port: u16) -> String {
    let outputs: String = [
        "eve-file.yaml",
        "eve-unix-dgram.yaml",
        "eve-unix-stream.yaml",
        "eve-redis.yaml",
    ]
    .iter()
    .map(|n| snippet(n, dgram, stream, redis_port))
    .collect();
    format!(
        r#"%YAML 1.1
---
vars:
  address-groups:
    HOME_NET: "[10.0.0.0/8]"
    EXTERNAL_NET: "!$HOME_NET"
  port-groups:
    HTTP_PORTS: "80"
default-rule-path: {dir}
rule-files: [local.rules]
default-log-dir: {dir}
outputs:
{outputs}app-layer:
  protocols:
    http: {{enabled: yes}}
    dns: {{udp: {{enabled: yes}}, tcp: {{enabled: yes}}}}
logging:
  outputs:
    - console: {{enabled: yes}}
"#,
        dir = dir.display(),
    )
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every expected event is matched by exactly one received event (equal as JSON).
fn assert_same_events(what: &str, expected: &[Value], received: Vec<Value>) {
    assert_eq!(received.len(), expected.len(), "{what}: event count");
    let first = received.first().cloned();
    let mut left = received;
    for e in expected {
        let i = left
            .iter()
            .position(|r| r == e)
            .unwrap_or_else(|| panic!("{what}: never received {e}\n(first received: {first:?})"));
        left.swap_remove(i);
    }
}

#[test]
fn suricata_eve_arrives_whole_over_every_recommended_transport() {
    if std::env::var("DRAGONFLY_LIVE_SURICATA").as_deref() != Ok("1") {
        dragonfly_testkit::skip(
            "set DRAGONFLY_LIVE_SURICATA=1 (scripts/test does) after scripts/install-suricata",
        );
        return;
    }
    let redis = dragonfly_testkit::RedisServer::start();
    let r = Root::new();
    let dir = r.path().to_path_buf();
    let dgram = dir.join("eve-dgram.sock");
    let stream = dir.join("eve-stream.sock");
    let sdir = dir.join("suricata");
    std::fs::create_dir_all(&sdir).unwrap();
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/pass.lua", PASS);
    r.write("analyzer/ready.lua", PASS_READY);
    r.config(&format!(
        r#"
inputs = {{
  {{ tag="dgram",  uri="ipc://{}",  script="filter.lua", default_analyzer="d" }},
  {{ tag="stream", uri="unix://{}", script="filter.lua", default_analyzer="s" }},
  {{ tag="file",   uri="tail://{}/eve.json<", script="filter.lua", default_analyzer="f",
     options = {{ checkpoint = "eve.checkpoint" }} }},
  {{ tag="redis",  uri="redis://127.0.0.1:{}/suricata?mode=list&consumer=live", script="filter.lua",
     default_analyzer="r" }},
}}
analyzers = {{
  {{ tag="d", script="ready.lua", default_analyzer="", default_output="d" }},
  {{ tag="s", script="pass.lua",  default_analyzer="", default_output="s" }},
  {{ tag="f", script="pass.lua",  default_analyzer="", default_output="f" }},
  {{ tag="r", script="pass.lua",  default_analyzer="", default_output="r" }},
}}
outputs = {{
  {{ tag="d", uri="file://from-dgram.json" }},
  {{ tag="s", uri="file://from-stream.json" }},
  {{ tag="f", uri="file://from-file.json" }},
  {{ tag="r", uri="file://from-redis.json" }},
}}
"#,
        dgram.display(),
        stream.display(),
        sdir.display(),
        redis.port
    ));

    // the capture and Suricata's configuration
    let pcap = dir.join("live.pcap");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live_pcap.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the pcap (scapy installed? scripts/install-suricata): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(sdir.join("local.rules"), RULES).unwrap();
    std::fs::write(
        sdir.join("suricata.yaml"),
        suricata_yaml(&sdir, &dgram, &stream, redis.port),
    )
    .unwrap();

    // the engine first: Suricata connects to sockets that must exist
    let engine = r.spawn(&[]);
    wait_for(Duration::from_secs(30), "engine ready", || {
        dir.join("ready").exists() && dgram.exists() && stream.exists()
    });

    let out = Command::new("suricata")
        .arg("-c")
        .arg(sdir.join("suricata.yaml"))
        .arg("-r")
        .arg(&pcap)
        .arg("-l")
        .arg(&sdir)
        .args(["-k", "none", "--runmode", "single"])
        .output()
        .expect("suricata installed (scripts/install-suricata)");
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "suricata failed: {log}");

    let written = parse_lines(&std::fs::read_to_string(sdir.join("eve.json")).unwrap());
    let kinds: std::collections::BTreeSet<&str> = written
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    for k in ["alert", "dns", "flow", "http"] {
        assert!(kinds.contains(k), "Suricata wrote no {k} event: {log}");
    }
    let n = written.len();
    wait_for(
        Duration::from_secs(30),
        "every event through each transport",
        || {
            [
                "from-dgram.json",
                "from-stream.json",
                "from-file.json",
                "from-redis.json",
            ]
            .iter()
            .all(|f| r.lines(f).len() >= n)
        },
    );
    let (status, err) = stop(engine, Duration::from_secs(30));
    assert!(status.success(), "{err}");

    assert_same_events(
        "ipc:// (unix_dgram)",
        &written,
        parse_lines(&r.read_log("from-dgram.json")),
    );
    assert_same_events(
        "unix:// (unix_stream)",
        &written,
        parse_lines(&r.read_log("from-stream.json")),
    );
    assert_same_events(
        "tail:// (regular eve.json)",
        &written,
        parse_lines(&r.read_log("from-file.json")),
    );
    // Suricata's Redis output adds the sensor's name as `host` to each event
    let mut from_redis = parse_lines(&r.read_log("from-redis.json"));
    for e in &mut from_redis {
        assert!(e["host"].is_string(), "{e}");
        e.as_object_mut().unwrap().remove("host");
    }
    assert_same_events("redis:// (redis list)", &written, from_redis);
    let stats = r.final_stats();
    for input in ["dgram", "stream", "file", "redis"] {
        let s = &stats["inputs"][input];
        assert_eq!(s["events"], n as u64, "{input}: {s}");
        assert_eq!(s["malformed"], 0, "{input}: {s}");
        assert_eq!(s["truncated"], 0, "{input}: {s}");
    }
}
