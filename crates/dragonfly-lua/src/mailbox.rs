//! What scripts emit while they run, collected for the engine to route after each call.

use std::collections::HashMap;
use std::time::Duration;

use dragonfly_event::Batch;
use mlua::Value;

/// A `dragonfly.timer_event` request.
pub struct TimerRequest {
    pub analyzer: usize,
    pub after: Duration,
    pub value: Value,
}

/// Which table a tag was looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagKind {
    Analyzer,
    Output,
}

/// Filled by the `dragonfly.*` calls of one runtime; drained by the engine.
#[derive(Default)]
pub struct Mailbox {
    /// `log_event` records (JSON lines).
    pub log: Batch,
    /// `stats_event` records (JSON lines).
    pub stats: Batch,
    pub timers: Vec<TimerRequest>,
    /// Events routed to tags that do not exist (tag, kind), in order.
    pub unknown: Vec<(String, TagKind)>,
}

/// Tag -> index table for timers.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    pub analyzers: HashMap<String, usize>,
}
