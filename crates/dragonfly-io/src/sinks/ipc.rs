//! `ipc://PATH`: send one datagram per message to a unix datagram socket bound at PATH
//! (without the trailing newline). Connects lazily and again after the peer went away.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::sys::socket::{setsockopt, sockopt};

use super::Sink;
use crate::Batch;

const SNDBUF: usize = 8 * 1024 * 1024;

/// Sends one datagram per message to a socket bound by someone else.
pub struct IpcSink {
    path: PathBuf,
    sock: Option<UnixDatagram>,
}

impl IpcSink {
    /// A sink for the socket at `path`.
    pub fn new(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            sock: None,
        })
    }

    fn socket(&mut self) -> io::Result<&UnixDatagram> {
        if self.sock.is_none() {
            let s = UnixDatagram::unbound()?;
            // Large messages need a send buffer at least as large as the datagram.
            if setsockopt(&s, sockopt::SndBufForce, &SNDBUF).is_err() {
                let _ = setsockopt(&s, sockopt::SndBuf, &SNDBUF);
            }
            s.connect(&self.path).map_err(|e| {
                io::Error::new(e.kind(), format!("connect {}: {e}", self.path.display()))
            })?;
            self.sock = Some(s);
        }
        Ok(self.sock.as_ref().expect("set above"))
    }
}

impl Sink for IpcSink {
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        for msg in batch.iter() {
            let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
            let res = self.socket().and_then(|s| s.send(msg));
            if let Err(e) = res {
                self.sock = None;
                return Err(e);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.sock = None;
        Ok(())
    }
}

/// `ipc://PATH`: one datagram per message to a socket bound by someone else.
pub const IPC: super::SinkScheme = super::SinkScheme {
    name: "ipc",
    form: "ipc://PATH",
    options: &[],
    query: &[],
    parse: |_, rest, _, _| {
        Ok(Box::new(IpcOutput {
            path: crate::uri::path(rest),
        }))
    },
};

#[derive(Debug)]
struct IpcOutput {
    path: std::path::PathBuf,
}

impl super::Destination for IpcOutput {
    fn scheme(&self) -> &'static super::SinkScheme {
        &IPC
    }
    fn describe(&self) -> String {
        format!("ipc://{}", self.path.display())
    }
    fn reopened_path(&mut self) -> Option<&mut std::path::PathBuf> {
        Some(&mut self.path)
    }
    fn open(&self) -> io::Result<Box<dyn super::Sink>> {
        Ok(Box::new(IpcSink::new(&self.path)?))
    }
}
