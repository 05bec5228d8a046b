//! `file://PATH`: append one line per message.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Sink;
use crate::Batch;

/// Lines are collected in memory and appended with one write per flush (or per
/// [`FLUSH_AT`] bytes). A write that fails part way (disk full, quota) is undone: the file is
/// cut back to where the last complete flush left it, so it never ends in a torn line, and the
/// lines stay pending for the next flush. [`Sink::flush`] reports the error; the sink runner
/// retries (backpressure) until space returns.
pub struct FileSink {
    path: PathBuf,
    /// Permissions a file created (or re-created after rotation) gets.
    mode: u32,
    file: File,
    pending: Vec<u8>,
    /// File length after the last complete flush.
    committed: u64,
}

/// Pending bytes that trigger a write.
const FLUSH_AT: usize = 256 * 1024;

/// Whether an error means "no space now" (worth waiting for), not a broken destination.
pub fn is_storage_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    ) || matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

/// Permissions of a file an output creates, unless its `mode` option says otherwise: the
/// engine's owner reads and writes, its group reads, nobody else (events name hosts and
/// users).
pub const OUTPUT_MODE: u32 = 0o640;

/// Open `path` for appending, creating it (and its directory) with permissions `mode` if
/// missing (an existing file keeps its own).
///
/// Never through a symbolic link (`O_NOFOLLOW`: one planted in a log directory that another
/// user can write would make the engine, often root, append to any file), never a FIFO or a
/// socket (opened non-blocking, then checked: a planted FIFO would block start-up). Regular
/// files and character devices (`/dev/null`) are accepted.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let f = crate::fsx::open_no_link(
        OpenOptions::new().create(true).append(true).mode(mode),
        path,
        "write",
    )?;
    let t = f.metadata().map_err(named)?.file_type();
    if !(t.is_file() || t.is_char_device()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: is not a regular file (a FIFO, socket or directory); refusing to write to it",
                path.display()
            ),
        ));
    }
    Ok(f)
}

impl FileSink {
    /// Open (create, with permissions `mode`) `path` for appending (see [`open_append`]).
    pub fn open(path: &Path, mode: u32) -> io::Result<Self> {
        let file = open_append(path, mode)?;
        let committed = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            mode,
            file,
            pending: Vec::with_capacity(FLUSH_AT),
            committed,
        })
    }

    fn named(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
    }

    /// Append everything pending, or nothing: a partial append is cut off again.
    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.pending) {
            Ok(()) => {
                self.pending.clear();
                // from the file itself: someone may have truncated it (copytruncate)
                self.committed = self.file.metadata().map(|m| m.len()).unwrap_or(0);
                Ok(())
            }
            Err(e) => {
                // cut back only what this write added (never grow the file, never cut into
                // what another writer or a truncation made of it)
                if let Ok(m) = self.file.metadata() {
                    let len = m.len();
                    if len > self.committed && len <= self.committed + self.pending.len() as u64 {
                        let _ = self.file.set_len(self.committed);
                    }
                }
                Err(self.named(e))
            }
        }
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        for msg in batch.iter() {
            self.pending.extend_from_slice(msg);
        }
        if self.pending.len() >= FLUSH_AT {
            // on failure the lines stay pending: the runner retries with flush()
            self.write_pending()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()
    }

    fn reopen(&mut self) -> io::Result<()> {
        let f = open_append(&self.path, self.mode)?;
        self.file = f;
        self.committed = self.file.metadata()?.len();
        self.write_pending()
    }

    fn retains_on_error(&self) -> bool {
        true
    }

    fn hand_over(&self, uid: u32, gid: u32) -> io::Result<()> {
        // on the open descriptor: whatever the path names by now, this is the file we opened
        std::os::unix::fs::fchown(&self.file, Some(uid), Some(gid))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

/// `file://PATH`: one line per message, appended (relative paths under LOGDIR).
pub const FILE: super::SinkScheme = super::SinkScheme {
    name: "file",
    form: "file://PATH",
    options: &[crate::options::OptionDoc {
        name: "mode",
        kind: crate::options::OptKind::Octal,
        default: "\"0640\"",
        doc: "permissions of the file when the output creates it",
    }],
    query: &[],
    parse: |_, rest, logdir, options| {
        let p = crate::uri::path(rest);
        let mode = options.int("mode").map_or(OUTPUT_MODE, |m| m as u32);
        Ok(Box::new(FileOutput {
            path: if p.is_absolute() { p } else { logdir.join(p) },
            mode,
        }))
    },
};

#[derive(Debug)]
struct FileOutput {
    path: PathBuf,
    mode: u32,
}

impl super::Destination for FileOutput {
    fn scheme(&self) -> &'static super::SinkScheme {
        &FILE
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
    fn reopened_path(&mut self) -> Option<&mut PathBuf> {
        Some(&mut self.path)
    }
    fn open(&self) -> io::Result<Box<dyn Sink>> {
        Ok(Box::new(FileSink::open(&self.path, self.mode)?))
    }
    fn on_disk(&self) -> Option<super::OnDisk<'_>> {
        Some(super::OnDisk::File(&self.path))
    }
}
