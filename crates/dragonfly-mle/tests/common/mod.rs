//! Helpers for tests that run the real `dragonfly-mle` binary on real files and sockets.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_dragonfly-mle");

/// A filter that hands every decoded event to its default analyzer.
pub const FILTER: &str = r#"
function setup() end
function loop(msg) dragonfly.analyze_event(default_analyzer, msg) end
"#;

/// An analyzer that writes what it gets to its default output.
pub const PASS: &str = r#"
function setup() end
function loop(msg) dragonfly.output_event(default_output, msg) end
"#;

/// An analyzer whose setup() leaves a marker ("ready" in ROOT) once the engine has started
/// (files and sockets are open by then).
pub const PASS_READY: &str = r#"
function setup() local f = io.open("ready", "w"); f:write("1"); f:close() end
function loop(msg) dragonfly.output_event(default_output, msg) end
"#;

/// A root directory with config.lua and scripts, plus a log directory.
pub struct Root {
    pub dir: tempfile::TempDir,
    pub logdir: PathBuf,
}

impl Root {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let logdir = dir.path().join("logs");
        for d in ["config", "filter", "analyzer"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Root { dir, logdir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn config(&self, text: &str) -> &Self {
        self.write("config/config.lua", text)
    }

    /// input -> filter -> "pass" analyzer -> output "out" (file://out.json under LOGDIR).
    pub fn passthrough(input_uri: &str) -> Self {
        let r = Root::new();
        r.write("filter/filter.lua", FILTER);
        r.write("analyzer/pass.lua", PASS);
        r.config(&format!(
            r#"
inputs = {{ {{ tag="in", uri="{input_uri}", script="filter.lua", default_analyzer="pass" }} }}
analyzers = {{ {{ tag="pass", script="pass.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
"#
        ));
        r
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.logdir.join(name)
    }

    pub fn read_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log(name)).unwrap_or_default()
    }

    /// The complete lines of log file `name`: a last line with no newline yet is one an
    /// engine is still appending (tests poll while it runs), not a line.
    pub fn lines(&self, name: &str) -> Vec<String> {
        let text = self.read_log(name);
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        complete.lines().map(str::to_string).collect()
    }

    pub fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("-r")
            .arg(self.path())
            .arg("-l")
            .arg(&self.logdir)
            .args(extra);
        c.env("DRAGONFLY_LOG", "info");
        c
    }

    /// Run to completion with `--exit-on-eof` (killed after `limit`).
    pub fn run_to_eof(&self, limit: Duration) -> Output {
        let child = self
            .command(&["--exit-on-eof"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, limit)
    }

    pub fn spawn(&self, extra: &[&str]) -> Child {
        self.command(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The last stats record written.
    pub fn final_stats(&self) -> serde_json::Value {
        let text = self.read_log("dragonfly-mle-stats.log");
        let last = text.lines().last().expect("a stats line");
        serde_json::from_str(last).unwrap()
    }
}

/// Wait for a child with a deadline; kill it if the deadline passes (and fail).
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "dragonfly-mle did not exit within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `cond` until it holds or `limit` passes.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM the engine and wait for it to drain and exit.
pub fn stop(mut child: Child, limit: Duration) -> (ExitStatus, String) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return (status, err);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("engine did not stop within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An analyzer slow enough (about 0.2 ms per event) that a kill lands mid-stream.
pub const SLOW_PASS: &str = r#"
function setup() end
function loop(msg)
  local t = dragonfly.clock() + 0.0002
  while dragonfly.clock() < t do end
  dragonfly.output_event(default_output, msg)
end
"#;

/// A consumer for the scale-out tests: `uri` -> slow pass -> LOGDIR/out.json, with small
/// queues (so little is in flight). `input_extra` goes into the input's entry.
pub fn slow_consumer(uri: &str, input_extra: &str) -> Root {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/slow.lua", SLOW_PASS);
    r.config(&format!(
        r#"
inputs = {{ {{ tag="in", uri="{uri}", script="filter.lua", default_analyzer="slow", {input_extra} }} }}
analyzers = {{ {{ tag="slow", script="slow.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
engine = {{ batch_lines = 64, queue_batches = 8 }}
"#
    ));
    r
}

/// Start an engine with stderr appended to LOGDIR/stderr.log (kept across restarts).
pub fn spawn_logged(r: &Root) -> Child {
    std::fs::create_dir_all(&r.logdir).unwrap();
    let err = std::fs::File::options()
        .create(true)
        .append(true)
        .open(r.logdir.join("stderr.log"))
        .unwrap();
    r.command(&[])
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap()
}

pub fn stderr_log(r: &Root) -> String {
    r.read_log("stderr.log")
}

/// SIGKILL, as a crash or the OOM killer would.
pub fn kill9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// How often each `seq` appears in the roots' out.json.
pub fn count_seqs(roots: &[&Root]) -> std::collections::HashMap<u64, usize> {
    let mut m = std::collections::HashMap::new();
    for r in roots {
        for s in seqs(&r.lines("out.json")) {
            *m.entry(s).or_default() += 1;
        }
    }
    m
}

/// Wait until every seq in 0..n has come out of the roots.
pub fn wait_all_seqs(roots: &[&Root], n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = count_seqs(roots).len();
        if seen == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} of {n} events came out"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// file://in.json (n events) -> output `uri`, run to the end; the output must report no loss.
pub fn produce(uri: &str, n: usize) {
    let p = Root::passthrough("file://in.json");
    p.write("in.json", &(events(n).join("\n") + "\n"));
    p.config(&format!(
        r#"
inputs = {{ {{ tag="in", uri="file://in.json", script="filter.lua", default_analyzer="pass" }} }}
analyzers = {{ {{ tag="pass", script="pass.lua", default_analyzer="", default_output="o" }} }}
outputs = {{ {{ tag="o", uri="{uri}" }} }}
"#
    ));
    run_ok(&p, Duration::from_secs(120));
    let stats = p.final_stats();
    assert_eq!(stats["outputs"]["o"]["events"], n as u64, "{stats}");
    assert_eq!(stats["outputs"]["o"]["dropped"], 0, "{stats}");
    assert_eq!(stats["errors"], 0, "{stats}");
}

/// Where the build put the binary the tests run (`target/release`, or its place under
/// `CARGO_TARGET_DIR`): Cargo tells the tests, so nothing assumes `target/`.
pub fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_dragonfly-mle"))
        .parent()
        .expect("the binary is in a directory")
        .to_path_buf()
}

/// Our RedisML module, built beside the binary by `cargo build --release` (scripts/test does).
pub fn redisml_module() -> &'static str {
    static MODULE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MODULE.get_or_init(|| {
        let module = build_dir().join("libdragonfly_redisml.so");
        assert!(
            module.exists(),
            "build the module first: cargo build --release -p dragonfly-redisml ({} is missing)",
            module.display()
        );
        module.to_string_lossy().into_owned()
    })
}

/// The shared Suricata corpus (../shared/data beside the repository).
/// The example roots (examples/ of the repository).
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .canonicalize()
        .unwrap()
}

/// A copy of example root `name` to change (its links to examples/lib followed).
pub fn copy_example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-rL")
        .arg(format!("{}/.", examples().join(name).display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success(), "copying examples/{name}");
    dir
}

pub fn corpus() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/eve-synth.json.gz");
    assert!(p.exists(), "the shared corpus is missing: {}", p.display());
    p
}

/// Small Suricata-shaped events.
pub fn events(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"timestamp":"2025-03-10T09:00:{:02}.000000+0000","flow_id":{},"event_type":"dns","src_ip":"10.0.0.{}","seq":{i},"dns":{{"rrname":"host{i}.example.com","answers":[]}}}}"#,
                i % 60,
                1251312473193421u64 + i as u64,
                i % 250
            )
        })
        .collect()
}

/// The `seq` field of every line, in the order of the lines.
pub fn seq_order(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            let j: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            j["seq"].as_u64().unwrap()
        })
        .collect()
}

/// The `seq` field of every output line, sorted.
pub fn seqs(lines: &[String]) -> Vec<u64> {
    let mut v: Vec<u64> = lines
        .iter()
        .map(|l| {
            let j: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            j["seq"].as_u64().unwrap()
        })
        .collect();
    v.sort();
    v
}

/// Copy the quick start's scripts (filter -> hello-world -> write-to-log) into a root.
pub fn quickstart_scripts(r: &Root) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    for f in [
        "filter/filter.lua",
        "analyzer/hello-world.lua",
        "analyzer/write-to-log.lua",
        "analyzer/utils.lua",
    ] {
        r.write(f, &std::fs::read_to_string(root.join(f)).unwrap());
    }
}

/// Run to the end of input; the run must succeed. Returns stderr.
pub fn run_ok(r: &Root, limit: Duration) -> String {
    let out = r.run_to_eof(limit);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    err
}

/// Run to the end of input; the run must finish with exit code 3 (some events failed in a
/// script and went to the dead letters). Returns stderr.
pub fn run_with_script_failures(r: &Root, limit: Duration) -> String {
    let out = r.run_to_eof(limit);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "exit {:?}: {err}", out.status);
    err
}

/// One raw HTTP/1.1 request (the path sent exactly as given): status code and body.
pub fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(150))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            dragonfly_testkit::skip("not root: cannot mount a small tmpfs");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            dragonfly_testkit::skip("mount -t tmpfs failed here");
            return None;
        }
        Some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// in.json (`n` events `{"seq":i}`) -> filter -> analyzer "a" running `a_lua` -> out.json.
pub fn analyzer_root(a_lua: &str, n: u64) -> Root {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("{{\"seq\":{i}}}\n"));
    }
    analyzer_root_with(a_lua, "", &text)
}

/// in.json (`input`) -> filter -> analyzer "a" running `a_lua` -> out.json, with `engine`
/// inside config.lua's `engine = { ... }`.
pub fn analyzer_root_with(a_lua: &str, engine: &str, input: &str) -> Root {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/a.lua", a_lua);
    r.config(&format!(
        r#"
inputs = {{ {{ tag="in", uri="file://in.json", script="filter.lua", default_analyzer="a" }} }}
analyzers = {{ {{ tag="a", script="a.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
engine = {{ {engine} }}
"#
    ));
    r.write("in.json", input);
    r
}
