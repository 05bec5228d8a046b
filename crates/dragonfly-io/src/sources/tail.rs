//! `tail://PATH`: follow a growing file the way `tail -F` does.
//!
//! - Starts at the end of the file, or at the beginning with the `<` suffix. A file that does
//!   not exist yet is waited for and then read from its beginning.
//! - Rename rotation (logrotate `create`, Suricata): a watcher thread follows PATH's directory
//!   (inotify) and opens every file that appears at PATH the moment it does — and one renamed
//!   away before the reader had it, under its new name — so that no file is missed as long as
//!   the watcher thread runs once while the file is at either name (a file renamed twice
//!   before that, as 10 ms rotations on a saturated machine may do, is missed whole). A file that left PATH is read to its end and on for a grace
//!   period (the writer may not have reopened yet; up to [`MAX_RETIRED`] such files at once),
//!   then closed; each new file is read from its beginning. Where inotify is not available
//!   (some network file systems), PATH is looked at every poll instead.
//! - Copytruncate: when the file shrinks below our offset, or its first bytes change (it was
//!   truncated and refilled between two polls), reading restarts at 0.
//! - A removed file is read to its end and the input waits for it to come back.
//! - Polls every 50 ms while idle; a poll is one `stat`, so an idle tail costs next to nothing.
//! - Checkpoint (`options = { checkpoint = FILE }`): each batch (one read chunk) carries a
//!   receipt ([`crate::ack`]); once every output has flushed it, the file's identity and the
//!   offset after its last whole line are written to FILE (atomically, at most every 250 ms,
//!   and at shutdown after everything read has been written). A restart resumes there if PATH
//!   is still that file (and not shorter); a file rotated while the engine was down is read
//!   from its beginning. At-least-once across SIGKILL: what was read again is bounded by the
//!   last 250 ms plus what the outputs had not flushed yet.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::{await_receipts, feed, finish, io_error, Collector, SourceCtx};
use crate::ack::{Ack, Receipt, Watermark};
use crate::LineFramer;

const POLL: Duration = Duration::from_millis(50);
/// How long a rotated-away file keeps being read.
const ROTATE_GRACE: Duration = Duration::from_secs(2);
/// Files rotated away that are still read at once; past it, the oldest is read to its end
/// and closed.
pub const MAX_RETIRED: usize = 64;
/// Bytes at the head of the file remembered to notice truncate-and-refill.
const FINGERPRINT: usize = 128;
const CHUNK: usize = 256 * 1024;
/// How often a moved checkpoint is written (and at shutdown).
const WRITE_EVERY: Duration = Duration::from_millis(250);

/// A tail input before it runs: the file (if it exists) is already open at its start
/// position, so lines written between start-up and the first poll are not missed.
pub struct Tail {
    path: PathBuf,
    opened: io::Result<Followed>,
    checkpoint: Option<Checkpoint>,
}

/// (device, inode, offset after the last whole line handed over)
type Position = (u64, u64, u64);

/// Where a checkpointed tail is, and what its outputs have confirmed.
struct Checkpoint {
    file: PathBuf,
    tx: Sender<Receipt>,
    rx: Receiver<Receipt>,
    marks: Watermark,
    next_id: u64,
    positions: HashMap<u64, Position>,
    done: Option<Position>,
    written: Option<Position>,
    last_write: Instant,
}

impl Checkpoint {
    fn new(file: PathBuf) -> Self {
        let (tx, rx) = unbounded();
        Self {
            file,
            tx,
            rx,
            marks: Watermark::default(),
            next_id: 0,
            positions: HashMap::new(),
            done: None,
            written: None,
            last_write: Instant::now(),
        }
    }

    /// The position saved in `file`: none when there is no file. A file that is not a
    /// regular file, is larger than [`MAX_CHECKPOINT_BYTES`] or does not hold a position is
    /// refused (logged, never read into memory): the input starts as if there were none.
    fn load(file: &Path) -> Option<Position> {
        let bytes = match crate::fsx::read_capped(file, MAX_CHECKPOINT_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::error!(checkpoint = %file.display(),
                    "refusing the checkpoint ({e}); the input starts as if there were none");
                return None;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut it = text.split_whitespace().map(|w| w.parse::<u64>().ok());
        let pos = (|| Some((it.next()??, it.next()??, it.next()??)))();
        if pos.is_none() {
            tracing::error!(checkpoint = %file.display(),
                "the checkpoint does not hold a position; the input starts as if there were none");
        }
        pos
    }

    /// Hand over what the collector has, with a receipt for position `at`.
    fn emit(&mut self, col: &mut Collector, ctx: &mut SourceCtx, at: Position) {
        self.next_id += 1;
        self.positions.insert(self.next_id, at);
        self.marks.emitted(self.next_id, self.next_id);
        col.attach(Ack::new(self.next_id, self.tx.clone()));
        col.flush(ctx);
    }

    /// Take in receipts; write the file if the position moved and `force` or a second passed.
    fn settle(&mut self, force: bool) -> io::Result<()> {
        while let Ok((id, ok)) = self.rx.try_recv() {
            if !self.marks.receipt(id, ok) {
                tracing::error!(checkpoint = %self.file.display(),
                    "an output failed to deliver events of this file: the checkpoint stays \
                     before them; they are read again after a restart");
            }
        }
        if let Some(id) = self.marks.advance() {
            self.done = self.positions.get(&id).copied();
            self.positions.retain(|&k, _| k > id);
        }
        if self.done != self.written && (force || self.last_write.elapsed() >= WRITE_EVERY) {
            if let Some((dev, ino, off)) = self.done {
                crate::fsx::write_atomic(
                    &self.file,
                    format!("{dev} {ino} {off}\n").as_bytes(),
                    0o640,
                    false,
                )?;
                self.written = self.done;
                self.last_write = Instant::now();
            }
        }
        Ok(())
    }
}

/// A file the watcher opened: at PATH now, or renamed away from it before the reader had it.
enum Found {
    AtPath(Followed),
    Away(Followed),
}

/// Watch PATH's directory and open each file the moment it appears at PATH (created, or
/// renamed there) — and one renamed away from PATH, under its new name — sending it to the
/// reader. None when inotify cannot watch the directory (the reader's poll finds new files
/// then, as it always also does).
fn watch(
    path: &Path,
    max_line: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Option<(Receiver<Found>, std::thread::JoinHandle<()>)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::fd::AsFd;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = path.file_name()?.to_os_string();
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
    ino.add_watch(
        &dir,
        AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_ONLYDIR,
    )
    .ok()?;
    let (tx, rx) = unbounded();
    let path = path.to_path_buf();
    let h = std::thread::Builder::new()
        .name("tail-watch".into())
        .spawn(move || {
            // cookies of renames away from PATH, so that their other half names the file
            let mut away: Vec<u32> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut fds = [PollFd::new(ino.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(100u16)) {
                    Ok(0) => continue,
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
                let Ok(events) = ino.read_events() else {
                    continue;
                };
                for ev in events {
                    let Some(name) = ev.name.as_ref() else {
                        continue;
                    };
                    let at_path = *name == base;
                    let found = if at_path
                        && ev
                            .mask
                            .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                    {
                        Followed::open_at(&path, 0, max_line)
                            .ok()
                            .map(Found::AtPath)
                    } else if at_path && ev.mask.contains(AddWatchFlags::IN_MOVED_FROM) {
                        away.push(ev.cookie);
                        if away.len() > 64 {
                            away.remove(0);
                        }
                        None
                    } else if ev.mask.contains(AddWatchFlags::IN_MOVED_TO)
                        && away.contains(&ev.cookie)
                    {
                        away.retain(|&c| c != ev.cookie);
                        Followed::open_at(&dir.join(name), 0, max_line)
                            .ok()
                            .map(Found::Away)
                    } else {
                        None
                    };
                    if let Some(f) = found {
                        if tx.send(f).is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .ok()?;
    Some((rx, h))
}

/// Largest checkpoint file read (one holds three numbers).
pub const MAX_CHECKPOINT_BYTES: u64 = 4096;

/// Open `path` for reading if it is a regular file, never through a link, never blocking.
fn open_regular(path: &Path) -> io::Result<File> {
    let f = crate::fsx::open_no_link(std::fs::OpenOptions::new().read(true), path, "read")
        .map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidInput {
                not_followed(path, "is a symbolic link")
            } else {
                e
            }
        })?;
    if !f.metadata()?.is_file() {
        return Err(not_followed(
            path,
            "is not a regular file (a FIFO, a socket, a device or a directory)",
        ));
    }
    Ok(f)
}

fn not_followed(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} {what}: tail:// follows regular files only, never through a link (name the file itself)",
            path.display()
        ),
    )
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
    fn open(path: &Path, at_end: bool, max_line: usize) -> io::Result<Self> {
        Self::open_at(path, if at_end { u64::MAX } else { 0 }, max_line)
    }

    /// Open at `pos` (clamped to the file's length). Only a regular file is followed, and
    /// never through a symbolic link at PATH (opened `O_NOFOLLOW|O_NONBLOCK`: a FIFO planted
    /// there never blocks the input, a link to a file only root may read is not read as
    /// root): anything else is an `InvalidInput` error naming the path.
    fn open_at(path: &Path, pos: u64, max_line: usize) -> io::Result<Self> {
        let mut file = open_regular(path)?;
        let meta = file.metadata()?;
        let pos = pos.min(meta.len());
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

    /// Where the last whole line handed over ends.
    fn position(&self) -> Position {
        (self.dev, self.ino, self.pos - self.framer.pending() as u64)
    }

    /// Read everything there is now. Returns the number of bytes read. With a checkpoint,
    /// each chunk read is handed over as one batch with its receipt.
    fn drain(
        &mut self,
        col: &mut Collector,
        ctx: &mut SourceCtx,
        buf: &mut [u8],
        ck: &mut Option<Checkpoint>,
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
                    if let Some(ck) = ck.as_mut() {
                        ck.emit(col, ctx, self.position());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Tail {
    /// Follow `path` (from its start, or its end), resuming at `checkpoint` when it names this file.
    pub fn new(
        path: PathBuf,
        from_start: bool,
        max_line: usize,
        checkpoint: Option<PathBuf>,
    ) -> Self {
        let saved = checkpoint.as_deref().and_then(Checkpoint::load);
        let opened = match saved {
            Some((dev, ino, off)) => match std::fs::metadata(&path) {
                Ok(m) if m.dev() == dev && m.ino() == ino && m.len() >= off => {
                    tracing::info!(path = %path.display(), offset = off, "resuming at the checkpoint");
                    Followed::open_at(&path, off, max_line)
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(),
                        "the checkpoint names another file (rotated while stopped): reading this one from its beginning");
                    Followed::open(&path, false, max_line)
                }
                Err(e) => Err(e),
            },
            None => Followed::open(&path, !from_start, max_line),
        };
        Self {
            path,
            opened,
            checkpoint: checkpoint.map(Checkpoint::new),
        }
    }

    /// Follow until the engine stops.
    pub fn run(self, mut ctx: SourceCtx) {
        let mut ck = self.checkpoint;
        let mut col = if ck.is_some() {
            Collector::manual(&ctx)
        } else {
            Collector::new(&ctx)
        };
        // with a checkpoint a read chunk is a batch: keep it near batch_lines of EVE (~500 B)
        let chunk = match ck {
            Some(_) => (ctx.batch_lines * 512).clamp(4096, CHUNK),
            None => CHUNK,
        };
        let mut buf = vec![0u8; chunk];
        let mut current = match self.opened {
            Ok(f) => {
                ctx.ready("following");
                Some(f)
            }
            Err(e) => {
                cannot_open(&self.path, &ctx, &e);
                None
            }
        };
        let mut retired: Vec<(Followed, Instant)> = Vec::new();
        let mut missing_logged = false;
        // the path is (still) something not followed: said and counted once per occurrence
        let mut refused_logged = false;
        let watch_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = watch(&self.path, ctx.max_line, watch_stop.clone());
        let found_rx = watcher.as_ref().map(|(rx, _)| rx.clone());
        let mut woke_for: Option<Found> = None;

        while !ctx.stopping() && !col.closed() {
            let mut progressed = false;

            // files the watcher opened as they appeared, in order (the one the wait below
            // woke for first)
            if let Some(rx) = &found_rx {
                for found in woke_for.take().into_iter().chain(rx.try_iter()) {
                    progressed |= take(
                        &self.path,
                        found,
                        &mut current,
                        &mut retired,
                        &mut col,
                        &mut ctx,
                        &mut ck,
                    );
                }
            }

            // Files rotated away: each read to its end, and on for a while, then finished.
            let now = Instant::now();
            let mut k = 0;
            while k < retired.len() {
                let (old, until) = &mut retired[k];
                match old.drain(&mut col, &mut ctx, &mut buf, &mut ck) {
                    Ok(n) => progressed |= n > 0,
                    Err(e) => io_error(&ctx, "read of rotated file failed", &e),
                }
                if now >= *until {
                    let (old, _) = retired.remove(k);
                    finish_file(old, &mut col, &mut ctx, &mut ck);
                } else {
                    k += 1;
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
                match cur.drain(&mut col, &mut ctx, &mut buf, &mut ck) {
                    Ok(n) => progressed |= n > 0,
                    Err(e) => io_error(&ctx, "read failed", &e),
                }
            }

            // Has PATH been renamed away, removed, or re-created? (lstat: a link put in its
            // place is seen as a link, and not followed). The watcher usually said so first.
            match std::fs::symlink_metadata(&self.path) {
                Ok(meta) if !meta.is_file() => {
                    if current.is_none() {
                        ctx.blind(
                            "error",
                            not_followed(
                                &self.path,
                                "is a symbolic link, a FIFO or not a regular file",
                            )
                            .to_string(),
                        );
                    } else if !refused_logged {
                        refused_logged = true;
                        let (n, _) = crate::ratelimit::bump(&ctx.counters.not_followed);
                        tracing::error!(input = %ctx.tag, path = %self.path.display(), count = n,
                            "the followed path is now a symbolic link, a FIFO or not a regular file: not following it (the file already open is read to its end)");
                    }
                }
                Ok(meta) => {
                    missing_logged = false;
                    refused_logged = false;
                    let known = current
                        .iter()
                        .chain(retired.iter().map(|(f, _)| f))
                        .any(|c| c.dev == meta.dev() && c.ino == meta.ino());
                    if !known {
                        match Followed::open(&self.path, false, ctx.max_line) {
                            Ok(new) => {
                                progressed |= take(
                                    &self.path,
                                    Found::AtPath(new),
                                    &mut current,
                                    &mut retired,
                                    &mut col,
                                    &mut ctx,
                                    &mut ck,
                                );
                            }
                            Err(e) if current.is_none() => cannot_open(&self.path, &ctx, &e),
                            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                                if !refused_logged {
                                    refused_logged = true;
                                    let (n, _) = crate::ratelimit::bump(&ctx.counters.not_followed);
                                    tracing::error!(input = %ctx.tag, count = n, "{e}");
                                }
                            }
                            Err(e) => io_error(
                                &ctx,
                                &format!(
                                    "cannot open the new file at {} (the one open is read on)",
                                    self.path.display()
                                ),
                                &e,
                            ),
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && current.is_none() => {
                    cannot_open(&self.path, &ctx, &e)
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

            if let Some(ck) = ck.as_mut() {
                if let Err(e) = ck.settle(false) {
                    io_error(&ctx, "writing the checkpoint failed", &e);
                }
            }
            if !progressed {
                col.flush(&mut ctx);
                // wake as soon as the watcher opens a file, else after a poll's time
                match &found_rx {
                    Some(rx) => woke_for = rx.recv_timeout(POLL).ok(),
                    None => std::thread::sleep(POLL),
                }
            }
        }
        watch_stop.store(true, Ordering::Relaxed);
        // what is still open is read to its end
        for (old, _) in retired {
            finish_file(old, &mut col, &mut ctx, &mut ck);
        }
        drop(found_rx);
        if let Some((rx, h)) = watcher {
            drop(rx);
            let _ = h.join();
        }
        col.flush(&mut ctx);
        if let Some(ck) = ck.as_mut() {
            // shutdown: wait (bounded) until what was read has been written, then save it
            await_receipts(Duration::from_millis(10), || {
                if ck.marks.pending() == 0 || ck.marks.is_failed() {
                    return true;
                }
                let _ = ck.settle(false);
                false
            });
            if let Err(e) = ck.settle(true) {
                io_error(&ctx, "writing the checkpoint failed", &e);
            }
        }
    }
}

/// Read `old` to its end and close it: its last line without a newline is a line.
fn finish_file(
    mut old: Followed,
    col: &mut Collector,
    ctx: &mut SourceCtx,
    ck: &mut Option<Checkpoint>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    if let Err(e) = old.drain(col, ctx, &mut buf, ck) {
        io_error(ctx, "read of rotated file failed", &e);
    }
    finish(&mut old.framer, col, ctx);
    if let Some(ck) = ck.as_mut() {
        ck.emit(col, ctx, (old.dev, old.ino, old.pos));
    }
}

/// `path` cannot be opened and nothing else is: the input is not ready, for that reason
/// (said once per reason, then counted).
fn cannot_open(path: &Path, ctx: &SourceCtx, e: &io::Error) {
    if e.kind() == io::ErrorKind::NotFound {
        ctx.blind(
            "waiting",
            format!("{} does not exist yet; waiting for it", path.display()),
        );
    } else if e.kind() == io::ErrorKind::InvalidInput {
        ctx.blind("error", e.to_string());
    } else {
        ctx.blind("error", format!("cannot open {}: {e}", path.display()));
    }
}

/// A file found at `path` (the new current file: the one before it is retired) or renamed
/// away from it (retired at once); one already open is let go. True when something changed.
fn take(
    path: &Path,
    found: Found,
    current: &mut Option<Followed>,
    retired: &mut Vec<(Followed, Instant)>,
    col: &mut Collector,
    ctx: &mut SourceCtx,
    ck: &mut Option<Checkpoint>,
) -> bool {
    let (f, at_path) = match found {
        Found::AtPath(f) => (f, true),
        Found::Away(f) => (f, false),
    };
    let known = current
        .iter()
        .chain(retired.iter().map(|(r, _)| r))
        .any(|c| c.dev == f.dev && c.ino == f.ino);
    if known {
        return false;
    }
    let until = Instant::now() + ROTATE_GRACE;
    if at_path {
        ctx.ready("following");
        if let Some(old) = current.replace(f) {
            ctx.counters.rotations.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(input = %ctx.tag, path = %path.display(),
                "file was rotated; reading the new one from its beginning");
            retired.push((old, until));
        }
    } else {
        ctx.counters.rotations.fetch_add(1, Ordering::Relaxed);
        retired.push((f, until));
    }
    while retired.len() > MAX_RETIRED {
        let (old, _) = retired.remove(0);
        finish_file(old, col, ctx, ck);
    }
    true
}

/// `tail://PATH` (from the end) or `tail://PATH<` (from the beginning): follow a file across
/// rotation and truncation.
pub const TAIL: super::SourceScheme = super::SourceScheme {
    name: "tail",
    form: "tail://PATH[<]",
    finite: false,
    options: &[super::OptionDoc {
        name: "checkpoint",
        kind: super::OptKind::Path,
        default: "",
        doc: "where the position confirmed by every output is kept across restarts (relative to ROOT; none: the input starts where its URI says each time)",
    }],
    query: &[],
    parse: |uri, rest, options| {
        let (path, from_start) = match rest.strip_suffix('<') {
            Some("") => return Err(crate::UriError::NoPath(format!("'{uri}' names no path"))),
            Some(p) => (p, true),
            None => (rest, false),
        };
        Ok(Box::new(TailInput {
            path: crate::uri::path(path),
            from_start,
            checkpoint: options.text("checkpoint").map(|p| crate::uri::path(&p)),
        }))
    },
};

#[derive(Debug)]
struct TailInput {
    path: PathBuf,
    from_start: bool,
    checkpoint: Option<PathBuf>,
}

impl super::Source for TailInput {
    fn scheme(&self) -> &'static super::SourceScheme {
        &TAIL
    }
    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
    fn checkpoint(&self) -> Option<&Path> {
        self.checkpoint.as_deref()
    }
    fn confine(
        &mut self,
        f: &mut dyn FnMut(&str, &Path) -> Result<PathBuf, String>,
    ) -> Result<(), String> {
        self.path = f("followed file", &self.path)?;
        if let Some(c) = &mut self.checkpoint {
            *c = f("checkpoint", c)?;
        }
        Ok(())
    }
    fn check(&self, found: &mut crate::preflight::Findings, what: &str) {
        // a followed file must be a regular file, not a link or a FIFO (as at start)
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if !m.is_file() {
                found.problem(format!(
                    "{what}: {} is {}: tail:// follows regular files only, never through a link",
                    self.path.display(),
                    if m.file_type().is_symlink() {
                        "a symbolic link"
                    } else {
                        "not a regular file (a FIFO, a socket, a device or a directory)"
                    }
                ));
                return;
            }
        }
        if let Err(e) = crate::preflight::file_readable(&self.path) {
            found.problem(format!("{what}: {e}"));
        }
    }
    fn check_as_runner(&self, found: &mut crate::preflight::Findings, what: &str) {
        if let Err(e) = crate::preflight::file_readable(&self.path) {
            found.problem(format!(
                "{what}: {e} — as the user the engine runs as, which opens the file again after each rotation"
            ));
        }
    }
    fn prepare(&self, max_line: usize) -> io::Result<Box<dyn super::Prepared>> {
        let t = Tail::new(
            self.path.clone(),
            self.from_start,
            max_line,
            self.checkpoint.clone(),
        );
        // a link, a FIFO or a directory at PATH, or a file this user may not read, is a
        // start-up error, not a wait (a file that is not there yet is waited for)
        if let Err(e) = &t.opened {
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::PermissionDenied
            ) {
                return Err(io::Error::new(e.kind(), e.to_string()));
            }
        }
        Ok(Box::new(t))
    }
}

impl super::Prepared for Tail {
    fn run(self: Box<Self>, ctx: SourceCtx) {
        Tail::run(*self, ctx)
    }
}
