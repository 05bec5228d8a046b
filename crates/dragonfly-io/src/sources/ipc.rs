//! `ipc://PATH`: bind a unix datagram socket at PATH; one message per datagram.
//!
//! This is what Suricata's `unix_dgram` eve output connects to. Datagrams of any size the
//! kernel passes (Suricata alerts with payload exceed 150 KiB) are received whole; one larger
//! than the receive buffer is counted as truncated and skipped, never passed on cut short.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{recv, setsockopt, sockopt, MsgFlags};

use super::{finish, io_error, Collector, SourceCtx};
use crate::{ratelimit, LineFramer};

/// Largest datagram received whole.
pub const MAX_DATAGRAM: usize = 4 * 1024 * 1024;
/// Kernel receive buffer asked for, so bursts are held while the pipeline catches up.
const RCVBUF: usize = 32 * 1024 * 1024;

/// A bound datagram socket.
pub struct IpcSource {
    sock: UnixDatagram,
    path: PathBuf,
    /// Memory the queued datagrams may hold.
    buffer_bytes: usize,
}

/// Remove a stale socket file left by an earlier run, but never a regular file.
pub(crate) fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn bind(path: &Path, opts: &super::socket::SocketOptions) -> io::Result<IpcSource> {
    remove_stale_socket(path)?;
    let sock = opts.bind(path, || {
        UnixDatagram::bind(path)
            .map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", path.display())))
    })?;
    // As root the limit can be raised past net.core.rmem_max; otherwise take what we get.
    if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &RCVBUF);
    }
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(IpcSource {
        sock,
        path: path.to_path_buf(),
        buffer_bytes: opts.buffer_mb << 20,
    })
}

/// The reader side of a socket input: never blocks on the pipeline. Batches go to an
/// unbounded channel drained by a forwarder thread (which does block on the pipeline); past
/// `buffer_bytes` of memory held by the waiting batches (their buffers' capacity, after
/// giving back what a small batch does not use), batches are dropped and counted as overflow.
pub(crate) struct Buffered {
    tx: crossbeam_channel::Sender<crate::Batch>,
    cap: usize,
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    counters: std::sync::Arc<super::InputCounters>,
    tag: String,
}

impl super::Emit for Buffered {
    fn emit(&mut self, mut batch: crate::Batch) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        // the memory really held counts, not the payload: a batch of one datagram would
        // otherwise hold a buffer sized for hundreds
        batch.shrink();
        let bytes = batch.held_bytes();
        if self.queued.load(Relaxed) + bytes > self.cap {
            let n = batch.len() as u64;
            let before = self.counters.overflow.fetch_add(n, Relaxed);
            let total = before + n;
            // the first ten, then every power of ten (as other repeated problems)
            if (before + 1..=total).any(crate::ratelimit::should_log) {
                tracing::error!(input = %self.tag, dropped = n, total,
                    "the pipeline is behind and the input buffer is full: messages dropped");
            }
            return true;
        }
        self.queued.fetch_add(bytes, Relaxed);
        self.tx.send(batch).is_ok()
    }
    fn clone_box(&self) -> Box<dyn super::Emit> {
        Box::new(Buffered {
            tx: self.tx.clone(),
            cap: self.cap,
            queued: self.queued.clone(),
            counters: self.counters.clone(),
            tag: self.tag.clone(),
        })
    }
}

/// Put a forwarder thread between a socket reader and the pipeline; returns the reader's
/// emitter and the forwarder's handle (join it after the reader is done, to drain).
pub(crate) fn buffered(ctx: &mut SourceCtx, cap: usize) -> std::thread::JoinHandle<()> {
    let (tx, rx) = crossbeam_channel::unbounded::<crate::Batch>();
    let queued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut out = std::mem::replace(
        &mut ctx.out,
        Box::new(Buffered {
            tx,
            cap,
            queued: queued.clone(),
            counters: ctx.counters.clone(),
            tag: ctx.tag.clone(),
        }),
    );
    std::thread::Builder::new()
        .name(format!("fwd-{}", ctx.tag))
        .spawn(move || {
            for batch in rx {
                queued.fetch_sub(batch.held_bytes(), std::sync::atomic::Ordering::Relaxed);
                if !out.emit(batch) {
                    break;
                }
            }
        })
        .expect("spawning a thread")
}

impl IpcSource {
    /// Receive until the engine stops.
    pub fn run(self, mut ctx: SourceCtx) {
        let forwarder = buffered(&mut ctx, self.buffer_bytes);
        ctx.ready("listening");
        self.read(&mut ctx);
        drop(ctx);
        let _ = forwarder.join();
    }

    fn read(self, ctx: &mut SourceCtx) {
        let mut col = Collector::new(ctx);
        let mut framer = LineFramer::new(ctx.max_line);
        let mut buf = vec![0u8; MAX_DATAGRAM.min(ctx.max_line + 2).max(64 * 1024)];
        let fd = self.sock.as_raw_fd();
        let mut pending = 0usize;
        while !ctx.stopping() && !col.closed() {
            // Block (with a timeout) for the first datagram, then take what is queued.
            let flags = if pending == 0 {
                MsgFlags::MSG_TRUNC
            } else {
                MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT
            };
            match recv(fd, &mut buf, flags) {
                Ok(n) if n > buf.len() => {
                    let (c, log) = ratelimit::bump(&ctx.counters.truncated);
                    if log {
                        tracing::warn!(input = %ctx.tag, bytes = n, max = buf.len(), count = c,
                            "skipped a datagram larger than the receive buffer");
                    }
                }
                Ok(0) => {
                    // an empty datagram carries no event; counted like an empty line
                    let (c, log) = ratelimit::bump(&ctx.counters.empty);
                    if log {
                        tracing::warn!(input = %ctx.tag, count = c, "skipped an empty datagram");
                    }
                }
                Ok(n) => {
                    framer.push(&buf[..n], &mut |f| col.frame(ctx, f));
                    finish(&mut framer, &mut col, ctx);
                    pending += 1;
                    if pending >= ctx.batch_lines {
                        col.flush(ctx);
                        pending = 0;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {
                    col.flush(ctx);
                    pending = 0;
                }
                Err(e) => {
                    io_error(ctx, "receive failed", &io::Error::from(e));
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        col.flush(ctx);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `ipc://PATH`: a unix datagram socket bound here, one event per datagram.
pub const IPC: super::SourceScheme = super::SourceScheme {
    name: "ipc",
    form: "ipc://PATH",
    finite: false,
    options: super::socket::SOCKET_OPTIONS,
    query: &[],
    parse: |_, rest, options| {
        Ok(Box::new(IpcInput {
            path: crate::uri::path(rest),
            opts: super::socket::SocketOptions::parse(options)?,
        }))
    },
};

#[derive(Debug)]
struct IpcInput {
    path: PathBuf,
    opts: super::socket::SocketOptions,
}

impl super::Source for IpcInput {
    fn scheme(&self) -> &'static super::SourceScheme {
        &IPC
    }
    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
    fn prepare(&self, _max_line: usize) -> io::Result<Box<dyn super::Prepared>> {
        Ok(Box::new(bind(&self.path, &self.opts)?))
    }
    fn check(&self, found: &mut crate::preflight::Findings, what: &str) {
        if let Err(e) = crate::preflight::socket_bindable(&self.path) {
            found.problem(format!("{what}: {e}"));
        }
    }
}

impl super::Prepared for IpcSource {
    fn run(self: Box<Self>, ctx: SourceCtx) {
        IpcSource::run(*self, ctx)
    }
}
