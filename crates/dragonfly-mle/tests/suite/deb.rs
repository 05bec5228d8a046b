//! The Debian package (`scripts/deb`, cargo-deb) in containers made from a bare local Debian
//! base (`scripts/container-base`):
//! - installed on a bare Debian: `dragonfly-mle -V`, the quick start from the packaged example
//!   root, `man dragonfly-mle`, and the Redis module in place;
//! - the sensor as shipped: a Debian that runs systemd as PID 1 (podman `--systemd=always`)
//!   installs the package, a Suricata-like writer appends to /var/log/suricata/eve.json, and
//!   `systemctl start dragonfly-mle` runs the unit as shipped (its `--check`, its hardening,
//!   its own user) on the packaged root: every appended event comes out once, through
//!   `systemctl reload`, a logrotate of eve.json and one of the engine's own output, and
//!   `systemctl stop` drains.
//!
//! Skipped, saying so, where cargo-deb, podman or the base images are missing (scripts/test
//! makes them where podman is installed).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BASE: &str = "localhost/debian:bookworm-slim";
const SYSTEMD: &str = "localhost/debian-systemd:bookworm";

fn works(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the tools and `image` are here (saying what is missing when not).
fn can_run(image: &str) -> bool {
    if !works("cargo", &["deb", "--version"])
        || !works("podman", &["--version"])
        || !works("podman", &["image", "exists", image])
    {
        dragonfly_testkit::skip(&format!(
            "needs cargo-deb, podman and {image} (scripts/container-base)"
        ));
        return false;
    }
    true
}

/// The target directory's debian/ (target/debian, or under CARGO_TARGET_DIR), with the package
/// scripts/deb made (once for the tests of this file).
fn debs() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Command::new(repo().join("scripts/deb"))
            .env("NO_BUILD", "1")
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("scripts/deb: {out:?}"))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    // <target>/release/dragonfly-mle -> <target>/debian
    Path::new(env!("CARGO_BIN_EXE_dragonfly-mle"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("debian")
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_deb_installs_and_runs_on_a_bare_debian() {
    if !can_run(BASE) {
        return;
    }
    let repo = repo();
    let debs = debs();
    let script = r#"set -e
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq man-db >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /pkg/dragonfly-mle_*.deb >/dev/null 2>&1
dragonfly-mle -V
mkdir -p /tmp/r && cp -r /usr/share/dragonfly-mle/quickstart/. /tmp/r/
dragonfly-mle -r /tmp/r -l /tmp/l --exit-on-eof 2>/dev/null >/dev/null
echo "lines $(wc -l < /tmp/l/eve-mle.json)"
MANPAGER=cat MANWIDTH=80 man dragonfly-mle 2>/dev/null | grep -q "EXIT STATUS" && echo "man ok"
test -f /usr/lib/dragonfly-mle/dragonfly-redisml.so && echo "module ok"
test -f /lib/systemd/system/dragonfly-mle.service && echo "unit ok"
grep -q "^ExecStart=/usr/bin/dragonfly-mle -r /etc/dragonfly-mle " /lib/systemd/system/dragonfly-mle.service && echo "unit root ok"
test -f /etc/dragonfly-mle/config/config.lua && grep -q /etc/dragonfly-mle/config/config.lua /var/lib/dpkg/info/dragonfly-mle.conffiles && echo "root ok"
echo "user $(id -un dragonfly) $(stat -c %U /var/lib/dragonfly-mle)"
"#;
    let out = run_with_package(&debs, &["--rm", BASE, "sh", "-c", script]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sample = std::fs::read_to_string(repo.join("examples/quickstart/data/eve-sample.json"))
        .unwrap()
        .lines()
        .count();
    for want in [
        "dragonfly-mle 0.1.0".to_string(),
        format!("lines {sample}"),
        "man ok".into(),
        "module ok".into(),
        "unit ok".into(),
        "unit root ok".into(),
        "root ok".into(),
        "user dragonfly dragonfly".into(),
    ] {
        assert!(text.contains(&want), "{want}: {text}");
    }
}

/// `podman run` with the package directory at /pkg and the limits this machine allows.
fn run_with_package(debs: &Path, args: &[&str]) -> Output {
    let pkg = format!("{}:/pkg:ro", debs.display());
    let mut all = vec![
        "run",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "-v",
        &pkg,
    ];
    all.extend_from_slice(args);
    podman(&all)
}

/// Removes the container, whatever happens.
struct Container(String);
impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.0]);
    }
}

impl Container {
    /// `sh -c script` in the container: its stdout (stderr too, when it fails).
    fn sh(&self, script: &str) -> Result<String, String> {
        let out = podman(&["exec", &self.0, "sh", "-c", script]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text.trim().to_string())
        } else {
            Err(format!(
                "{script}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
    fn ok(&self, script: &str) -> String {
        self.sh(script)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.journal()))
    }
    fn journal(&self) -> String {
        self.sh("journalctl -u dragonfly-mle -o cat --no-pager | tail -40")
            .unwrap_or_else(|e| e)
    }
    /// Poll `script` until its output is `want` (every 200 ms, up to `limit`).
    fn wait(&self, limit: Duration, script: &str, want: &str) {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.sh(script).unwrap_or_else(|e| e);
            if got == want {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {limit:?}: {script} is {got:?}, not {want:?}\n{}",
                    self.journal()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The sensor as shipped, under systemd (see the file's doc).
#[test]
fn the_deb_runs_as_a_sensor_service_under_systemd() {
    if !can_run(SYSTEMD) {
        return;
    }
    let debs = debs();
    let name = format!("dragonfly-sensor-{}", std::process::id());
    let out = run_with_package(
        &debs,
        &[
            "-d",
            "--systemd=always",
            "--name",
            &name,
            SYSTEMD,
            "/sbin/init",
        ],
    );
    let c = Container(name);
    assert!(out.status.success(), "podman run: {out:?}");
    const T: Duration = Duration::from_secs(60);
    c.wait(T, "systemctl is-system-running || true", "running");
    // the package, without its recommends (suricata: the writer below plays it)
    c.ok(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
          /pkg/dragonfly-mle_*.deb >/dev/null 2>&1",
    );
    // Suricata's log directory and eve.json as Debian's suricata makes them (root, 0755/0644)
    c.ok("install -d -m 0755 /var/log/suricata && install -m 0644 /dev/null /var/log/suricata/eve.json");
    c.ok("systemctl start dragonfly-mle");
    c.wait(
        T,
        "journalctl -u dragonfly-mle -o cat --no-pager | grep -c 'dragonfly-mle running' || true",
        "1",
    );
    assert_eq!(c.ok("systemctl is-active dragonfly-mle"), "active");
    let pid = c.ok("systemctl show -p MainPID --value dragonfly-mle");
    assert_eq!(
        c.ok(&format!("ps -o user= -p {pid}")),
        "dragonfly",
        "runs as its own user"
    );

    // a writer appends the quick start's sample, line by line, five times over, while the
    // service is reloaded and both logs are rotated
    let sample = "/usr/share/dragonfly-mle/quickstart/data/eve-sample.json";
    let n: usize = c.ok(&format!("wc -l < {sample}")).parse().unwrap();
    let write = |copies: usize| {
        c.ok(&format!(
            "for i in $(seq {copies}); do while IFS= read -r l; do \
             printf '%s\\n' \"$l\" >> /var/log/suricata/eve.json; done < {sample}; done"
        ));
    };
    let out_lines = "cat /var/log/dragonfly-mle/eve-mle.json* | wc -l";
    write(1);
    c.wait(T, out_lines, &n.to_string());

    // systemctl reload: hot reload, the same process goes on
    c.ok("systemctl reload dragonfly-mle");
    c.wait(
        T,
        "journalctl -u dragonfly-mle -o cat --no-pager | grep -c 'reloaded: config.lua and every script' || true",
        "1",
    );
    write(1);
    c.wait(T, out_lines, &(2 * n).to_string());

    // Suricata's eve.json rotated by Debian's suricata logrotate snippet (copytruncate,
    // compress; its postrotate HUPs Suricata, which is not running here)
    c.ok("printf '/var/log/suricata/*.json {\\n rotate 14\\n missingok\\n compress\\n copytruncate\\n}\\n' \
          > /tmp/suricata.logrotate && logrotate -f -s /tmp/lr.state /tmp/suricata.logrotate");
    assert_eq!(
        c.ok("ls /var/log/suricata | sort | tr '\\n' ' '"),
        "eve.json eve.json.1.gz"
    );
    write(1);
    c.wait(T, out_lines, &(3 * n).to_string());

    // the engine's own output, rotated by the shipped snippet (SIGHUP: the file is reopened)
    c.ok("logrotate -f /etc/logrotate.d/dragonfly-mle");
    assert_eq!(
        c.ok("ls /var/log/dragonfly-mle | grep eve-mle | sort | tr '\\n' ' '"),
        "eve-mle.json eve-mle.json.1"
    );
    write(1);
    c.wait(T, out_lines, &(4 * n).to_string());
    c.wait(
        T,
        "test -s /var/log/dragonfly-mle/eve-mle.json && stat -c %U /var/log/dragonfly-mle/eve-mle.json",
        "dragonfly",
    );

    // and eve.json renamed away and created anew (logrotate's default, Suricata's docs)
    c.ok(
        "mv /var/log/suricata/eve.json /var/log/suricata/eve.json.1 \
          && install -m 0644 /dev/null /var/log/suricata/eve.json",
    );
    write(1);
    c.wait(T, out_lines, &(5 * n).to_string());
    assert_eq!(
        c.ok("systemctl show -p MainPID --value dragonfly-mle"),
        pid,
        "one process through reload and rotations"
    );

    // systemctl stop: SIGTERM, the engine drains and exits 0; its position is kept
    c.ok("systemctl stop dragonfly-mle");
    assert_eq!(
        c.ok("systemctl is-active dragonfly-mle || true"),
        "inactive"
    );
    assert_eq!(
        c.ok("systemctl show -p ExecMainStatus --value dragonfly-mle"),
        "0"
    );
    let journal = c.journal();
    assert!(journal.contains("queued events are drained"), "{journal}");
    assert_eq!(c.ok(out_lines), (5 * n).to_string(), "each event once");
    assert_eq!(
        c.ok("stat -c %U /var/lib/dragonfly-mle/eve.checkpoint"),
        "dragonfly"
    );
}
