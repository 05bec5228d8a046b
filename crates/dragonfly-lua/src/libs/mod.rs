//! The libraries every script sees: `cjson_safe`/`cjson`, `dragonfly`, `hiredis`.

pub mod cjson;
pub mod dragonfly;
pub mod hiredis;
