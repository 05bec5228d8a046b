//! The live pipeline page (`engine.http`, `/`) in a real headless browser: Chromium driven by
//! playwright-core (tests/browser/live_page.js). On a copy of examples/triage whose HTTP
//! analyzer also sends every event to a misspelled output: the page shows every node, an
//! edge for every hand-off the engine counted (the filter's routing in code included) and the
//! misspelled tag as a red edge to an "unknown" node, its numbers move while events flow, a
//! planted script error shows as a group ("N × script:line"), sparklines draw the engine's
//! history, and the dark theme follows the system's.
//! Screenshots (light and dark) are kept in target/test-artifacts/. Runs when
//! DRAGONFLY_BROWSER_TESTS=1 (scripts/test sets it and installs Chromium and playwright-core);
//! says that it skipped otherwise.

use crate::common::*;
use dragonfly_testkit::free_port;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[test]
fn the_live_page_shows_the_triage_pipeline_and_its_numbers_move() {
    if std::env::var("DRAGONFLY_BROWSER_TESTS").as_deref() != Ok("1") {
        dragonfly_testkit::skip(
            "set DRAGONFLY_BROWSER_TESTS=1 (scripts/test does) to run the browser test",
        );
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let playwright = repo.join("target/services/npm/node_modules/playwright-core");
    assert!(
        playwright.is_dir(),
        "{}: missing (scripts/test installs it)",
        playwright.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let root = copy_example("triage");
    // a misspelled output: its events are dropped, and the page must show where they went
    let http = root.path().join("analyzer/http-scan.lua");
    let mut script = std::fs::read_to_string(&http).unwrap();
    script.push_str(
        "\nlocal checked_loop, seen = loop, 0\nfunction loop(msg)\n  dragonfly.output_event(\"alrets\", msg)\n  seen = seen + 1\n  if seen % 50 == 0 then return msg.no_such_field.hostname end\n  return checked_loop(msg)\nend\n",
    );
    std::fs::write(&http, script).unwrap();
    let sock = dir.path().join("in.sock");
    let port = free_port();
    let engine = Command::new(BIN)
        .arg("-r")
        .arg(root.path())
        .arg("-l")
        .arg(dir.path().join("logs"))
        .env("DRAGONFLY_EVE", format!("unix://{}", sock.display()))
        .env("DRAGONFLY_HTTP", format!("127.0.0.1:{port}"))
        .env("DRAGONFLY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(T, "the socket", || sock.exists());
    wait_for(T, "the listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    // events keep flowing while the browser watches: the sample, paced, over and over
    let sample: Vec<String> = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(repo.join("examples/data/eve-sample.json.gz")).unwrap(),
    ))
    .lines()
    .map(Result::unwrap)
    .collect();
    let stop_sending = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop_sending = stop_sending.clone();
        let sock = sock.clone();
        std::thread::spawn(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            'outer: loop {
                for chunk in sample.chunks(200) {
                    if stop_sending.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    for l in chunk {
                        writeln!(s, "{l}").unwrap();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };

    // every node of the configured pipeline
    let (code, body) = request(port, "GET", "/api/pipeline");
    assert_eq!(code, 200, "{body}");
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut ids = Vec::new();
    for i in p["inputs"].as_array().unwrap() {
        ids.push(format!("input:{}", i["tag"].as_str().unwrap()));
        ids.push(format!("filter:{}", i["tag"].as_str().unwrap()));
    }
    for (list, kind) in [("analyzers", "analyzer"), ("outputs", "output")] {
        for x in p[list].as_array().unwrap() {
            ids.push(format!("{kind}:{}", x["tag"].as_str().unwrap()));
        }
    }
    // one input (and its filter), 12 analyzers, 4 outputs (findings, reports, alerts, archive)
    assert_eq!(ids.len(), 2 + 12 + 4, "{ids:?}");

    // the edges the engine counted once events flowed: the filter's routing in code, the
    // chains, the outputs and the misspelled tag
    let must = [
        "input:eve>filter:eve",
        "filter:eve>analyzer:dga",
        "filter:eve>analyzer:talkers",
        "filter:eve>analyzer:cert",
        "filter:eve>analyzer:http",
        "filter:eve>analyzer:triage",
        "analyzer:dga>analyzer:tunnel",
        "filter:eve>analyzer:nx",
        "analyzer:talkers>analyzer:scan",
        "analyzer:scan>analyzer:outlier",
        "analyzer:outlier>analyzer:beacon",
        "analyzer:cert>analyzer:ja4",
        "analyzer:ja4>analyzer:reputation",
        "analyzer:triage>output:alerts",
        "analyzer:triage>output:archive",
        "analyzer:http>unknown-output:alrets",
    ];
    let mut edges = Vec::new();
    wait_for(T, "every edge counted", || {
        let (_, body) = request(port, "GET", "/api/stats");
        let s: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        edges = s["edges"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|e| e["events"].as_u64() > Some(0))
                    .map(|e| {
                        format!(
                            "{}>{}",
                            e["from"].as_str().unwrap(),
                            e["to"].as_str().unwrap()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        must.iter().all(|m| edges.iter().any(|e| e == m))
    });
    let artifacts = repo.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let _ = std::fs::remove_file(artifacts.join("live-page.png"));
    let _ = std::fs::remove_file(artifacts.join("live-page-dark.png"));

    let browser = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/live_page.js"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .args(&ids)
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("EDGES", edges.join(" "))
        .env("UNKNOWN_EDGE", "analyzer:http>unknown-output:alrets")
        .env("ERROR_GROUP", "analyzer/http-scan.lua:")
        .env("SCREENSHOT", artifacts.join("live-page.png"))
        .env("SCREENSHOT_DARK", artifacts.join("live-page-dark.png"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(browser, Duration::from_secs(120));
    stop_sending.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let (status, err) = stop(engine, T);
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser check failed: {seen}\n{}\n--- engine:\n{err}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("live page: {seen}");
    // the input's state as the page shows it
    assert!(seen.contains("\"state\":\"listening\""), "{seen}");
    // scripts failed (the planted error): exit 3 says so
    assert_eq!(status.code(), Some(3), "{err}");
    for shot in ["live-page.png", "live-page-dark.png"] {
        let len = std::fs::metadata(artifacts.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
}
