//! Outputs: one module per URI scheme.
//!
//! | scheme | module | writes |
//! |---|---|---|
//! | `file://PATH` (relative paths under LOGDIR) | [`file`] | one line per message, appended |
//! | `ipc://PATH` | [`ipc`] | one datagram per message to a socket bound by someone else |
//! | `redis://HOST:PORT/KEY?mode=list\|rpush\|channel` | [`redis`] | LPUSH, RPUSH or PUBLISH per message |
//! | `kafka://BROKERS/TOPIC[?key=FIELD]` | [`kafka`] | one record per message, delivery confirmed on flush |
//! | `nats://HOST:PORT/SUBJECT[?jetstream=1]` | [`nats`] | one message per event (JetStream: acknowledged on flush) |
//!
//! Batches handed to a sink hold one message per entry, each ending with `\n`.

pub mod file;
pub mod ipc;
pub mod kafka;
pub mod nats;
pub mod redis;

use std::io;
use std::path::{Path, PathBuf};

use crate::uri::{self, UriError};
use crate::Batch;

/// A destination for encoded messages.
pub trait Sink: Send {
    /// Write every message of the batch (each ends with `\n`).
    fn write(&mut self, batch: &Batch) -> io::Result<()>;
    /// Push buffered bytes to the kernel.
    fn flush(&mut self) -> io::Result<()>;
    /// Reopen the destination (SIGHUP / SIGUSR1 after log rotation).
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Messages given up on since the last call (delivery failures found at flush).
    fn take_dropped(&mut self) -> u64 {
        0
    }
    /// Whether a failed `write` or `flush` kept the messages (to be written by a later
    /// `flush`), so that the caller must retry the flush and never write them again.
    fn retains_on_error(&self) -> bool {
        false
    }
    /// Give what was opened to the user the engine drops to (`-p`), so that it can go on
    /// writing and reopen after rotation. Only files have an owner to change.
    fn hand_over(&self, _uid: u32, _gid: u32) -> io::Result<()> {
        Ok(())
    }
}

/// A parsed output URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    File(PathBuf),
    Ipc(PathBuf),
    Redis(crate::redis_uri::RedisUri),
    Kafka(crate::kafka_uri::KafkaUri),
    Nats(crate::nats_uri::NatsUri),
}

impl SinkSpec {
    /// Parse an output URI; relative file paths are taken under `logdir`.
    pub fn parse(uri: &str, logdir: &Path) -> Result<Self, UriError> {
        let (scheme, rest) = uri::split(uri)?;
        Ok(match scheme {
            "file" => {
                let p = uri::path(rest);
                SinkSpec::File(if p.is_absolute() { p } else { logdir.join(p) })
            }
            "ipc" => SinkSpec::Ipc(uri::path(rest)),
            "redis" => SinkSpec::Redis(crate::redis_uri::RedisUri::parse(uri, rest)?),
            "kafka" => SinkSpec::Kafka(crate::kafka_uri::KafkaUri::parse(uri, rest)?),
            "nats" => SinkSpec::Nats(crate::nats_uri::NatsUri::parse(uri, rest)?),
            other => {
                return Err(UriError::Unsupported {
                    scheme: other.to_string(),
                    role: "as an output",
                    supported: "file, ipc, redis, kafka, nats".into(),
                })
            }
        })
    }

    /// Apply config.lua's `options` table; only outputs backed by a client library take one.
    pub fn with_options(self, options: &[(String, String)]) -> Result<Self, UriError> {
        match self {
            _ if options.is_empty() => Ok(self),
            SinkSpec::Kafka(u) => Ok(SinkSpec::Kafka(u.with_options(options))),
            _ => Err(UriError::Unsupported {
                scheme: "options".into(),
                role: "for this output",
                supported: "kafka://".into(),
            }),
        }
    }
}

/// Open the destination: done before privileges are dropped or the process is chrooted.
pub fn open_sink(spec: &SinkSpec) -> io::Result<Box<dyn Sink>> {
    Ok(match spec {
        SinkSpec::File(p) => Box::new(file::FileSink::open(p)?),
        SinkSpec::Ipc(p) => Box::new(ipc::IpcSink::new(p)?),
        SinkSpec::Redis(u) => Box::new(redis::RedisSink::new(u.clone())),
        SinkSpec::Kafka(u) => Box::new(kafka::KafkaSink::new(u.clone())?),
        SinkSpec::Nats(u) => Box::new(nats::NatsSink::new(u.clone())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_file_outputs_go_under_logdir() {
        assert_eq!(
            SinkSpec::parse("file://eve-mle.log", Path::new("/var/log/mle")).unwrap(),
            SinkSpec::File("/var/log/mle/eve-mle.log".into())
        );
        assert_eq!(
            SinkSpec::parse("file:///tmp/x.log", Path::new("/l")).unwrap(),
            SinkSpec::File("/tmp/x.log".into())
        );
        assert!(SinkSpec::parse("zfile://x", Path::new("/l")).is_err());
    }
}
