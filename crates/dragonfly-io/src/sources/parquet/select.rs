//! Which files of an archive a replay reads, and in what order.
//!
//! Every `*.parquet` file under the directory (not hidden, not through links: the writer's
//! own [`scan`](crate::sinks::parquet::manifest::scan)) is a candidate. Its partition comes
//! from its path (`event_type=dns/date=...`), its time range from the manifest's entry, or,
//! for a file the manifest does not list (no manifest, or a crash before the listing), from
//! its footer's statistics. A file is left out, without being opened, when its
//! `event_type` partition is not one asked for, when its time range lies wholly outside
//! `[from, to)`, or when a file present beside it says it replaces it (a compaction cut
//! short). The rest are read in order of their earliest event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::sinks::parquet::manifest::{self, Entry};

/// What a replay asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Earliest event time read, microseconds UTC (inclusive).
    pub from: Option<i64>,
    /// Event times read are before this (exclusive).
    pub to: Option<i64>,
    /// Event types read (empty: all).
    pub event_types: Vec<String>,
}

impl Filter {
    /// Whether an event at `t` (None: no time that parses) is inside the range.
    pub fn in_range(&self, t: Option<i64>) -> bool {
        match t {
            Some(t) => self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|e| t < e),
            None => self.from.is_none() && self.to.is_none(),
        }
    }

    /// Whether events from `lo` to `hi` (inclusive; None: not known) may hold one in the
    /// range: false only when the range is known to lie wholly outside it.
    pub fn overlaps(&self, lo: Option<i64>, hi: Option<i64>) -> bool {
        !(self.from.is_some_and(|f| hi.is_some_and(|h| h < f))
            || self.to.is_some_and(|t| lo.is_some_and(|l| l >= t)))
    }

    /// Whether the event type `t` is asked for.
    pub fn wants_type(&self, t: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|x| x == t)
    }
}

/// One file to read.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// Its path.
    pub path: PathBuf,
    /// Its path under the archive (for messages).
    pub rel: String,
    /// Its earliest and latest event times, if known.
    pub min_ts: Option<i64>,
    /// See `min_ts`.
    pub max_ts: Option<i64>,
    /// Its partition's `event_type`, when the archive is partitioned by it (then every row
    /// has that type and rows need no test).
    pub event_type: Option<String>,
}

/// What [`choose`] found.
#[derive(Debug, Default)]
pub struct Selection {
    /// The files to read, by earliest event (files without times first), then by path.
    pub files: Vec<Chosen>,
    /// Files left out by partition or time range without being opened.
    pub pruned: usize,
    /// Files left out because another replaces them.
    pub replaced: usize,
    /// Problems with single files or the manifest: each names its file; the rest is read.
    pub problems: Vec<String>,
    /// Files the manifest did not list (their footers were read).
    pub unlisted: usize,
    /// Whether the archive has a manifest.
    pub has_manifest: bool,
}

/// Choose the files of `dir` that `filter` needs. Fails only when `dir` itself cannot be
/// read.
pub fn choose(dir: &Path, filter: &Filter) -> std::io::Result<Selection> {
    let mut sel = Selection::default();
    let (files, _temps) = manifest::scan(dir)?;
    let listed: HashMap<String, Entry> = match manifest::read(dir) {
        Ok(entries) => entries.into_iter().map(|e| (e.path.clone(), e)).collect(),
        Err(e) => {
            sel.problems.push(format!(
                "the manifest cannot be read ({e}): every file's footer is read instead"
            ));
            HashMap::new()
        }
    };
    // the manifest's directory, or the older single file (read above) with entries in it
    sel.has_manifest = dir.join(manifest::MANIFEST).is_dir() || !listed.is_empty();
    let present: HashSet<&str> = files.iter().map(String::as_str).collect();
    let mut replaced: HashSet<String> = HashSet::new();
    let mut candidates = Vec::new();
    for rel in &files {
        let partition: BTreeMap<String, String> = manifest::partition_of(rel);
        let event_type = partition.get("event_type").cloned();
        if let Some(t) = &event_type {
            if !filter.wants_type(t) {
                sel.pruned += 1;
                continue;
            }
        }
        let (min_ts, max_ts, from) = match listed.get(rel) {
            Some(e) => (
                e.min_timestamp
                    .as_deref()
                    .and_then(|t| manifest::parse_timestamp(t.as_bytes())),
                e.max_timestamp
                    .as_deref()
                    .and_then(|t| manifest::parse_timestamp(t.as_bytes())),
                e.compacted_from.clone(),
            ),
            None => match manifest::file_info(&dir.join(rel)) {
                Ok(info) => {
                    sel.unlisted += 1;
                    (info.min_ts, info.max_ts, info.compacted_from)
                }
                Err(e) => {
                    sel.problems.push(format!("{e}: not read"));
                    continue;
                }
            },
        };
        // the names a compacted file replaces are in its own directory
        let base = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let from = from.iter().filter(|n| !n.contains('/')).map(|n| {
            if base.is_empty() {
                n.clone()
            } else {
                format!("{base}/{n}")
            }
        });
        for r in from {
            if r != *rel && present.contains(r.as_str()) {
                replaced.insert(r);
            }
        }
        if !filter.overlaps(min_ts, max_ts) {
            sel.pruned += 1;
            continue;
        }
        candidates.push(Chosen {
            path: dir.join(rel),
            rel: rel.clone(),
            min_ts,
            max_ts,
            event_type,
        });
    }
    for c in candidates {
        if replaced.contains(&c.rel) {
            sel.replaced += 1;
        } else {
            sel.files.push(c);
        }
    }
    sel.files.sort_by(|a, b| {
        (a.min_ts.unwrap_or(i64::MIN), &a.rel).cmp(&(b.min_ts.unwrap_or(i64::MIN), &b.rel))
    });
    Ok(sel)
}
