//! Inputs: one module per URI scheme.
//!
//! | scheme | module | finite |
//! |---|---|---|
//! | `file://PATH` | [`file`] | yes |
//! | `zfile://PATH` (gzip, multi-member) | [`file`] | yes |
//! | `tail://PATH` (`<` suffix: from the beginning) | [`tail`] | no |
//! | `ipc://PATH` (unix datagram, bound here) | [`ipc`] | no |
//! | `unix://PATH` (unix stream, listened on here) | [`unix`] | no |
//! | `redis://HOST:PORT/KEY?mode=list\|rpush\|channel` | [`redis`] | no |
//! | `kafka://BROKERS/TOPIC?group=NAME` | [`kafka`] | no |
//! | `nats://HOST:PORT/SUBJECT[?queue=G \| ?stream=S&durable=D]` | [`nats`] | no |

pub mod file;
pub mod ipc;
pub mod kafka;
pub mod nats;
pub mod redis;
pub mod socket;
pub mod tail;
pub mod unix;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::framing::{Frame, LineFramer};
use crate::ratelimit;
use crate::uri::{self, UriError};
use crate::Batch;

/// Where the lines of a source go. The engine implements it (partitioning lines over workers).
pub trait Emit: Send {
    /// Hand over a batch; `false` means the pipeline is gone and the source should stop.
    fn emit(&mut self, batch: Batch) -> bool;
    /// Another handle for a second thread of the same source (e.g. one per stream connection).
    fn clone_box(&self) -> Box<dyn Emit>;
}

/// Counters of one input, read by the stats reporter.
#[derive(Debug, Default)]
pub struct InputCounters {
    /// Lines (or datagrams) handed to the pipeline.
    pub lines: AtomicU64,
    pub bytes: AtomicU64,
    /// Blank lines, skipped.
    pub empty: AtomicU64,
    /// Lines over the maximum length, skipped.
    pub oversized: AtomicU64,
    /// Datagrams larger than the receive buffer, skipped.
    pub truncated: AtomicU64,
    /// Times the file under a tail was truncated or replaced.
    pub truncations: AtomicU64,
    /// Times a tailed file was rotated (renamed away and re-created).
    pub rotations: AtomicU64,
    /// Messages dropped because the input's in-memory buffer was full (socket inputs only:
    /// they never push back on their sender, which would drop instead).
    pub overflow: AtomicU64,
    /// I/O errors.
    pub errors: AtomicU64,
}

/// What a running source gets from the engine.
pub struct SourceCtx {
    /// The input's tag from config.lua, used in log lines.
    pub tag: String,
    pub counters: Arc<InputCounters>,
    /// Set when the engine stops: the source flushes what it has and returns.
    pub shutdown: Arc<AtomicBool>,
    pub max_line: usize,
    /// Lines per batch handed over at most.
    pub batch_lines: usize,
    pub out: Box<dyn Emit>,
}

impl SourceCtx {
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}

/// A parsed input URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    File(PathBuf),
    ZFile(PathBuf),
    Tail {
        path: PathBuf,
        from_start: bool,
        /// `options = { checkpoint = FILE }`: where the position is kept across restarts.
        checkpoint: Option<PathBuf>,
    },
    Ipc(PathBuf, socket::SocketOptions),
    Unix(PathBuf, socket::SocketOptions),
    Redis(crate::redis_uri::RedisUri),
    Kafka(crate::kafka_uri::KafkaUri),
    Nats(crate::nats_uri::NatsUri),
}

impl SourceSpec {
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        let (scheme, rest) = uri::split(uri)?;
        Ok(match scheme {
            "file" => SourceSpec::File(uri::path(rest)),
            "zfile" => SourceSpec::ZFile(uri::path(rest)),
            "tail" => match rest.strip_suffix('<') {
                Some(p) if !p.is_empty() => SourceSpec::Tail {
                    path: uri::path(p),
                    from_start: true,
                    checkpoint: None,
                },
                Some(_) => return Err(UriError::NoPath(uri.to_string())),
                None => SourceSpec::Tail {
                    path: uri::path(rest),
                    from_start: false,
                    checkpoint: None,
                },
            },
            "ipc" => SourceSpec::Ipc(uri::path(rest), Default::default()),
            "unix" => SourceSpec::Unix(uri::path(rest), Default::default()),
            "redis" => SourceSpec::Redis(crate::redis_uri::RedisUri::parse(uri, rest)?),
            "kafka" => SourceSpec::Kafka(crate::kafka_uri::KafkaUri::parse(uri, rest)?),
            "nats" => SourceSpec::Nats(crate::nats_uri::NatsUri::parse(uri, rest)?),
            other => {
                return Err(UriError::Unsupported {
                    scheme: other.to_string(),
                    role: "as an input",
                    supported: "file, zfile, tail, ipc, unix, redis, kafka, nats",
                })
            }
        })
    }

    /// Apply config.lua's `options` table; only inputs backed by a client library take one.
    pub fn with_options(self, options: &[(String, String)]) -> Result<Self, UriError> {
        match self {
            _ if options.is_empty() => Ok(self),
            SourceSpec::Kafka(u) => Ok(SourceSpec::Kafka(u.with_options(options))),
            SourceSpec::Ipc(p, _) => Ok(SourceSpec::Ipc(p, socket::SocketOptions::parse(options)?)),
            SourceSpec::Unix(p, _) => Ok(SourceSpec::Unix(
                p,
                socket::SocketOptions::parse(options)?,
            )),
            SourceSpec::Tail {
                path, from_start, ..
            } if options.len() == 1 && options[0].0 == "checkpoint" => Ok(SourceSpec::Tail {
                path,
                from_start,
                checkpoint: Some(uri::path(&options[0].1)),
            }),
            _ => Err(UriError::Unsupported {
                scheme: "options".into(),
                role: "for this input",
                supported: "kafka:// (librdkafka properties), tail:// (checkpoint = FILE), ipc:// and unix:// (mode, owner, group, buffer_mb)",
            }),
        }
    }

    /// Rewrite the paths this input opens again later (a followed file and its checkpoint)
    /// with `f` (see the engine's `-c` handling); the first refusal is returned.
    pub fn confine(
        &mut self,
        f: &mut dyn FnMut(&str, &Path) -> Result<PathBuf, String>,
    ) -> Result<(), String> {
        if let SourceSpec::Tail {
            path, checkpoint, ..
        } = self
        {
            *path = f("followed file", path)?;
            if let Some(c) = checkpoint {
                *c = f("checkpoint", c)?;
            }
        }
        Ok(())
    }

    /// The checkpoint file this input writes, if any.
    pub fn checkpoint(&self) -> Option<&Path> {
        match self {
            SourceSpec::Tail {
                checkpoint: Some(c),
                ..
            } => Some(c),
            _ => None,
        }
    }

    /// Inputs that end by themselves (what `--exit-on-eof` waits for).
    pub fn is_finite(&self) -> bool {
        matches!(self, SourceSpec::File(_) | SourceSpec::ZFile(_))
    }

    /// The file or socket path (None for network inputs).
    pub fn path(&self) -> Option<&Path> {
        match self {
            SourceSpec::File(p)
            | SourceSpec::ZFile(p)
            | SourceSpec::Ipc(p, _)
            | SourceSpec::Unix(p, _)
            | SourceSpec::Tail { path: p, .. } => Some(p),
            SourceSpec::Redis(_) | SourceSpec::Kafka(_) | SourceSpec::Nats(_) => None,
        }
    }

    /// Work that must happen before privileges are dropped or the process is chrooted:
    /// sockets are bound and files opened here.
    pub fn prepare(&self, max_line: usize) -> std::io::Result<Prepared> {
        Ok(match self {
            SourceSpec::File(p) => Prepared::File(file::open(p, false)?),
            SourceSpec::ZFile(p) => Prepared::File(file::open(p, true)?),
            SourceSpec::Tail {
                path,
                from_start,
                checkpoint,
            } => Prepared::Tail(Box::new(tail::Tail::new(
                path.clone(),
                *from_start,
                max_line,
                checkpoint.clone(),
            ))),
            SourceSpec::Ipc(p, o) => Prepared::Ipc(ipc::bind(p, o)?),
            SourceSpec::Unix(p, o) => Prepared::Unix(unix::bind(p, o)?),
            SourceSpec::Redis(u) => Prepared::Redis(redis::RedisSource { uri: u.clone() }),
            SourceSpec::Kafka(u) => Prepared::Kafka(kafka::KafkaSource { uri: u.clone() }),
            SourceSpec::Nats(u) => Prepared::Nats(nats::NatsSource { uri: u.clone() }),
        })
    }
}

/// A source with its file opened or socket bound, ready to run on its own thread.
pub enum Prepared {
    File(Box<dyn std::io::Read + Send>),
    Tail(Box<tail::Tail>),
    Ipc(ipc::IpcSource),
    Unix(unix::UnixSource),
    Redis(redis::RedisSource),
    Kafka(kafka::KafkaSource),
    Nats(nats::NatsSource),
}

impl Prepared {
    /// Read until the input ends (finite inputs) or the engine stops.
    pub fn run(self, ctx: SourceCtx) {
        match self {
            Prepared::File(r) => file::run(r, ctx),
            Prepared::Tail(t) => t.run(ctx),
            Prepared::Ipc(s) => s.run(ctx),
            Prepared::Unix(s) => s.run(ctx),
            Prepared::Redis(s) => s.run(ctx),
            Prepared::Kafka(s) => s.run(ctx),
            Prepared::Nats(s) => s.run(ctx),
        }
    }
}

/// Turns frames into batches and counts what it skips; shared by every source.
pub(crate) struct Collector {
    batch: Batch,
    ctx_lines: usize,
    closed: bool,
}

impl Collector {
    pub fn new(ctx: &SourceCtx) -> Self {
        Self {
            batch: Batch::with_capacity(ctx.batch_lines, ctx.batch_lines * 800),
            ctx_lines: ctx.batch_lines.max(1),
            closed: false,
        }
    }

    /// Account for one frame; hands the batch over when it is full.
    pub fn frame(&mut self, ctx: &mut SourceCtx, frame: Frame<'_>) {
        match frame {
            Frame::Line(line) => {
                self.batch.push(line);
                if self.batch.len() >= self.ctx_lines {
                    self.flush(ctx);
                }
            }
            Frame::Empty => {
                let (n, log) = ratelimit::bump(&ctx.counters.empty);
                if log {
                    tracing::warn!(input = %ctx.tag, count = n, "skipped an empty line");
                }
            }
            Frame::Oversized(len) => {
                let (n, log) = ratelimit::bump(&ctx.counters.oversized);
                if log {
                    tracing::warn!(input = %ctx.tag, bytes = len, max = ctx.max_line, count = n,
                        "skipped a line longer than the maximum (engine.max_line_bytes)");
                }
            }
        }
    }

    /// A collector that never hands a batch over by itself: for sources that attach a
    /// receipt to each batch ([`Collector::attach`]) before [`Collector::flush`].
    pub fn manual(ctx: &SourceCtx) -> Self {
        let mut c = Self::new(ctx);
        c.ctx_lines = usize::MAX;
        c
    }

    /// One whole message (a Kafka record, a Redis list element, a NATS message): a trailing
    /// `\n` is dropped; blank and over-long ones are counted and skipped like lines.
    pub fn message(&mut self, ctx: &mut SourceCtx, msg: &[u8]) {
        let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
        if msg.len() > ctx.max_line {
            self.frame(ctx, Frame::Oversized(msg.len()));
        } else if msg.iter().all(|b| b.is_ascii_whitespace()) {
            self.frame(ctx, Frame::Empty);
        } else {
            self.frame(ctx, Frame::Line(msg));
        }
    }

    /// Attach a receipt to the batch being collected.
    pub fn attach(&mut self, ack: crate::ack::Ack) {
        self.batch.acks.push(ack);
    }

    /// Hand over what has been collected.
    pub fn flush(&mut self, ctx: &mut SourceCtx) {
        if self.batch.is_empty() {
            // nothing usable was read: its receipts are done at once
            self.batch.acks.clear();
            return;
        }
        let batch = self.batch.take();
        ctx.counters
            .lines
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        ctx.counters
            .bytes
            .fetch_add(batch.bytes() as u64, Ordering::Relaxed);
        if !ctx.out.emit(batch) {
            self.closed = true;
        }
    }

    /// The pipeline went away.
    pub fn closed(&self) -> bool {
        self.closed
    }
}

/// Feed a chunk through a framer into a collector.
pub(crate) fn feed(
    framer: &mut LineFramer,
    col: &mut Collector,
    ctx: &mut SourceCtx,
    chunk: &[u8],
) {
    framer.push(chunk, &mut |f| col.frame(ctx, f));
}

/// The input ended: the unterminated last line is a line.
pub(crate) fn finish(framer: &mut LineFramer, col: &mut Collector, ctx: &mut SourceCtx) {
    framer.finish(&mut |f| col.frame(ctx, f));
}

pub(crate) fn io_error(ctx: &SourceCtx, what: &str, err: &std::io::Error) {
    let (n, log) = ratelimit::bump(&ctx.counters.errors);
    if log {
        tracing::error!(input = %ctx.tag, count = n, "{what}: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_input_uris() {
        assert_eq!(
            SourceSpec::parse("tail:///var/log/eve.json<").unwrap(),
            SourceSpec::Tail {
                path: "/var/log/eve.json".into(),
                from_start: true,
                checkpoint: None,
            }
        );
        assert!(SourceSpec::parse("file://x.json").unwrap().is_finite());
        assert!(!SourceSpec::parse("ipc:///tmp/s").unwrap().is_finite());
        assert!(matches!(
            SourceSpec::parse("amqp://b/t"),
            Err(UriError::Unsupported { .. })
        ));
        assert!(matches!(
            SourceSpec::parse("eve.json"),
            Err(UriError::NoScheme(_))
        ));
    }
}
