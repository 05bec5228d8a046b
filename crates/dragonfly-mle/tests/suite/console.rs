//! What the console says: colours on a terminal only and never with NO_COLOR, JSON lines with
//! `--log-format json`, and with `-v` a rate line every few seconds.

use crate::common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn small_file_root() -> Root {
    let r = Root::passthrough("file://in.json");
    let lines: String = (0..100).map(|i| format!("{{\"seq\":{i}}}\n")).collect();
    r.write("in.json", &lines);
    r
}

/// Run under a pseudo-terminal (`script`), as a person at a console would; all it printed.
fn on_a_terminal(r: &Root, no_color: Option<&str>) -> String {
    let cmd = format!(
        "{} -r {} -l {} --exit-on-eof",
        BIN,
        r.path().display(),
        r.logdir.display()
    );
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"]);
    c.env("DRAGONFLY_LOG", "info");
    match no_color {
        Some(v) => c.env("NO_COLOR", v),
        None => c.env_remove("NO_COLOR"),
    };
    let out = wait_output(
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        T,
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `text` holds an SGR (colour, bold...) escape: ESC [ digits/semicolons m. Cursor
/// moves (the progress line's redraws) are not colours.
fn has_colour(text: &str) -> bool {
    text.split("\x1b[").skip(1).any(|rest| {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(rest.len());
        rest[end..].starts_with('m')
    })
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let r = small_file_root();
    let tty = on_a_terminal(&r, None);
    assert!(tty.contains("input 'in'"), "{tty}");
    assert!(has_colour(&tty), "a terminal gets colours: {tty}");
    let _ = std::fs::remove_dir_all(&r.logdir);
    let plain = on_a_terminal(&r, Some("1"));
    assert!(plain.contains("input 'in'"), "{plain}");
    assert!(!has_colour(&plain), "NO_COLOR: {plain}");
    // a pipe never gets them
    let _ = std::fs::remove_dir_all(&r.logdir);
    let out = r.run_to_eof(T);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("input 'in'") && !err.contains("\x1b["),
        "{err}"
    );
}

#[test]
fn log_format_json_prints_one_object_per_line() {
    let r = small_file_root();
    let out = wait_output(
        r.command(&["--exit-on-eof", "--log-format", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        T,
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let message = |l: &serde_json::Value| l["fields"]["message"].as_str().unwrap_or("").to_string();
    assert!(
        lines.iter().any(|l| message(l).starts_with("input 'in'")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| message(l).starts_with("dragonfly-mle: done: 100 input events")),
        "{err}"
    );
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
}

#[test]
fn verbose_prints_rate_lines_while_events_flow() {
    let r = Root::passthrough("unix://in.sock");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!("{cfg}\nengine = {{ stats_interval = 0.2 }}\n"));
    let child = r
        .command(&["-v"])
        .env_remove("DRAGONFLY_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sock = r.path().join("in.sock");
    wait_for(T, "the socket", || sock.exists());
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        for i in 0..2000 {
            writeln!(s, "{{\"seq\":{i}}}").unwrap();
        }
    }
    wait_for(T, "every event", || r.lines("out.json").len() == 2000);
    // a rate line comes every 0.2 s here (the stats interval, when under 5 s)
    std::thread::sleep(Duration::from_millis(600));
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    let rates: Vec<&str> = err.lines().filter(|l| l.contains("rate: in ")).collect();
    assert!(rates.len() >= 2, "{err}");
    assert!(
        rates
            .iter()
            .any(|l| l.contains("so far: in 2000, out 2000")),
        "{err}"
    );
}

#[test]
fn a_run_over_files_shows_progress_on_a_terminal_only() {
    let r = Root::passthrough("file://in.json");
    let lines: String = (0..20_000).map(|i| format!("{{\"seq\":{i}}}\n")).collect();
    r.write("in.json", &lines);
    let tty = on_a_terminal(&r, Some("1"));
    assert!(
        tty.contains("100%") && tty.contains("20000 events in, 20000 out, 0 errors"),
        "{tty}"
    );
    let _ = std::fs::remove_dir_all(&r.logdir);
    let out = r.run_to_eof(T);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("events in,") && !err.contains("100%"),
        "{err}"
    );
}
