//! The wiring between the Rust runtime and the Lua it runs, in one place.
//!
//! Lua code the crate loads (each a chunk compiled from a Rust string or file):
//! - `chain.lua` (`=dragonfly-chain`): routing between scripts, the call wrapper, failure
//!   records; gets [`slots`] (the numbers below) as its last argument;
//! - `sandbox.lua` (`=dragonfly-sandbox`): each script's environment;
//! - [`crate::libs::read_only_mt`] (`=dragonfly-read-only`): the metatable of shared tables.
//!
//! Functions chain.lua makes for scripts: `dragonfly.analyze_event`, `dragonfly.output_event`
//! and its alias `forward_event` (attached to the `dragonfly` table by `Runtime::new`; the
//! rest of that table is made in `libs/dragonfly.rs`).
//!
//! Registry entries: `watchdog::PROBE_KEY` (the probe table below, for the watchdog's hook
//! and for salvaging a runtime given up), `fast::OUT_KEY` (the `OutState` that output
//! lines are written into) and `fast::ARRAY_MT_KEY` (cjson's array metatable), all keyed by
//! the address of a static; `dragonfly.sched` (the overlap scheduler's state, hiredis.rs),
//! `dragonfly.copy` (chain.lua's deep copy, json.rs) and `dragonfly.frozen` (the set of
//! read-only shared tables, libs/mod.rs), by name.
//!
//! The probe and the failure records are Lua arrays (LuaJIT keeps them in the array part: a
//! read or write from the hook or from chain.lua is one indexed access, and the hook can read
//! them without allocating). Their slots are named here and handed to chain.lua, so no side
//! uses a bare number.

use mlua::{Lua, Table};

use crate::runtime::FailureKind;

/// Slots of the probe table (chain.lua's `probe`).
pub(crate) mod probe {
    /// Bumped before and after every script call: the watchdog tells one long call from many.
    pub const CALLS: i32 = 1;
    /// The batch index being run (1-based; 0: none).
    pub const POS: i32 = 2;
    /// The caller of the running call (`who`: filters -1, -2, ...; analyzers 1, 2, ...).
    pub const WHO: i32 = 3;
    /// Overlap scheduler: the last batch index started (0: not running).
    pub const STARTED: i32 = 4;
    /// Overlap scheduler: the set of batch indices in flight.
    pub const LIVE: i32 = 5;
    /// The failure records not yet taken (chain.lua's `errors`).
    pub const ERRORS: i32 = 6;
    /// The kind of a failure the engine caused (the watchdog's timeout), for chain.lua to
    /// record ([`super::kind`]; 0: none). Reset at every call.
    pub const KIND: i32 = 7;
    /// How many slots there are.
    pub const LEN: i32 = 7;
}

/// Fields of a failure record (`{ who, message, value, pos, where, kind }`).
pub(crate) mod record {
    /// The caller (`who`).
    pub const WHO: i32 = 1;
    /// The message.
    pub const MESSAGE: i32 = 2;
    /// The event value the call had.
    pub const VALUE: i32 = 3;
    /// The batch index (1-based; 0: none).
    pub const POS: i32 = 4;
    /// The first traceback line inside a script.
    pub const WHERE: i32 = 5;
    /// The kind ([`super::kind`]), recorded where the failure happened.
    pub const KIND: i32 = 6;
}

/// Failure kinds as numbers in Lua.
pub(crate) mod kind {
    /// A Lua error raised by the script or a library it called.
    pub const ERROR: i64 = 1;
    /// The watchdog stopped the call.
    pub const TIMEOUT: i64 = 2;
    /// The runtime reached its memory limit.
    pub const MEMORY: i64 = 3;
    /// chain.lua cut a routing loop.
    pub const ROUTING_LOOP: i64 = 4;
}

impl FailureKind {
    /// The kind chain.lua recorded as `code`.
    pub(crate) fn from_code(code: i64) -> FailureKind {
        match code {
            kind::TIMEOUT => FailureKind::Timeout,
            kind::MEMORY => FailureKind::Memory,
            kind::ROUTING_LOOP => FailureKind::RoutingLoop,
            _ => FailureKind::Error,
        }
    }
}

/// The names above as chain.lua receives them: `{ probe = {...}, record = {...}, kind = {...} }`.
pub(crate) fn slots(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let p = lua.create_table()?;
    for (k, v) in [
        ("calls", probe::CALLS),
        ("pos", probe::POS),
        ("who", probe::WHO),
        ("started", probe::STARTED),
        ("live", probe::LIVE),
        ("errors", probe::ERRORS),
        ("kind", probe::KIND),
    ] {
        p.raw_set(k, v)?;
    }
    let r = lua.create_table()?;
    for (k, v) in [
        ("who", record::WHO),
        ("message", record::MESSAGE),
        ("value", record::VALUE),
        ("pos", record::POS),
        ("where", record::WHERE),
        ("kind", record::KIND),
    ] {
        r.raw_set(k, v)?;
    }
    let kinds = lua.create_table()?;
    for (k, v) in [
        ("error", kind::ERROR),
        ("timeout", kind::TIMEOUT),
        ("memory", kind::MEMORY),
        ("routing_loop", kind::ROUTING_LOOP),
    ] {
        kinds.raw_set(k, v)?;
    }
    t.raw_set("probe", p)?;
    t.raw_set("record", r)?;
    t.raw_set("kind", kinds)?;
    Ok(t)
}

/// A new probe table with every slot present (so that writes never allocate).
pub(crate) fn new_probe(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(probe::LEN as usize, 0)?;
    for i in 1..=probe::LEN {
        t.raw_set(i, 0)?;
    }
    Ok(t)
}
