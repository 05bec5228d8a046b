//! `parquet://DIR` as an input: replay an archive the `parquet://` output wrote through
//! today's filters and analyzers (a retro-hunt), then end.
//!
//! ## What is read
//! The files [`select::choose`] keeps: every data file under `DIR`, less those whose
//! `event_type` partition is not in `event_types`, whose time range (the manifest's entry,
//! or the footer of a file it does not list) lies outside `[from, to)`, and those a
//! compacted file beside them replaces. Inside the files read, row groups whose typed
//! `timestamp` statistics lie outside the range are not read; each row's own `timestamp`
//! is tested against the range (a row without one that parses is read only when neither
//! `from` nor `to` is given), and its `event_type` against the list when the archive is
//! not partitioned by it.
//!
//! ## Order
//! Event time, across the whole archive: the files are opened in order of their earliest
//! event, and the next line handed on is always the earliest next row of the open files
//! (rows of one file keep the order they were written in, which is the order they
//! arrived: a row without a time keeps its place after the row before it). Rows of the
//! same time from different files: alerts first, as Suricata writes a packet's alerts
//! before the transactions and flows it ends (so an alert is triaged with what was known
//! before it, as it was live), then in the order of the files. A file is
//! opened only when the replay's time reaches its earliest event, so only files that
//! overlap in time are open together — one per partition in the usual archive — at most
//! [`MAX_OPEN`]; past that the earliest open file is read on alone until one ends (the
//! order is then only as good as the files' own).
//!
//! ## Values
//! Each row becomes the JSON line it was written from ([`rows`]): integers exact, objects
//! and lists intact, fields the writer folded into JSON text restored as they were; a
//! field that is null is left out (Parquet cannot tell it from a field the event lacked).
//! The line then goes through the pipeline as a line of a live input does.
//!
//! ## Bad archives
//! A file that is not Parquet or is cut short, one another program wrote (its footer's
//! `created_by` is not `dragonfly-mle`), one with a column type the writer never makes, a
//! manifest that cannot be read or is missing: each is logged naming the file, counted as
//! an I/O error of the input, and the rest is read. A file that fails part way is read up
//! to where it fails. Only a `DIR` that cannot be read at all stops the input.
//!
//! Cost: the footers of files the manifest does not list; per row, one Parquet decode
//! (only of the columns of its own partition), one JSON line written and then parsed by the
//! pipeline as any input's. Memory: [`BATCH_ROWS`] rows of each open file as JSON, and
//! the Parquet reader's buffers of each open file's current row group.

pub mod rows;
pub mod select;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use dragonfly_event::Batch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::{Collector, OptKind, OptionDoc, SourceCtx};
use crate::sinks::parquet::manifest;
use crate::uri::UriError;
use rows::{Rows, Shape};
use select::{Chosen, Filter};

/// Files read at once at most.
pub const MAX_OPEN: usize = 64;
/// Rows of an open file decoded ahead.
pub const BATCH_ROWS: usize = 512;

const OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        name: "from",
        kind: OptKind::Text,
        default: "",
        doc: "earliest event time read: an EVE or RFC 3339 timestamp (`2025-03-10T09:00:00+0000`), or a date (`2025-03-10`: its midnight UTC); no limit if not given",
    },
    OptionDoc {
        name: "to",
        kind: OptKind::Text,
        default: "",
        doc: "events read are before this time (same forms as from); no limit if not given",
    },
    OptionDoc {
        name: "event_types",
        kind: OptKind::Text,
        default: "",
        doc: "comma-separated event types read (`dns,flow`); all if not given",
    },
];

/// `parquet://DIR`: replay an archive, in event time, then end.
pub const PARQUET: super::SourceScheme = super::SourceScheme {
    name: "parquet",
    form: "parquet://DIR",
    finite: true,
    options: OPTIONS,
    query: &[],
    parse: |uri, rest, opts| {
        let time = |name: &str| -> Result<Option<i64>, UriError> {
            match opts.text(name).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => parse_time(&v).map(Some).ok_or_else(|| {
                    UriError::BadOption(format!(
                        "parquet:// option {name} '{v}' is not a timestamp (2025-03-10T09:00:00+0000, RFC 3339) or a date (2025-03-10)"
                    ))
                }),
            }
        };
        let filter = Filter {
            from: time("from")?,
            to: time("to")?,
            event_types: opts
                .text("event_types")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        };
        if let (Some(f), Some(t)) = (filter.from, filter.to) {
            if f >= t {
                return Err(UriError::BadOption(format!(
                    "{uri}: from is not before to: no event could be read"
                )));
            }
        }
        Ok(Box::new(ParquetInput {
            dir: crate::uri::path(rest),
            filter,
        }))
    },
};

/// A time option: an EVE or RFC 3339 timestamp, or a date (its midnight, UTC).
fn parse_time(v: &str) -> Option<i64> {
    manifest::parse_timestamp(v.as_bytes()).or_else(|| {
        let d = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
        Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
    })
}

#[derive(Debug)]
struct ParquetInput {
    dir: PathBuf,
    filter: Filter,
}

fn readable_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => std::fs::read_dir(dir)
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", dir.display())),
        Ok(_) => Err(format!(
            "{}: not a directory (parquet:// reads an archive directory)",
            dir.display()
        )),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

impl super::Source for ParquetInput {
    fn scheme(&self) -> &'static super::SourceScheme {
        &PARQUET
    }
    fn path(&self) -> Option<&Path> {
        Some(&self.dir)
    }
    fn confine(
        &mut self,
        f: &mut dyn FnMut(&str, &Path) -> Result<PathBuf, String>,
    ) -> Result<(), String> {
        self.dir = f("archive", &self.dir)?;
        Ok(())
    }
    fn prepare(&self, _max_line: usize) -> io::Result<Box<dyn super::Prepared>> {
        readable_dir(&self.dir).map_err(io::Error::other)?;
        Ok(Box::new(Replay {
            dir: self.dir.clone(),
            filter: self.filter.clone(),
        }))
    }
    fn check(&self, found: &mut crate::preflight::Findings, what: &str) {
        if let Err(e) = readable_dir(&self.dir) {
            found.problem(format!("{what}: {e}"));
        }
    }
    fn check_as_runner(&self, found: &mut crate::preflight::Findings, what: &str) {
        if let Err(e) = readable_dir(&self.dir) {
            found.problem(format!(
                "{what}: {e} — as the user the engine runs as, which opens the archive's files as it reads"
            ));
        }
    }
}

struct Replay {
    dir: PathBuf,
    filter: Filter,
}

impl super::Prepared for Replay {
    fn run(self: Box<Self>, mut ctx: SourceCtx) {
        ctx.ready("reading");
        let problem = |ctx: &SourceCtx, m: String| {
            ctx.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(input = %ctx.tag, "{m}");
        };
        let dir = self.dir.display().to_string();
        let sel = match select::choose(&self.dir, &self.filter) {
            Ok(s) => s,
            Err(e) => {
                ctx.blind("error", format!("{dir}: {e}"));
                ctx.ready("ended");
                return;
            }
        };
        if !sel.has_manifest && !sel.files.is_empty() {
            problem(
                &ctx,
                format!(
                    "{dir}: no manifest ({}/): every file's footer was read for its times",
                    manifest::MANIFEST
                ),
            );
        }
        for p in &sel.problems {
            problem(&ctx, format!("{dir}: {p}"));
        }
        tracing::info!(input = %ctx.tag,
            "{dir}: {} files to read ({} left out by event type or time range, {} replaced by a compacted file, {} not in the manifest)",
            sel.files.len(), sel.pruned, sel.replaced, sel.unlisted);
        let mut merge = Merge::new(sel.files, self.filter);
        let mut col = Collector::new(&ctx);
        while !ctx.stopping() && !col.closed() {
            match merge.next() {
                Some(Ok(line)) => col.message(&mut ctx, line),
                Some(Err(m)) => problem(&ctx, format!("{dir}: {m}")),
                None => break,
            }
        }
        col.flush(&mut ctx);
        ctx.ready("ended");
        tracing::info!(input = %ctx.tag,
            "{dir}: replay ended: {} rows of {} files read, {} outside the time range or event types, {} row groups left unread by their times",
            merge.rows, merge.opened, merge.skipped, merge.groups_pruned);
    }
}

/// One open file: its reader and its next rows as JSON lines with their times.
struct Stream {
    rel: String,
    reader: ParquetRecordBatchReader,
    shape: Shape,
    /// Top-level column indexes of `timestamp` and `event_type` (None when the partition
    /// gives the type: `kind`).
    ts_col: Option<TimeCol>,
    type_col: Option<usize>,
    /// The partition's event type.
    kind: Option<String>,
    lines: Batch,
    /// Each line's place in the merge: its time, then 0 for an alert, 1 for the rest.
    times: Vec<(i64, u8)>,
    pos: usize,
    /// The time of the last row read (a row without one takes it).
    last: i64,
    rows: u64,
}

/// The replay's merge of the open files by event time.
struct Merge {
    files: Vec<Chosen>,
    next_file: usize,
    filter: Filter,
    streams: Vec<Option<Stream>>,
    /// Streams open (in `streams`).
    open: usize,
    heap: BinaryHeap<Reverse<((i64, u8), usize)>>,
    /// A problem to report before the next line.
    pending: Vec<String>,
    line: Vec<u8>,
    rows: u64,
    opened: u64,
    skipped: u64,
    /// Row groups left unread by their typed time statistics.
    groups_pruned: u64,
}

/// Where a file's rows have their time: a text column (parsed per row) or a typed one.
#[derive(Clone, Copy)]
enum TimeCol {
    Text(usize),
    Typed(usize),
}

fn time_col(schema: &arrow_schema::Schema) -> Option<TimeCol> {
    if let Some(i) = text_col(schema, "timestamp") {
        return Some(TimeCol::Text(i));
    }
    let i = schema.index_of("timestamp").ok()?;
    matches!(
        schema.field(i).data_type(),
        arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some(_))
    )
    .then_some(TimeCol::Typed(i))
}

/// The row groups of a file whose typed `timestamp` statistics (UTC microseconds, ordered
/// as times) overlap the filter's range, and how many there are in all. A row group without
/// statistics is kept.
fn typed_groups(
    md: &parquet::file::metadata::ParquetMetaData,
    filter: &Filter,
) -> (Vec<usize>, usize) {
    use parquet::file::statistics::Statistics;
    let col = md
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "timestamp");
    let groups = md.row_groups();
    let keep = (0..groups.len())
        .filter(|&g| {
            let Some(ci) = col else { return true };
            match groups[g].column(ci).statistics() {
                Some(Statistics::Int64(st)) => {
                    filter.overlaps(st.min_opt().copied(), st.max_opt().copied())
                }
                _ => true,
            }
        })
        .collect();
    (keep, groups.len())
}

fn text_col(schema: &arrow_schema::Schema, name: &str) -> Option<usize> {
    let i = schema.index_of(name).ok()?;
    let f = schema.field(i);
    (f.data_type() == &arrow_schema::DataType::Utf8
        && !f
            .metadata()
            .contains_key(crate::sinks::parquet::columns::JSON_METADATA))
    .then_some(i)
}

impl Merge {
    fn new(files: Vec<Chosen>, filter: Filter) -> Self {
        let n = files.len();
        Self {
            files,
            next_file: 0,
            filter,
            streams: (0..n).map(|_| None).collect(),
            open: 0,
            heap: BinaryHeap::new(),
            pending: Vec::new(),
            line: Vec::new(),
            rows: 0,
            opened: 0,
            skipped: 0,
            groups_pruned: 0,
        }
    }

    fn open(&mut self, i: usize) -> Result<Stream, String> {
        let c = &self.files[i];
        let rel = c.rel.clone();
        // never through a link planted in a file's place after the scan (which skips links)
        let f = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&c.path)
        }
        .map_err(|e| format!("{rel}: {e}: not read"))?;
        let b = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| format!("{rel}: not a readable Parquet file ({e}): not read"))?;
        let by = b
            .metadata()
            .file_metadata()
            .created_by()
            .unwrap_or("")
            .to_string();
        if !by.starts_with("dragonfly-mle") {
            return Err(format!(
                "{rel}: not written by dragonfly-mle (created by '{by}'): not read"
            ));
        }
        let schema = b.schema().clone();
        let shape = Shape::of(&schema).map_err(|e| {
            format!("{rel}: {e}, a type the parquet:// output never writes: not read")
        })?;
        let ts_col = time_col(&schema);
        let type_col = match c.event_type {
            None => text_col(&schema, "event_type"),
            Some(_) => None,
        };
        let mut b = b.with_batch_size(BATCH_ROWS);
        if let (Some(TimeCol::Typed(_)), true) = (
            ts_col,
            self.filter.from.is_some() || self.filter.to.is_some(),
        ) {
            let (keep, total) = typed_groups(b.metadata(), &self.filter);
            self.groups_pruned += (total - keep.len()) as u64;
            b = b.with_row_groups(keep);
        }
        let reader = b.build().map_err(|e| format!("{rel}: {e}: not read"))?;
        Ok(Stream {
            rel,
            reader,
            shape,
            ts_col,
            type_col,
            kind: c.event_type.clone(),
            lines: Batch::default(),
            times: Vec::new(),
            pos: 0,
            last: c.min_ts.unwrap_or(i64::MIN),
            rows: 0,
        })
    }

    /// Decode the stream's next record batch (until one has a row to hand on); false when
    /// the file is done (or failed: the failure is pending).
    fn fill(&mut self, s: &mut Stream) -> bool {
        loop {
            let batch = match s.reader.next() {
                None => return false,
                Some(Err(e)) => {
                    self.pending.push(format!(
                        "{}: {e}: read up to row {}, the rest not read",
                        s.rel, s.rows
                    ));
                    return false;
                }
                Some(Ok(b)) => b,
            };
            s.rows += batch.num_rows() as u64;
            self.rows += batch.num_rows() as u64;
            s.lines.clear();
            s.times.clear();
            s.pos = 0;
            let rows = Rows::new(&s.shape, &batch);
            use arrow_array::cast::AsArray;
            let (text, typed) = match s.ts_col {
                Some(TimeCol::Text(i)) => (Some(batch.column(i).as_string::<i32>()), None),
                Some(TimeCol::Typed(i)) => (
                    None,
                    Some(
                        batch
                            .column(i)
                            .as_primitive::<arrow_array::types::TimestampMicrosecondType>(),
                    ),
                ),
                None => (None, None),
            };
            let types = s.type_col.map(|i| batch.column(i).as_string::<i32>());
            for r in 0..batch.num_rows() {
                use arrow_array::Array;
                let t = match (text, typed) {
                    (Some(a), _) if !a.is_null(r) => {
                        manifest::parse_timestamp(a.value(r).as_bytes())
                    }
                    (_, Some(a)) if !a.is_null(r) => Some(a.value(r)),
                    _ => None,
                };
                if let Some(t) = t {
                    s.last = t;
                }
                let kind = match (&s.kind, types) {
                    (Some(k), _) => Some(k.as_str()),
                    (None, Some(a)) if !a.is_null(r) => Some(a.value(r)),
                    _ => None,
                };
                // a partition's type was tested when its files were chosen
                let type_ok = s.kind.is_some()
                    || self.filter.event_types.is_empty()
                    || kind.is_some_and(|k| self.filter.wants_type(k));
                if !type_ok || !self.filter.in_range(t) {
                    self.skipped += 1;
                    continue;
                }
                let _ = s.lines.push_with(|out| {
                    rows.write(r, out);
                    Ok::<(), ()>(())
                });
                s.times.push((s.last, u8::from(kind != Some("alert"))));
            }
            if !s.times.is_empty() {
                return true;
            }
        }
    }

    /// The next line in event time; an error names a file that was left (wholly or in
    /// part); None at the end.
    fn next(&mut self) -> Option<Result<&[u8], String>> {
        if let Some(p) = self.pending.pop() {
            return Some(Err(p));
        }
        // open every file whose earliest event is not after the next row's time
        while self.next_file < self.files.len() && self.open < MAX_OPEN {
            let head = self.heap.peek().map(|Reverse(((t, _), _))| *t);
            let first = self.files[self.next_file].min_ts.unwrap_or(i64::MIN);
            if head.is_some_and(|h| first > h) {
                break;
            }
            let i = self.next_file;
            self.next_file += 1;
            match self.open(i) {
                Ok(mut s) => {
                    self.opened += 1;
                    if self.fill(&mut s) {
                        self.heap.push(Reverse((s.times[0], i)));
                        self.streams[i] = Some(s);
                        self.open += 1;
                    }
                }
                Err(e) => self.pending.push(e),
            }
            if let Some(p) = self.pending.pop() {
                return Some(Err(p));
            }
        }
        let Reverse((_, i)) = self.heap.pop()?;
        let mut s = self.streams[i]
            .take()
            .expect("a stream in the heap is open");
        self.line.clear();
        self.line.extend_from_slice(s.lines.get(s.pos));
        s.pos += 1;
        if s.pos < s.times.len() || self.fill(&mut s) {
            self.heap.push(Reverse((s.times[s.pos], i)));
            self.streams[i] = Some(s);
        } else {
            self.open -= 1;
        }
        Some(Ok(&self.line))
    }
}

#[cfg(test)]
mod tests;
