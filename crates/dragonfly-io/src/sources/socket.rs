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

use super::OptKind;
use crate::uri::UriError;

/// The options of the socket inputs, for their scheme rows.
pub const SOCKET_OPTIONS: &[super::OptionDoc] = &[
    super::OptionDoc {
        name: "mode",
        kind: OptKind::Octal,
        default: "",
        doc: "the socket file's permissions, e.g. \"0660\" (none: what the umask gives)",
    },
    super::OptionDoc {
        name: "owner",
        kind: OptKind::Text,
        default: "",
        doc: "user (name or number) owning the socket file",
    },
    super::OptionDoc {
        name: "group",
        kind: OptKind::Text,
        default: "",
        doc: "group (name or number) of the socket file",
    },
    super::OptionDoc {
        name: "buffer_mb",
        kind: OptKind::Int {
            min: 1,
            max: 1 << 20,
        },
        default: "512",
        doc: "MiB queued datagrams may hold; past it they are dropped (`overflow`)",
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
        kind: OptKind::Int { min: 1, max: 1 << 20 },
        default: "64",
        doc: "MiB the partial lines of every connection may hold together (at least max_line_bytes); past it the largest is dropped",
    },
    super::OptionDoc {
        name: "idle_timeout_s",
        kind: OptKind::Num { min: 0.1, max: 1e7 },
        default: "300",
        doc: "a connection without a whole line for this long is closed",
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
    /// The rows' defaults.
    fn default() -> Self {
        let none = super::Opts::parse("socket", SOCKET_OPTIONS, &[]).expect("no options");
        Self {
            mode: None,
            owner: None,
            group: None,
            buffer_mb: none.int("buffer_mb").expect("a default") as usize,
            stream: Default::default(),
        }
    }
}

fn bad(msg: String) -> UriError {
    UriError::BadOption(msg)
}

impl SocketOptions {
    /// Read config.lua's options, checked against the scheme's rows (an option the scheme
    /// does not have keeps its default); names are resolved now.
    pub fn parse(options: &super::Opts) -> Result<Self, UriError> {
        let mut o = SocketOptions {
            mode: options.int("mode").map(|m| m as u32),
            owner: options.text("owner"),
            group: options.text("group"),
            ..Default::default()
        };
        // a row this scheme does not have gives None: the default stays
        if let Some(mb) = options.int("buffer_mb") {
            o.buffer_mb = mb as usize;
        }
        if let Some(mb) = options.int("partial_mb") {
            o.stream.partial_bytes = (mb as usize) << 20;
        }
        if let Some(s) = options.num("idle_timeout_s") {
            o.stream.idle_timeout = std::time::Duration::from_secs_f64(s);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_defaults_are_the_stream_limits_defaults() {
        let o = SocketOptions::parse(
            &crate::sources::Opts::parse("unix", STREAM_OPTIONS, &[]).unwrap(),
        )
        .unwrap();
        assert_eq!(o, SocketOptions::default());
        assert_eq!(o.stream, super::super::stream::StreamOptions::default());
        assert_eq!(o.buffer_mb, 512);
    }
}
