//! A `file://` output on a full disk: never a torn line, nothing dropped, the pipeline waits
//! (backpressure) and resumes when space returns, and the stats count exactly the lines in the
//! file. Runs on a small tmpfs the test mounts (root only; skipped with a message otherwise).

use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_full_disk_holds_lines_and_resumes_without_tearing_or_losing_any() {
    let Some(fs) = Tmpfs::mount("2m") else {
        return;
    };
    let out = fs.dir.path().join("out.json");
    let filler = fs.dir.path().join("filler");
    // leave ~256 KiB free: the output (about 1.3 MB) cannot fit until the filler goes
    std::fs::write(&filler, vec![b'f'; 2 * 1024 * 1024 - 256 * 1024]).unwrap();

    let r = Root::passthrough("file://in.json");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        r#"uri="file://out.json""#,
        &format!(r#"uri="file://{}""#, out.display()),
    ));
    let n = 6000;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "{{\"seq\":{i},\"pad\":\"{}\"}}\n",
            "p".repeat(200)
        ));
    }
    r.write("in.json", &text);
    let child = r
        .command(&["--exit-on-eof"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // the disk fills: the engine waits, the file never ends in a torn line
    wait_for(LIMIT, "the output to stall on the full disk", || {
        r.log("dragonfly-mle.log").exists()
            && r.read_log("dragonfly-mle.log")
                .contains("holding its lines")
    });
    for _ in 0..5 {
        let text = std::fs::read(&out).unwrap_or_default();
        assert!(
            text.is_empty() || text.ends_with(b"\n"),
            "a torn last line on the full disk"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // space returns
    std::fs::remove_file(&filler).unwrap();
    let output = wait_output(child, LIMIT);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{err}");

    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(
        seqs(&lines),
        (0..n).collect::<Vec<u64>>(),
        "every line, once"
    );
    let s = r.final_stats();
    assert_eq!(s["outputs"]["out"]["events"], n, "{s}");
    assert_eq!(s["outputs"]["out"]["dropped"], 0, "{s}");
    assert!(s["outputs"]["out"]["errors"].as_u64().unwrap() >= 1, "{s}");
    assert!(r
        .read_log("dragonfly-mle.log")
        .contains("writing again after"));
}
