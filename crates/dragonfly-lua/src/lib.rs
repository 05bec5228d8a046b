//! The Lua (LuaJIT) runtime of Dragonfly MLE: loads filter and analyzer scripts written for the
//! original engine and gives them the libraries they expect (`cjson_safe`, `dragonfly`,
//! `hiredis`). See `docs/lua-api.md` for the script-facing reference.
//!
//! How the Rust side and the Lua it loads are wired — the Lua chunks (chain.lua,
//! sandbox.lua, the read-only metatable), the registry entries, the probe table's slots and
//! the failure records' fields — is listed in one place, `src/wire.rs`; neither side uses a
//! bare slot number.

mod fast;
pub mod json;
mod lazy;
pub mod libs;
pub mod mailbox;
pub mod runtime;
pub mod spec;
pub mod watchdog;
mod wire;

pub use lazy::encode_walking_every_field;
pub use libs::hiredis::Backend;
pub use mailbox::{Mailbox, TagKind, TimerRequest};
pub use runtime::{
    BatchResult, Caller, Failure, FailureKind, Limits, Lines, Results, Runtime, RuntimeSpec,
    ScriptError, ScriptKind, ScriptSpec,
};
pub use spec::SpecBuilder;
