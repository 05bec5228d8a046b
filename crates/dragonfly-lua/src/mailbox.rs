//! What scripts emit while they run, collected for the engine to route after each call.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use dragonfly_io::Batch;
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
    /// Events for analyzers (already copied), in the order they were sent.
    pub analyze: VecDeque<(usize, Value)>,
    /// Encoded lines per output index, each ending with `\n`.
    pub outputs: Vec<Batch>,
    /// `log_event` records (JSON lines).
    pub log: Batch,
    /// `stats_event` records (JSON lines).
    pub stats: Batch,
    pub timers: Vec<TimerRequest>,
    /// Events routed to tags that do not exist (tag, kind), in order.
    pub unknown: Vec<(String, TagKind)>,
}

impl Mailbox {
    pub fn new(outputs: usize) -> Self {
        Self {
            outputs: (0..outputs).map(|_| Batch::default()).collect(),
            ..Default::default()
        }
    }
}

/// Tag -> index tables for routing.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    pub analyzers: HashMap<String, usize>,
    pub outputs: HashMap<String, usize>,
}
