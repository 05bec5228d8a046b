//! Trust boundaries, third round, on the real binary: nothing a config.lua, a script's
//! setup(), a reload or a file planted at a followed path does hangs the engine or makes it
//! read what it should not; a stop signal always ends the process.

mod common;
use common::*;
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

    std::fs::remove_file(&path).unwrap();
    let secret = r.path().join("secret");
    std::fs::write(&secret, "{\"secret\":\"TOKEN\"}\n").unwrap();
    std::os::unix::fs::symlink(&secret, &path).unwrap();
    let out = r.run_to_eof(T);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is a symbolic link"), "{err}");

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
