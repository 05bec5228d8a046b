//! Options of the socket inputs (`ipc://`, `unix://`, `syslog://`): who may connect, and how much memory a
//! burst may take while the pipeline catches up.
//!
//! `options = { mode = "0660", owner = "root", group = "suricata", buffer_mb = 512 }`:
//! - `mode` (octal): the socket file's permissions. Connecting needs write permission, so a
//!   Suricata running as its own user needs `"0660"` with `group` set to its group, or
//!   `"0666"`. Default: what the process's umask gives (`0755` for root with umask 022: only
//!   root can connect).
//! - `owner`, `group`: user and group (names or numbers) of the socket file.
//! - `buffer_mb` (`ipc://`, `syslog://` datagrams): memory the queued datagrams may hold
//!   (default 512); past it, datagrams are dropped and counted as `overflow`.
//! - `partial_mb`, `idle_timeout_s` (stream inputs: `unix://`, `syslog://tcp:`): what the
//!   partial lines of every connection may hold together (default 64), and how long a
//!   connection may go without a whole line before it is closed (default 300): see
//!   [`super::stream`].
//!
//! The mode is applied by the umask in force during `bind` (so the socket never exists with
//! wider permissions), the owner with `lchown` (never through a link).

use std::io;
use std::path::Path;

use crate::uri::UriError;

/// The options of the socket inputs, for their scheme rows.
pub const SOCKET_OPTIONS: &[super::OptionDoc] = &[
    super::OptionDoc {
        name: "mode",
        kind: "string (octal)",
        doc: "the socket file's permissions, e.g. \"0660\"",
    },
    super::OptionDoc {
        name: "owner",
        kind: "string",
        doc: "user (name or number) owning the socket file",
    },
    super::OptionDoc {
        name: "group",
        kind: "string",
        doc: "group (name or number) of the socket file",
    },
    super::OptionDoc {
        name: "buffer_mb",
        kind: "number",
        doc: "memory queued datagrams may hold (default 512)",
    },
];

/// The options of the stream socket inputs (`unix://`; `syslog://`, whose `buffer_mb` is for
/// its datagram forms).
pub const STREAM_OPTIONS: &[super::OptionDoc] = &[
    SOCKET_OPTIONS[0],
    SOCKET_OPTIONS[1],
    SOCKET_OPTIONS[2],
    super::OptionDoc {
        name: "partial_mb",
        kind: "number",
        doc: "memory the partial lines of every connection may hold together; past it the largest is dropped (default 64)",
    },
    super::OptionDoc {
        name: "idle_timeout_s",
        kind: "number",
        doc: "a connection without a whole line for this long is closed (default 300)",
    },
];

/// [`STREAM_OPTIONS`] and `buffer_mb`: `syslog://`, stream or datagrams.
pub const SYSLOG_OPTIONS: &[super::OptionDoc] = &[
    SOCKET_OPTIONS[0],
    SOCKET_OPTIONS[1],
    SOCKET_OPTIONS[2],
    SOCKET_OPTIONS[3],
    STREAM_OPTIONS[3],
    STREAM_OPTIONS[4],
];

/// Default memory for queued datagrams of one socket input.
pub const DEFAULT_BUFFER_MB: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
/// Socket input options (see the module doc).
pub struct SocketOptions {
    /// Permissions of the socket file.
    pub mode: Option<u32>,
    /// Owner of the socket file.
    pub owner: Option<String>,
    /// Group of the socket file.
    pub group: Option<String>,
    /// Memory queued messages may hold, in MiB.
    pub buffer_mb: usize,
    /// The limits of stream connections.
    pub stream: super::stream::StreamOptions,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            mode: None,
            owner: None,
            group: None,
            buffer_mb: DEFAULT_BUFFER_MB,
            stream: Default::default(),
        }
    }
}

fn bad(msg: String) -> UriError {
    UriError::BadOption(msg)
}

impl SocketOptions {
    /// Read config.lua's options; names are resolved now.
    pub fn parse(options: &[(String, String)]) -> Result<Self, UriError> {
        let mut o = SocketOptions::default();
        for (k, v) in options {
            match k.as_str() {
                "mode" => o.mode = Some(crate::sinks::file::parse_mode(v)?),
                "owner" => o.owner = Some(v.clone()),
                "group" => o.group = Some(v.clone()),
                "buffer_mb" => {
                    o.buffer_mb = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1 << 20).contains(n))
                        .ok_or_else(|| bad(format!("buffer_mb '{v}' is not a number of MiB")))?;
                }
                "partial_mb" => {
                    o.stream.partial_bytes = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1 << 20).contains(n))
                        .ok_or_else(|| bad(format!("partial_mb '{v}' is not a number of MiB")))?
                        << 20;
                }
                "idle_timeout_s" => {
                    o.stream.idle_timeout = v
                        .parse::<f64>()
                        .ok()
                        .filter(|n| (0.1..=1e7).contains(n))
                        .map(std::time::Duration::from_secs_f64)
                        .ok_or_else(|| {
                            bad(format!(
                                "idle_timeout_s '{v}' is not a number of seconds (0.1 or more)"
                            ))
                        })?;
                }
                other => {
                    return Err(bad(format!(
                        "unknown option '{other}' for a socket input (known: mode, owner, group, buffer_mb, partial_mb, idle_timeout_s)"
                    )))
                }
            }
        }
        // names must resolve now, not at bind time
        o.ids()?;
        Ok(o)
    }

    fn ids(&self) -> Result<(Option<u32>, Option<u32>), UriError> {
        use nix::unistd::{Group, User};
        let uid = match &self.owner {
            None => None,
            Some(n) => Some(match n.parse::<u32>() {
                Ok(id) => id,
                Err(_) => User::from_name(n)
                    .ok()
                    .flatten()
                    .ok_or_else(|| bad(format!("owner '{n}': no such user")))?
                    .uid
                    .as_raw(),
            }),
        };
        let gid = match &self.group {
            None => None,
            Some(n) => Some(match n.parse::<u32>() {
                Ok(id) => id,
                Err(_) => Group::from_name(n)
                    .ok()
                    .flatten()
                    .ok_or_else(|| bad(format!("group '{n}': no such group")))?
                    .gid
                    .as_raw(),
            }),
        };
        Ok((uid, gid))
    }

    /// Run `bind` (which creates the socket file at `path`) with the mode in force, then give
    /// the file its owner and group.
    pub(crate) fn bind<T>(
        &self,
        path: &Path,
        bind: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        use nix::sys::stat::{umask, Mode};
        let sock = match self.mode {
            Some(m) => {
                let old = umask(Mode::from_bits_truncate(!m & 0o777));
                let r = bind();
                umask(old);
                r?
            }
            None => bind()?,
        };
        let (uid, gid) = self
            .ids()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::lchown(path, uid, gid)
                .map_err(|e| io::Error::new(e.kind(), format!("chown {}: {e}", path.display())))?;
        }
        Ok(sock)
    }
}
