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
//! (spawning sinks, workers and inputs), `running.rs` (supervision and the drain),
//! `worker.rs` (one Lua runtime running the chain), `sinks.rs` (one thread per output),
//! `partition.rs`, `stats.rs`, `enginelog.rs`, `store.rs` (store checks and snapshots).

pub mod enginelog;
pub mod partition;
mod plan;
mod running;
pub mod sinks;
pub mod stats;
pub mod store;
mod topology;
pub mod worker;

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
}

/// Why the engine could not be planned, prepared or started: every problem found (each line
/// naming the file, entry and field, or the path, or the script), or an I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{}", .0.join("\n"))]
    Problems(Vec<String>),
    #[error("{0}")]
    Io(String),
}

/// Command-line settings that shape the engine.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    pub logdir: PathBuf,
    pub exit_on_eof: bool,
    /// `-c`: the engine will chroot into ROOT once everything is open.
    pub chroot: bool,
}

/// Signals from outside (the CLI's signal handler).
#[derive(Clone, Default)]
pub struct Control {
    /// Stop: inputs stop, everything accepted is drained and flushed.
    pub shutdown: Arc<AtomicBool>,
    /// Bumped to make every file output reopen (log rotation).
    pub reopen: Arc<AtomicU64>,
}
