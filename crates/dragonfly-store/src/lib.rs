//! State for analyzers: Redis commands and replies.
//!
//! [`Reply`] is the RESP2 reply model the Lua `hiredis` API converts from; [`Connection`] is
//! what a Lua runtime talks to. The [`embedded`] store answers in-process when no Redis server
//! is configured.

pub mod embedded;
pub use dragonfly_models::numfmt;
mod cluster_pipe;
pub mod redis_backend;
mod reply;
pub mod resp;

pub use reply::Reply;

/// One client connection to a store (one per Lua runtime).
pub trait Connection: Send {
    /// Run one command; each element is one Redis argument.
    fn command(&mut self, args: &[Vec<u8>]) -> Reply;

    /// Queue a command whose reply is read later by [`Connection::get_reply`] (pipelining).
    fn append_command(&mut self, args: Vec<Vec<u8>>);

    /// The reply to the oldest appended command, or `None` when nothing is pending.
    fn get_reply(&mut self) -> Option<Reply>;

    /// Queue a command whose reply is taken later with [`Connection::await_reply`] and the
    /// ticket returned, so that commands of several callers go out together (nothing is sent
    /// before [`Connection::flush`] or an await); `None` when the connection answers at once
    /// anyway (call [`Connection::command`] instead).
    fn submit(&mut self, _args: &[Vec<u8>]) -> Option<u64> {
        None
    }

    /// The reply to the command submitted as `ticket` (sending what is queued and reading
    /// replies as needed; replies to other commands are kept for their takers).
    fn await_reply(&mut self, ticket: u64) -> Reply {
        Reply::err(format!("ERR dragonfly-mle: no command pending as {ticket}"))
    }

    /// Send what is queued now.
    fn flush(&mut self) {}
}
