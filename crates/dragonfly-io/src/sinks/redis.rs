//! `redis://HOST:PORT/KEY?mode=list|rpush|channel`: LPUSH (like Suricata's `list` mode, read
//! FIFO with BRPOP), RPUSH, or PUBLISH one message per event, a whole batch per round trip.

use std::io;

use super::Sink;
use crate::redis_uri::{RedisMode, RedisUri};
use crate::Batch;

/// LPUSH, RPUSH or PUBLISH per message.
pub struct RedisSink {
    uri: RedisUri,
    con: Option<redis::Connection>,
}

impl RedisSink {
    /// A sink for `uri` (connects lazily).
    pub fn new(uri: RedisUri) -> Self {
        Self { uri, con: None }
    }
}

fn err(e: redis::RedisError) -> io::Error {
    io::Error::other(e.to_string())
}

impl Sink for RedisSink {
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        if self.con.is_none() {
            self.con = Some(self.uri.connect().map_err(err)?);
        }
        let cmd = match self.uri.mode {
            RedisMode::List => "LPUSH",
            RedisMode::Rpush => "RPUSH",
            RedisMode::Channel => "PUBLISH",
        };
        let mut p = redis::pipe();
        for msg in batch.iter() {
            let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
            p.cmd(cmd).arg(&self.uri.key).arg(msg).ignore();
        }
        let res: redis::RedisResult<()> = p.query(self.con.as_mut().expect("connected above"));
        if let Err(e) = res {
            self.con = None;
            return Err(err(e));
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.con = None;
        Ok(())
    }
}

/// `redis://HOST:PORT/KEY?mode=list|rpush|channel`
pub const REDIS: super::SinkScheme = super::SinkScheme {
    name: "redis",
    form: "redis://HOST:PORT/KEY?mode=list|rpush|channel",
    options: &[],
    query: crate::redis_uri::OUTPUT_QUERY,
    parse: |uri, rest, _, _| {
        Ok(Box::new(RedisOutput {
            uri: crate::redis_uri::RedisUri::parse_with(uri, rest, crate::redis_uri::OUTPUT_QUERY)?,
        }))
    },
};

#[derive(Debug)]
struct RedisOutput {
    uri: crate::redis_uri::RedisUri,
}

impl super::Destination for RedisOutput {
    fn scheme(&self) -> &'static super::SinkScheme {
        &REDIS
    }
    fn describe(&self) -> String {
        let u = &self.uri;
        format!("redis://{}:{}/{} ({:?})", u.host, u.port, u.key, u.mode)
    }
    fn open(&self) -> std::io::Result<Box<dyn super::Sink>> {
        Ok(Box::new(RedisSink::new(self.uri.clone())))
    }
}
