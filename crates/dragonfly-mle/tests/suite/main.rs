//! The binary's test suite: the real `dragonfly-mle` on real configs, files, sockets and
//! services (redis-server, Kafka, NATS, Suricata, Prometheus, Chromium, podman), started by the
//! tests themselves on 127.0.0.1. One test target, so the suite compiles and links once; run a
//! part of it with `cargo test --release -p dragonfly-mle --test suite -- MODULE::`
//! (for example `hardening::`). A test that cannot run here passes and writes why to
//! `DRAGONFLY_SKIPS` (`dragonfly_testkit::skip`); `scripts/test` lists them at the end.
//!
//! Where a new test goes:
//!
//! | area | modules |
//! |---|---|
//! | the pipeline: routing, numbers, bad input, timers | `pipeline`, `examples` (the example roots as a user runs them) |
//! | config.lua, `--check`, the console, the docs | `config_and_check`, `check_agrees`, `console`, `docs_true`, `manual` |
//! | `dragonfly-mle test` and the example roots' test cases | `test_cmd` |
//! | signals the engine gives: `done:`, exit codes, `/health`, metrics, the live page, `tap`, `top` | `truthful`, `http`, `prometheus`, `live_page`, `tap` |
//! | scripts that misbehave, trust boundaries, privileges | `hardening`, `boundaries`, `privileges`, `disk_full` |
//! | the Lua API against the stores | `state`, `redis_patterns`, `models`, `https` |
//! | inputs and outputs | `io_schemes`, `sockets`, `syslog`, `redis_io`, `redis_cluster`, `kafka`, `nats`, `parquet`, `live_suricata` |
//! | running it: reload, service files, packages | `reload`, `deploy`, `container`, `deb` |
//!
//! Shared helpers (a root directory with config.lua and scripts, running the binary, free
//! ports, services) are in `../common/mod.rs`. The tail's rotation race runs in a test target
//! of its own (`tail_rotation`): it needs the machine to itself.

#[path = "../common/mod.rs"]
mod common;

mod boundaries;
mod check_agrees;
mod config_and_check;
mod console;
mod container;
mod deb;
mod deploy;
mod disk_full;
mod docs_true;
mod examples;
mod hardening;
mod http;
mod https;
mod io_schemes;
mod kafka;
mod live_page;
mod live_suricata;
mod manual;
mod models;
mod nats;
mod parquet;
mod pipeline;
mod privileges;
mod prometheus;
mod redis_cluster;
mod redis_io;
mod redis_patterns;
mod reload;
mod sockets;
mod state;
mod syslog;
mod tap;
mod test_cmd;
mod truthful;
