//! Trust boundaries, third round, on the real binary: nothing a config.lua, a script's
//! setup(), a reload or a file planted at a followed path does hangs the engine or makes it
//! read what it should not; a stop signal always ends the process.

use crate::common;
use crate::common::*;
use std::io::Write;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn sigterm(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

fn sigusr2(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .unwrap();
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Start the engine on `r` with `extra` arguments, stdout and stderr captured.
fn start(r: &Root, extra: &[&str]) -> std::process::Child {
    r.command(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_config_lua_that_never_ends_is_stopped_at_start_and_under_check() {
    // every case at once (each takes the config budget, 10 s)
    let mut roots = Vec::new();
    let mut running = Vec::new();
    for body in [
        "while true do end",
        // one that swallows the error it is stopped with
        "while true do pcall(function() while true do end end) end",
    ] {
        let r = Root::passthrough("file://in.json");
        r.write("in.json", "{}\n");
        let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
        r.config(&format!("{cfg}\n{body}\n"));
        for extra in [&["--check"][..], &["--exit-on-eof"][..]] {
            running.push((body, extra, start(&r, extra)));
        }
        roots.push(r);
    }
    let t = Instant::now();
    for (body, extra, child) in running {
        let out = wait_output(child, T);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{body} {extra:?}: {err}");
        assert!(
            err.contains("config.lua ran longer than 10 s"),
            "{body} {extra:?}: {err}"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

/// A root whose analyzer's setup() never returns (a loop LuaJIT compiles, which no hook
/// stops), with a short setup budget.
fn looping_setup_root() -> Root {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write(
        "analyzer/a.lua",
        "function setup() while true do end end\nfunction loop(m) end\n",
    );
    r.write("in.json", "{}\n");
    r.config(
        r#"
inputs = { { tag="in", uri="file://in.json", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
engine = { setup_timeout_ms = 500 }
"#,
    );
    r
}

#[test]
fn a_setup_that_never_returns_fails_start_up_and_check_in_bounded_time() {
    let r = looping_setup_root();
    for extra in [&["--check"][..], &["--exit-on-eof"][..]] {
        let t = Instant::now();
        let out = wait_output(start(&r, extra), T);
        let err = stderr_of(&out);
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{extra:?}: {:?}",
            t.elapsed()
        );
        assert_ne!(out.status.code(), Some(0), "{extra:?}: {err}");
        assert!(err.contains("setup_timeout_ms"), "{extra:?}: {err}");
    }
    // an interpreted one is stopped by the budget itself and named
    r.write(
        "analyzer/a.lua",
        "function setup() while true do local _ = getfenv(1) end end\nfunction loop(m) end\n",
    );
    let out = wait_output(start(&r, &["--check"]), T);
    let err = stderr_of(&out);
    assert!(
        err.contains("analyzer/a.lua") && err.contains("setup timeout"),
        "{err}"
    );
}

/// Reloads handled so far, refused ones separately, from the last stats line.
fn reloads(r: &Root) -> (u64, u64) {
    r.lines("dragonfly-mle-stats.log")
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map_or((0, 0), |s| {
            (
                s["reloads"].as_u64().unwrap_or(0),
                s["reload_failures"].as_u64().unwrap_or(0),
            )
        })
}

#[test]
fn reloads_into_endless_setup_or_config_are_refused_and_sigterm_always_ends_the_process() {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/a.lua", PASS);
    let config = r#"
inputs = { { tag="in", uri="tail://in.json<", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
engine = { setup_timeout_ms = 300, stats_interval = 0.05, drain_timeout_s = 1 }
"#;
    r.config(config);
    let mut input = std::fs::File::create(r.path().join("in.json")).unwrap();
    writeln!(input, "{{\"seq\":0}}").unwrap();
    let child = r.spawn(&[]);
    wait_for(T, "the first event", || !r.lines("out.json").is_empty());

    // a setup() that never returns: the reload is refused, the old scripts go on
    r.write(
        "analyzer/a.lua",
        "function setup() while true do end end\nfunction loop(m) end\n",
    );
    sigusr2(&child);
    wait_for(T, "the reload to be refused", || reloads(&r).1 == 1);
    writeln!(input, "{{\"seq\":1}}").unwrap();
    wait_for(T, "an event after the refused reload", || {
        r.lines("out.json").len() == 2
    });

    // a config.lua that never ends: the control thread is busy with it for its 10 s budget,
    // yet a stop signal ends the process within drain_timeout_s plus the margin
    r.write("analyzer/a.lua", PASS);
    r.config(&format!("{config}\nwhile true do end\n"));
    sigusr2(&child);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    sigterm(&child);
    let out = wait_output(child, T);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(1) + dragonfly_engine::STOP_MARGIN + Duration::from_secs(3),
        "{took:?}: {}",
        stderr_of(&out)
    );
    assert_ne!(out.status.code(), None, "ended by a signal");
}

#[test]
fn a_fifo_or_a_link_at_a_followed_path_is_refused_never_waited_on_or_followed() {
    let r = Root::passthrough("tail://in.json<");
    let path = r.path().join("in.json");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let t = Instant::now();
    let out = r.run_to_eof(T);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not a regular file"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
    // --check says so too (it must not pass what the start refuses)
    let out = wait_output(start(&r, &["--check"]), T);
    let err = stderr_of(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("not a regular file"), "{err}");

    std::fs::remove_file(&path).unwrap();
    let secret = r.path().join("secret");
    std::fs::write(&secret, "{\"secret\":\"TOKEN\"}\n").unwrap();
    std::os::unix::fs::symlink(&secret, &path).unwrap();
    let out = r.run_to_eof(T);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is a symbolic link"), "{err}");
    let out = wait_output(start(&r, &["--check"]), T);
    assert!(stderr_of(&out).contains("is a symbolic link"));

    // replaced by a link after start: not followed, counted, nothing of it read
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "{\"seq\":1}\n").unwrap();
    r.config(&format!(
        "{}\nengine = {{ stats_interval = 0.05 }}\n",
        std::fs::read_to_string(r.path().join("config/config.lua")).unwrap()
    ));
    let child = r.spawn(&[]);
    wait_for(T, "the first event", || r.lines("out.json").len() == 1);
    std::fs::rename(&path, r.path().join("in.json.1")).unwrap();
    std::os::unix::fs::symlink(&secret, &path).unwrap();
    wait_for(T, "the link to be counted", || {
        r.lines("dragonfly-mle-stats.log")
            .last()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .is_some_and(|s| s["inputs"]["in"]["not_followed"] == 1)
    });
    let (status, _) = stop(child, T);
    assert!(status.success());
    let out = r.read_log("out.json");
    assert!(!out.contains("TOKEN"), "{out}");
    // what the engine creates is not for everyone to read
    use std::os::unix::fs::PermissionsExt;
    for f in ["out.json", "dragonfly-mle.log", "dragonfly-mle-stats.log"] {
        let mode = std::fs::metadata(r.log(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{f}: {mode:o}");
    }
}

/// A fake Redis on 127.0.0.1: PING is PONG, `GET bomb` declares a 4 GiB string and then
/// streams bytes while the connection stays open, `GET deep` nests 100,000 arrays, `GET wide`
/// declares two billion elements; anything else is a nil. Returns the port.
fn hostile_redis() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader};
                let mut r = BufReader::new(s.try_clone().unwrap());
                loop {
                    // a command: *N then N bulk strings
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let n: usize = line.trim().trim_start_matches('*').parse().unwrap_or(0);
                    let mut args = Vec::new();
                    for _ in 0..n {
                        let mut len = String::new();
                        r.read_line(&mut len).unwrap();
                        let mut arg = String::new();
                        r.read_line(&mut arg).unwrap();
                        args.push(arg.trim().to_ascii_lowercase());
                    }
                    let reply: Vec<u8> = match args.as_slice() {
                        [c] if c == "ping" => b"+PONG\r\n".to_vec(),
                        [c, k] if c == "get" && k == "bomb" => {
                            if s.write_all(b"$4294967296\r\n").is_err() {
                                return;
                            }
                            // what a hostile server sends after it, until the client leaves
                            let chunk = vec![b'x'; 1 << 20];
                            while s.write_all(&chunk).is_ok() {}
                            return;
                        }
                        [c, k] if c == "get" && k == "deep" => {
                            let mut v = b"*1\r\n".repeat(100_000);
                            v.extend(b":1\r\n");
                            v
                        }
                        [c, k] if c == "get" && k == "wide" => b"*2000000000\r\n:1\r\n".to_vec(),
                        _ => b"$-1\r\n".to_vec(),
                    };
                    if s.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_hostile_redis_reply_fails_the_command_never_the_engine() {
    let port = hostile_redis();
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write(
        "analyzer/a.lua",
        r#"
function setup() conn = hiredis.connect() end
function loop(msg)
  local reply
  -- after a refused reply the connection is reopened with a short backoff: wait it out
  for _ = 1, 40 do
    reply = conn:command("GET", msg.key)
    if not (type(reply) == "table" and tostring(reply.name):find("retrying")) then break end
    local t = dragonfly.clock() + 0.02
    while dragonfly.clock() < t do end
  end
  msg.reply = type(reply) == "table" and tostring(reply.name) or tostring(reply)
  dragonfly.output_event(default_output, msg)
end
"#,
    );
    r.write(
        "in.json",
        "{\"key\":\"bomb\"}\n{\"key\":\"deep\"}\n{\"key\":\"wide\"}\n{\"key\":\"fine\"}\n",
    );
    r.config(&format!(
        r#"
redis_host = "127.0.0.1"
redis_port = {port}
inputs = {{ {{ tag="in", uri="file://in.json", script="filter.lua", default_analyzer="a" }} }}
analyzers = {{ {{ tag="a", script="a.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
engine = {{ redis_max_reply_mb = 16 }}
"#
    ));
    let out = r.run_to_eof(T);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines = r.lines("out.json");
    assert_eq!(lines.len(), 4, "{lines:?}");
    let replies: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["reply"].clone())
        .collect();
    for (i, want) in [
        "a string of 4294967296 takes it past 16777216 bytes (engine.redis_max_reply_mb)",
        "nested deeper than",
        "an array of 2000000000",
        "NIL",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            replies[i].as_str().unwrap().contains(want),
            "{i}: {replies:?}"
        );
    }
    // the engine never held the bytes it was offered
    let peak = r.final_stats()["rss_peak_bytes"].as_u64().unwrap();
    assert!(peak < 512 << 20, "peak RSS {peak}");
}

/// A root reading stream input `uri` with `options`, writing what it gets to out.json; stats
/// every 50 ms.
fn stream_root(uri: &str, options: &str) -> Root {
    let r = Root::passthrough(uri);
    r.write("analyzer/pass.lua", PASS_READY);
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "{}\nengine = {{ stats_interval = 0.05 }}\n",
        cfg.replace(
            r#"default_analyzer="pass" }"#,
            &format!(r#"default_analyzer="pass", options = {{ {options} }} }}"#),
        )
    ));
    r
}

/// `/proc/PID/status` field `name` (kB) in MB.
fn proc_mb(pid: u32, name: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The input's counter `name` from the last stats line.
fn input_counter(r: &Root, name: &str) -> u64 {
    r.lines("dragonfly-mle-stats.log")
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|s| s["inputs"]["in"][name].as_u64())
        .unwrap_or(0)
}

/// Start the engine (no stdout, stderr piped) with resource `what` (`libc::RLIMIT_*`) limited
/// to `value`: a failing limit must not take the machine with it.
fn spawn_limited(r: &Root, what: libc::__rlimit_resource_t, value: u64) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut c = r.command(&[]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(what, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn().unwrap()
}

/// Start the engine with its address space capped at `gib` GiB.
fn spawn_capped(r: &Root, gib: u64) -> std::process::Child {
    spawn_limited(r, libc::RLIMIT_AS, gib << 30)
}

/// 128 connections each sending 4 MB without a newline, then a real sender: the partial
/// lines are held to `partial_mb` (the largest dropped and counted), the engine's memory stays
/// far below what the senders sent, and the sender that comes last gets in (a quiet one is
/// closed for it) and delivers every line.
fn flood_of_partial_lines(r: Root, connect: impl Fn() -> Box<dyn Write + Send>) {
    let child = spawn_capped(&r, 6);
    wait_for(T, "engine start-up", || r.path().join("ready").exists());
    let base = proc_mb(child.id(), "VmRSS:");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..128)
        .map(|_| {
            let mut s = connect();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..64 {
                    if s.write_all(&chunk).is_err() {
                        return;
                    }
                }
                // hold the connection, quiet, until the test ends
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    wait_for(T, "a partial line dropped", || {
        input_counter(&r, "partial_dropped") > 0
    });
    // quiet for a while: the next sender gets one of their places
    std::thread::sleep(Duration::from_millis(1500));
    let mut real = connect();
    for i in 0..100 {
        writeln!(real, "{{\"seq\":{i}}}").unwrap();
    }
    real.flush().unwrap();
    wait_for(T, "the real sender's lines", || {
        r.lines("out.json").len() == 100
    });
    let peak = proc_mb(child.id(), "VmHWM:");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    drop(real);
    let (status, err) = common::stop(child, T);
    assert!(status.success(), "{err}");
    let s = r.final_stats();
    eprintln!(
        "RSS {base:.0} MB at start, peak {peak:.0} MB for 512 MB of partial lines; {}",
        s["inputs"]["in"]
    );
    assert!(peak < base + 160.0, "peak {peak:.0} MB, start {base:.0} MB");
    assert!(s["inputs"]["in"]["evicted"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn a_flood_of_partial_lines_on_a_unix_stream_costs_the_budget_not_the_machine() {
    let r = stream_root("unix://in.sock", "partial_mb = 16");
    let path = r.path().join("in.sock");
    flood_of_partial_lines(r, move || {
        Box::new(std::os::unix::net::UnixStream::connect(&path).unwrap())
    });
}

#[test]
fn a_flood_of_partial_lines_on_syslog_tcp_costs_the_budget_not_the_machine() {
    let port = dragonfly_testkit::free_port();
    // (the real sender's lines are syslog messages whose body is the JSON event)
    let r = stream_root(&format!("syslog://tcp:127.0.0.1:{port}"), "partial_mb = 16");
    flood_of_partial_lines(r, move || {
        Box::new(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
    });
}

/// 128 idle connections hold every place: they cost little memory, a new sender is let in
/// (the quietest idle one is closed for it) and delivers, and idle connections are closed
/// after `idle_timeout_s`.
#[test]
fn idle_connections_never_lock_a_sender_out_and_time_out() {
    let r = stream_root("unix://in.sock", "idle_timeout_s = 4");
    let child = spawn_capped(&r, 6);
    wait_for(T, "engine start-up", || r.path().join("ready").exists());
    let path = r.path().join("in.sock");
    let base = proc_mb(child.id(), "VmRSS:");
    let idle: Vec<_> = (0..128)
        .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let held = proc_mb(child.id(), "VmRSS:");
    let mut real = std::os::unix::net::UnixStream::connect(&path).unwrap();
    for i in 0..10 {
        writeln!(real, "{{\"seq\":{i}}}").unwrap();
    }
    wait_for(T, "the sender's lines", || r.lines("out.json").len() == 10);
    wait_for(T, "the idle connections to time out", || {
        input_counter(&r, "idle_closed") >= 127
    });
    // an idle connection closed by the engine reads as end of file
    let closed = idle
        .iter()
        .filter(|s| {
            use std::io::Read;
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            matches!((&mut &**s).read(&mut [0u8; 1]), Ok(0))
        })
        .count();
    assert_eq!(closed, 128);
    let (status, err) = common::stop(child, T);
    assert!(status.success(), "{err}");
    let s = r.final_stats();
    eprintln!(
        "128 idle connections: RSS {base:.0} MB -> {held:.0} MB; {}",
        s["inputs"]["in"]
    );
    assert!(
        held < base + 48.0,
        "128 idle connections took {:.0} MB",
        held - base
    );
    assert_eq!(s["inputs"]["in"]["evicted"], 1, "{s}");
    assert_eq!(s["inputs"]["in"]["refused"], 0, "{s}");
}

/// A root whose analyzer runs `body` on every event (failing it) and passes the rest on.
fn failing_root(body: &str, events: u64) -> Root {
    analyzer_root(
        &format!("function setup() end\nfunction loop(msg)\n  {body}\n  dragonfly.output_event(default_output, msg)\nend\n"),
        events,
    )
}

#[test]
fn dead_letters_are_bounded_in_size_and_never_outgrow_the_input() {
    // a 100 KB error message; an analyzer that adds 3 MB to the event and fails: each record
    // keeps a cut error and a cut value, marked, and the engine's memory stays small
    for (body, events) in [
        ("error(string.rep('E', 100000))", 300),
        (
            "msg.blob = string.rep('v', 3000000) error('after growing the event')",
            300,
        ),
    ] {
        let r = failing_root(body, events);
        let out = r.run_to_eof(T);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(3), "{body}: {err}");
        let input = std::fs::metadata(r.path().join("in.json")).unwrap().len();
        let dead = std::fs::metadata(r.log("dead-letter.json")).unwrap().len();
        let s = r.final_stats();
        let written = s["dead_letters"].as_u64().unwrap();
        let dropped = s["dead_letters_dropped"].as_u64().unwrap();
        eprintln!(
            "{body}: input {input} B, dead letters {dead} B ({written} written, {dropped} left out), peak RSS {} MB",
            s["rss_peak_bytes"].as_u64().unwrap() >> 20
        );
        // every failure is either written or counted as left out
        assert_eq!(written + dropped, events, "{s}");
        assert_eq!(s["analyzers"]["a"]["lua_errors"], events, "{s}");
        // never more than twice the input plus the budget's burst (16 MiB) and its 1 MiB/s
        assert!(dead <= 2 * input + (16 << 20) + (4 << 20), "{dead} bytes");
        assert!(s["rss_peak_bytes"].as_u64().unwrap() < 1 << 30, "{s}");
        let first: serde_json::Value =
            serde_json::from_str(&r.lines("dead-letter.json")[0]).unwrap();
        let line = r.lines("dead-letter.json")[0].len();
        assert!(line < 80 * 1024, "a record of {line} bytes");
        if body.starts_with("error") {
            let e = first["error"].as_str().unwrap();
            assert!(e.len() < 2200 && e.ends_with("bytes cut]"), "{e}");
        } else {
            assert!(first["value_cut"].as_u64().unwrap() > 2_900_000, "{first}");
            assert!(first["value"].as_str().unwrap().len() <= 64 * 1024);
        }
    }
}

#[test]
fn checkpoints_never_write_through_a_planted_link_nor_read_a_huge_or_special_file() {
    let r = Root::passthrough("tail://in.json<");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        r#"default_analyzer="pass" }"#,
        r#"default_analyzer="pass", options = { checkpoint = "state/in.pos" } }"#,
    ));
    std::fs::create_dir_all(r.path().join("state")).unwrap();
    std::fs::write(r.path().join("in.json"), "{\"seq\":0}\n{\"seq\":1}\n").unwrap();
    // a link planted at the checkpoint's temporary name, to a file the engine must not touch
    let victim = r.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, r.path().join("state/in.pos.tmp")).unwrap();
    let child = r.spawn(&[]);
    wait_for(T, "both events", || r.lines("out.json").len() == 2);
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let pos = std::fs::read_to_string(r.path().join("state/in.pos")).unwrap();
    assert!(pos.trim().ends_with(" 20"), "{pos}");
    let meta = std::fs::symlink_metadata(r.path().join("state/in.pos")).unwrap();
    assert!(meta.is_file());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o007, 0, "not world-readable");

    // a checkpoint that is a huge file, or a link to /dev/zero: refused by size or type (never
    // read into memory), said, and the input starts as if there were none
    for planted in ["huge", "zero"] {
        std::fs::remove_file(r.log("out.json")).unwrap();
        let ck = r.path().join("state/in.pos");
        let _ = std::fs::remove_file(&ck);
        match planted {
            "huge" => {
                let f = std::fs::File::create(&ck).unwrap();
                f.set_len(8 << 30).unwrap();
            }
            _ => std::os::unix::fs::symlink("/dev/zero", &ck).unwrap(),
        }
        let child = r.spawn(&[]);
        wait_for(T, "the events read again", || {
            r.lines("out.json").len() == 2
        });
        let (status, err) = stop(child, T);
        assert!(status.success(), "{planted}: {err}");
        assert!(err.contains("refusing the checkpoint"), "{planted}: {err}");
        let peak = r.final_stats()["rss_peak_bytes"].as_u64().unwrap();
        assert!(peak < 256 << 20, "{planted}: peak {peak}");
    }
}

/// A root with the HTTP listener on `port` and a unix socket input (the engine keeps
/// running), its descriptors capped at `nofile`.
fn http_engine(port: u16, nofile: u64) -> (Root, std::process::Child) {
    let r = stream_root("unix://in.sock", "");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        "engine = { stats_interval = 0.05 }",
        &format!("engine = {{ stats_interval = 0.05, http = \"127.0.0.1:{port}\" }}"),
    ));
    let child = spawn_limited(&r, libc::RLIMIT_NOFILE, nofile);
    wait_for(T, "engine start-up", || r.path().join("ready").exists());
    wait_for(T, "the listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (r, child)
}

/// `/health` answered within `limit`.
fn health_within(port: u16, limit: Duration) -> bool {
    use std::io::Read;
    let t = Instant::now();
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(limit)).unwrap();
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200") && t.elapsed() <= limit
}

#[test]
fn the_http_listener_survives_running_out_of_descriptors() {
    let port = dragonfly_testkit::free_port();
    // far fewer descriptors than the idle connections that come
    let (r, child) = http_engine(port, 96);
    let idle: Vec<_> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    // it still answers, again and again
    for _ in 0..5 {
        wait_for(T, "/health answered", || {
            health_within(port, Duration::from_secs(3))
        });
    }
    drop(idle);
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let s = r.final_stats();
    eprintln!(
        "accept errors {}, closed {}",
        s["http_accept_errors"], s["http_connections_closed"]
    );
    assert!(s["http_connections_closed"].as_u64().unwrap() > 0, "{s}");
}

#[test]
fn slowloris_connections_are_closed_and_health_keeps_answering() {
    let port = dragonfly_testkit::free_port();
    let (r, child) = http_engine(port, 4096);
    // 3,000 connections sending their headers a byte at a time
    let mut slow: Vec<std::net::TcpStream> = (0..3000)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    let header = b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut answered = 0;
    let t = Instant::now();
    let mut at = 0;
    while t.elapsed() < Duration::from_secs(8) {
        let b = header[at % header.len()];
        at += 1;
        for s in &mut slow {
            let _ = s.write_all(&[b]);
        }
        if health_within(port, Duration::from_secs(2)) {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // every slow connection was closed (headers not sent in time, or closed to make room)
    let open = slow
        .iter()
        .filter(|s| {
            use std::io::Read;
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            // a closed connection reads as end of file, or was reset
            let got = (&mut &**s).read(&mut [0u8; 64]);
            !matches!(got, Ok(0))
                && !got
                    .as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock)
        })
        .count();
    drop(slow);
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    let s = r.final_stats();
    eprintln!(
        "/health answered {answered} times during the flood; closed {}",
        s["http_connections_closed"]
    );
    assert!(answered >= 20, "/health answered {answered} times");
    assert_eq!(open, 0);
    assert!(
        s["http_connections_closed"].as_u64().unwrap() >= 2700,
        "{s}"
    );
}

/// Tags a script makes from event fields are the attacker's: 3,000 distinct 1,000-byte output
/// and analyzer tags cost at most 256 counters per kind (the rest under "(other tags)"), every
/// event counted, names cut to 128 bytes, the same bound on the live page's edges, one log
/// line per counted tag; exit 5 (events dropped).
#[test]
fn tags_made_from_events_cost_a_bounded_number_of_counters() {
    let r = analyzer_root(
        r#"function loop(msg)
             local tag = msg.seq .. string.rep("x", 1000)
             dragonfly.output_event(tag, msg)
             dragonfly.analyze_event(tag, msg)
           end"#,
        3000,
    );
    let out = r.run_to_eof(Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    let s = r.final_stats();
    let unknown = s["unknown_tags"].as_object().unwrap();
    for kind in ["output", "analyzer"] {
        let keys: Vec<&String> = unknown.keys().filter(|k| k.starts_with(kind)).collect();
        assert!(keys.len() <= 257, "{kind}: {} counters", keys.len());
        let total: u64 = unknown
            .iter()
            .filter(|(k, _)| k.starts_with(kind))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum();
        assert_eq!(total, 3000, "every {kind} event counted");
        assert!(unknown.contains_key(&format!("{kind}:(other tags)")));
    }
    assert!(unknown
        .keys()
        .all(|k| k.len() <= "analyzer:".len() + 128 + 3));
    let edges = s["edges"].as_array().unwrap();
    assert!(edges.len() <= 2 + 2 * 257, "{} edges", edges.len());
    let to_unknown: u64 = edges
        .iter()
        .filter(|e| e["to"].as_str().unwrap().starts_with("unknown-"))
        .map(|e| e["events"].as_u64().unwrap())
        .sum();
    assert_eq!(to_unknown, 6000);
    let log = r.read_log("dragonfly-mle.log");
    let lines = log
        .lines()
        .filter(|l| l.contains("which config.lua does not define"))
        .count();
    assert!(lines <= 2 * 257, "{lines} log lines");
}

/// The engine turns transparent huge pages off for itself (`alloc::tame_huge_pages`: each page
/// mimalloc takes back from the system would otherwise be a 2 MiB page the kernel clears),
/// unless `MIMALLOC_ALLOW_THP` is set, which leaves them as the system has them.
#[test]
fn the_engine_runs_without_transparent_huge_pages_unless_told_otherwise() {
    fn thp_enabled(pid: u32) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(|v| v.trim().to_string())
    }
    let Some(ours) = thp_enabled(std::process::id()) else {
        dragonfly_testkit::skip("this kernel's /proc/PID/status has no THP_enabled line");
        return;
    };
    for (allow, want) in [(None, "0".to_string()), (Some("1"), ours)] {
        let r = Root::new();
        r.write("filter/filter.lua", FILTER);
        r.write("analyzer/a.lua", PASS);
        r.config(
            r#"
inputs = { { tag="in", uri="tail://in.json<", script="filter.lua", default_analyzer="a" } }
analyzers = { { tag="a", script="a.lua", default_analyzer="", default_output="out" } }
outputs = { { tag="out", uri="file://out.json" } }
"#,
        );
        let mut input = std::fs::File::create(r.path().join("in.json")).unwrap();
        writeln!(input, "{{\"seq\":0}}").unwrap();
        let mut cmd = r.command(&[]);
        cmd.env_remove("MIMALLOC_ALLOW_THP");
        if let Some(v) = allow {
            cmd.env("MIMALLOC_ALLOW_THP", v);
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(T, "the first event", || !r.lines("out.json").is_empty());
        let got = thp_enabled(child.id());
        sigterm(&child);
        let out = wait_output(child, T);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            got.as_deref(),
            Some(want.as_str()),
            "MIMALLOC_ALLOW_THP={allow:?}"
        );
    }
}
