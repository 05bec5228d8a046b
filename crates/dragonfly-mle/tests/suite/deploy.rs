//! The files for running the engine as a service (deploy/): the systemd unit passes
//! `systemd-analyze verify`; the logrotate snippet rotates a running engine's output, which
//! reopens its file on SIGHUP (every line in one file or the other, once, in order); and
//! docs/suricata.md shows the eve-log snippets the live Suricata test runs.

use crate::common::*;
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
        dragonfly_testkit::skip("systemd-analyze is not installed");
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
        // more descriptors than systemd's default 1024 (the HTTP listener alone may hold 256)
        "LimitNOFILE=65536",
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
        dragonfly_testkit::skip("logrotate is not installed (scripts/test installs it)");
        return;
    }
    let r = Root::passthrough("unix://in.sock");
    let child = r.spawn(&[]);
    let sock = r.path().join("in.sock");
    wait_for(T, "the socket", || sock.exists());
    // one connection for the whole run, as Suricata's unix_stream output keeps: the engine
    // keeps the order of one stream (separate connections are read as separate tasks, so
    // their lines may interleave either way)
    let mut stream = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let mut send = move |range: std::ops::Range<u32>| {
        use std::io::Write;
        for i in range {
            writeln!(stream, "{{\"seq\":{i}}}").unwrap();
        }
        stream.flush().unwrap();
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
    // the engine reopens on the SIGHUP logrotate sent: until it has, lines still go to the
    // renamed file (nothing is lost either way); keep sending until one lands in the new one
    let mut next = 100;
    wait_for(T, "a line in the new file", || {
        send(next..next + 1);
        next += 1;
        std::thread::sleep(Duration::from_millis(20));
        !r.lines("out.json").is_empty()
    });
    send(next..next + 100);
    let total = next + 100;
    wait_for(T, "every line in one file or the other", || {
        r.lines("out.json").len() + r.lines("out.json.1").len() == total as usize
    });
    drop(send); // the connection closes, as when Suricata stops
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    let seq = |l: &String| -> u32 {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
            .as_u64()
            .unwrap() as u32
    };
    let old: Vec<u32> = r.lines("out.json.1").iter().map(seq).collect();
    let new: Vec<u32> = r.lines("out.json").iter().map(seq).collect();
    // in order, each once, the rotated file first
    let all: Vec<u32> = old.iter().chain(&new).copied().collect();
    assert_eq!(all, (0..total).collect::<Vec<_>>());
    assert!(
        new.len() >= 100,
        "what came after the reopen is in the new file"
    );
}

/// docs/suricata.md shows each eve-log snippet of deploy/suricata/ exactly as the live
/// Suricata test runs it.
#[test]
fn the_suricata_doc_shows_the_snippets_the_live_test_runs() {
    let doc = std::fs::read_to_string(repo().join("docs/suricata.md")).unwrap();
    let dir = repo().join("deploy/suricata");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            doc.contains(&format!("```yaml\n{text}```")),
            "{} is not shown verbatim",
            path.display()
        );
        n += 1;
    }
    assert_eq!(n, 4);
}

/// `scripts/install PREFIX` (on the binary and module `cargo build --release` made): a
/// stripped binary that runs the installed quick start, the sensor root the unit runs, the Redis module redis-server loads,
/// the man page man(1) renders, completions, the unit pointing at PREFIX, logrotate.
#[test]
fn scripts_install_puts_a_working_engine_under_a_prefix() {
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    let out = Command::new(repo().join("scripts/install"))
        .arg(p)
        .env("NO_BUILD", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bin = p.join("bin/dragonfly-mle");
    let size = std::fs::metadata(&bin).unwrap().len();
    assert!(size < 40 << 20, "stripped: {size} bytes");
    let v = Command::new(&bin).arg("-V").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("dragonfly-mle "));
    // the quick start, installed to run by hand
    let logs = tempfile::tempdir().unwrap();
    let run = Command::new(&bin)
        .arg("-r")
        .arg(p.join("share/dragonfly-mle/quickstart"))
        .arg("-l")
        .arg(logs.path())
        .arg("--exit-on-eof")
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let out = std::fs::read_to_string(logs.path().join("eve-mle.json")).unwrap();
    assert!(
        out.lines().count() > 100 && out.contains("\"event_count\":"),
        "{out}"
    );
    // the module loads into a real redis-server
    let module = p.join("lib/dragonfly-redisml.so");
    let server =
        dragonfly_testkit::RedisServer::start_with(&["--loadmodule", module.to_str().unwrap()]);
    let list = Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "MODULE", "LIST"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("redisml"),
        "{list:?}"
    );
    for f in [
        "share/man/man1/dragonfly-mle.1",
        "share/bash-completion/completions/dragonfly-mle",
        "share/zsh/site-functions/_dragonfly-mle",
        "share/fish/vendor_completions.d/dragonfly-mle.fish",
        "etc/logrotate.d/dragonfly-mle",
    ] {
        assert!(p.join(f).is_file(), "{f}");
    }
    // the root the unit runs follows Suricata's eve.json, its position in the unit's
    // StateDirectory, with the quick start's scripts
    let config = std::fs::read_to_string(p.join("dragonfly-mle/config/config.lua")).unwrap();
    assert!(
        config.contains(r#"uri="tail:///var/log/suricata/eve.json""#)
            && config.contains(r#"checkpoint = "/var/lib/dragonfly-mle/eve.checkpoint""#),
        "{config}"
    );
    for f in ["filter/filter.lua", "analyzer/hello-world.lua"] {
        assert!(p.join("dragonfly-mle").join(f).is_file(), "{f}");
    }
    let unit = std::fs::read_to_string(p.join("lib/systemd/system/dragonfly-mle.service")).unwrap();
    assert!(
        unit.contains(&format!(
            "ExecStart={} -r {}",
            bin.display(),
            p.join("dragonfly-mle").display()
        )),
        "{unit}"
    );
    // installing again keeps the root (a user's scripts), the quick start goes beside it
    let again = Command::new(repo().join("scripts/install"))
        .arg(p)
        .env("NO_BUILD", "1")
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(p.join("dragonfly-mle.new/config/config.lua").is_file());
}
