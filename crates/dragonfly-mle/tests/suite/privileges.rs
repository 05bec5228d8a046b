//! `-p` and the files the engine writes: nothing is opened or handed over through a link that
//! an unprivileged user could plant; state directories are made ready before the drop, or
//! start-up names the path that would fail. Tests that need root say so and return otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

fn root_only() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    dragonfly_testkit::skip("not root: -p cannot be tested here");
    false
}

/// A root that the user nobody can search (for -p runs), reading in.json.
fn root_for_nobody() -> Root {
    let r = Root::passthrough("file://in.json");
    std::fs::set_permissions(r.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    r.write("in.json", "{\"seq\":1}\n");
    r
}

#[test]
fn a_planted_symlink_in_a_log_directory_is_refused_and_its_target_untouched() {
    if !root_only() {
        return;
    }
    let r = root_for_nobody();
    // the victim: a root-only file elsewhere
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("shadow");
    std::fs::write(&victim, "secret\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    // a log directory owned by nobody, where nobody planted a link as the engine log
    let logdir = tempfile::tempdir().unwrap();
    let l = logdir.path().join("L");
    std::fs::create_dir(&l).unwrap();
    std::os::unix::fs::chown(&l, Some(NOBODY), Some(NOBODY)).unwrap();
    let link = l.join("dragonfly-mle.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();

    let out = std::process::Command::new(BIN)
        .args(["-r"])
        .arg(r.path())
        .arg("-l")
        .arg(&l)
        .args(["-p", "--exit-on-eof"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("dragonfly-mle.log: is a symbolic link; refusing to write through it"),
        "{err}"
    );
    let m = std::fs::metadata(&victim).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (0, 0, 0o600));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
}

#[test]
fn a_planted_symlink_as_an_output_is_refused_without_p_too() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"seq\":1}\n");
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    std::fs::create_dir_all(&r.logdir).unwrap();
    std::os::unix::fs::symlink(&victim, r.log("out.json")).unwrap();
    let out = r.run_to_eof(LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("out.json: is a symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
}

#[test]
fn a_fifo_as_an_output_is_refused_not_waited_on() {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"seq\":1}\n");
    std::fs::create_dir_all(&r.logdir).unwrap();
    nix::unistd::mkfifo(
        &r.log("out.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let out = r.run_to_eof(LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("out.json: "), "{err}");
}

#[test]
fn under_p_outputs_logs_and_a_new_state_directory_belong_to_nobody() {
    if !root_only() {
        return;
    }
    let r = root_for_nobody();
    // the store snapshot goes into a directory that does not exist yet
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "{cfg}\nengine = {{ store_snapshot = \"state/store.snap\" }}\n"
    ));
    let out = r.command(&["-p", "--exit-on-eof"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for f in [
        r.log("out.json"),
        r.log("dragonfly-mle.log"),
        r.log("dragonfly-mle-stats.log"),
        r.log("dead-letter.json"),
        r.logdir.clone(),
        r.path().join("state"),
    ] {
        let m = std::fs::symlink_metadata(&f).unwrap();
        assert_eq!(m.uid(), NOBODY, "{}", f.display());
    }
    // the snapshot was written as nobody at exit
    assert!(r.path().join("state/store.snap").exists(), "{err}");
    // ROOT itself stays root's
    assert_eq!(std::fs::metadata(r.path()).unwrap().uid(), 0);
}

#[test]
fn under_p_a_state_directory_nobody_cannot_write_is_named_at_start() {
    if !root_only() {
        return;
    }
    let r = root_for_nobody();
    std::fs::create_dir(r.path().join("state")).unwrap();
    std::fs::set_permissions(
        r.path().join("state"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "{cfg}\nengine = {{ store_snapshot = \"state/store.snap\" }}\n"
    ));
    let out = r.command(&["-p", "--exit-on-eof"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("engine.store_snapshot: directory")
            && err.contains("is not writable by the unprivileged user"),
        "{err}"
    );
}

#[test]
fn a_missing_checkpoint_directory_is_created_and_the_checkpoint_saved() {
    let r = Root::passthrough("tail://in.json");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        r#"default_analyzer="pass" }"#,
        r#"default_analyzer="pass", options = { checkpoint = "state/tail.ckpt" } }"#,
    ));
    r.write("in.json", "");
    let child = r.spawn(&[]);
    wait_for(LIMIT, "the state directory", || {
        r.path().join("state").is_dir()
    });
    r.write("in.json", "{\"seq\":1}\n{\"seq\":2}\n");
    wait_for(LIMIT, "two lines out", || {
        r.log("out.json").exists() && r.lines("out.json").len() == 2
    });
    wait_for(LIMIT, "the checkpoint", || {
        r.path().join("state/tail.ckpt").exists()
    });
    let (status, err) = stop(child, LIMIT);
    assert!(status.success(), "{err}");
}

#[test]
fn under_c_a_path_outside_root_is_refused_by_name() {
    if !root_only() {
        return;
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let r = Root::passthrough("tail://in.json");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    let out = elsewhere.path().join("out.json");
    r.config(&cfg.replace(
        r#"uri="file://out.json""#,
        &format!(r#"uri="file://{}""#, out.display()),
    ));
    r.write("in.json", "");
    let o = r.command(&["-c"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "config/config.lua: outputs[1] (tag \"out\"): file {}: with -c it must be under ROOT",
            out.display()
        )),
        "{err}"
    );
    // a log directory outside ROOT likewise
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{}\n");
    let o = std::process::Command::new(BIN)
        .arg("-r")
        .arg(r.path())
        .arg("-l")
        .arg(elsewhere.path())
        .args(["-c", "--exit-on-eof"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "{}: with -c it must be under ROOT",
            elsewhere.path().join("out.json").display()
        )),
        "{err}"
    );
    assert!(
        !elsewhere.path().join("out.json").exists(),
        "nothing written outside ROOT"
    );
}

#[test]
fn under_c_rotation_and_sighup_keep_working_inside_root() {
    if !root_only() {
        return;
    }
    let r = Root::passthrough("tail://eve.json");
    r.write("analyzer/pass.lua", PASS_READY);
    std::fs::set_permissions(r.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    r.write("eve.json", "");
    let child = r.spawn(&["-c"]);
    wait_for(LIMIT, "start-up", || r.path().join("ready").exists());
    let append = |text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(r.path().join("eve.json"))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    append("{\"seq\":1}\n");
    wait_for(LIMIT, "line 1", || {
        r.log("out.json").exists() && r.lines("out.json").len() == 1
    });
    // the output is rotated (renamed, then SIGHUP: reopened under its name in LOGDIR) ...
    std::fs::rename(r.log("out.json"), r.log("out.json.1")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for(LIMIT, "the output reopened", || r.log("out.json").exists());
    // ... and the input (renamed, recreated)
    std::fs::rename(r.path().join("eve.json"), r.path().join("eve.json.1")).unwrap();
    append("{\"seq\":2}\n");
    wait_for(LIMIT, "line 2 in the new output file", || {
        r.log("out.json").exists() && r.lines("out.json").len() == 1
    });
    append("{\"seq\":3}\n");
    wait_for(LIMIT, "line 3", || r.lines("out.json").len() == 2);
    let (status, err) = stop(child, LIMIT);
    assert!(status.success(), "{err}");
    assert_eq!(seqs(&r.lines("out.json")), vec![2, 3]);
    assert_eq!(seqs(&r.lines("out.json.1")), vec![1]);
    // nothing was re-created under ROOT by a path meant for outside the chroot
    let stray = r.path().join(r.logdir.strip_prefix("/").unwrap());
    assert!(!stray.exists(), "{}", stray.display());
}

#[test]
fn under_p_an_existing_shared_log_directory_is_not_given_away() {
    if !root_only() {
        return;
    }
    let r = root_for_nobody();
    // like /var/log: root's, and others' files live there too
    std::fs::create_dir_all(&r.logdir).unwrap();
    std::fs::set_permissions(&r.logdir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(r.logdir.join("syslog"), "other\n").unwrap();
    let out = r.command(&["-p", "--exit-on-eof"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(std::fs::metadata(&r.logdir).unwrap().uid(), 0, "{err}");
    assert_eq!(std::fs::metadata(r.logdir.join("syslog")).unwrap().uid(), 0);
    // the engine's own files are handed over, and it says what rotation needs
    assert_eq!(std::fs::metadata(r.log("out.json")).unwrap().uid(), NOBODY);
    assert!(
        err.contains("is not writable by the unprivileged user"),
        "{err}"
    );
}
