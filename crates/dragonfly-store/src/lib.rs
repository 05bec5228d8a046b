//! State for analyzers: Redis commands and replies.
//!
//! [`Reply`] is the RESP2 reply model the Lua `hiredis` API converts from; [`Connection`] is
//! what a Lua runtime talks to. The [`embedded`] store answers in-process when no Redis server
//! is configured.

pub mod embedded;
pub use dragonfly_models::numfmt;
pub mod redis_backend;
mod reply;

pub use reply::Reply;

/// One client connection to a store (one per Lua runtime).
pub trait Connection: Send {
    /// Run one command; each element is one Redis argument.
    fn command(&mut self, args: &[Vec<u8>]) -> Reply;

    /// Queue a command whose reply is read later by [`Connection::get_reply`] (pipelining).
    fn append_command(&mut self, args: Vec<Vec<u8>>);

    /// The reply to the oldest appended command, or `None` when nothing is pending.
    fn get_reply(&mut self) -> Option<Reply>;
}
