//! The files for running the engine as a service (deploy/): the systemd unit passes
//! `systemd-analyze verify`, and the logrotate snippet rotates a running engine's output,
//! which reopens its file on SIGHUP (nothing lost, nothing written to the rotated file after).

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/dragonfly-mle.service"))
        .unwrap()
        .replace("/usr/local/bin/dragonfly-mle", BIN);
    for want in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/log/dragonfly-mle",
        "RuntimeDirectory=dragonfly-mle",
        "User=dragonfly",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "ExecReload=/bin/kill -USR2 $MAINPID",
    ] {
        assert!(unit.contains(want), "{want}");
    }
    std::fs::write(dir.path().join("dragonfly-mle.service"), &unit).unwrap();
    // its Documentation= names the man page: put the generated one where man(1) finds it
    std::fs::create_dir_all(dir.path().join("man/man1")).unwrap();
    let page = Command::new(BIN).arg("man").output().unwrap().stdout;
    std::fs::write(dir.path().join("man/man1/dragonfly-mle.1"), page).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("dragonfly-mle.service"))
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logrotate_rotates_a_running_engines_output() {
    if Command::new("logrotate").arg("--version").output().is_err() {
        eprintln!("skipped: logrotate is not installed (scripts/test installs it)");
        return;
    }
    let r = Root::passthrough("unix://in.sock");
    let child = r.spawn(&[]);
    let sock = r.path().join("in.sock");
    wait_for(T, "the socket", || sock.exists());
    let send = |range: std::ops::Range<u32>| {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        for i in range {
            writeln!(s, "{{\"seq\":{i}}}").unwrap();
        }
    };
    send(0..100);
    wait_for(T, "the first 100", || r.lines("out.json").len() == 100);
    // the shipped snippet, pointed at this engine's log directory and pid
    let conf = std::fs::read_to_string(repo().join("deploy/logrotate/dragonfly-mle"))
        .unwrap()
        .replace("/var/log/dragonfly-mle", &r.logdir.display().to_string())
        .replace(
            "systemctl kill --signal=HUP dragonfly-mle.service",
            &format!("kill -HUP {}", child.id()),
        )
        .replace("create 0640 dragonfly dragonfly", "create 0640")
        .replace("    compress\n", "")
        .replace("    delaycompress\n", "");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf"), conf).unwrap();
    let out = Command::new("logrotate")
        .args(["-f", "-s"])
        .arg(dir.path().join("state"))
        .arg(dir.path().join("conf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(r.lines("out.json.1").len(), 100, "the rotated file");
    send(100..200);
    wait_for(T, "the next 100 in the new file", || {
        r.lines("out.json").len() == 100
    });
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    assert_eq!(
        r.lines("out.json.1").len(),
        100,
        "nothing written to the old file after"
    );
    assert!(r.lines("out.json")[0].contains("\"seq\":100"));
}
