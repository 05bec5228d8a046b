//! `tail://PATH`: follow a growing file the way `tail -F` does.
//!
//! - Starts at the end of the file, or at the beginning with the `<` suffix. A file that does
//!   not exist yet is waited for and then read from its beginning.
//! - Rename rotation (logrotate `create`): when PATH names a new inode, the old file is still
//!   read for a grace period (the writer may not have reopened yet), then closed, and the new
//!   file is read from its beginning.
//! - Copytruncate: when the file shrinks below our offset, or its first bytes change (it was
//!   truncated and refilled between two polls), reading restarts at 0.
//! - A removed file is read to its end and the input waits for it to come back.
//! - Polls every 50 ms while idle; a poll is one `stat`, so an idle tail costs next to nothing.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{feed, finish, io_error, Collector, SourceCtx};
use crate::LineFramer;

const POLL: Duration = Duration::from_millis(50);
/// How long a rotated-away file keeps being read.
const ROTATE_GRACE: Duration = Duration::from_secs(2);
/// Bytes at the head of the file remembered to notice truncate-and-refill.
const FINGERPRINT: usize = 128;
const CHUNK: usize = 256 * 1024;

/// A tail input before it runs: the file (if it exists) is already open at its start
/// position, so lines written between start-up and the first poll are not missed.
pub struct Tail {
    path: PathBuf,
    opened: io::Result<Followed>,
}

struct Followed {
    file: File,
    dev: u64,
    ino: u64,
    pos: u64,
    fingerprint: Vec<u8>,
    framer: LineFramer,
}

impl Followed {
    fn open(path: &PathBuf, at_end: bool, max_line: usize) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let pos = if at_end { meta.len() } else { 0 };
        file.seek(SeekFrom::Start(pos))?;
        let mut f = Followed {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            pos,
            fingerprint: Vec::new(),
            framer: LineFramer::new(max_line),
        };
        f.fingerprint = f.head()?;
        Ok(f)
    }

    fn head(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; FINGERPRINT];
        let n = self.file.read_at(&mut buf, 0)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Notice truncation (size below our offset, or different first bytes): restart at 0.
    fn check_truncated(&mut self) -> io::Result<bool> {
        let len = self.file.metadata()?.len();
        let head = if len < self.pos {
            None
        } else {
            let head = self.head()?;
            let common = head.len().min(self.fingerprint.len());
            if head[..common] != self.fingerprint[..common] {
                None
            } else {
                Some(head)
            }
        };
        match head {
            Some(head) => {
                if head.len() > self.fingerprint.len() {
                    self.fingerprint = head;
                }
                Ok(false)
            }
            None => {
                self.pos = 0;
                self.file.seek(SeekFrom::Start(0))?;
                self.framer.reset();
                self.fingerprint = self.head()?;
                Ok(true)
            }
        }
    }

    /// Read everything there is now. Returns the number of bytes read.
    fn drain(
        &mut self,
        col: &mut Collector,
        ctx: &mut SourceCtx,
        buf: &mut [u8],
    ) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            if col.closed() || ctx.stopping() {
                return Ok(total);
            }
            match self.file.read(buf) {
                Ok(0) => return Ok(total),
                Ok(n) => {
                    self.pos += n as u64;
                    total += n as u64;
                    feed(&mut self.framer, col, ctx, &buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Tail {
    pub fn new(path: PathBuf, from_start: bool, max_line: usize) -> Self {
        let opened = Followed::open(&path, !from_start, max_line);
        Self { path, opened }
    }

    pub fn run(self, mut ctx: SourceCtx) {
        let mut col = Collector::new(&ctx);
        let mut buf = vec![0u8; CHUNK];
        let mut current = match self.opened {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(input = %ctx.tag, path = %self.path.display(),
                    "file does not exist yet; waiting for it");
                None
            }
            Err(e) => {
                io_error(&ctx, &format!("cannot open {}", self.path.display()), &e);
                None
            }
        };
        let mut retired: Option<(Followed, Instant)> = None;
        let mut missing_logged = false;

        while !ctx.stopping() && !col.closed() {
            let mut progressed = false;

            // A file rotated away: keep reading it for a while, then finish it.
            if let Some((old, until)) = retired.as_mut() {
                match old.drain(&mut col, &mut ctx, &mut buf) {
                    Ok(n) => progressed |= n > 0,
                    Err(e) => io_error(&ctx, "read of rotated file failed", &e),
                }
                if Instant::now() >= *until {
                    let (mut old, _) = retired.take().expect("checked above");
                    finish(&mut old.framer, &mut col, &mut ctx);
                }
            }

            if let Some(cur) = current.as_mut() {
                match cur.check_truncated() {
                    Ok(true) => {
                        ctx.counters.truncations.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(input = %ctx.tag, path = %self.path.display(),
                            "file was truncated; reading from its beginning");
                    }
                    Ok(false) => {}
                    Err(e) => io_error(&ctx, "stat failed", &e),
                }
                match cur.drain(&mut col, &mut ctx, &mut buf) {
                    Ok(n) => progressed |= n > 0,
                    Err(e) => io_error(&ctx, "read failed", &e),
                }
            }

            // Has PATH been renamed away, removed, or re-created?
            match std::fs::metadata(&self.path) {
                Ok(meta) => {
                    missing_logged = false;
                    let same = current
                        .as_ref()
                        .is_some_and(|c| c.dev == meta.dev() && c.ino == meta.ino());
                    if !same {
                        match Followed::open(&self.path, false, ctx.max_line) {
                            Ok(new) => {
                                if let Some(old) = current.replace(new) {
                                    ctx.counters.rotations.fetch_add(1, Ordering::Relaxed);
                                    tracing::info!(input = %ctx.tag, path = %self.path.display(),
                                        "file was rotated; reading the new one from its beginning");
                                    if let Some((mut older, _)) = retired.take() {
                                        let _ = older.drain(&mut col, &mut ctx, &mut buf);
                                        finish(&mut older.framer, &mut col, &mut ctx);
                                    }
                                    retired = Some((old, Instant::now() + ROTATE_GRACE));
                                }
                                progressed = true;
                            }
                            Err(e) => io_error(&ctx, "cannot open rotated file", &e),
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !missing_logged {
                        missing_logged = true;
                        tracing::warn!(input = %ctx.tag, path = %self.path.display(),
                            "file is gone; waiting for it to be re-created");
                    }
                }
                Err(e) => io_error(&ctx, "stat failed", &e),
            }

            if !progressed {
                col.flush(&mut ctx);
                std::thread::sleep(POLL);
            }
        }
        col.flush(&mut ctx);
    }
}
