//! The Lua (LuaJIT) runtime of Dragonfly MLE: loads filter and analyzer scripts written for the
//! original engine and gives them the libraries they expect (`cjson_safe`, `dragonfly`,
//! `hiredis`). See `docs/lua-api.md` for the script-facing reference.

mod fast;
pub mod json;
mod lazy;
pub mod libs;
pub mod mailbox;
pub mod runtime;
pub mod watchdog;

pub use lazy::encode_walking_every_field;
pub use libs::hiredis::Backend;
pub use mailbox::{Mailbox, TagKind, TimerRequest};
pub use runtime::{
    BatchResult, Caller, Failure, FailureKind, Limits, Lines, Results, Runtime, RuntimeSpec,
    ScriptError, ScriptKind, ScriptSpec,
};
