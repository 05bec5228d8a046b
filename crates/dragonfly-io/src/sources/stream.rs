//! The connections of one stream input (`unix://`, `syslog://tcp:`): read on one thread, what
//! they may cost together, and which of them gives way when a new sender comes.
//!
//! Every connection of an input is a task on one thread ([`serve`]: a single-threaded tokio
//! runtime), reading through one shared buffer; what a connection holds of its own is the
//! line it has not seen the end of yet (its *partial line*), its framing state and a small
//! task. So an idle connection costs a few hundred bytes, and however many connections come
//! and go, one allocator heap serves them (per-thread caches of freed buffers cannot pile up).
//!
//! - **Partial lines have one budget per input** (`partial_mb`, default
//!   [`DEFAULT_PARTIAL_MB`] MiB, at least `max_line_bytes`): when the partial lines of every
//!   connection together pass it, the largest is dropped — its connection discards up to its
//!   next newline — and counted (`partial_dropped`). So a crowd of senders that never end a
//!   line costs the budget, not the machine (the budget may be passed by one read,
//!   [`READ_BUF`], until the drop).
//! - **Idle connections time out**: a connection that has not delivered a whole line for
//!   `idle_timeout_s` (default [`DEFAULT_IDLE_TIMEOUT_S`]) is closed (`idle_closed`).
//! - **A new sender is never locked out by idle ones**: at [`super::MAX_CONNECTIONS`], the
//!   connection that has gone longest without a whole line (one that never sent one first)
//!   is closed to make room (`evicted`), if it has been quiet for [`EVICT_QUIET`]; only when
//!   every connection is delivering lines is the new one refused (`refused`).
//! - **Backpressure**: a full pipeline blocks the thread handing it a batch, so every
//!   connection of the input waits (their senders' socket buffers fill) until it drains.
//!
//! Cost: one thread per input; a few atomic operations per read; a short lock when a
//! partial line grows past the budget or a connection comes or goes.

use dragonfly_event::sync::Locked;
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A partial line dropped larger than this is followed by [`crate::release_memory`]: the
/// allocator gives what it kept of the buffer back to the system.
pub const RELEASE_AT: usize = 64 * 1024;

/// Default of the `partial_mb` option.
pub const DEFAULT_PARTIAL_MB: usize = 64;
/// Default of the `idle_timeout_s` option.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 300;
/// How long a connection must have gone without a whole line before it may be closed to
/// make room for a new one.
pub const EVICT_QUIET: Duration = Duration::from_secs(1);

/// The stream options of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Bytes the partial lines of every connection may hold together.
    pub partial_bytes: usize,
    /// A connection without a whole line for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            partial_bytes: DEFAULT_PARTIAL_MB << 20,
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_S),
        }
    }
}

/// One connection as the input's [`Streams`] sees it.
#[derive(Debug)]
pub struct Conn {
    /// Bytes of its partial line.
    held: AtomicUsize,
    /// When it last delivered a whole line (or was accepted), as nanoseconds since `epoch`.
    last_line: AtomicU64,
    /// It has delivered a whole line.
    delivered: AtomicBool,
    /// Asked to drop its partial line (the budget is full and it holds the most).
    drop_partial: AtomicBool,
    /// Asked to close (to make room for a new connection).
    evict: AtomicBool,
}

/// The connections of one input.
#[derive(Debug)]
pub struct Streams {
    opts: StreamOptions,
    /// [`EVICT_QUIET`] (tests shorten it).
    evict_quiet: Duration,
    epoch: Instant,
    held: AtomicUsize,
    conns: Mutex<Vec<Arc<Conn>>>,
}

impl Streams {
    /// No connections yet. The partial budget is at least `max_line` (plus a read's worth),
    /// so that one line of the longest accepted size can always arrive.
    pub fn new(mut opts: StreamOptions, max_line: usize) -> Arc<Self> {
        opts.partial_bytes = opts.partial_bytes.max(max_line.saturating_add(64 * 1024));
        Arc::new(Self {
            opts,
            evict_quiet: EVICT_QUIET,
            epoch: Instant::now(),
            held: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Conn>>> {
        self.conns.locked()
    }

    /// Bytes the partial lines of every connection hold now.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// The options in force.
    pub fn options(&self) -> StreamOptions {
        self.opts
    }

    /// A new connection.
    pub fn register(self: &Arc<Self>) -> StreamConn {
        let c = Arc::new(Conn {
            held: AtomicUsize::new(0),
            last_line: AtomicU64::new(self.now()),
            delivered: AtomicBool::new(false),
            drop_partial: AtomicBool::new(false),
            evict: AtomicBool::new(false),
        });
        self.lock().push(c.clone());
        StreamConn {
            streams: self.clone(),
            conn: c,
        }
    }

    /// At the connection cap: ask the connection that has gone longest without a whole line
    /// (one that never delivered one before any that did) to close, if it has been quiet for
    /// [`EVICT_QUIET`]. True if one was asked.
    pub fn make_room(&self) -> bool {
        let now = self.now();
        let quiet = self.evict_quiet.as_nanos() as u64;
        let conns = self.lock();
        let victim = conns
            .iter()
            .filter(|c| !c.evict.load(Relaxed))
            .filter(|c| now.saturating_sub(c.last_line.load(Relaxed)) >= quiet)
            .min_by_key(|c| (c.delivered.load(Relaxed), c.last_line.load(Relaxed)));
        match victim {
            Some(c) => {
                c.evict.store(true, Relaxed);
                true
            }
            None => false,
        }
    }

    /// Connections not yet asked to close.
    pub fn open(&self) -> usize {
        self.lock()
            .iter()
            .filter(|c| !c.evict.load(Relaxed))
            .count()
    }
}

/// One connection's handle on its input's [`Streams`]; unregisters when dropped.
#[derive(Debug)]
pub struct StreamConn {
    streams: Arc<Streams>,
    conn: Arc<Conn>,
}

impl StreamConn {
    /// Its partial line now holds `bytes`. Past the input's budget, the connection holding the
    /// most is asked to drop its partial line (this one included: see
    /// [`StreamConn::take_drop`]).
    pub fn hold(&self, bytes: usize) {
        let was = self.conn.held.swap(bytes, Relaxed);
        let total = if bytes >= was {
            self.streams.held.fetch_add(bytes - was, Relaxed) + (bytes - was)
        } else {
            self.streams.held.fetch_sub(was - bytes, Relaxed) - (was - bytes)
        };
        if total > self.streams.opts.partial_bytes && bytes > was {
            let conns = self.streams.lock();
            if let Some(big) = conns
                .iter()
                .filter(|c| !c.drop_partial.load(Relaxed))
                .max_by_key(|c| c.held.load(Relaxed))
            {
                big.drop_partial.store(true, Relaxed);
            }
        }
    }

    /// Whether it was asked to drop its partial line (cleared by asking).
    pub fn take_drop(&self) -> bool {
        self.conn.drop_partial.swap(false, Relaxed)
    }

    /// It delivered a whole line.
    pub fn delivered(&self) {
        self.conn.delivered.store(true, Relaxed);
        self.conn.last_line.store(self.streams.now(), Relaxed);
    }

    /// Whether it was asked to close to make room.
    pub fn evicted(&self) -> bool {
        self.conn.evict.load(Relaxed)
    }

    /// Whether it has gone the idle timeout without a whole line.
    pub fn idle(&self) -> bool {
        let quiet = self
            .streams
            .now()
            .saturating_sub(self.conn.last_line.load(Relaxed));
        quiet >= self.streams.opts.idle_timeout.as_nanos() as u64
    }
}

impl Drop for StreamConn {
    fn drop(&mut self) {
        self.hold(0);
        self.streams.lock().retain(|c| !Arc::ptr_eq(c, &self.conn));
    }
}

/// Bytes read from a connection at a time, through the one buffer the input's connections
/// share.
pub const READ_BUF: usize = 64 * 1024;

/// How a stream input turns a connection's bytes into messages: newline-ended lines
/// ([`crate::LineFramer`]) or syslog's octet-counted or newline-ended messages.
pub(crate) trait Framing {
    /// Feed bytes as read; true when they completed at least one message.
    fn push(&mut self, data: &[u8], col: &mut super::Collector, ctx: &mut super::SourceCtx)
        -> bool;
    /// Bytes the partial message holds.
    fn held(&self) -> usize;
    /// Drop the partial message (the rest of it is skipped as it arrives); bytes dropped.
    fn abandon(&mut self) -> usize;
    /// The connection ended: what is left is a last message, if it is one.
    fn finish(&mut self, col: &mut super::Collector, ctx: &mut super::SourceCtx);
}

impl Framing for crate::LineFramer {
    fn push(
        &mut self,
        data: &[u8],
        col: &mut super::Collector,
        ctx: &mut super::SourceCtx,
    ) -> bool {
        let mut lines = false;
        crate::LineFramer::push(self, data, &mut |f| {
            lines |= matches!(f, crate::Frame::Line(_));
            col.frame(ctx, f)
        });
        lines
    }
    fn held(&self) -> usize {
        self.buffered()
    }
    fn abandon(&mut self) -> usize {
        crate::LineFramer::abandon(self)
    }
    fn finish(&mut self, col: &mut super::Collector, ctx: &mut super::SourceCtx) {
        super::finish(self, col, ctx)
    }
}

/// A connected stream socket, as the driver reads it.
pub(crate) trait Readable {
    /// Wait until a read would not block.
    fn ready(&self) -> impl std::future::Future<Output = io::Result<()>>;
    /// Read without blocking.
    fn try_read_into(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Readable for tokio::net::UnixStream {
    fn ready(&self) -> impl std::future::Future<Output = io::Result<()>> {
        self.readable()
    }
    fn try_read_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.try_read(buf)
    }
}

impl Readable for tokio::net::TcpStream {
    fn ready(&self) -> impl std::future::Future<Output = io::Result<()>> {
        self.readable()
    }
    fn try_read_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.try_read(buf)
    }
}

/// A listening socket, as [`serve`] accepts from it.
pub(crate) trait Accept {
    /// The connections it yields.
    type Conn: Readable + 'static;
    /// The next connection.
    fn next(&self) -> impl std::future::Future<Output = io::Result<Self::Conn>>;
}

impl Accept for tokio::net::UnixListener {
    type Conn = tokio::net::UnixStream;
    async fn next(&self) -> io::Result<Self::Conn> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Accept for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    async fn next(&self) -> io::Result<Self::Conn> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// How often a waiting connection looks at the engine's stop flag, the idle timeout and
/// whether it was asked to close, and hands over what it has collected.
const TICK: Duration = Duration::from_millis(100);

/// Accept connections from `listener` (made by `listen` inside the input's runtime) until the
/// engine stops, each read by a task on this one thread with the framing `framing` makes;
/// then let them finish what they have. At [`super::MAX_CONNECTIONS`], the quietest
/// connection is closed to make room ([`Streams::make_room`]); only when none can go is the
/// new one refused.
pub(crate) fn serve<L: Accept, F: Framing + 'static>(
    ctx: &super::SourceCtx,
    opts: StreamOptions,
    listen: impl FnOnce() -> io::Result<L>,
    framing: impl Fn(&super::SourceCtx) -> F,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            super::io_error(ctx, "cannot start the input's runtime", &e);
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let listener = match listen() {
            Ok(l) => l,
            Err(e) => {
                ctx.blind("error", format!("cannot listen: {e}"));
                return;
            }
        };
        ctx.ready("listening");
        let streams = Streams::new(opts, ctx.max_line);
        let buf = Rc::new(RefCell::new(vec![0u8; READ_BUF]));
        let mut tasks = Vec::new();
        while !ctx.stopping() {
            let conn = match tokio::time::timeout(TICK, listener.next()).await {
                Err(_) => continue,
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    // out of descriptors, a connection reset before it was taken: say so,
                    // wait a little, go on
                    super::io_error(ctx, "accept failed", &e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            tasks.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
            if streams.open() >= super::MAX_CONNECTIONS {
                if streams.make_room() {
                    let (n, log) = crate::ratelimit::bump(&ctx.counters.evicted);
                    if log {
                        tracing::warn!(input = %ctx.tag, count = n,
                            "{} connections are open: the one longest without a whole line was closed to make room for a new one", super::MAX_CONNECTIONS);
                    }
                } else {
                    drop(conn);
                    let (n, log) = crate::ratelimit::bump(&ctx.counters.refused);
                    if log {
                        tracing::warn!(input = %ctx.tag, count = n,
                            "{} connections are open and none has been quiet long enough to make room: a new one was closed (refused)", super::MAX_CONNECTIONS);
                    }
                    continue;
                }
            }
            let conn_ctx = super::SourceCtx {
                tag: ctx.tag.clone(),
                counters: ctx.counters.clone(),
                shutdown: ctx.shutdown.clone(),
                max_line: ctx.max_line,
                batch_lines: ctx.batch_lines,
                out: ctx.out.clone_box(),
            };
            tracing::info!(input = %ctx.tag, "stream connection accepted");
            let f = framing(ctx);
            tasks.push(tokio::task::spawn_local(drive(
                conn,
                conn_ctx,
                streams.register(),
                f,
                buf.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// Read one connection until it ends, the engine stops, it is asked to make room or it has
/// been idle for the timeout.
async fn drive<C: Readable, F: Framing>(
    conn: C,
    mut ctx: super::SourceCtx,
    handle: StreamConn,
    mut f: F,
    buf: Rc<RefCell<Vec<u8>>>,
) {
    let mut col = super::Collector::lazy(&ctx);
    loop {
        if ctx.stopping() || col.closed() {
            break;
        }
        if handle.evicted() {
            tracing::info!(input = %ctx.tag, "closing a connection to make room for a new one");
            break;
        }
        if handle.idle() {
            let (n, _) = crate::ratelimit::bump(&ctx.counters.idle_closed);
            tracing::info!(input = %ctx.tag, count = n,
                "closing a connection that sent no whole line for idle_timeout_s");
            break;
        }
        match tokio::time::timeout(TICK, conn.ready()).await {
            Err(_) => {
                col.flush(&mut ctx);
                continue;
            }
            Ok(Err(e)) => {
                super::io_error(&ctx, "stream read failed", &e);
                break;
            }
            Ok(Ok(())) => {}
        }
        // the shared buffer is borrowed only here, where nothing awaits
        let mut b = buf.borrow_mut();
        match conn.try_read_into(&mut b) {
            Ok(0) => break,
            Ok(n) => {
                if f.push(&b[..n], &mut col, &mut ctx) {
                    handle.delivered();
                }
                if n < b.len() {
                    col.flush(&mut ctx);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                super::io_error(&ctx, "stream read failed", &e);
                break;
            }
        }
        drop(b);
        if handle.take_drop() {
            let dropped = f.abandon();
            if dropped > 0 {
                if dropped > RELEASE_AT {
                    crate::release_memory();
                }
                let (c, log) = crate::ratelimit::bump(&ctx.counters.partial_dropped);
                if log {
                    tracing::warn!(input = %ctx.tag, bytes = dropped, count = c,
                        "dropped a partial line: the partial lines of every connection reached partial_mb; this one held the most");
                }
            }
        }
        handle.hold(f.held());
    }
    f.finish(&mut col, &mut ctx);
    col.flush(&mut ctx);
    tracing::debug!(input = %ctx.tag, "stream connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{Frame, LineFramer};
    use proptest::prelude::*;

    fn streams(partial: usize) -> Arc<Streams> {
        Arc::new(Streams {
            opts: StreamOptions {
                partial_bytes: partial,
                idle_timeout: Duration::from_millis(50),
            },
            evict_quiet: Duration::from_millis(30),
            epoch: Instant::now(),
            held: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
        })
    }

    #[test]
    fn the_largest_partial_line_is_dropped_past_the_budget() {
        let s = streams(100);
        let a = s.register();
        let b = s.register();
        a.hold(30);
        b.hold(60);
        assert!(!a.take_drop() && !b.take_drop());
        a.hold(50); // 110 in all: b holds the most
        assert!(!a.take_drop());
        assert!(b.take_drop());
        b.hold(0);
        assert_eq!(s.held(), 50);
        drop(a);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn room_is_made_by_the_quietest_connection_that_never_delivered() {
        let s = streams(100);
        let silent = s.register();
        let talker = s.register();
        talker.delivered();
        // nobody has been quiet long enough yet
        assert!(!s.make_room());
        std::thread::sleep(Duration::from_millis(40));
        // both quiet now: the one that never delivered a line goes first
        assert!(s.make_room());
        assert!(silent.evicted() && !talker.evicted());
        assert_eq!(s.open(), 1);
        assert!(s.make_room());
        assert!(talker.evicted());
        assert!(!s.make_room());
        // idle: past the timeout without a whole line
        let fresh = s.register();
        assert!(!fresh.idle());
        std::thread::sleep(Duration::from_millis(60));
        assert!(fresh.idle());
        fresh.delivered();
        assert!(!fresh.idle());
    }

    proptest! {
        /// Connections sending lines in random pieces, interleaved: every line comes out
        /// whole or is counted as dropped, never cut or merged; the partial lines held stay
        /// within the budget plus one piece per connection.
        #[test]
        fn partial_lines_across_connections_stay_within_the_budget(
            conns in prop::collection::vec(
                prop::collection::vec(1usize..400, 1..12), 1..6),
            order in prop::collection::vec(0usize..6, 0..200),
            budget in 200usize..2000,
        ) {
            let s = streams(budget);
            let mut framers: Vec<LineFramer> = conns.iter().map(|_| LineFramer::new(10_000)).collect();
            let handles: Vec<StreamConn> = conns.iter().map(|_| s.register()).collect();
            // each connection's text: lines of `len` 'x' bytes, numbered, ended or not
            let texts: Vec<Vec<u8>> = conns.iter().enumerate().map(|(c, lines)| {
                let mut t = Vec::new();
                for (i, len) in lines.iter().enumerate() {
                    t.extend(format!("{c}:{i}:").as_bytes());
                    t.extend(std::iter::repeat_n(b'x', *len));
                    t.push(b'\n');
                }
                t
            }).collect();
            let mut at = vec![0usize; conns.len()];
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut dropped = 0usize;
            let piece = 97;
            let mut step = |c: usize, framers: &mut Vec<LineFramer>, got: &mut Vec<Vec<u8>>, dropped: &mut usize| {
                let end = (at[c] + piece).min(texts[c].len());
                framers[c].push(&texts[c][at[c]..end], &mut |f| match f {
                    Frame::Line(l) => got.push(l.to_vec()),
                    Frame::Oversized(_) | Frame::Empty => panic!("{f:?}"),
                });
                at[c] = end;
                if handles[c].take_drop() && framers[c].abandon() > 0 {
                    *dropped += 1;
                }
                handles[c].hold(framers[c].buffered());
                // what is held: within the budget plus one piece per connection
                assert!(s.held() <= budget + piece * conns.len(), "{} > {budget}", s.held());
            };
            for o in order {
                let c = o % conns.len();
                step(c, &mut framers, &mut got, &mut dropped);
            }
            // then each to its end (a connection is done once a step adds nothing)
            let rounds: Vec<usize> = texts.iter().map(|t| t.len() / piece + 1).collect();
            for (c, n) in rounds.into_iter().enumerate() {
                for _ in 0..n {
                    step(c, &mut framers, &mut got, &mut dropped);
                }
            }
            let total: usize = conns.iter().map(|l| l.len()).sum();
            prop_assert_eq!(got.len() + dropped, total);
            for l in &got {
                let text = String::from_utf8_lossy(l);
                let mut parts = text.splitn(3, ':');
                let c: usize = parts.next().unwrap().parse().unwrap();
                let i: usize = parts.next().unwrap().parse().unwrap();
                prop_assert_eq!(parts.next().unwrap().len(), conns[c][i], "{}", text);
            }
        }
    }
}
