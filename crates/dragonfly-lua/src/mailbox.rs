//! What scripts emit while they run, collected for the engine to route after each call.

use std::collections::HashMap;
use std::time::Duration;

use dragonfly_event::Batch;
use mlua::Value;

/// A `dragonfly.timer_event` request.
pub struct TimerRequest {
    /// The analyzer the value goes to.
    pub analyzer: usize,
    /// Delay from now.
    pub after: Duration,
    /// A copy of the value to deliver.
    pub value: Value,
}

/// Which table a tag was looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagKind {
    /// Routed with `analyze_event`.
    Analyzer,
    /// Routed with `output_event`.
    Output,
    /// Asked for with `timer_event`.
    Timer,
}

impl TagKind {
    /// Its name in counters and messages.
    pub fn name(self) -> &'static str {
        match self {
            TagKind::Analyzer => "analyzer",
            TagKind::Output => "output",
            TagKind::Timer => "timer",
        }
    }
}

/// Filled by the `dragonfly.*` calls of one runtime; drained by the engine.
#[derive(Default)]
pub struct Mailbox {
    /// `log_event` records (JSON lines).
    pub log: Batch,
    /// `stats_event` records (JSON lines).
    pub stats: Batch,
    /// `timer_event` requests.
    pub timers: Vec<TimerRequest>,
    /// Events routed to tags that do not exist (tag, kind), in order.
    pub unknown: Vec<(String, TagKind)>,
}

/// Tag -> index table for timers.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    /// Analyzer tag -> index.
    pub analyzers: HashMap<String, usize>,
}
