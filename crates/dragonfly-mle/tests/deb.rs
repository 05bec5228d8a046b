//! The Debian package (`scripts/deb`, cargo-deb) installed in a container made from a bare
//! local Debian base: `dragonfly-mle -V`, the quick start from the packaged example root,
//! `man dragonfly-mle`, and the Redis module in place. Skipped, saying so, where cargo-deb,
//! podman or the base image (scripts/container-base) is missing.

use std::process::Command;

const BASE: &str = "localhost/debian:bookworm-slim";

fn works(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_deb_installs_and_runs_on_a_bare_debian() {
    if !works("cargo", &["deb", "--version"])
        || !works("podman", &["--version"])
        || !works("podman", &["image", "exists", BASE])
    {
        eprintln!("skipped: needs cargo-deb, podman and {BASE} (scripts/container-base)");
        return;
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(repo.join("scripts/deb"))
        .env("NO_BUILD", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/deb: {out:?}");
    let debs = repo.join("target/debian");
    let script = r#"set -e
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq man-db >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /pkg/dragonfly-mle_*.deb >/dev/null 2>&1
dragonfly-mle -V
mkdir -p /tmp/r && cp -r /usr/share/dragonfly-mle/quickstart/. /tmp/r/
dragonfly-mle -r /tmp/r -l /tmp/l --exit-on-eof 2>/dev/null >/dev/null
echo "lines $(wc -l < /tmp/l/eve-mle.json)"
MANPAGER=cat MANWIDTH=80 man dragonfly-mle 2>/dev/null | grep -q "EXIT STATUS" && echo "man ok"
test -f /usr/lib/dragonfly-mle/dragonfly-redisml.so && echo "module ok"
test -f /lib/systemd/system/dragonfly-mle.service && echo "unit ok"
"#;
    let out = Command::new("podman")
        .args([
            "--runtime",
            "runc",
            "--cgroup-manager=cgroupfs",
            "run",
            "--rm",
        ])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .args(["-v", &format!("{}:/pkg:ro", debs.display())])
        .args([BASE, "sh", "-c", script])
        .output()
        .unwrap();
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
    ] {
        assert!(text.contains(&want), "{want}: {text}");
    }
}
