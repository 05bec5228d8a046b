//! The replies of store commands, one type for both backends: the embedded store builds them,
//! the Redis backend reads them off the wire (`resp`), and the Lua libraries turn them into
//! hiredis-shaped values. Its shapes are RESP2's, as hiredis shows them: the Redis backend
//! flattens RESP3 values (a set or a map into an array, a double into a bulk string).

/// A reply as Redis (RESP2) gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+TEXT`.
    Status(String),
    /// `-ERR ...`.
    Error(String),
    /// `:N`.
    Integer(i64),
    /// `$N` bytes.
    Bulk(Vec<u8>),
    /// `$-1` / `*-1`.
    Nil,
    /// `*N` replies.
    Array(Vec<Reply>),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Status("OK".into())
    }

    /// An error reply.
    pub fn err(msg: impl Into<String>) -> Reply {
        Reply::Error(msg.into())
    }

    /// A bulk string.
    pub fn bulk(b: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(b.into())
    }

    /// The WRONGTYPE error.
    pub fn wrong_type() -> Reply {
        Reply::err("WRONGTYPE Operation against a key holding the wrong kind of value")
    }

    /// The not-an-integer error.
    pub fn not_integer() -> Reply {
        Reply::err("ERR value is not an integer or out of range")
    }

    /// The wrong-number-of-arguments error for `cmd`.
    pub fn arity(cmd: &str) -> Reply {
        Reply::err(format!(
            "ERR wrong number of arguments for '{}' command",
            cmd.to_ascii_lowercase()
        ))
    }
}
