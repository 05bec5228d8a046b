//! `file://PATH`: append one line per message.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::Sink;
use crate::Batch;

pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
}

/// Open `path` for appending, creating it (and its directory) if missing.
///
/// Never through a symbolic link (`O_NOFOLLOW`: one planted in a log directory that another
/// user can write would make the engine, often root, append to any file), never a FIFO or a
/// socket (opened non-blocking, then checked: a planted FIFO would block start-up). Regular
/// files and character devices (`/dev/null`) are accepted.
pub fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: is a symbolic link; refusing to write through it (replace it with the file itself)",
                        path.display()
                    ),
                )
            } else {
                named(e)
            }
        })?;
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
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(256 * 1024, open_append(path)?),
        })
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        for msg in batch.iter() {
            self.out.write_all(msg)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let f = open_append(&self.path)?;
        self.out = BufWriter::with_capacity(256 * 1024, f);
        Ok(())
    }

    fn hand_over(&self, uid: u32, gid: u32) -> io::Result<()> {
        // on the open descriptor: whatever the path names by now, this is the file we opened
        std::os::unix::fs::fchown(self.out.get_ref(), Some(uid), Some(gid))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}
