//! `unix://PATH`: listen on a unix stream socket at PATH; newline-delimited JSON per
//! connection. This is what Suricata's `unix_stream` eve output connects to. Frames are cut at
//! newlines, never at read boundaries, so split and merged writes both arrive whole. What
//! the connections may cost together, and who gives way to a new one: [`super::stream`].

use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::SourceCtx;
use crate::LineFramer;

/// A listening stream socket.
pub struct UnixSource {
    listener: UnixListener,
    path: PathBuf,
    stream: super::stream::StreamOptions,
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
        stream: opts.stream,
    })
}

impl UnixSource {
    /// Accept and read until the engine stops: every connection on this one thread
    /// ([`super::stream::serve`]).
    pub fn run(self, ctx: SourceCtx) {
        let UnixSource {
            listener,
            path,
            stream,
        } = self;
        super::stream::serve(
            &ctx,
            stream,
            move || tokio::net::UnixListener::from_std(listener),
            |ctx| LineFramer::new(ctx.max_line),
        );
        let _ = std::fs::remove_file(&path);
    }
}

/// `unix://PATH`: a unix stream socket listened on here, newline-delimited events.
pub const UNIX: super::SourceScheme = super::SourceScheme {
    name: "unix",
    form: "unix://PATH",
    finite: false,
    options: super::socket::STREAM_OPTIONS,
    query: &[],
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
    fn check(&self, found: &mut crate::preflight::Findings, what: &str) {
        if let Err(e) = crate::preflight::socket_bindable(&self.path) {
            found.problem(format!("{what}: {e}"));
        }
    }
}

impl super::Prepared for UnixSource {
    fn run(self: Box<Self>, ctx: SourceCtx) {
        UnixSource::run(*self, ctx)
    }
}
