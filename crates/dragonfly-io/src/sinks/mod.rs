//! Outputs: one module per URI scheme, each exporting one row of [`SCHEMES`].
//!
//! | scheme | module | writes |
//! |---|---|---|
//! | `file://PATH` (relative paths under LOGDIR) | [`file`] | one line per message, appended |
//! | `ipc://PATH` | [`ipc`] | one datagram per message to a socket bound by someone else |
//! | `redis://HOST:PORT/KEY?mode=list\|rpush\|channel` | [`redis`] | LPUSH, RPUSH or PUBLISH per message |
//! | `kafka://BROKERS/TOPIC[?key=FIELD]` | [`kafka`] | one record per message, delivery confirmed on flush |
//! | `nats://HOST:PORT/SUBJECT[?jetstream=1]` | [`nats`] | one message per event (JetStream: acknowledged on flush) |
//! | `parquet://DIR` (feature `parquet`) | [`parquet`] | rows of Parquet files partitioned by event type and date, with a manifest; settled when a file closes |
//!
//! Batches handed to a sink hold one message per entry, each ending with `\n`.

pub mod file;
pub mod ipc;
pub mod kafka;
pub mod nats;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod redis;

use std::io;
use std::path::{Path, PathBuf};

use crate::uri::{self, UriError};
use crate::Batch;

/// A destination for encoded messages, opened.
pub trait Sink: Send {
    /// Write every message of the batch (each ends with `\n`).
    fn write(&mut self, batch: &Batch) -> io::Result<()>;
    /// Push buffered bytes to the kernel.
    fn flush(&mut self) -> io::Result<()>;
    /// The last flush, at shutdown or when the output is replaced: close what is open.
    fn close(&mut self) -> io::Result<()> {
        self.flush()
    }
    /// For a sink that keeps messages in open files until they close (Parquet): how many
    /// calls of `write` so far have every message in a closed file. Receipts of later writes
    /// wait, across flushes. None: a successful flush settles everything written.
    fn settled_writes(&self) -> Option<u64> {
        None
    }
    /// Whether it holds messages that a later flush will settle (an open file that closes
    /// by age): the runner keeps calling `flush` while its queue is idle.
    fn pending(&self) -> bool {
        false
    }
    /// Reopen the destination (SIGHUP / SIGUSR1 after log rotation).
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Messages given up on since the last call (delivery failures found at flush).
    fn take_dropped(&mut self) -> u64 {
        0
    }
    /// Whether a failed `write` or `flush` kept the messages (to be written by a later
    /// `flush`), so that the caller must retry the flush and never write them again.
    fn retains_on_error(&self) -> bool {
        false
    }
    /// Give what was opened to the user the engine drops to (`-p`), so that it can go on
    /// writing and reopen after rotation. Only files have an owner to change.
    fn hand_over(&self, _uid: u32, _gid: u32) -> io::Result<()> {
        Ok(())
    }
}

/// One output scheme: its row in [`SCHEMES`] (see the sources' [`crate::sources::SourceScheme`]).
#[derive(Debug)]
pub struct SinkScheme {
    /// The scheme's name (before `://`).
    pub name: &'static str,
    /// The URI's form, e.g. `kafka://BROKERS/TOPIC[?key=FIELD]`.
    pub form: &'static str,
    /// Options it takes; `*`: any (passed on to a client library).
    pub options: &'static [crate::sources::OptionDoc],
    /// Query parameters its URI takes (`?key=FIELD`).
    pub query: &'static [crate::sources::OptionDoc],
    /// Its parser.
    pub parse: SinkParseFn,
}

/// A scheme's parser: the whole URI (for messages), what follows `scheme://`, LOGDIR (relative
/// file paths go there), the options.
pub type SinkParseFn = fn(
    uri: &str,
    rest: &str,
    logdir: &Path,
    options: &crate::options::Opts,
) -> Result<Box<dyn Destination>, UriError>;

/// A parsed output, ready to be opened.
pub trait Destination: std::fmt::Debug + Send + Sync {
    /// Its row.
    fn scheme(&self) -> &'static SinkScheme;
    /// Where it writes, for the engine's last words and logs.
    fn describe(&self) -> String;
    /// The path opened again later (a file reopened after rotation, a socket reconnected), for
    /// the engine's `-c` handling.
    fn reopened_path(&mut self) -> Option<&mut PathBuf> {
        None
    }
    /// Open the destination: done before privileges are dropped or the process is chrooted.
    fn open(&self) -> io::Result<Box<dyn Sink>>;
    /// What it makes on disk, for `--check` (network outputs: nothing).
    fn on_disk(&self) -> Option<OnDisk<'_>> {
        None
    }
}

/// What an output makes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk<'a> {
    /// A file it appends to (its directory is created when missing).
    File(&'a Path),
    /// A directory it writes files into (created when missing).
    Dir(&'a Path),
}

/// Every output scheme.
pub const SCHEMES: &[&SinkScheme] = &[
    &file::FILE,
    &ipc::IPC,
    &redis::REDIS,
    &kafka::KAFKA,
    &nats::NATS,
    #[cfg(feature = "parquet")]
    &parquet::PARQUET,
];

/// Parse an output URI with config.lua's `options`; relative file paths are taken under
/// `logdir`.
pub fn parse(
    uri: &str,
    logdir: &Path,
    options: &[(String, String)],
) -> Result<Box<dyn Destination>, UriError> {
    let (scheme, rest) = uri::split(uri)?;
    let s = SCHEMES
        .iter()
        .find(|s| s.name == scheme)
        .ok_or_else(|| UriError::Unsupported {
            scheme: scheme.to_string(),
            role: "as an output",
            supported: SCHEMES
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let options = crate::options::Opts::parse(s.name, s.options, options)?;
    (s.parse)(uri, rest, logdir, &options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_file_outputs_go_under_logdir() {
        let d = parse("file://eve-mle.log", Path::new("/var/log/mle"), &[]).unwrap();
        assert_eq!(d.describe(), "/var/log/mle/eve-mle.log");
        let d = parse("file:///tmp/x.log", Path::new("/l"), &[]).unwrap();
        assert_eq!(d.describe(), "/tmp/x.log");
        assert!(parse("zfile://x", Path::new("/l"), &[]).is_err());
        let o = vec![("a".to_string(), "b".to_string())];
        assert!(matches!(
            parse("file://x", Path::new("/l"), &o),
            Err(UriError::BadOption(_))
        ));
        assert!(parse("kafka://b:9092/t", Path::new("/l"), &o).is_ok());
    }
}
