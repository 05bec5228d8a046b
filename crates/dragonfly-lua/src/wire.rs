//! The wiring between the Rust runtime and the Lua it runs, in one place.
//!
//! Lua code the crate loads (each a chunk compiled from a Rust string or file):
//! - `chain.lua` (`=dragonfly-chain`): routing between scripts, the call wrapper, failure
//!   records; it names the numbers below (`P_CALLS`, `K_LOOP`, ...) and [`chain_source`]
//!   writes them in before it is loaded;
//! - `sandbox.lua` (`=dragonfly-sandbox`): each script's environment;
//! - [`crate::libs::read_only_mt`] (`=dragonfly-read-only`): the metatable of shared tables;
//! - the two Lua wrappers of the lazy proxies' metamethods (`=dragonfly-lazy`, runtime.rs).
//!
//! Functions chain.lua makes for scripts: `dragonfly.analyze_event`, `dragonfly.output_event`
//! and its alias `forward_event` (attached to the `dragonfly` table by `Runtime::new`; the
//! rest of that table is made in `libs/dragonfly.rs`).
//!
//! C functions chain.lua is handed, through which a call's outcome reaches Rust
//! (outcome.rs): `out_raw` (`fast::output_event`: an output line), `fail_raw`
//! (`outcome::record_failure`: a failed call and its kind) and `unknown_raw`
//! (`outcome::note_unknown`: a tag that names no analyzer). The only outcome chain.lua keeps
//! itself is `counts`, the events each analyzer received, read when taken.
//!
//! Registry entries: `watchdog::PROBE_KEY` (the probe table below, for the watchdog's hook
//! and for salvaging a runtime given up), `outcome::CHANNEL_KEY` (the runtime's channel:
//! routing tables and the outcome) and `fast::ARRAY_MT_KEY` (cjson's array metatable), all
//! keyed by the address of a static; `dragonfly.sched` (the overlap scheduler's state,
//! hiredis.rs), `dragonfly.copy` (chain.lua's deep copy, json.rs) and `dragonfly.frozen` (the
//! set of read-only shared tables, libs/mod.rs), by name. App data: the channel's pointer
//! (outcome.rs), cjson's array metatable (libs/cjson.rs) and the mark that scripts are
//! sealed (libs/dragonfly.rs).
//!
//! The probe is a Lua array (LuaJIT keeps it in the array part: a read or write from the
//! hook or from chain.lua is one indexed access, and the hook can read it without
//! allocating). Its slots are named here and written into chain.lua as constants, so no side
//! uses a bare number in its source.

use mlua::{Lua, Table};

use crate::outcome::FailureKind;

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
    /// The kind of a failure the engine caused (the watchdog's timeout), for chain.lua to
    /// record ([`super::kind`]; 0: none). Reset at every call.
    pub const KIND: i32 = 6;
    /// Set (1) by a call that wants the batch to pause after the current event: a timer set
    /// under the event-time clock, which may fall due before the next event (the worker
    /// fires it, then goes on). Cleared by chain.lua when it pauses.
    pub const PAUSE: i32 = 7;
    /// How many slots there are.
    pub const LEN: i32 = 7;
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

/// Every name chain.lua uses for a number above, with that number.
const NAMES: &[(&str, i64)] = &[
    ("P_CALLS", probe::CALLS as i64),
    ("P_POS", probe::POS as i64),
    ("P_WHO", probe::WHO as i64),
    ("P_STARTED", probe::STARTED as i64),
    ("P_LIVE", probe::LIVE as i64),
    ("P_KIND", probe::KIND as i64),
    ("P_PAUSE", probe::PAUSE as i64),
    ("K_ERROR", kind::ERROR),
    ("K_TIMEOUT", kind::TIMEOUT),
    ("K_MEMORY", kind::MEMORY),
    ("K_LOOP", kind::ROUTING_LOOP),
];

/// chain.lua's source with every name above replaced by its number (whole words only), so
/// LuaJIT compiles constant indices: read from upvalues instead, a 5-analyzer chain ran ~10%
/// slower (scripts/bench (d), same run).
pub(crate) fn chain_source(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find(|c: char| c.is_ascii_uppercase()) {
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        let word_len = from
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(from.len());
        let word = &from[..word_len];
        let joined = before
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        match NAMES.iter().find(|(n, _)| *n == word) {
            Some((_, v)) if !joined => out.push_str(&v.to_string()),
            _ => out.push_str(word),
        }
        rest = &from[word_len..];
    }
    out.push_str(rest);
    out
}

/// The probe, in the Lua state's app data, for the `mlua` callbacks (`timer_event` reads
/// the batch position of the event whose call is running).
pub(crate) struct ProbeRef(pub Table);

/// Ask the batch being run to pause after the current event ([`probe::PAUSE`]).
pub(crate) fn pause_batch(lua: &Lua) {
    if let Some(p) = lua.app_data_ref::<ProbeRef>() {
        let _ = p.0.raw_set(probe::PAUSE, 1);
    }
}

/// The batch position (1-based) of the input event whose call is running, 0 for none.
pub(crate) fn running_event(lua: &Lua) -> usize {
    lua.app_data_ref::<ProbeRef>()
        .and_then(|p| p.0.raw_get::<usize>(probe::POS).ok())
        .unwrap_or(0)
}

/// A new probe table with every slot present (so that writes never allocate).
pub(crate) fn new_probe(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(probe::LEN as usize, 0)?;
    for i in 1..=probe::LEN {
        t.raw_set(i, 0)?;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_in_chain_lua_becomes_its_number_and_nothing_else_changes() {
        let src = chain_source(include_str!("chain.lua"));
        for (name, _) in NAMES {
            assert!(!src.contains(name), "{name} left in chain.lua");
        }
        assert!(src.contains("probe[1] = probe[1] + 1"), "the call counter");
        // whole words only: a longer name, or one inside another word, is left alone
        assert_eq!(
            chain_source("P_CALLS P_CALLSX XP_CALLS MAX_HOPS K_LOOP)"),
            "1 P_CALLSX XP_CALLS MAX_HOPS 4)"
        );
        // every name of the table is one chain.lua uses (none is stale)
        let raw = include_str!("chain.lua");
        for (name, _) in NAMES {
            assert!(raw.contains(name) || *name == "K_TIMEOUT", "{name} unused");
        }
    }
}
