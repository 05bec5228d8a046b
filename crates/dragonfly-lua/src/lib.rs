//! The Lua (LuaJIT) runtime of Dragonfly MLE: loads filter and analyzer scripts written for the
//! original engine and gives them the libraries they expect (`cjson_safe`, `dragonfly`,
//! `hiredis`). See `docs/lua-api.md` for the script-facing reference.
//!
//! How the Rust side and the Lua it loads are wired — the Lua chunks (chain.lua,
//! sandbox.lua, the read-only metatable), the C functions chain.lua is handed, the registry
//! and app-data entries, the probe table's slots and the failure kinds — is listed in one
//! place, `src/wire.rs`; neither side uses a bare slot number. Everything a call does lands
//! in one [`Outcome`] (`src/outcome.rs`), which the engine moves out after each call.

mod decode;
mod encode;
mod fast;
pub mod json;
mod lazy;
pub mod libs;
pub mod outcome;
mod raw;
pub mod runtime;
pub mod spec;
pub mod watchdog;
mod wire;

pub use encode::encode_walking_every_field;
pub use libs::hiredis::Backend;
pub use outcome::{Outcome, TagKind, TimerRequest};
pub use runtime::{
    BatchResult, Caller, Edge, EdgeTo, Failure, FailureKind, Limits, Lines, Results, Runtime,
    RuntimeSpec, ScriptError, ScriptKind, ScriptSpec, TapPlan,
};
pub use spec::SpecBuilder;
