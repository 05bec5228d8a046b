//! The Dragonfly pipeline: inputs -> filter script -> analyzers -> outputs.
//!
//! ```text
//!  source thread ──Batch of raw lines──▶ worker (one Lua runtime: filter + analyzers) ──Batch of
//!  (one per input)   bounded channel       events cross scripts as Lua values          encoded lines──▶ sink thread
//!                                                                                       bounded channel  (one per output)
//! ```
//!
//! Building happens in phases so the CLI can drop privileges and chroot in between:
//! [`Plan::new`] (read config and scripts) -> [`Plan::prepare`] (open files, bind sockets) ->
//! [`Prepared::start`] (spawn threads, run every `setup()`) -> [`Running::wait`] (until
//! SIGTERM, or end of input with `--exit-on-eof`; then drain and flush).
//!
//! Where things are: `plan.rs` (the first two phases, `-c`/`-p` checks), `topology.rs`
//! (the start: spawning sinks, workers and inputs), `parts/` (the running engine's parts —
//! inputs, workers, outputs, own logs — each owning its threads, stop and drain),
//! `running.rs` (supervision and the drain), `reload.rs` (hot reload),
//! `worker.rs` (one Lua runtime running the chain), `sinks.rs` (one thread per output),
//! `partition.rs`, `stats.rs`, `enginelog.rs`, `store.rs` (store checks and snapshots).

mod check;
pub mod clock;
pub mod enginelog;
pub mod errgroups;
pub mod history;
pub mod http;
pub mod metrics;
pub mod partition;
mod parts;
mod plan;
pub mod record;
mod reload;
mod running;
pub mod sinks;
pub mod stats;
pub mod store;
pub mod tap;
mod topology;
pub mod worker;

#[cfg(test)]
mod tests;

use dragonfly_event::sync::Locked;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

pub use plan::{Plan, Prepared};
pub use running::{Running, Summary, MAX_PARKED};

/// Where scripts' `dragonfly.echo` lines go (the CLI points it at its non-blocking stderr).
pub use dragonfly_lua::libs::dragonfly::set_echo;

/// The engine log (script `log_event` records and engine problems), in LOGDIR.
pub const LOG_FILE: &str = "dragonfly-mle.log";
/// The stats log, in LOGDIR.
pub const STATS_FILE: &str = "dragonfly-mle-stats.log";

/// Process exit codes (documented in the README).
pub mod exit {
    /// Every event was processed without a script failure.
    pub const OK: u8 = 0;
    /// Start-up failed: a script, a file, a socket, a `setup()`.
    pub const START_UP: u8 = 1;
    /// config.lua is wrong.
    pub const CONFIG: u8 = 2;
    /// The run finished, but some events failed in a script (they are in the dead letters).
    pub const SCRIPT_FAILURES: u8 = 3;
    /// The engine stopped abnormally: an internal failure (a panic, a thread that died) or a
    /// drain that did not finish within `engine.drain_timeout_s`.
    pub const INTERNAL: u8 = 4;
    /// The run finished, but events were dropped: an output could never write them (a
    /// Parquet row that is not a JSON object, ...: counted in that output's `dropped`), or a
    /// script sent them to a tag config.lua does not define (counted in `unknown_tags`).
    pub const DROPPED: u8 = 5;
}

/// Why the engine could not be planned, prepared or started, by phase: every problem found,
/// one per entry, each naming the file, entry and field, or the path, or the script.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// config.lua's values are wrong (URIs, options, scripts that cannot be read): exit 2.
    #[error("{}", .0.join("\n"))]
    Config(Vec<String>),
    /// Something could not be opened or made ready (files, sockets, the store, directories,
    /// privileges): exit 1.
    #[error("{}", .0.join("\n"))]
    Open(Vec<String>),
    /// A script did not load, or its `setup()` failed: exit 1.
    #[error("{}", .0.join("\n"))]
    Setup(Vec<String>),
    /// The engine itself failed to start (a worker died): exit 4.
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// What kind of problem, for the one-line prefix the CLI prints.
    pub fn category(&self) -> &'static str {
        match self {
            EngineError::Config(_) => "config error",
            EngineError::Open(_) => "start-up error",
            EngineError::Setup(_) => "script error",
            EngineError::Internal(_) => "internal error",
        }
    }

    /// The process exit code (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Config(_) => exit::CONFIG,
            EngineError::Open(_) | EngineError::Setup(_) => exit::START_UP,
            EngineError::Internal(_) => exit::INTERNAL,
        }
    }

    /// Every problem, one per line.
    pub fn problems(&self) -> Vec<String> {
        match self {
            EngineError::Config(v) | EngineError::Open(v) | EngineError::Setup(v) => v.clone(),
            EngineError::Internal(s) => vec![s.clone()],
        }
    }
}

/// Command-line settings that shape the engine.
#[derive(Debug, Clone)]
pub struct Options {
    /// ROOT (the engine runs in it).
    pub root: PathBuf,
    /// LOGDIR.
    pub logdir: PathBuf,
    /// `--exit-on-eof`.
    pub exit_on_eof: bool,
    /// `-c`: the engine will chroot into ROOT once everything is open.
    pub chroot: bool,
}

/// Signals from outside (the CLI's signal handler, the HTTP listener).
#[derive(Clone, Default)]
pub struct Control {
    /// Stop: inputs stop, everything accepted is drained and flushed.
    pub shutdown: Arc<AtomicBool>,
    /// Bumped to make every file output reopen (log rotation).
    pub reopen: Arc<AtomicU64>,
    /// Hot reload requests (SIGUSR2, `POST /api/reload`) and their outcomes.
    pub reload: Arc<Reloads>,
    /// `engine.drain_timeout_s` of the config started, in milliseconds: a stop signal ends
    /// the process within it plus [`STOP_MARGIN`], whatever any thread is doing.
    pub drain_timeout_ms: Arc<AtomicU64>,
}

/// How long past `engine.drain_timeout_s` a stop signal waits before it ends the process
/// itself (the engine's own drain deadline comes first; this one holds when the engine's
/// control thread cannot see the stop: a reload wedged in a script, a hung output).
pub const STOP_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How a hot reload went: whether the new scripts took over, and the outcome as JSON (for
/// the log and the HTTP answer).
#[derive(Debug, Clone, Default)]
pub struct Reloaded {
    /// The new configuration and scripts run now.
    pub ok: bool,
    /// `{"generation":N,"reloaded":...,"errors":[...]}`.
    pub json: String,
}

/// Hot reload requests and outcomes: a requester bumps the generation and may wait for the
/// engine to have handled it (the engine handles requests one at a time, between its
/// supervision ticks; requests that pile up while one runs are handled as one).
#[derive(Default)]
pub struct Reloads {
    requested: AtomicU64,
    done: std::sync::Mutex<(u64, Reloaded)>,
    finished: std::sync::Condvar,
}

impl Reloads {
    /// Ask for a reload; returns the generation to wait for.
    pub fn request(&self) -> u64 {
        self.requested
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1
    }

    /// The newest generation asked for, if newer than `handled`.
    pub fn pending(&self, handled: u64) -> Option<u64> {
        let r = self.requested.load(std::sync::atomic::Ordering::SeqCst);
        (r > handled).then_some(r)
    }

    /// Generation `generation` (and every one before it) was handled with `outcome`.
    pub fn finish(&self, generation: u64, outcome: Reloaded) {
        let mut d = self.done.locked();
        *d = (generation, outcome);
        self.finished.notify_all();
    }

    /// Wait up to `limit` for generation `generation` to be handled; its outcome.
    pub fn wait(&self, generation: u64, limit: std::time::Duration) -> Option<Reloaded> {
        let deadline = std::time::Instant::now() + limit;
        let mut d = self.done.locked();
        while d.0 < generation {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            d = self
                .finished
                .wait_timeout(d, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Some(d.1.clone())
    }
}
