//! `dragonfly-mle parquet compact DIR`: merge the small files of partitions no longer written.
//!
//! A partition (a directory holding `part-*.parquet` files) is *closed* when no file is
//! being written in it (no hidden temporary file) and its newest file is older than
//! `min_age`. In a closed partition, runs of consecutive files (by name, which is by time)
//! that share one schema and are each smaller than `target` are merged into files of up to
//! about `target` bytes; files with different schemas (drift) are left apart.
//!
//! Crash safety: the merged file is written under a temporary name and renamed into place
//! with key-value metadata naming the files it replaces; then the manifest is updated and the
//! old files are removed. A crash in between leaves both; the next compaction or engine start
//! ([`super::manifest::reconcile`]) sees the metadata and removes the old files, so rows are
//! never listed twice for long and never lost. It runs beside a writing engine: it only
//! touches closed partitions and serialises manifest changes on the manifest's lock.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;

use super::manifest::{self, Entry};

/// What to compact.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A partition whose newest file is younger is left alone.
    pub min_age: Duration,
    /// Merged files grow to about this many bytes; files this big are left alone.
    pub target: u64,
    /// Only report what would be merged.
    pub dry_run: bool,
}

/// What a compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Partitions looked at.
    pub partitions: usize,
    /// Files merged away.
    pub files_in: usize,
    /// Files written.
    pub files_out: usize,
    /// Rows moved.
    pub rows: u64,
}

/// Compact `dir` (see the module doc).
pub fn compact(dir: &Path, s: &Settings) -> io::Result<Report> {
    manifest::reconcile(dir, false)?;
    let (files, temps) = manifest::scan(dir)?;
    let mut by_dir: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in files {
        let d = f
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        by_dir.entry(d).or_default().push(f);
    }
    let busy: std::collections::HashSet<String> = temps
        .iter()
        .filter_map(|t| t.strip_prefix(dir).ok())
        .map(|t| {
            t.parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let entries = manifest::read(dir)?;
    let mut report = Report::default();
    let now = SystemTime::now();
    for (part, files) in by_dir {
        if busy.contains(&part) {
            continue;
        }
        let mut sized = Vec::new();
        let mut newest = SystemTime::UNIX_EPOCH;
        for f in &files {
            let m = std::fs::metadata(dir.join(f))?;
            newest = newest.max(m.modified()?);
            sized.push((f.clone(), m.len()));
        }
        if now.duration_since(newest).unwrap_or_default() < s.min_age {
            continue;
        }
        report.partitions += 1;
        // runs of small files with one schema
        let mut run: Vec<String> = Vec::new();
        let mut run_bytes = 0u64;
        let mut run_schema = None;
        let mut groups = Vec::new();
        for (f, len) in sized {
            let schema = if len < s.target {
                Some(schema_of(&dir.join(&f))?)
            } else {
                None
            };
            let fits = schema.is_some()
                && schema == run_schema
                && run_bytes + len <= s.target.saturating_mul(11) / 10;
            if !fits {
                if run.len() > 1 {
                    groups.push(std::mem::take(&mut run));
                }
                run.clear();
                run_bytes = 0;
                run_schema = schema.clone();
            }
            if schema.is_some() {
                run.push(f);
                run_bytes += len;
            }
        }
        if run.len() > 1 {
            groups.push(run);
        }
        for g in groups {
            report.files_in += g.len();
            report.files_out += 1;
            if s.dry_run {
                continue;
            }
            report.rows += merge(dir, &part, &g, &entries)?;
        }
    }
    Ok(report)
}

fn schema_of(path: &Path) -> io::Result<arrow_schema::SchemaRef> {
    let f = std::fs::File::open(path)?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
    Ok(b.schema().clone())
}

/// Merge `files` (relative to `dir`, all in partition `part`) into one.
fn merge(dir: &Path, part: &str, files: &[String], entries: &[Entry]) -> io::Result<u64> {
    let pdir = dir.join(part);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = format!("part-{stamp}-compact-{:x}.parquet", std::process::id());
    let mut name = name;
    let mut n = 0;
    while pdir.join(&name).exists() {
        n += 1;
        name = format!("part-{stamp}-compact-{:x}-{n}.parquet", std::process::id());
    }
    let tmp = pdir.join(format!(".compact-{name}.tmp"));
    let res = (|| -> io::Result<(u64, u64)> {
        let schema = schema_of(&dir.join(&files[0]))?;
        let props =
            super::properties(parquet::basic::Compression::ZSTD(Default::default()), false).build();
        use std::os::unix::fs::OpenOptionsExt;
        let out = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(crate::sinks::file::OUTPUT_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        let mut w = ArrowWriter::try_new(out, Arc::clone(&schema), Some(props))
            .map_err(io::Error::other)?;
        let names: Vec<String> = files
            .iter()
            .map(|f| f.rsplit('/').next().unwrap_or(f).to_string())
            .collect();
        w.append_key_value_metadata(KeyValue::new(
            manifest::COMPACTED_FROM.to_string(),
            serde_json::to_string(&names).map_err(io::Error::other)?,
        ));
        let mut rows = 0u64;
        for f in files {
            let file = std::fs::File::open(dir.join(f))?;
            let r = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(65_536).build())
                .map_err(|e| io::Error::other(format!("{f}: {e}")))?;
            for b in r {
                let b = b.map_err(|e| io::Error::other(format!("{f}: {e}")))?;
                rows += b.num_rows() as u64;
                w.write(&b).map_err(io::Error::other)?;
            }
        }
        let out = w.into_inner().map_err(io::Error::other)?;
        out.sync_all()?;
        let len = out.metadata()?.len();
        std::fs::hard_link(&tmp, pdir.join(&name))?;
        let _ = std::fs::remove_file(&tmp);
        manifest::sync_dir(&pdir);
        Ok((rows, len))
    })();
    let (rows, bytes) = match res {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(super::at(&pdir, e));
        }
    };
    let old: Vec<&Entry> = entries.iter().filter(|e| files.contains(&e.path)).collect();
    let min = old.iter().filter_map(|e| e.min_timestamp.clone()).min();
    let max = old.iter().filter_map(|e| e.max_timestamp.clone()).max();
    let path = if part.is_empty() {
        name.clone()
    } else {
        format!("{part}/{name}")
    };
    let entry = Entry {
        partition: manifest::partition_of(&path),
        path,
        rows,
        bytes,
        min_timestamp: min,
        max_timestamp: max,
        closed: manifest::now(),
        compacted_from: files
            .iter()
            .map(|f| f.rsplit('/').next().unwrap_or(f).to_string())
            .collect(),
    };
    manifest::update(dir, &[entry], files)?;
    for f in files {
        let _ = std::fs::remove_file(dir.join(f));
    }
    manifest::sync_dir(&pdir);
    Ok(rows)
}
