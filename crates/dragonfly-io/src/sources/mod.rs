//! Inputs: one module per URI scheme, each exporting one row of [`SCHEMES`].
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
//! | `syslog://PATH`, `syslog://udp:HOST:PORT`, `syslog://tcp:HOST:PORT` | [`syslog`] | no |
//! | `parquet://DIR` (an archive the `parquet://` output wrote, replayed in event time) | [`parquet`] | yes |

pub mod file;
pub mod ipc;
pub mod kafka;
pub mod nats;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod redis;
pub mod socket;
pub mod stream;
pub mod syslog;
pub mod tail;
pub mod unix;

use dragonfly_event::sync::Locked;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Bytes of those lines.
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
    /// Stream connections closed at once because [`MAX_CONNECTIONS`] were open and none
    /// could make room.
    pub refused: AtomicU64,
    /// Stream connections closed to make room for a new one at [`MAX_CONNECTIONS`] (the one
    /// that had gone longest without a whole line).
    pub evicted: AtomicU64,
    /// Stream connections closed because no whole line came for the idle timeout.
    pub idle_closed: AtomicU64,
    /// Partial lines dropped because the partial lines of every connection together reached
    /// the input's cap (the largest is dropped first).
    pub partial_dropped: AtomicU64,
    /// Times a followed path was found to be a symbolic link, a FIFO or anything but a
    /// regular file, and was not opened.
    pub not_followed: AtomicU64,
    /// Kafka: how far behind the end of each assigned partition the consumer is, in
    /// messages, as librdkafka last reported it (every second); empty for other inputs.
    pub lag: std::sync::Mutex<std::collections::BTreeMap<i32, i64>>,
    /// Whether the input can take events now, and if not why (`/health`, the live page).
    pub state: std::sync::Mutex<InputState>,
}

/// What an input is doing, as `/health` and the live page show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputState {
    /// It is open (reading, following, listening, subscribed) or has ended.
    pub ready: bool,
    /// One word: `starting`, `reading`, `following`, `listening`, `consuming`, `ended`,
    /// `waiting`, `error`.
    pub what: &'static str,
    /// Why it is not ready (empty when it is).
    pub reason: String,
}

impl Default for InputState {
    fn default() -> Self {
        Self {
            ready: false,
            what: "starting",
            reason: String::new(),
        }
    }
}

/// Stream connections one input reads at a time (each has a thread and a read buffer): at
/// the cap, the quietest is closed to make room (`evicted`), or, when every one is delivering
/// lines, the new one is closed as it comes (`refused`); so a peer opening connections
/// without end costs closed connections, not memory, and never locks a real sender out.
pub const MAX_CONNECTIONS: usize = 128;

/// What a running source gets from the engine.
pub struct SourceCtx {
    /// The input's tag from config.lua, used in log lines.
    pub tag: String,
    /// The input's counters.
    pub counters: Arc<InputCounters>,
    /// Set when the engine stops: the source flushes what it has and returns.
    pub shutdown: Arc<AtomicBool>,
    /// Longest line accepted.
    pub max_line: usize,
    /// Lines per batch handed over at most.
    pub batch_lines: usize,
    /// Where batches go.
    pub out: Box<dyn Emit>,
}

impl SourceCtx {
    /// The engine is stopping.
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// The input can take events (`what`: reading, following, listening, ...). Said in the
    /// log when it was not before.
    pub fn ready(&self, what: &'static str) {
        let mut st = self.counters.state.locked();
        if !st.ready && !st.reason.is_empty() {
            tracing::info!(input = %self.tag, "{what} again");
        }
        *st = InputState {
            ready: true,
            what,
            reason: String::new(),
        };
    }

    /// The input cannot take events now, for `reason` (state only: for sources that log and
    /// count their failures themselves).
    pub fn not_ready(&self, reason: String) {
        let mut st = self.counters.state.locked();
        *st = InputState {
            ready: false,
            what: "error",
            reason,
        };
    }

    /// The input cannot take events (`what`: waiting, error), for `reason`. Logged when the
    /// reason is new (not at every retry); counted as an I/O error when it is an error.
    pub fn blind(&self, what: &'static str, reason: String) {
        let mut st = self.counters.state.locked();
        if st.reason == reason && !st.ready {
            return;
        }
        if what == "error" {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(input = %self.tag, "{reason}; the input is not ready until this changes");
        } else {
            tracing::warn!(input = %self.tag, "{reason}");
        }
        *st = InputState {
            ready: false,
            what,
            reason,
        };
    }
}

/// The reconnect delay of the network sources (Redis, NATS): 100 ms after the first failure,
/// doubling up to 5 s, back to 100 ms once a session works. A stop cuts the wait short (it is
/// slept in steps of 50 ms).
pub(crate) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Self(Self::FIRST)
    }

    /// A session failed: wait the current delay (less if the engine stops), then double it.
    pub(crate) fn wait(&mut self, ctx: &SourceCtx) {
        let deadline = Instant::now() + self.0;
        while Instant::now() < deadline && !ctx.stopping() {
            std::thread::sleep(Duration::from_millis(50).min(self.0));
        }
        self.0 = (self.0 * 2).min(Self::MAX);
    }

    /// A session worked: the next failure waits the first delay again.
    pub(crate) fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// How long a source with receipts (tail checkpoints, Redis processing lists, Kafka commits,
/// JetStream acks) waits at shutdown for every output to confirm what it read. What is not
/// confirmed by then is read again on the next start (or redelivered by the server).
pub const RECEIPT_WAIT: Duration = Duration::from_secs(30);

/// At shutdown: call `settled` every `step` until it says there is nothing more to wait for
/// (everything confirmed, or a receipt failed), for at most [`RECEIPT_WAIT`]. `settled` does
/// the source's own work of each round (save a checkpoint, commit, ack).
pub(crate) fn await_receipts(step: Duration, mut settled: impl FnMut() -> bool) {
    let deadline = Instant::now() + RECEIPT_WAIT;
    while !settled() && Instant::now() < deadline {
        std::thread::sleep(step);
    }
}

pub use crate::options::{OptKind, OptionDoc, Opts};

/// One input scheme: its row in [`SCHEMES`]. Everything the engine, the messages and the
/// reference need comes from here; adding a scheme is one module exporting one row.
#[derive(Debug)]
pub struct SourceScheme {
    /// The scheme's name (before `://`).
    pub name: &'static str,
    /// The URI's form, e.g. `tail://PATH[<]`.
    pub form: &'static str,
    /// Ends by itself (what `--exit-on-eof` waits for).
    pub finite: bool,
    /// Options it takes (`options = { ... }` in config.lua); `*` as a name: any (passed on to a
    /// client library).
    pub options: &'static [OptionDoc],
    /// Query parameters its URI takes (`?group=NAME`).
    pub query: &'static [OptionDoc],
    /// Parse what follows `scheme://` (`uri` is the whole URI, for messages) with config.lua's
    /// options, checked against [`SourceScheme::options`].
    pub parse: ParseFn,
}

/// A scheme's parser: the whole URI (for messages), what follows `scheme://`, the options.
pub type ParseFn = fn(uri: &str, rest: &str, options: &Opts) -> Result<Box<dyn Source>, UriError>;

/// A parsed input, ready to be opened.
pub trait Source: std::fmt::Debug + Send {
    /// Its row.
    fn scheme(&self) -> &'static SourceScheme;
    /// The file or socket path (None for network inputs).
    fn path(&self) -> Option<&Path> {
        None
    }
    /// The checkpoint file this input writes, if any.
    fn checkpoint(&self) -> Option<&Path> {
        None
    }
    /// Rewrite the paths this input opens again later (a followed file and its checkpoint)
    /// with `f` (see the engine's `-c` handling); the first refusal is returned.
    fn confine(
        &mut self,
        _f: &mut dyn FnMut(&str, &Path) -> Result<PathBuf, String>,
    ) -> Result<(), String> {
        Ok(())
    }
    /// Work that must happen before privileges are dropped or the process is chrooted:
    /// sockets are bound and files opened here.
    fn prepare(&self, max_line: usize) -> std::io::Result<Box<dyn Prepared>>;
    /// What [`Source::prepare`] would find, found without opening or binding anything
    /// (`--check`); `what` names the input in messages. Network clients check nothing: they
    /// connect when they run, and retry.
    fn check(&self, _found: &mut crate::preflight::Findings, _what: &str) {}
    /// What the running input needs as the user it runs as (after `-p` drops privileges): a
    /// followed file is opened again after each rotation.
    fn check_as_runner(&self, _found: &mut crate::preflight::Findings, _what: &str) {}
}

/// A source with its file opened or socket bound, ready to run on its own thread.
pub trait Prepared: Send {
    /// Read until the input ends (finite inputs) or the engine stops.
    fn run(self: Box<Self>, ctx: SourceCtx);
}

/// Every input scheme.
pub const SCHEMES: &[&SourceScheme] = &[
    &file::FILE,
    &file::ZFILE,
    &tail::TAIL,
    &ipc::IPC,
    &unix::UNIX,
    &redis::REDIS,
    &kafka::KAFKA,
    &nats::NATS,
    &syslog::SYSLOG,
    #[cfg(feature = "parquet")]
    &parquet::PARQUET,
];

/// The names of every input scheme, for messages.
pub fn scheme_names() -> String {
    SCHEMES
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parse an input URI with config.lua's `options` (sorted by name).
pub fn parse(uri: &str, options: &[(String, String)]) -> Result<Box<dyn Source>, UriError> {
    let (scheme, rest) = uri::split(uri)?;
    let s = SCHEMES
        .iter()
        .find(|s| s.name == scheme)
        .ok_or_else(|| UriError::Unsupported {
            scheme: scheme.to_string(),
            role: "as an input",
            supported: scheme_names(),
        })?;
    let options = Opts::parse(s.name, s.options, options)?;
    (s.parse)(uri, rest, &options)
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

    /// A collector that allocates only as lines come (one per stream connection: an idle
    /// connection holds no batch).
    pub fn lazy(ctx: &SourceCtx) -> Self {
        Self {
            batch: Batch::default(),
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
        let t = parse("tail:///var/log/eve.json<", &[]).unwrap();
        assert_eq!(t.scheme().name, "tail");
        assert_eq!(t.path(), Some(Path::new("/var/log/eve.json")));
        assert!(parse("file://x.json", &[]).unwrap().scheme().finite);
        assert!(!parse("ipc:///tmp/s", &[]).unwrap().scheme().finite);
        match parse("amqp://b/t", &[]) {
            Err(UriError::Unsupported { supported, .. }) => {
                assert_eq!(supported, scheme_names());
                assert!(supported.contains("tail") && supported.contains("nats"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("eve.json", &[]), Err(UriError::NoScheme(_))));
        let opts = vec![("checkpoint".to_string(), "state/t.ckpt".to_string())];
        let t = parse("tail://eve.json", &opts).unwrap();
        assert_eq!(t.checkpoint(), Some(Path::new("state/t.ckpt")));
        let bad = vec![("colour".to_string(), "blue".to_string())];
        assert!(matches!(
            parse("file://x", &bad),
            Err(UriError::BadOption(_))
        ));
        assert!(matches!(
            parse("tail://x", &bad),
            Err(UriError::BadOption(_))
        ));
    }

    #[test]
    fn every_scheme_is_named_once() {
        let mut names: Vec<&str> = SCHEMES.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SCHEMES.len());
    }
}
