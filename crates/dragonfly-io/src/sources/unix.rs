//! `unix://PATH`: listen on a unix stream socket at PATH; newline-delimited JSON per
//! connection. This is what Suricata's `unix_stream` eve output connects to. Frames are cut at
//! newlines, never at read boundaries, so split and merged writes both arrive whole.

use std::io::{self, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{feed, finish, io_error, Collector, SourceCtx};
use crate::LineFramer;

/// A listening stream socket.
pub struct UnixSource {
    listener: UnixListener,
    path: PathBuf,
}

pub(crate) fn bind(path: &Path, opts: &super::socket::SocketOptions) -> io::Result<UnixSource> {
    super::ipc::remove_stale_socket(path)?;
    let listener = opts.bind(path, || {
        UnixListener::bind(path)
            .map_err(|e| io::Error::new(e.kind(), format!("listen {}: {e}", path.display())))
    })?;
    listener.set_nonblocking(true)?;
    Ok(UnixSource {
        listener,
        path: path.to_path_buf(),
    })
}

impl UnixSource {
    /// Accept and read until the engine stops.
    pub fn run(self, ctx: SourceCtx) {
        super::serve(&ctx, || self.listener.accept().map(|(s, _)| s), connection);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn connection(mut stream: UnixStream, mut ctx: SourceCtx) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut framer = LineFramer::new(ctx.max_line);
    let mut col = Collector::new(&ctx);
    let mut buf = vec![0u8; 256 * 1024];
    while !ctx.stopping() && !col.closed() {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                feed(&mut framer, &mut col, &mut ctx, &buf[..n]);
                if n < buf.len() {
                    col.flush(&mut ctx);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                col.flush(&mut ctx)
            }
            Err(e) => {
                io_error(&ctx, "stream read failed", &e);
                break;
            }
        }
    }
    finish(&mut framer, &mut col, &mut ctx);
    col.flush(&mut ctx);
}

/// `unix://PATH`: a unix stream socket listened on here, newline-delimited events.
pub const UNIX: super::SourceScheme = super::SourceScheme {
    name: "unix",
    form: "unix://PATH",
    finite: false,
    options: super::socket::SOCKET_OPTIONS,
    parse: |_, rest, options| {
        Ok(Box::new(UnixInput {
            path: crate::uri::path(rest),
            opts: super::socket::SocketOptions::parse(options)?,
        }))
    },
};

#[derive(Debug)]
struct UnixInput {
    path: PathBuf,
    opts: super::socket::SocketOptions,
}

impl super::Source for UnixInput {
    fn scheme(&self) -> &'static super::SourceScheme {
        &UNIX
    }
    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
    fn prepare(&self, _max_line: usize) -> io::Result<Box<dyn super::Prepared>> {
        Ok(Box::new(bind(&self.path, &self.opts)?))
    }
}

impl super::Prepared for UnixSource {
    fn run(self: Box<Self>, ctx: SourceCtx) {
        UnixSource::run(*self, ctx)
    }
}
