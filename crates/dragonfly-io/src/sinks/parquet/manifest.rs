//! The index of a `parquet://DIR` output: `DIR/_manifest.json`, one entry per closed file.
//!
//! It is a JSON array (DuckDB's `read_json` reads it as a table, one row per file):
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
//! opens only their files.
//!
//! Guarantees: the file is replaced atomically (written beside it under a temporary name,
//! synced, renamed), so a reader sees the old or the new manifest, never a part; writers
//! (the engine, `dragonfly-mle parquet compact`) serialise on `DIR/_manifest.lock` (an
//! advisory `flock`) and apply their change to what is on disk, so neither loses the other's.
//! Files are renamed into place before they are listed: after a crash between the two, the
//! next start (or compaction) lists them ([`reconcile`]). Entries whose file is gone are
//! dropped the same way.
//!
//! Cost: one read and one rewrite of the manifest per change (a flush that closed files, a
//! compaction), not per file.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::at;

/// The manifest's name in the output directory.
pub const MANIFEST: &str = "_manifest.json";
const LOCK: &str = "_manifest.lock";

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
    // days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
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

/// Largest manifest read (about four million entries).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// The entries on disk (none if there is no manifest yet).
pub fn read(dir: &Path) -> io::Result<Vec<Entry>> {
    let path = dir.join(MANIFEST);
    // a regular file, not a link, a FIFO or a device planted in its place
    match crate::fsx::read_capped(&path, MAX_MANIFEST_BYTES) {
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

fn write(dir: &Path, entries: &[Entry]) -> io::Result<()> {
    let tmp = dir.join(".manifest.json.tmp");
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
    std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(named)?;
    sync_dir(dir);
    Ok(())
}

/// Make a rename in `dir` durable (best effort: some file systems refuse).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Add `added` and drop the entries whose path is in `removed`, under the lock.
pub fn update(dir: &Path, added: &[Entry], removed: &[String]) -> io::Result<()> {
    let _l = lock(dir)?;
    let mut entries = read(dir).unwrap_or_else(|e| {
        tracing::warn!("{e}; rebuilding it from the files");
        Vec::new()
    });
    let gone: HashSet<&str> = removed.iter().map(String::as_str).collect();
    entries.retain(|e| !gone.contains(e.path.as_str()));
    let have: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    entries.extend(added.iter().filter(|e| !have.contains(&e.path)).cloned());
    write(dir, &entries)
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
    let (mut files, temps) = scan(dir)?;
    if remove_temps {
        for t in temps {
            let name = t
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with(".part-") || name.starts_with(".compact-") {
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
    if n_added > 0 || dropped > 0 || !dir.join(MANIFEST).exists() {
        write(dir, &entries)?;
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

    #[test]
    fn partitions_decode() {
        let m = partition_of("event_type=a%2Fb/date=2025-03-10/part-1.parquet");
        assert_eq!(m["event_type"], "a/b");
        assert_eq!(m["date"], "2025-03-10");
        assert!(partition_of("part-1.parquet").is_empty());
    }
}
