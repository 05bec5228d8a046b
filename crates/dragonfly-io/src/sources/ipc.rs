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

pub struct IpcSource {
    sock: UnixDatagram,
    path: PathBuf,
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

pub(crate) fn bind(path: &Path) -> io::Result<IpcSource> {
    remove_stale_socket(path)?;
    let sock = UnixDatagram::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", path.display())))?;
    // As root the limit can be raised past net.core.rmem_max; otherwise take what we get.
    if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &RCVBUF);
    }
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(IpcSource {
        sock,
        path: path.to_path_buf(),
    })
}

impl IpcSource {
    pub fn run(self, mut ctx: SourceCtx) {
        let mut col = Collector::new(&ctx);
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
                Ok(n) => {
                    framer.push(&buf[..n], &mut |f| col.frame(&mut ctx, f));
                    finish(&mut framer, &mut col, &mut ctx);
                    pending += 1;
                    if pending >= ctx.batch_lines {
                        col.flush(&mut ctx);
                        pending = 0;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {
                    col.flush(&mut ctx);
                    pending = 0;
                }
                Err(e) => {
                    io_error(&ctx, "receive failed", &io::Error::from(e));
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        col.flush(&mut ctx);
        let _ = std::fs::remove_file(&self.path);
    }
}
