//! `--check` finds what a start would find, all at once, as the user the engine runs as: the
//! unit's `ExecStartPre=... --check` and its `ExecStart` agree on every root below — both
//! refuse a broken one with the same exit code, naming the same culprit, and both accept a
//! sound one. Run as the unit runs them (as an unprivileged user, `User=`), and as root with
//! `-p`. Needs root (to become another user); says so and returns otherwise.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

const T: Duration = Duration::from_secs(30);
const NOBODY: u32 = 65534;

fn root_only() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    dragonfly_testkit::skip("not root: another user cannot be tested here");
    false
}

/// A root nobody can read, with a LOGDIR nobody owns; `input` is the input entry's fields
/// after the tag, `engine` the engine table's.
fn root(input: &str, output: &str, engine: &str) -> Root {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/pass.lua", PASS);
    r.config(&format!(
        r#"
inputs = {{ {{ tag="in", {input}, script="filter.lua", default_analyzer="pass" }} }}
analyzers = {{ {{ tag="pass", script="pass.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="{output}" }} }}
engine = {{ {engine} }}
"#
    ));
    std::fs::set_permissions(r.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(&r.logdir).unwrap();
    std::os::unix::fs::chown(&r.logdir, Some(NOBODY), Some(NOBODY)).unwrap();
    r
}

/// A root-only file holding one event.
fn root_only_file(p: &Path) {
    std::fs::write(p, "{\"seq\":1}\n").unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// How a run ended: its exit code, or None when it started and ran; and what it said.
fn outcome(r: &Root, extra: &[&str], as_nobody: bool) -> (Option<i32>, String) {
    let log = r.path().join(format!("run-{}.log", extra.join("")));
    let err = std::fs::File::create(&log).unwrap();
    let mut cmd = r.command(extra);
    cmd.stdout(Stdio::null()).stderr(err);
    if as_nobody {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let mut child = cmd.spawn().unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut code = None;
    wait_for(T, "an exit or the engine running", || {
        code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        code.is_some() || text().contains("dragonfly-mle running")
    });
    if code.is_none() {
        stop(child, T);
    }
    (code, text())
}

/// Who runs the engine.
#[derive(Clone, Copy, PartialEq)]
enum Who {
    /// The service user (`User=` in the unit): nobody here.
    Nobody,
    /// Root with `-p`.
    RootP,
    /// Root.
    Root,
}

/// Run `--check` and a start on `r` as `who` and compare.
fn agree(name: &str, r: &Root, culprit: &str, who: Who) {
    let (check_extra, start_extra): (&[&str], &[&str]) = if who == Who::RootP {
        (&["--check", "-p"], &["-p"])
    } else {
        (&["--check"], &[])
    };
    let (check, said) = outcome(r, check_extra, who == Who::Nobody);
    let (start, started) = outcome(r, start_extra, who == Who::Nobody);
    let check = check.expect("--check ends");
    eprintln!("{name}: --check {check}, start {start:?}");
    if culprit.is_empty() {
        assert_eq!(check, 0, "{name}: --check refused a sound root:\n{said}");
        assert_eq!(
            start, None,
            "{name}: the start refused a sound root:\n{started}"
        );
        return;
    }
    assert_ne!(check, 0, "{name}: --check passed:\n{said}");
    assert_eq!(
        Some(check),
        start,
        "{name}: --check and the start disagree\n--check:\n{said}\nstart:\n{started}"
    );
    assert!(
        said.contains(culprit),
        "{name}: --check does not name {culprit}:\n{said}"
    );
    assert!(
        started.contains(culprit),
        "{name}: the start does not name {culprit}:\n{started}"
    );
}

#[test]
fn check_and_start_agree_as_the_service_user() {
    if !root_only() {
        return;
    }
    // the checkpoint's directory cannot be created by the service user
    let r = root(
        r#"uri="tail://eve.json", options = { checkpoint = "state/eve.pos" }"#,
        "file://out.json",
        "",
    );
    agree("checkpoint dir not creatable", &r, "state", Who::Nobody);

    // it exists, and the service user cannot write it: the engine would never save it
    let r = root(
        r#"uri="tail://eve.json", options = { checkpoint = "state/eve.pos" }"#,
        "file://out.json",
        "",
    );
    std::fs::create_dir(r.path().join("state")).unwrap();
    agree("checkpoint dir not writable", &r, "state", Who::Nobody);

    // an input file the service user cannot read, read once or followed
    let r = root(r#"uri="file://in.json""#, "file://out.json", "");
    root_only_file(&r.path().join("in.json"));
    agree("input file not readable", &r, "in.json", Who::Nobody);
    let r = root(r#"uri="tail://eve.json""#, "file://out.json", "");
    root_only_file(&r.path().join("eve.json"));
    agree("followed file not readable", &r, "eve.json", Who::Nobody);

    // an output in a directory the service user cannot create
    let out = tempfile::tempdir().unwrap();
    std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let uri = format!("file://{}/sub/out.json", out.path().display());
    let r = root(r#"uri="tail://eve.json""#, &uri, "");
    agree("output dir not creatable", &r, "sub", Who::Nobody);
    assert!(!out.path().join("sub").exists());

    // an address no one can listen on: config.lua is wrong (exit 2 for both)
    let r = root(
        r#"uri="tail://eve.json""#,
        "file://out.json",
        r#"http = "127.0.0.1:99999""#,
    );
    agree("http address", &r, "127.0.0.1:99999", Who::Nobody);

    // and a sound root passes both
    let r = root(
        r#"uri="tail://eve.json", options = { checkpoint = "state/eve.pos" }"#,
        "file://out.json",
        "",
    );
    std::fs::create_dir(r.path().join("state")).unwrap();
    std::os::unix::fs::chown(r.path().join("state"), Some(NOBODY), Some(NOBODY)).unwrap();
    agree("sound", &r, "", Who::Nobody);
}

#[test]
fn check_and_start_agree_with_p() {
    if !root_only() {
        return;
    }
    // with -p the start opens as root, then runs as nobody: an existing checkpoint
    // directory nobody cannot write, and a followed file nobody cannot read again after a
    // rotation, are refused by both
    let r = root(
        r#"uri="tail://eve.json", options = { checkpoint = "state/eve.pos" }"#,
        "file://out.json",
        "",
    );
    std::fs::create_dir(r.path().join("state")).unwrap();
    agree("-p: checkpoint dir not writable", &r, "state", Who::RootP);
    let r = root(r#"uri="tail://eve.json""#, "file://out.json", "");
    root_only_file(&r.path().join("eve.json"));
    agree("-p: followed file not readable", &r, "eve.json", Who::RootP);
    // a checkpoint directory the start creates is handed over: fine
    let r = root(
        r#"uri="tail://eve.json", options = { checkpoint = "state/eve.pos" }"#,
        "file://out.json",
        "",
    );
    agree("-p: sound", &r, "", Who::RootP);
}

/// One `--check` says everything at once: config.lua's errors with each entry's real index
/// and tag, a missing input file of an entry after a broken one, a script that does not
/// load and another script's failing `setup()`.
#[test]
fn check_reports_every_problem_in_one_run() {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write(
        "analyzer/broken.lua",
        "function setup() end\nfunction loop(m) end end\n",
    );
    r.write(
        "analyzer/fails.lua",
        "function setup() error('no model here') end\nfunction loop(m) end\n",
    );
    r.config(
        r#"
inputs = {
  { tag="nouri", script="filter.lua", default_analyzer="broken" },
  { tag="missing", uri="file://missing.json", script="filter.lua", default_analyzer="broken" },
}
analyzers = {
  { tag="broken", script="broken.lua", default_analyzer="", default_output="out" },
  { tag="fails", script="fails.lua", default_analyzer="", default_output="out" },
}
outputs = { { tag="out", uri="file://out.json" } }
engine = { http = "127.0.0.1:99999" }
"#,
    );
    let out = r.command(&["--check"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "config.lua is wrong: {err}");
    for want in [
        "config error: config/config.lua: inputs[1] (tag \"nouri\"): field 'uri'",
        "config error: config/config.lua: engine: field 'http'",
        "start-up error: input 'missing' (file://missing.json)",
        "script error: analyzer/broken.lua: syntax error: analyzer/broken.lua:2:",
        "script error: analyzer/fails.lua",
        "no model here",
    ] {
        assert!(err.contains(want), "{want}:\n{err}");
    }
    // each said once
    assert_eq!(err.matches("99999").count(), 1, "{err}");
    // nothing was created
    assert!(!r.logdir.exists(), "--check created LOGDIR");
}

/// A missing parent directory outside LOGDIR: the start creates it and says so; --check
/// warns (exit 0), --check --strict refuses; neither --check creates it.
#[test]
fn an_output_directory_outside_logdir_is_a_warning_and_an_error_with_strict() {
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("new/dir");
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"seq\":1}\n");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        "file://out.json",
        &format!("file://{}/out.json", dir.display()),
    ));
    let out = r.command(&["--check"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: output 'out'")
            && err.contains(&outside.path().join("new").display().to_string()),
        "{err}"
    );
    assert!(stdout.contains("1 warnings"), "{stdout}");
    let out = r.command(&["--check", "--strict"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("(an error with --strict)"), "{err}");
    assert!(!dir.exists(), "--check created {}", dir.display());
    // the start makes it, and says so
    let out = r.run_to_eof(T);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("does not exist: the start creates it"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out.json"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

/// A state directory on a read-only file system (what `ProtectSystem=strict` makes of
/// everything outside `ReadWritePaths`), even as root: refused by both.
#[test]
fn check_and_start_agree_on_a_read_only_file_system() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    std::fs::create_dir(fs.dir.path().join("state")).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(fs.dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        dragonfly_testkit::skip("cannot remount a tmpfs read-only here");
        return;
    }
    for (name, ck) in [("exists", "state/eve.pos"), ("to create", "new/eve.pos")] {
        let ck = fs.dir.path().join(ck);
        let r = root(
            &format!(
                r#"uri="tail://eve.json", options = {{ checkpoint = "{}" }}"#,
                ck.display()
            ),
            "file://out.json",
            "",
        );
        agree(
            &format!("read-only checkpoint dir {name}"),
            &r,
            "Read-only file system",
            Who::Root,
        );
    }
}
