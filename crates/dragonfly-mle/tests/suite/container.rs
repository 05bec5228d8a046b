//! The container image (Dockerfile's runtime stage) with podman, on a binary built here (no
//! registry is reachable for the Rust image: BIN_FROM=prebuilt) and a local Debian base
//! (`scripts/container-base` makes it): a container follows the eve.json of a mounted log
//! directory as the original's `docker run -v ...:/opt/dragonfly/log dragonfly` did, writes its
//! results to a mounted volume as a non-root user, and stops cleanly on `podman stop`
//! (SIGTERM: drained, exit 0). Skipped, saying so, where podman or the base image is missing.

use crate::common::*;
use std::process::Command;
use std::time::Duration;

const BASE: &str = "localhost/debian:bookworm-slim";
const IMAGE: &str = "localhost/dragonfly-mle:test";

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"])
        .args(args)
        .output()
        .unwrap()
}

/// Removes the container, the image and the build's intermediate (untagged) images,
/// whatever happens.
struct Cleanup(String, &'static str);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", &self.0]);
        let _ = podman(&["rmi", "-f", self.1]);
        let _ = podman(&["image", "prune", "-f"]);
    }
}

/// One podman build at a time: a test's clean-up prunes the untagged images another build
/// may be making.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn have_podman_and_base() -> bool {
    let have = |args: &[&str]| {
        Command::new("podman")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have(&["--version"]) || !have(&["image", "exists", BASE]) {
        dragonfly_testkit::skip(&format!(
            "needs podman and the local base image {BASE} (scripts/container-base)"
        ));
        return false;
    }
    true
}

#[test]
fn the_container_follows_a_mounted_eve_json_and_stops_cleanly() {
    if !have_podman_and_base() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // the binary and the module this build made, stripped, as the build context's dist/
    let dist = repo.join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    // where Cargo put this build (target/release, or under CARGO_TARGET_DIR)
    let release = std::path::Path::new(env!("CARGO_BIN_EXE_dragonfly-mle"))
        .parent()
        .unwrap();
    for f in ["dragonfly-mle", "libdragonfly_redisml.so"] {
        let st = Command::new("strip")
            .arg("-o")
            .arg(dist.join(f))
            .arg(release.join(f))
            .status()
            .unwrap();
        assert!(st.success(), "strip {f}");
    }
    let name = format!("dragonfly-test-{}", std::process::id());
    let _cleanup = Cleanup(name.clone(), IMAGE);
    let out = Command::new("podman")
        .args(["--runtime", "runc", "--cgroup-manager=cgroupfs", "build"])
        .args(["--build-arg", "BIN_FROM=prebuilt"])
        .args(["--build-arg", &format!("BASE_IMAGE={BASE}")])
        .args(["-t", IMAGE])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    follows_a_mounted_eve_json_and_stops_cleanly(IMAGE, &name);
}

/// The whole Dockerfile, its build stage included, as `docker build .` runs it: on the local
/// Debian base with this machine's Rust toolchain mounted into the build
/// (scripts/container-build), from the committed tree; its image then runs as above.
#[test]
fn the_whole_dockerfile_builds_from_source_and_its_image_runs() {
    const BUILT: &str = "localhost/dragonfly-mle:built-test";
    if !have_podman_and_base() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let name = format!("dragonfly-built-{}", std::process::id());
    let _cleanup = Cleanup(name.clone(), BUILT);
    let out = Command::new(repo.join("scripts/container-build"))
        .arg(BUILT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/container-build: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    follows_a_mounted_eve_json_and_stops_cleanly(BUILT, &name);
}

/// Run `image` as `name` on a mounted log directory to which Suricata's eve.json is then
/// written, and a mounted results directory: every event comes out, written by the image's
/// user (10001); `podman stop` drains and the engine exits 0.
fn follows_a_mounted_eve_json_and_stops_cleanly(image: &str, name: &str) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let results = dir.path().join("results");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::create_dir_all(&results).unwrap();
    // the container's user (uid 10001) writes the results
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&results, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = podman(&[
        "run",
        "-d",
        "--name",
        name,
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "-v",
        &format!("{}:/opt/dragonfly/log:ro", log.display()),
        "-v",
        &format!("{}:/opt/dragonfly/results", results.display()),
        image,
    ]);
    assert!(out.status.success(), "podman run: {out:?}");
    // Suricata writes its eve.json after the engine started
    let sample = repo.join("examples/quickstart/data/eve-sample.json");
    let n = std::fs::read_to_string(&sample).unwrap().lines().count();
    std::fs::copy(&sample, log.join("eve.json")).unwrap();
    let lines = || {
        std::fs::read_to_string(results.join("eve-mle.json"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_for(
        Duration::from_secs(60),
        "every event in the results",
        || lines() == n,
    );
    let stop = podman(&["stop", "-t", "30", name]);
    assert!(stop.status.success(), "{stop:?}");
    let code = podman(&["inspect", name, "--format", "{{.State.ExitCode}}"]);
    let logs = podman(&["logs", name]);
    assert_eq!(
        String::from_utf8_lossy(&code.stdout).trim(),
        "0",
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_eq!(lines(), n);
    // written as the image's user, not root
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(results.join("eve-mle.json"))
        .unwrap()
        .uid();
    assert_eq!(owner, 10001);
    let text = String::from_utf8_lossy(&logs.stderr).into_owned();
    assert!(
        text.contains("stopping: inputs stop, queued events are drained"),
        "{text}"
    );
}
