//! The index of a `parquet://DIR` output: `DIR/_manifest/`, one file per date,
//! `date=YYYY-MM-DD.json`, each listing the closed files of that date.
//!
//! Each is a JSON array (DuckDB's `read_json('DIR/_manifest/*.json')` reads them all as one
//! table, one row per file):
//!
//! ```json
//! [{"path":"event_type=dns/date=2025-03-10/part-20250310T120000Z-1a2b-000001.parquet",
//!   "partition":{"event_type":"dns","date":"2025-03-10"},"rows":12034,"bytes":401234,
//!   "min_timestamp":"2025-03-10T11:55:00.000123Z","max_timestamp":"2025-03-10T12:00:00.5Z",
//!   "closed":"2025-03-10T12:00:01Z"}]
//! ```
//!
//! Timestamps are the events' own `timestamp` field, converted to UTC (null when no row had
//! one that parses). A query over a time range keeps the entries whose range overlaps it and
//! opens only their files. A file's date is its `date` partition, else the date of its
//! earliest event, else the date it was closed ([`day_of`]); `date=undated.json` holds those
//! with none of these.
//!
//! Guarantees: each date's file is replaced atomically (written beside it under a temporary
//! name, synced, renamed), so a reader sees the old or the new list, never a part; writers
//! (the engine, `dragonfly-mle parquet compact`) serialise on `DIR/_manifest.lock` (an
//! advisory `flock`) and apply their change to what is on disk, so neither loses the other's.
//! Files are renamed into place before they are listed: after a crash between the two (or
//! between two dates' files), the next start (or compaction) lists them ([`reconcile`]).
//! Entries whose file is gone are dropped the same way. A manifest of the older form (one
//! `DIR/_manifest.json`) is split into dates at the next start and removed.
//!
//! Cost: a flush that closes files reads and rewrites the files of the dates it touches
//! (usually today's), never the rest: its cost depends on how many files a day holds, not on
//! how old the archive is. A compaction and a start read every date.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::at;

/// The manifest's directory in the output directory.
pub const MANIFEST: &str = "_manifest";
/// The older form: one file for every date.
const LEGACY: &str = "_manifest.json";
const LOCK: &str = "_manifest.lock";
/// The date file of entries that have no date.
const UNDATED: &str = "undated";

/// The date an entry is listed under: its `date` partition, else the date of its earliest
/// event, else the date it was closed (each only when it reads `YYYY-MM-DD`), else
/// [`UNDATED`].
pub fn day_of(e: &Entry) -> String {
    let is_day = |s: &str| {
        let b = s.as_bytes();
        b.len() == 10
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                _ => c.is_ascii_digit(),
            })
    };
    let prefix = |s: &Option<String>| s.as_deref().and_then(|t| t.get(..10)).map(str::to_string);
    [
        e.partition.get("date").cloned(),
        prefix(&e.min_timestamp),
        prefix(&Some(e.closed.clone())),
    ]
    .into_iter()
    .flatten()
    .find(|d| is_day(d))
    .unwrap_or_else(|| UNDATED.to_string())
}

fn day_file(dir: &Path, day: &str) -> PathBuf {
    dir.join(MANIFEST).join(format!("date={day}.json"))
}

/// One closed file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Its path under the output directory (`/`-separated).
    pub path: String,
    /// Its partition's keys and values (decoded).
    pub partition: BTreeMap<String, String>,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The earliest event `timestamp` in it, UTC (RFC 3339), if any parsed.
    pub min_timestamp: Option<String>,
    /// The latest.
    pub max_timestamp: Option<String>,
    /// When it was closed, UTC.
    pub closed: String,
    /// For a file made by compaction: the names of the files it replaces (same directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compacted_from: Vec<String>,
}

/// The relative paths that `compacted_from` names, for a file at `rel`.
fn replaced_by(rel: &str, names: &[String]) -> Vec<String> {
    let base = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    names
        .iter()
        .filter(|n| !n.contains('/') && !n.starts_with('.') && n.ends_with(".parquet"))
        .map(|n| {
            if base.is_empty() {
                n.clone()
            } else {
                format!("{base}/{n}")
            }
        })
        .collect()
}

/// Microseconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// An EVE timestamp (`2025-03-10T12:00:00.123456+0100`, or RFC 3339) in microseconds
/// since the epoch, UTC.
pub fn parse_timestamp(s: &[u8]) -> Option<i64> {
    if let Some(t) = parse_eve(s) {
        return Some(t);
    }
    let s = std::str::from_utf8(s).ok()?;
    chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.timestamp_micros())
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HHMM|+HH:MM|-...)`, the form Suricata writes, without
/// chrono's format machinery (it runs once per row).
fn parse_eve(s: &[u8]) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = s.get(r)?;
        d.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + (c - b'0') as i64)
        })
    };
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b'T'
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if s[i] == b'.' {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + (s[i] - b'0') as i64;
            }
            i += 1;
        }
        if i == start || i - start > 9 {
            return None;
        }
        for _ in (i - start)..6 {
            micros *= 10;
        }
    }
    let offset = match s.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (oh, om) = match rest {
                [a, b, c, d] | [a, b, b':', c, d] => (num_of(&[*a, *b])?, num_of(&[*c, *d])?),
                _ => return None,
            };
            let o = oh * 3600 + om * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = super::timestamps::days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset) * 1_000_000 + micros)
}

fn num_of(d: &[u8]) -> Option<i64> {
    d.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + (c - b'0') as i64)
    })
}

/// Now, UTC, to the second (RFC 3339).
pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Holds `DIR/_manifest.lock` while alive.
struct Locked(#[allow(dead_code)] nix::fcntl::Flock<File>);

fn lock(dir: &Path) -> io::Result<Locked> {
    flock(&dir.join(LOCK), true).map(Locked)
}

/// An exclusive `flock` on `path` (created, never through a symbolic link); `wait`: block
/// until it is free, else fail with `WouldBlock`.
pub(super) fn flock(path: &Path, wait: bool) -> io::Result<nix::fcntl::Flock<File>> {
    use nix::fcntl::FlockArg;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| at(path, e))?;
    let arg = if wait {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    nix::fcntl::Flock::lock(f, arg).map_err(|(_, e)| at(path, e.into()))
}

/// Largest date file read (about four million entries).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// One JSON array of entries (none if the file does not exist).
fn read_file(path: &Path) -> io::Result<Vec<Entry>> {
    // a regular file, not a link, a FIFO or a device planted in its place
    match crate::fsx::read_capped(path, MAX_MANIFEST_BYTES) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The dates listed in `DIR/_manifest/`, sorted.
fn days(dir: &Path) -> io::Result<Vec<String>> {
    let m = dir.join(MANIFEST);
    match std::fs::symlink_metadata(&m) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(at(&m, not_a_directory())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(at(&m, e)),
    }
    let rd = std::fs::read_dir(&m).map_err(|e| at(&m, e))?;
    let mut days: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let day = name.strip_prefix("date=")?.strip_suffix(".json")?;
            Some(day.to_string())
        })
        .collect();
    days.sort();
    Ok(days)
}

/// Every entry on disk (none if there is no manifest yet): every date's, and the older
/// form's if it is still there.
pub fn read(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = read_file(&dir.join(LEGACY))?;
    for day in days(dir)? {
        entries.extend(read_file(&day_file(dir, &day))?);
    }
    Ok(entries)
}

fn not_a_directory() -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        "is not a directory (a link or a file was planted there)",
    )
}

/// Replace date `day`'s file with `entries` (removed when there are none).
fn write_day(dir: &Path, day: &str, entries: &[Entry]) -> io::Result<()> {
    let m = dir.join(MANIFEST);
    match std::fs::symlink_metadata(&m) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(at(&m, not_a_directory())),
        Err(_) => {
            std::fs::DirBuilder::new()
                .mode(0o750)
                .create(&m)
                .map_err(|e| at(&m, e))?;
        }
    }
    let path = day_file(dir, day);
    if entries.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(at(&path, e)),
            _ => Ok(()),
        };
    }
    let tmp = m.join(format!(".date={day}.json.tmp"));
    let named = |e: io::Error| at(&tmp, e);
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(crate::sinks::file::OUTPUT_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(named)?;
    let mut body = serde_json::to_vec(entries).map_err(io::Error::other)?;
    body.push(b'\n');
    f.write_all(&body).map_err(named)?;
    f.sync_all().map_err(named)?;
    std::fs::rename(&tmp, &path).map_err(named)?;
    sync_dir(&m);
    Ok(())
}

/// Write `entries` as the whole manifest: each date's file, the dates in `stale` that have no
/// entry left removed, and the older form's file removed once every date is written.
fn write_all(dir: &Path, entries: Vec<Entry>, stale: &[String]) -> io::Result<()> {
    let mut by_day: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for e in entries {
        by_day.entry(day_of(&e)).or_default().push(e);
    }
    for (day, list) in &by_day {
        write_day(dir, day, list)?;
    }
    for day in stale.iter().filter(|d| !by_day.contains_key(*d)) {
        write_day(dir, day, &[])?;
    }
    if by_day.is_empty() {
        // an empty manifest is an empty directory
        write_day(dir, UNDATED, &[])?;
    }
    match std::fs::remove_file(dir.join(LEGACY)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(at(&dir.join(LEGACY), e)),
        _ => Ok(()),
    }
}

/// Make a rename in `dir` durable (best effort: some file systems refuse).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Add `added` and drop the entries whose path is in `removed`, under the lock. Only the
/// dates of `added` are read and rewritten, unless `removed` names files (a compaction:
/// every date is read to find them) or the older form is still there (it is split).
pub fn update(dir: &Path, added: &[Entry], removed: &[String]) -> io::Result<()> {
    let _l = lock(dir)?;
    if !removed.is_empty() || dir.join(LEGACY).exists() {
        let mut entries = read(dir).unwrap_or_else(|e| {
            tracing::warn!("{e}; rebuilding it from the files");
            Vec::new()
        });
        let gone: HashSet<&str> = removed.iter().map(String::as_str).collect();
        entries.retain(|e| !gone.contains(e.path.as_str()));
        let have: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
        entries.extend(added.iter().filter(|e| !have.contains(&e.path)).cloned());
        return write_all(dir, entries, &days(dir)?);
    }
    let mut by_day: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
    for e in added {
        by_day.entry(day_of(e)).or_default().push(e);
    }
    for (day, new) in by_day {
        let path = day_file(dir, &day);
        let mut entries = read_file(&path).unwrap_or_else(|e| {
            tracing::warn!("{e}; rebuilding it from the files");
            Vec::new()
        });
        let have: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
        entries.extend(new.into_iter().filter(|e| !have.contains(&e.path)).cloned());
        write_day(dir, &day, &entries)?;
    }
    Ok(())
}

/// Every data file under `dir` (`*.parquet`, not hidden, not through symbolic links), as
/// paths relative to it; and the hidden temporary files (`.*.tmp`) found beside them.
pub fn scan(dir: &Path) -> io::Result<(Vec<String>, Vec<PathBuf>)> {
    let mut files = Vec::new();
    let mut temps = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new(), 0usize)];
    while let Some((d, rel, depth)) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if depth > 0 => {
                tracing::warn!("{}: {e}; skipped", d.display());
                continue;
            }
            Err(e) => return Err(at(&d, e)),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(t) = e.file_type() else { continue };
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if t.is_dir() && !name.starts_with('.') && depth < 8 {
                stack.push((e.path(), r, depth + 1));
            } else if t.is_file() && name.starts_with('.') && name.ends_with(".tmp") && depth > 0 {
                temps.push(e.path());
            } else if t.is_file()
                && !name.starts_with('.')
                && !name.starts_with('_')
                && name.ends_with(".parquet")
            {
                files.push(r);
            }
        }
    }
    files.sort();
    Ok((files, temps))
}

/// What a file's footer says, for an entry and for compaction's cleanup.
pub struct FileInfo {
    /// Rows.
    pub rows: u64,
    /// Earliest and latest `timestamp` (column statistics), microseconds UTC.
    pub min_ts: Option<i64>,
    /// See `min_ts`.
    pub max_ts: Option<i64>,
    /// The files a compaction merged into this one (key-value metadata).
    pub compacted_from: Vec<String>,
}

/// Key-value metadata naming the files a compacted file replaces (a JSON array of names in
/// the same directory).
pub const COMPACTED_FROM: &str = "dragonfly.compacted_from";

/// Read a file's footer.
pub fn file_info(path: &Path) -> io::Result<FileInfo> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::statistics::Statistics;
    let named = |e: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let f = File::open(path).map_err(|e| named(e.to_string()))?;
    let r = SerializedFileReader::new(f).map_err(|e| named(e.to_string()))?;
    let md = r.metadata();
    let fm = md.file_metadata();
    let mut info = FileInfo {
        rows: fm.num_rows().max(0) as u64,
        min_ts: None,
        max_ts: None,
        compacted_from: Vec::new(),
    };
    if let Some(kv) = fm.key_value_metadata() {
        for k in kv {
            if k.key == COMPACTED_FROM {
                if let Some(v) = &k.value {
                    info.compacted_from = serde_json::from_str(v).unwrap_or_default();
                }
            }
        }
    }
    let col = fm
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "timestamp");
    if let Some(ci) = col {
        for rg in md.row_groups() {
            // a typed column (timestamps::): UTC microseconds, ordered as times
            if let Some(Statistics::Int64(s)) = rg.column(ci).statistics() {
                for t in [s.min_opt(), s.max_opt()].into_iter().flatten() {
                    info.min_ts = Some(info.min_ts.map_or(*t, |m| m.min(*t)));
                    info.max_ts = Some(info.max_ts.map_or(*t, |m| m.max(*t)));
                }
            }
            if let Some(Statistics::ByteArray(s)) = rg.column(ci).statistics() {
                // strings sort by text, not by time when offsets differ: parse both ends of
                // every row group and keep the extremes
                for v in [s.min_opt(), s.max_opt()].into_iter().flatten() {
                    if let Some(t) = parse_timestamp(v.data()) {
                        info.min_ts = Some(info.min_ts.map_or(t, |m| m.min(t)));
                        info.max_ts = Some(info.max_ts.map_or(t, |m| m.max(t)));
                    }
                }
            }
        }
    }
    Ok(info)
}

/// The partition `key=value` pairs of a relative path (Hive style), decoded.
pub fn partition_of(rel: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let parts: Vec<&str> = rel.split('/').collect();
    for p in &parts[..parts.len().saturating_sub(1)] {
        if let Some((k, v)) = p.split_once('=') {
            m.insert(decode(k), decode(v));
        }
    }
    m
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An entry for a file from its footer.
pub fn entry_from_file(dir: &Path, rel: &str) -> io::Result<(Entry, FileInfo)> {
    let path = dir.join(rel);
    let info = file_info(&path)?;
    let bytes = std::fs::metadata(&path)?.len();
    Ok((
        Entry {
            path: rel.to_string(),
            partition: partition_of(rel),
            rows: info.rows,
            bytes,
            min_timestamp: info.min_ts.map(rfc3339),
            max_timestamp: info.max_ts.map(rfc3339),
            closed: now(),
            compacted_from: Vec::new(),
        },
        info,
    ))
}

/// Bring the manifest in line with the files: finish a compaction cut short (delete the
/// files a present compacted file replaces), list files it lacks, drop entries whose file is
/// gone. `remove_temps`: also delete leftover temporary files (only a writer that holds the
/// output directory does). Returns (entries added, entries dropped).
pub fn reconcile(dir: &Path, remove_temps: bool) -> io::Result<(usize, usize)> {
    let _l = lock(dir)?;
    // the temporaries include a date file's left by a crash (in _manifest/)
    let (mut files, temps) = scan(dir)?;
    if remove_temps {
        for t in temps {
            let name = t
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with(".part-")
                || name.starts_with(".compact-")
                || name.starts_with(".date=")
            {
                tracing::info!(file = %t.display(), "removing a file left unfinished by an earlier run");
                let _ = std::fs::remove_file(&t);
            }
        }
    }
    let mut entries = read(dir).unwrap_or_else(|e| {
        tracing::warn!("{e}; rebuilding it from the files");
        Vec::new()
    });
    let listed: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    // files a listed compacted file replaces, and those an unlisted one replaces (its footer)
    let mut replaced: HashSet<String> = entries
        .iter()
        .flat_map(|e| replaced_by(&e.path, &e.compacted_from))
        .collect();
    let mut added = Vec::new();
    for rel in &files {
        if listed.contains(rel) || replaced.contains(rel) {
            continue;
        }
        match entry_from_file(dir, rel) {
            Ok((mut e, info)) => {
                e.compacted_from = info.compacted_from;
                replaced.extend(replaced_by(rel, &e.compacted_from));
                added.push(e)
            }
            Err(e) => tracing::warn!("{e}; not listed in the manifest"),
        }
    }
    // a compaction cut short after its file was in place: finish it
    for rel in &files {
        if replaced.contains(rel) && std::fs::remove_file(dir.join(rel)).is_ok() {
            tracing::info!(file = %rel, "removed: merged into a compacted file by a compaction cut short");
        }
    }
    added.retain(|e| !replaced.contains(&e.path));
    // what is there now (a compaction's cleanup may just have removed files)
    files.retain(|f| dir.join(f).exists());
    let present: HashSet<&str> = files.iter().map(String::as_str).collect();
    let before = entries.len();
    entries.retain(|e| present.contains(e.path.as_str()));
    let dropped = before - entries.len();
    let n_added = added.len();
    entries.extend(added);
    entries.retain(|e| present.contains(e.path.as_str()));
    if n_added > 0 || dropped > 0 || !dir.join(MANIFEST).exists() || dir.join(LEGACY).exists() {
        write_all(dir, entries, &days(dir)?)?;
    }
    Ok((n_added, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_utc() {
        let a = parse_timestamp(b"2025-03-10T12:00:00.000123+0100").unwrap();
        assert_eq!(rfc3339(a), "2025-03-10T11:00:00.000123Z");
        assert!(parse_timestamp(b"2025-03-10T12:00:00Z").is_some());
        // the fast path agrees with chrono everywhere it answers
        for t in [
            "2025-03-10T12:00:00.000123+0100",
            "1999-12-31T23:59:59.999999-0530",
            "2024-02-29T00:00:00.5+00:00",
            "2025-03-10T12:00:00Z",
            "1969-07-20T20:17:40.000000+0000",
        ] {
            let c = chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z")
                .or_else(|_| chrono::DateTime::parse_from_rfc3339(t))
                .unwrap()
                .timestamp_micros();
            assert_eq!(parse_eve(t.as_bytes()), Some(c), "{t}");
        }
        assert_eq!(parse_eve(b"2025-13-10T12:00:00Z"), None);
        assert!(parse_timestamp(b"yesterday").is_none());
    }

    fn entry(day: u32, i: usize) -> Entry {
        let date = format!("2026-01-{:02}", day + 1);
        Entry {
            path: format!("event_type=t{}/date={date}/part-{i:06}.parquet", i % 30),
            partition: BTreeMap::from([
                ("event_type".to_string(), format!("t{}", i % 30)),
                ("date".to_string(), date.clone()),
            ]),
            rows: 1000 + i as u64,
            bytes: 40_000,
            min_timestamp: Some(format!("{date}T00:00:00.000000Z")),
            max_timestamp: Some(format!("{date}T00:05:00.000000Z")),
            closed: format!("{date}T00:05:01Z"),
            compacted_from: Vec::new(),
        }
    }

    /// A simulated month of closes (30 days, a flush closing 30 files every half hour): each
    /// flush rewrites its own date's file and no other, so the bytes it writes at the end of
    /// the month are what they were on the first day at the same hour; every entry reads
    /// back.
    #[test]
    fn a_month_of_closes_costs_the_same_per_close_on_the_last_day_as_on_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (days, flushes, files) = (30u32, 48usize, 30usize);
        // per day, the bytes each flush wrote (the size of the one file it replaced)
        let mut written: Vec<Vec<u64>> = Vec::new();
        let mut first_day = Vec::new();
        for day in 0..days {
            let path = day_file(d, &format!("2026-01-{:02}", day + 1));
            let sizes = (0..flushes)
                .map(|f| {
                    let added: Vec<Entry> = (0..files).map(|i| entry(day, f * files + i)).collect();
                    update(d, &added, &[]).unwrap();
                    std::fs::metadata(&path).unwrap().len()
                })
                .collect();
            written.push(sizes);
            if day == 0 {
                first_day = std::fs::read(day_file(d, "2026-01-01")).unwrap();
            }
        }
        assert_eq!(
            written[29], written[0],
            "bytes written per close grew with the archive"
        );
        // earlier dates were never rewritten
        assert_eq!(std::fs::read(day_file(d, "2026-01-01")).unwrap(), first_day);
        assert_eq!(days_listed(d), 30);
        assert_eq!(read(d).unwrap().len(), days as usize * flushes * files);
    }

    fn days_listed(d: &Path) -> usize {
        days(d).unwrap().len()
    }

    /// The older single file is split into dates (and removed) at the next change; entries
    /// without a date go to `date=undated.json`; a date file can be read by DuckDB's glob
    /// alone (JSON arrays); a planted link in place of the directory is refused.
    #[test]
    fn the_older_form_is_split_into_dates_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut undated = entry(0, 99);
        undated.partition.clear();
        undated.min_timestamp = None;
        undated.closed = "garbage".into();
        let old = vec![entry(0, 1), entry(1, 2), undated];
        std::fs::write(d.join(LEGACY), serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(read(d).unwrap(), old);
        update(d, &[entry(2, 3)], &[]).unwrap();
        assert!(!d.join(LEGACY).exists());
        assert_eq!(
            days(d).unwrap(),
            ["2026-01-01", "2026-01-02", "2026-01-03", "undated"]
        );
        assert_eq!(read(d).unwrap().len(), 4);
        let day: Vec<Entry> =
            serde_json::from_slice(&std::fs::read(day_file(d, "2026-01-02")).unwrap()).unwrap();
        assert_eq!(day, vec![entry(1, 2)]);
        // a compaction's change: removed entries leave their date (an emptied date goes)
        update(d, &[], &[entry(1, 2).path]).unwrap();
        assert_eq!(days(d).unwrap(), ["2026-01-01", "2026-01-03", "undated"]);

        let other = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(target.path(), other.path().join(MANIFEST)).unwrap();
        let err = update(other.path(), &[entry(0, 1)], &[]).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
    }

    #[test]
    fn partitions_decode() {
        let m = partition_of("event_type=a%2Fb/date=2025-03-10/part-1.parquet");
        assert_eq!(m["event_type"], "a/b");
        assert_eq!(m["date"], "2025-03-10");
        assert!(partition_of("part-1.parquet").is_empty());
    }
}
