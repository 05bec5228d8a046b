//! `parquet://DIR`: events as rows of Parquet files, partitioned Hive-style, with an index.
//!
//! ## Layout
//! `DIR/event_type=dns/date=2025-03-10/part-20250310T120000Z-<run>-000042.parquet`: one
//! directory level per `partition_by` key (default `event_type,date`). A key is a top-level
//! field of the event, its value as written (a string without quotes, a number as text);
//! `date` is the date the event's own `timestamp` field carries (its first ten characters,
//! the sensor's local date). A missing or `null` value, an object or array, or a value over
//! 100 bytes goes to `__HIVE_DEFAULT_PARTITION__`. Values are percent-encoded as Hive does
//! (`/` is `%2F`; anything but letters, digits, `-`, `_` and an inner `.`), so an
//! attacker-shaped value cannot leave `DIR`. The fields stay in the rows too.
//!
//! ## Schema
//! One schema per partition, inferred from its events ([`columns`]): objects are structs,
//! arrays lists, integers `Int64` exactly, other numbers `Float64`, Suricata's timestamps
//! `Timestamp` in UTC with their text's offset kept ([`timestamps`]). Drift: a new field, or
//! a type that widens (integers that meet a fraction become doubles, timestamps of another
//! form or offset text), starts a new file with
//! the merged schema (rows already written stay as they are). A type that cannot widen (a
//! string where numbers were, an object where strings were) turns that field into a column
//! of JSON text (field metadata `dragonfly:json`) in a new file, and it stays text in later
//! files of the partition. Readers reading several files at once should merge schemas by
//! name (DuckDB: `union_by_name = true`). A partition's schema has at most
//! [`columns::MAX_COLUMNS`] columns (an object that would cross it is JSON text), and a row
//! group also ends at [`columns::GROUP_CELLS`] values (rows times columns): the nulls a
//! narrow row carries in a wide schema cost bounded memory and time.
//!
//! ## Files
//! Written under a hidden temporary name (`.part-....parquet.tmp`) and renamed when complete
//! (after `fsync`): readers never see a partial file, and a killed engine leaves only hidden
//! temporaries, which the next start removes. zstd (default) or snappy; row groups end at
//! `row_group_rows` rows or `row_group_mb` of JSON; a file closes at `file_rows` rows,
//! `file_mb` of Parquet, after `max_age_s` seconds, when more than `max_open_files` are open
//! (the least recently written closes), when its schema changes, and at shutdown.
//! Column statistics and the page index are written for every column (arrow-rs leaves out
//! the column index of a field inside a list that is null in every element of a row group:
//! it tells null pages by rows, not by values).
//!
//! ## Receipts
//! An event counts as written when its file is closed and renamed: [`Sink::settled_writes`]
//! tells the sink runner how many batches are wholly in closed files, and only their
//! receipts are released (a Kafka or JetStream input commits nothing that is still in an
//! open file). A file that cannot be written (disk full, a removed directory) is given up:
//! its rows are counted as dropped, the next flush reports the error (so the receipts still
//! held fail, and at-least-once inputs deliver those events again), and writing goes on in a
//! new file.
//!
//! ## Index
//! `DIR/_manifest.json` lists every closed file with its partition, rows and the earliest and
//! latest event time ([`manifest`]); `dragonfly-mle parquet compact DIR` merges small files of
//! partitions no longer written ([`compact`]). One engine writes a directory at a time
//! (`DIR/.dragonfly.lock`).
//!
//! ## Threads
//! The sink's own thread only routes: it reads each line's partition fields and time and
//! hands the line to the writer thread (`threads`, default the cores up to 4) that owns the
//! partition — a new partition goes to the least loaded. Each writer parses (checking the JSON),
//! encodes and writes its partitions, closes its files by age, and publishes what it has
//! settled. Each writer's queue is bounded in bytes (`queue_mb`, default 16): a slow disk
//! holds the pipeline back, while a writer busy encoding a row group does not stop the
//! router from feeding the others (a queue of a few batches did: a fifth of the two cores'
//! time went idle in the benchmark).
//!
//! Cost: per line, a walk over the top-level fields and a copy on the routing thread; one
//! parse into columns that checks the JSON as it goes on a writer; the column buffers of
//! the open row groups (bounded by `buffer_mb`; a full row group's buffers are filled again
//! by the next one, not grown anew) and the encoder's work when a row group ends. Measured in
//! docs/benchmarks.md: about 3.5-4 CPU-microseconds per Suricata event on top of the
//! pipeline, about 1.4 of them the parse, 1 zstd and the rest arrow-rs's encoder and the
//! routing.

pub mod columns;
pub mod compact;
pub mod manifest;
pub mod timestamps;

use dragonfly_event::sync::Locked;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use dragonfly_event::json::Fields as JsonFields;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::Sink;
use crate::options::{OptKind, OptionDoc, Opts};
use crate::uri::UriError;
use crate::Batch;
use columns::{AppendError, Columns};
use manifest::Entry;

/// The value of a partition key that is missing (Hive's name for it).
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";
/// The writer's lock in the output directory.
pub const DIR_LOCK: &str = ".dragonfly.lock";
const MAX_VALUE: usize = 100;

/// Options of a `parquet://` output (config.lua `options = { ... }`).
#[derive(Debug, Clone)]
pub struct Options {
    /// Top-level fields, one directory level each; `date`: the event's date.
    pub partition_by: Vec<String>,
    /// Column compression.
    pub compression: Compression,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// JSON bytes per row group.
    pub row_group_bytes: usize,
    /// Rows per file.
    pub file_rows: u64,
    /// Parquet bytes per file.
    pub file_bytes: u64,
    /// Oldest a file gets before it is closed.
    pub max_age: Duration,
    /// Files open at once.
    pub max_open_files: usize,
    /// JSON bytes held in open row groups over all partitions.
    pub buffer_bytes: usize,
    /// Bytes of lines waiting for each writer thread.
    pub queue_bytes: usize,
    /// Writer threads (each owns some partitions).
    pub threads: usize,
    /// Dictionary-encode columns.
    pub dictionary: bool,
}

impl Default for Options {
    /// The rows' defaults ([`OPTIONS`]).
    fn default() -> Self {
        let none = Opts::parse("parquet", OPTIONS, &[]).expect("no options");
        Options::from_opts(&none).expect("the defaults are valid")
    }
}

const MB: f64 = 1048576.0;

const OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        name: "partition_by",
        kind: OptKind::Text,
        default: "\"event_type,date\"",
        doc: "comma-separated top-level fields, one directory level each, at most 4 (`date`: the event's date); \"\" for none",
    },
    OptionDoc {
        name: "compression",
        kind: OptKind::Text,
        default: "\"zstd\"",
        doc: "zstd, zstd:LEVEL (1-22; zstd alone is level 1), snappy or none",
    },
    OptionDoc {
        name: "row_group_rows",
        kind: OptKind::Int { min: 1, max: 1 << 30 },
        default: "131072",
        doc: "rows per row group (each row group starts its dictionaries afresh: on four hours of the corpus 131,072 rows and 64 MB made the archive 34% smaller than 65,536 and 16 MB, docs/benchmarks.md)",
    },
    OptionDoc {
        name: "row_group_mb",
        kind: OptKind::Num { min: 0.001, max: 65536.0 },
        default: "64",
        doc: "MB of JSON per row group; what all open row groups hold together is capped by buffer_mb",
    },
    OptionDoc {
        name: "file_rows",
        kind: OptKind::Int { min: 1, max: 1 << 40 },
        default: "10000000",
        doc: "rows per file",
    },
    OptionDoc {
        name: "file_mb",
        kind: OptKind::Num { min: 0.001, max: 1048576.0 },
        default: "256",
        doc: "MB of Parquet per file",
    },
    OptionDoc {
        name: "max_age_s",
        kind: OptKind::Num { min: 0.01, max: 1e9 },
        default: "300",
        doc: "seconds a file stays open; receipts wait for it (below)",
    },
    OptionDoc {
        name: "max_open_files",
        kind: OptKind::Int { min: 1, max: 65536 },
        default: "64",
        doc: "partitions open at once; the least recently written closes",
    },
    OptionDoc {
        name: "threads",
        kind: OptKind::Int { min: 1, max: 64 },
        default: "",
        doc: "writer threads; each owns some partitions (a new partition goes to the least loaded) and parses, encodes and writes them (none: the cores, at most 4)",
    },
    OptionDoc {
        name: "dictionary",
        kind: OptKind::Bool,
        default: "true",
        doc: "dictionary-encode columns (a column whose dictionary grows past 1 MiB in a row group falls back to plain; an integer column of which a quarter or more of a file's first 8,192 values are distinct — flow_id, pcap_cnt, src_port — is written plain: its dictionary cost more than it saved; typed timestamps are delta-encoded); on four hours of the corpus 10% smaller files at the same CPU, on one hour 5% larger (docs/benchmarks.md)",
    },
    OptionDoc {
        name: "buffer_mb",
        kind: OptKind::Num { min: 0.001, max: 1048576.0 },
        default: "256",
        doc: "MB of JSON held in row groups over all partitions (a busy partition keeps its last row group's memory to fill again, counted here); the largest are written out first",
    },
    OptionDoc {
        name: "queue_mb",
        kind: OptKind::Num { min: 0.001, max: 1048576.0 },
        default: "16",
        doc: "MB of lines waiting for each writer thread; when a writer's queue is full the pipeline is held back (a slow disk), but a writer busy with a row group does not stall the others",
    },
];

impl Options {
    /// From config.lua's options, checked against [`OPTIONS`].
    pub fn parse(opts: &[(String, String)]) -> Result<Self, UriError> {
        Self::from_opts(&Opts::parse("parquet", OPTIONS, opts)?)
    }

    /// From options checked against [`OPTIONS`] (given or defaulted).
    pub fn from_opts(o: &Opts) -> Result<Self, UriError> {
        let num = |k| o.num(k).expect("a default");
        let int = |k| o.int(k).expect("a default");
        let partition_by: Vec<String> = o
            .text("partition_by")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if partition_by.len() > 4 {
            return Err(UriError::BadOption(
                "parquet:// option 'partition_by' takes at most 4 fields".into(),
            ));
        }
        let v = o.text("compression").unwrap_or_default();
        let compression = match v.split_once(':') {
            None if v == "zstd" => Compression::ZSTD(ZstdLevel::default()),
            None if v == "snappy" => Compression::SNAPPY,
            None if v == "none" => Compression::UNCOMPRESSED,
            Some(("zstd", l)) => l
                .parse::<i32>()
                .ok()
                .and_then(|l| ZstdLevel::try_new(l).ok())
                .map(Compression::ZSTD)
                .ok_or_else(|| {
                    UriError::BadOption(format!(
                        "parquet:// option 'compression': zstd level must be 1-22 (got '{l}')"
                    ))
                })?,
            _ => {
                return Err(UriError::BadOption(format!(
                    "parquet:// option 'compression' must be zstd, zstd:LEVEL, snappy or none (got '{v}')"
                )))
            }
        };
        Ok(Options {
            partition_by,
            compression,
            row_group_rows: int("row_group_rows") as usize,
            row_group_bytes: (num("row_group_mb") * MB) as usize,
            file_rows: int("file_rows"),
            file_bytes: (num("file_mb") * MB) as u64,
            max_age: Duration::from_secs_f64(num("max_age_s")),
            max_open_files: int("max_open_files") as usize,
            buffer_bytes: (num("buffer_mb") * MB) as usize,
            queue_bytes: (num("queue_mb") * MB) as usize,
            threads: o.int("threads").map_or_else(
                || {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(1)
                        .clamp(1, 4)
                },
                |n| n as usize,
            ),
            dictionary: o.bool("dictionary").expect("a default"),
        })
    }

    fn properties(&self) -> WriterProperties {
        // row groups end where the sink says (row_group_rows / row_group_mb)
        properties(self.compression, self.dictionary)
            .set_max_row_group_row_count(None)
            .build()
    }
}

/// `parquet://DIR`: Parquet files partitioned by event type and date, with a manifest
/// (relative paths under LOGDIR).
pub const PARQUET: super::SinkScheme = super::SinkScheme {
    name: "parquet",
    form: "parquet://DIR",
    options: OPTIONS,
    query: &[],
    parse: |_, rest, logdir, options| {
        let p = crate::uri::path(rest);
        Ok(Box::new(ParquetOutput {
            dir: if p.is_absolute() { p } else { logdir.join(p) },
            options: Options::from_opts(options)?,
        }))
    },
};

#[derive(Debug)]
struct ParquetOutput {
    dir: PathBuf,
    options: Options,
}

impl super::Destination for ParquetOutput {
    fn scheme(&self) -> &'static super::SinkScheme {
        &PARQUET
    }
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
    fn reopened_path(&mut self) -> Option<&mut PathBuf> {
        Some(&mut self.dir)
    }
    fn open(&self) -> io::Result<Box<dyn Sink>> {
        Ok(Box::new(ParquetSink::open(
            &self.dir,
            self.options.clone(),
        )?))
    }
    fn on_disk(&self) -> Option<super::OnDisk<'_>> {
        Some(super::OnDisk::Dir(&self.dir))
    }
}

/// A file being written.
struct OpenFile {
    tmp: PathBuf,
    name: String,
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    rows: u64,
    ts: Option<(i64, i64)>,
}

/// One partition: its row group in the making and its open file.
struct Part {
    rel: String,
    cols: Columns,
    file: Option<OpenFile>,
    /// Timestamps of the rows in `cols`.
    group_ts: Option<(i64, i64)>,
    /// The first write (batch) whose rows are in `cols` or `file`.
    first_write: Option<u64>,
    /// When its oldest unclosed row came.
    since: Instant,
    /// The last write that added a row (least recently written closes first).
    last_write: u64,
}

impl Part {
    /// Whether it holds rows or an open file.
    fn is_open(&self) -> bool {
        self.file.is_some() || self.cols.rows() > 0
    }
}

/// What is shared by the partitions: where and how files are written.
struct Writer {
    dir: PathBuf,
    options: Options,
    props: WriterProperties,
    run: String,
    seq: u64,
    /// Files closed since the manifest was last updated.
    closed: Vec<Entry>,
    /// Rows given up since the last flush, and why.
    lost: Option<String>,
    /// Rows that can never be written (not JSON, not an object, ...) since the last flush.
    rejected: Option<String>,
    dropped: u64,
    /// Rows that had top-level fields folded into the overflow column (for the log's rate).
    folded_rows: u64,
}

/// Rows for one shard from one `write`: the lines (copied), each with its partition and time.
struct Chunk {
    write: u64,
    bytes: Vec<u8>,
    keys: Vec<u8>,
    /// (line in `bytes`, partition key in `keys`, event time)
    rows: Vec<(Range<usize>, Range<usize>, Option<i64>)>,
}

impl Chunk {
    fn new(write: u64) -> Self {
        Chunk {
            write,
            bytes: Vec::new(),
            keys: Vec::new(),
            rows: Vec::new(),
        }
    }
}

enum Msg {
    Rows(Chunk),
    Close(crossbeam_channel::Sender<()>),
}

/// What a shard tells the router, updated after every chunk and every tick.
#[derive(Default)]
struct ShardState {
    /// Chunks handled so far.
    chunks_done: u64,
    /// The first write with rows in an open file or row group of this shard.
    min_open: Option<u64>,
    /// Whether it holds rows or open files.
    open: bool,
    closed: Vec<Entry>,
    lost: Option<String>,
    rejected: Option<String>,
    dropped: u64,
}

/// Bytes of lines sent to a writer and not yet parsed. The router waits while a writer has
/// more than its `queue_bytes` waiting: a slow disk holds the pipeline back, but a writer
/// busy encoding a row group for a while (tens of milliseconds for a large one) does not
/// stop the router from feeding the others. A count of batches would bound neither the
/// memory (batches vary in size) nor the time a writer may be busy.
#[derive(Default)]
struct Queued {
    bytes: std::sync::Mutex<usize>,
    taken: std::sync::Condvar,
}

impl Queued {
    /// Count `n` more bytes in, first waiting while more than `limit` wait (one chunk is
    /// always let in, however large). False when the writer stops in the meantime.
    fn admit(&self, n: usize, limit: usize, stopped: impl Fn() -> bool) -> bool {
        let mut b = self.bytes.locked();
        while *b > 0 && *b + n > limit {
            if stopped() {
                return false;
            }
            b = self
                .taken
                .wait_timeout(b, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        *b += n;
        true
    }

    /// `n` bytes handled (or given up) by the writer.
    fn done(&self, n: usize) {
        let mut b = self.bytes.locked();
        *b = b.saturating_sub(n);
        self.taken.notify_one();
    }
}

/// The router's end of a shard thread.
struct ShardHandle {
    tx: Option<crossbeam_channel::Sender<Msg>>,
    queued: Arc<Queued>,
    state: Arc<std::sync::Mutex<ShardState>>,
    /// The write index of every chunk sent and not yet known handled; `sent_base` chunks
    /// before them were handled.
    sent: VecDeque<u64>,
    sent_base: u64,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Rows routed to it (new partitions go to the least loaded shard).
    load: u64,
}

/// One shard: the partitions it was given, their row groups and files (runs on its thread).
struct Shard {
    w: Writer,
    parts: HashMap<Vec<u8>, Part>,
    state: Arc<std::sync::Mutex<ShardState>>,
    queued: Arc<Queued>,
    chunks_done: u64,
}

/// The open output (see the module doc): routes lines to its shards; each shard thread
/// parses, encodes and writes the partitions it owns.
pub struct ParquetSink {
    dir: PathBuf,
    options: Options,
    shards: Vec<ShardHandle>,
    /// Which shard owns a partition (sticky; forgotten when it grows too big).
    assign: HashMap<Vec<u8>, usize>,
    writes: u64,
    key_buf: Vec<u8>,
    closed: Vec<Entry>,
    lost: Option<String>,
    rejected: Option<String>,
    dropped: u64,
    _lock: nix::fcntl::Flock<File>,
}

/// `e`, naming the path it is about.
pub(super) fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// What every file this output writes (and compaction) shares: page statistics (the page
/// index), the compression and dictionary setting, the writer's name.
pub(super) fn properties(
    compression: Compression,
    dictionary: bool,
) -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(compression)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(dictionary)
        .set_created_by(format!("dragonfly-mle {}", env!("CARGO_PKG_VERSION")))
}

/// Values of a column [`unique_integers`] looks at.
const DICTIONARY_SAMPLE: usize = 8192;

/// The columns (top level or in objects, not in lists) written without a dictionary, and
/// whether each is delta-encoded:
/// - integer columns of which at least a quarter of the first [`DICTIONARY_SAMPLE`] values
///   present are distinct: `flow_id`, `pcap_cnt`, `src_port`, `dns.id` (46% distinct: a
///   query and its answer share them). A dictionary saves nothing there and its indices cost
///   more than the values compressed plainly: on four hours of the corpus those four columns
///   took 2.97 MB with dictionaries and 2.18 MB without (docs/benchmarks.md);
/// - typed timestamps ([`timestamps`]), delta-encoded (`DELTA_BINARY_PACKED`): events come
///   about in time order, so neighbours differ by little; on four hours of the corpus
///   `timestamp`, `flow.start` and `flow.end` took 1.37 MB as text, 1.36 typed with
///   dictionaries and 1.18 typed and delta-encoded.
///
/// Other columns keep their dictionaries (repeated addresses, names, types; text, for which
/// a dictionary measured as good or better even when most values were distinct).
/// Cost: one hash insert per sampled value, once per file.
fn unique_integers(
    batch: &arrow_array::RecordBatch,
) -> Vec<(parquet::schema::types::ColumnPath, bool)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{Array, ArrayRef};
    fn walk(
        path: &mut Vec<String>,
        a: &ArrayRef,
        out: &mut Vec<(parquet::schema::types::ColumnPath, bool)>,
    ) {
        match a.data_type() {
            arrow_schema::DataType::Timestamp(_, _) => {
                // times, written about in order: small differences, whatever their spread
                out.push((parquet::schema::types::ColumnPath::new(path.clone()), true));
            }
            arrow_schema::DataType::Int64 => {
                let values = a.as_primitive::<Int64Type>().values();
                let mut seen = std::collections::HashSet::with_capacity(DICTIONARY_SAMPLE);
                let mut present = 0usize;
                for (i, v) in values.iter().enumerate() {
                    if a.is_valid(i) {
                        present += 1;
                        seen.insert(*v);
                        if present == DICTIONARY_SAMPLE {
                            break;
                        }
                    }
                }
                if present >= 64 && seen.len() * 4 >= present {
                    out.push((parquet::schema::types::ColumnPath::new(path.clone()), false));
                }
            }
            arrow_schema::DataType::Struct(fields) => {
                let s = a.as_struct();
                for (f, child) in fields.iter().zip(s.columns()) {
                    path.push(f.name().clone());
                    walk(path, child, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut path = Vec::new();
    for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
        path.push(f.name().clone());
        walk(&mut path, a, &mut out);
        path.pop();
    }
    out
}

fn widen(r: &mut Option<(i64, i64)>, t: (i64, i64)) {
    *r = Some(match *r {
        None => t,
        Some((a, b)) => (a.min(t.0), b.max(t.1)),
    });
}

/// Percent-encode a partition value (see the module doc).
pub fn encode_value(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    encode_into(&mut out, v);
    String::from_utf8(out).expect("percent-encoding gives ASCII")
}

/// [`encode_value`], appended to `out`.
fn encode_into(out: &mut Vec<u8>, v: &[u8]) {
    if v.is_empty() || v.len() > MAX_VALUE {
        out.extend_from_slice(DEFAULT_PARTITION.as_bytes());
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (i, &c) in v.iter().enumerate() {
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || (c == b'.' && i > 0) {
            out.push(c);
        } else {
            out.extend_from_slice(&[b'%', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
        }
    }
}

impl ParquetSink {
    /// Open `dir` (created if missing) for writing: take its lock, clean up what an earlier
    /// run left unfinished, bring the manifest in line with the files.
    pub fn open(dir: &Path, options: Options) -> io::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| at(dir, e))?;
        let lock = manifest::flock(&dir.join(DIR_LOCK), false).map_err(|e| {
            if e.kind() != io::ErrorKind::WouldBlock {
                return e;
            }
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{}: another engine is writing Parquet files here ({e}); give each engine its own directory",
                    dir.display()
                ),
            )
        })?;
        let (added, dropped) = manifest::reconcile(dir, true)?;
        if added + dropped > 0 {
            tracing::info!(dir = %dir.display(), added, dropped, "manifest brought in line with the files");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let opened = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = options.threads.max(1);
        let mut shard_options = options.clone();
        shard_options.max_open_files = options.max_open_files.div_ceil(n);
        shard_options.buffer_bytes = options.buffer_bytes / n;
        let mut shards = Vec::with_capacity(n);
        for k in 0..n {
            let state = Arc::new(std::sync::Mutex::new(ShardState::default()));
            let queued = Arc::new(Queued::default());
            // bounded by bytes (`Queued`), not by count
            let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
            let mut shard = Shard {
                w: Writer {
                    dir: dir.to_path_buf(),
                    props: shard_options.properties(),
                    options: shard_options.clone(),
                    // unique within the process too: two outputs opened on one directory
                    // in the same second (a reload) never pick the same names
                    run: format!(
                        "{:x}{:04x}{}-{k}",
                        std::process::id(),
                        now.subsec_micros() & 0xffff,
                        opened
                    ),
                    seq: 0,
                    closed: Vec::new(),
                    lost: None,
                    rejected: None,
                    dropped: 0,
                    folded_rows: 0,
                },
                parts: HashMap::new(),
                state: state.clone(),
                queued: queued.clone(),
                chunks_done: 0,
            };
            let thread = std::thread::Builder::new()
                .name(format!("parquet-{k}"))
                .spawn(move || shard.run(rx))?;
            shards.push(ShardHandle {
                tx: Some(tx),
                queued,
                state,
                sent: VecDeque::new(),
                sent_base: 0,
                thread: Some(thread),
                load: 0,
            });
        }
        Ok(ParquetSink {
            dir: dir.to_path_buf(),
            options,
            shards,
            assign: HashMap::new(),
            writes: 0,
            key_buf: Vec::new(),
            closed: Vec::new(),
            lost: None,
            rejected: None,
            dropped: 0,
            _lock: lock,
        })
    }

    /// The partition directory of a line (`key=value/...`), and its timestamp.
    fn route(&mut self, v: &[u8]) -> Option<i64> {
        self.key_buf.clear();
        let keys = &self.options.partition_by;
        let mut found: [Option<&[u8]>; 4] = [None; 4];
        let mut ts: Option<&[u8]> = None;
        let mut missing = keys.iter().filter(|k| *k != "date").count() + 1;
        for f in JsonFields::new(v) {
            let k = &v[f.key.clone()];
            let val = &v[f.value.clone()];
            if k == b"timestamp" && ts.is_none() {
                ts = Some(val);
                missing -= 1;
            }
            if let Some(i) = keys.iter().position(|x| x.as_bytes() == k) {
                if found[i].is_none() && k != b"date" {
                    found[i] = Some(val);
                    missing -= 1;
                }
            }
            if missing == 0 {
                break;
            }
        }
        // borrowed when it has no escape (the common case: no allocation per line)
        fn unquote(v: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
            use std::borrow::Cow;
            match v.first()? {
                b'"' if !v.contains(&b'\\') => Some(Cow::Borrowed(&v[1..v.len() - 1])),
                b'"' => serde_json::from_slice::<String>(v)
                    .ok()
                    .map(|s| Cow::Owned(s.into_bytes())),
                b'{' | b'[' | b'n' => None,
                _ => Some(Cow::Borrowed(v)),
            }
        }
        let ts_text = ts.and_then(unquote);
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                self.key_buf.push(b'/');
            }
            let value = if k == "date" {
                ts_text
                    .as_deref()
                    .filter(|t| {
                        t.len() >= 10
                            && t[4] == b'-'
                            && t[7] == b'-'
                            && t[..10]
                                .iter()
                                .enumerate()
                                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
                    })
                    .map(|t| std::borrow::Cow::Borrowed(&t[..10]))
            } else {
                found[i].and_then(unquote)
            };
            encode_into(&mut self.key_buf, k.as_bytes());
            self.key_buf.push(b'=');
            match value {
                Some(v) => encode_into(&mut self.key_buf, &v),
                None => self.key_buf.extend_from_slice(DEFAULT_PARTITION.as_bytes()),
            }
        }
        ts_text.as_deref().and_then(manifest::parse_timestamp)
    }

    /// The shard that owns the partition in `key_buf` (a new one goes to the least loaded).
    fn shard_for(&mut self) -> usize {
        if let Some(&k) = self.assign.get(&self.key_buf) {
            return k;
        }
        if self.assign.len() > self.options.max_open_files * 4 {
            self.assign.clear();
        }
        let k = (0..self.shards.len())
            .min_by_key(|&k| self.shards[k].load)
            .unwrap_or(0);
        self.assign.insert(self.key_buf.clone(), k);
        k
    }

    /// Take in what the shards report: files closed (for the manifest), rows given up; log
    /// the first row since the last time that can never be written.
    fn gather(&mut self) {
        for h in &mut self.shards {
            let mut st = h.state.locked();
            self.closed.append(&mut st.closed);
            if let Some(l) = st.lost.take() {
                self.lost.get_or_insert(l);
            }
            if let Some(r) = st.rejected.take() {
                self.rejected.get_or_insert(r);
            }
            self.dropped += std::mem::take(&mut st.dropped);
            while h.sent_base < st.chunks_done && h.sent.pop_front().is_some() {
                h.sent_base += 1;
            }
        }
        if let Some(r) = self.rejected.take() {
            tracing::warn!(
                "{r}; dropped (counted in the output's dropped: the first since the last flush)"
            );
        }
    }

    fn record(&mut self) -> io::Result<()> {
        if self.closed.is_empty() {
            return Ok(());
        }
        manifest::update(&self.dir, &self.closed, &[])?;
        self.closed.clear();
        Ok(())
    }
}

impl Shard {
    fn run(&mut self, rx: crossbeam_channel::Receiver<Msg>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Msg::Rows(chunk)) => {
                    let n = chunk.bytes.len();
                    self.rows(chunk);
                    self.queued.done(n);
                    self.chunks_done += 1;
                }
                Ok(Msg::Close(reply)) => {
                    self.close_all();
                    let _ = reply.send(());
                    return;
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    self.close_all();
                    return;
                }
            }
            let max_age = self.w.options.max_age;
            for p in self.parts.values_mut() {
                if p.is_open() && p.since.elapsed() >= max_age {
                    self.w.close(p);
                }
            }
            self.publish();
        }
    }

    fn close_all(&mut self) {
        for p in self.parts.values_mut() {
            self.w.close(p);
        }
        self.publish();
    }

    fn publish(&mut self) {
        let min_open = self.parts.values().filter_map(|p| p.first_write).min();
        let open = self.parts.values().any(Part::is_open);
        let mut st = self.state.locked();
        st.chunks_done = self.chunks_done;
        st.min_open = min_open;
        st.open = open;
        st.closed.append(&mut self.w.closed);
        if let Some(l) = self.w.lost.take() {
            st.lost.get_or_insert(l);
        }
        if let Some(r) = self.w.rejected.take() {
            st.rejected.get_or_insert(r);
        }
        st.dropped += std::mem::take(&mut self.w.dropped);
    }

    fn buffered(&self) -> usize {
        self.parts.values().map(|p| p.cols.held()).sum()
    }

    /// Parse (checking the JSON) and append one chunk's rows to their partitions.
    fn rows(&mut self, chunk: Chunk) {
        let w = chunk.write;
        for (line, key, ts) in &chunk.rows {
            let line = &chunk.bytes[line.clone()];
            let key = &chunk.keys[key.clone()];
            if !self.parts.contains_key(key) {
                self.parts.insert(
                    key.to_vec(),
                    Part {
                        rel: String::from_utf8_lossy(key).into_owned(),
                        cols: Columns::new(),
                        file: None,
                        group_ts: None,
                        first_write: None,
                        since: Instant::now(),
                        last_write: w,
                    },
                );
            }
            let p = self.parts.get_mut(key).unwrap();
            if p.first_write.is_none() {
                p.first_write = Some(w);
                p.since = Instant::now();
            }
            p.last_write = w;
            let mut tries = 0;
            let appended = loop {
                match p.cols.append(line) {
                    Ok(()) => {
                        let folded = p.cols.take_folded();
                        if folded > 0 {
                            self.w.folded_rows += 1;
                            let n = self.w.folded_rows;
                            if crate::ratelimit::should_log(n) {
                                tracing::warn!(partition = %p.rel, fields = folded, rows = n,
                                    "fields with no room as typed columns (past {} fields in an object, {} columns, or a name over {} bytes) are kept as JSON text: a new object as its own text column, a top-level field past the bound in the {} column",
                                    columns::MAX_FIELDS, columns::MAX_COLUMNS, columns::MAX_NAME, columns::OVERFLOW);
                            }
                        }
                        break true;
                    }
                    Err(AppendError::Conflict(c)) if tries < 8 => {
                        tries += 1;
                        // write out what fits the old schema; the column becomes text
                        self.w.write_group(p, false);
                        if !p.cols.make_json(&c.0) {
                            self.w.reject(format!(
                                "{}: a row that would make more than {} top-level fields or {} columns, or a top-level field name longer than {} bytes",
                                p.rel,
                                columns::MAX_FIELDS,
                                columns::MAX_COLUMNS,
                                columns::MAX_NAME
                            ));
                            break false;
                        }
                        tracing::info!(partition = %p.rel, column = %c, "the column is JSON text from now on (a new file): its types disagree, or it would make the schema too wide");
                    }
                    Err(e) => {
                        self.w.reject(format!("{}: {e}", p.rel));
                        break false;
                    }
                }
            };
            // the manifest's time range is the rows' written, not those dropped
            if let (true, Some(t)) = (appended, *ts) {
                widen(&mut p.group_ts, (t, t));
            }
            if p.cols.rows() >= self.w.options.row_group_rows
                || p.cols.bytes() >= self.w.options.row_group_bytes
                || p.cols.cells() >= columns::GROUP_CELLS
            {
                // a full row group: its buffers are kept for the next one
                self.w.write_group(p, true);
            }
            if p.file.is_none() && p.cols.rows() == 0 {
                p.first_write = None;
            }
        }
        self.evict();
        if self.buffered() > self.w.options.buffer_bytes {
            // the largest row groups go out first
            let mut sizes: Vec<(Vec<u8>, usize)> = self
                .parts
                .iter()
                .map(|(k, p)| (k.clone(), p.cols.held()))
                .collect();
            sizes.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
            let mut total: usize = sizes.iter().map(|(_, b)| b).sum();
            for (k, b) in sizes {
                if total <= self.w.options.buffer_bytes / 2 {
                    break;
                }
                if let Some(p) = self.parts.get_mut(&k) {
                    self.w.write_group(p, false);
                }
                total -= b;
            }
        }
    }

    /// Close the least recently written partitions while too many are open.
    fn evict(&mut self) {
        loop {
            let open: Vec<(&Vec<u8>, u64)> = self
                .parts
                .iter()
                .filter(|(_, p)| p.is_open())
                .map(|(k, p)| (k, p.last_write))
                .collect();
            if open.len() <= self.w.options.max_open_files {
                break;
            }
            let k = open.iter().min_by_key(|(_, w)| *w).unwrap().0.clone();
            if let Some(mut p) = self.parts.remove(&k) {
                self.w.close(&mut p);
            }
        }
        // closed partitions keep their schema; forget the oldest when there are many
        if self.parts.len() > self.w.options.max_open_files * 4 {
            let mut idle: Vec<(Vec<u8>, u64)> = self
                .parts
                .iter()
                .filter(|(_, p)| !p.is_open())
                .map(|(k, p)| (k.clone(), p.last_write))
                .collect();
            idle.sort_by_key(|(_, w)| *w);
            for (k, _) in idle
                .iter()
                .take(self.parts.len() - self.w.options.max_open_files * 2)
            {
                self.parts.remove(k);
            }
        }
    }
}

impl Writer {
    /// Write the partition's rows as one row group (opening a file, or a new one when the
    /// schema changed), then close the file if it is full. `keep`: the columns take back
    /// the row group's buffers for the next one (a busy partition); else they let go of
    /// every buffer they keep.
    fn write_group(&mut self, p: &mut Part, keep: bool) {
        match self.write_rows(p) {
            Some((batch, bytes)) if keep => p.cols.recycle(batch, bytes),
            _ => p.cols.release(),
        }
    }

    /// [`Writer::write_group`]'s writing: the batch written and its JSON bytes, if any.
    fn write_rows(&mut self, p: &mut Part) -> Option<(arrow_array::RecordBatch, usize)> {
        if p.cols.rows() == 0 {
            return None;
        }
        let schema = Arc::new(p.cols.schema());
        if p.file.as_ref().is_some_and(|f| f.schema != schema) {
            self.finish(p);
        }
        let bytes = p.cols.bytes();
        let batch = p.cols.take();
        if p.file.is_none() {
            match self.create(p, schema, &batch) {
                Ok(f) => p.file = Some(f),
                Err(e) => {
                    self.give_up(p, batch.num_rows() as u64, &e.to_string());
                    return None;
                }
            }
        }
        let f = p.file.as_mut().unwrap();
        let res = f.writer.write(&batch).and_then(|_| f.writer.flush());
        match res {
            Ok(()) => {
                f.rows += batch.num_rows() as u64;
                if let Some(t) = p.group_ts.take() {
                    widen(&mut f.ts, t);
                }
                if f.rows >= self.options.file_rows
                    || f.writer.bytes_written() as u64 >= self.options.file_bytes
                {
                    self.finish(p);
                }
            }
            Err(e) => {
                let rows = batch.num_rows() as u64;
                self.give_up(p, rows, &e.to_string());
            }
        }
        Some((batch, bytes))
    }

    /// Drop the open file and the rows in it (and `extra` more), counted, reported at the next
    /// flush.
    fn give_up(&mut self, p: &mut Part, extra: u64, why: &str) {
        let mut rows = extra;
        let mut what = format!("{}/{}", self.dir.display(), p.rel);
        if let Some(f) = p.file.take() {
            rows += f.rows;
            what = f.tmp.display().to_string();
            drop(f.writer);
            let _ = std::fs::remove_file(&f.tmp);
        }
        p.group_ts = None;
        if p.cols.rows() == 0 {
            p.first_write = None;
        }
        self.lose(rows, format!("{what}: {why}; {rows} rows given up"));
    }

    /// A row that can never be written (not JSON, not an object, too many fields): counted
    /// as dropped and logged at the next flush, which still succeeds — delivering it again
    /// would not help, so its receipt is not held back.
    fn reject(&mut self, why: String) {
        self.dropped += 1;
        self.rejected.get_or_insert(why);
    }

    /// Rows lost writing a file: counted, logged, reported by the next flush (which fails
    /// the receipts still held).
    fn lose(&mut self, rows: u64, msg: String) {
        self.dropped += rows;
        tracing::error!("{msg}");
        self.lost.get_or_insert(msg);
    }

    /// Open a new file of the partition for `schema`; `first` is its first row group, from
    /// which each column's encoding is chosen ([`unique_integers`]).
    fn create(
        &mut self,
        p: &mut Part,
        schema: SchemaRef,
        first: &arrow_array::RecordBatch,
    ) -> io::Result<OpenFile> {
        let dir = self.dir.join(&p.rel);
        make_dirs(&self.dir, &p.rel)?;
        self.seq += 1;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let name = format!("part-{stamp}-{}-{:06}.parquet", self.run, self.seq);
        let tmp = dir.join(format!(".{name}.tmp"));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(crate::sinks::file::OUTPUT_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| at(&tmp, e))?;
        let mut props = self.props.clone();
        let plain = unique_integers(first);
        if !plain.is_empty() {
            let mut b = props.into_builder();
            for (c, delta) in plain {
                b = b.set_column_dictionary_enabled(c.clone(), false);
                if delta {
                    b = b.set_column_encoding(c, parquet::basic::Encoding::DELTA_BINARY_PACKED);
                }
            }
            props = b.build();
        }
        let writer =
            ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(io::Error::other)?;
        Ok(OpenFile {
            tmp,
            name,
            writer,
            schema,
            rows: 0,
            ts: None,
        })
    }

    /// Close the partition's open file: footer, sync, rename into place, list it.
    fn finish(&mut self, p: &mut Part) {
        let Some(f) = p.file.take() else { return };
        let OpenFile {
            tmp,
            name,
            writer,
            rows,
            ts,
            ..
        } = f;
        let res = (|| -> io::Result<u64> {
            let file = writer.into_inner().map_err(io::Error::other)?;
            file.sync_all()?;
            let len = file.metadata()?.len();
            let dest = tmp.with_file_name(&name);
            // link, not rename: never replaces a file of that name
            std::fs::hard_link(&tmp, &dest)?;
            let _ = std::fs::remove_file(&tmp);
            if let Some(d) = dest.parent() {
                manifest::sync_dir(d);
            }
            Ok(len)
        })();
        match res {
            Ok(bytes) => {
                let path = format!("{}/{name}", p.rel);
                tracing::debug!(file = %path, rows, bytes, "parquet file closed");
                self.closed.push(Entry {
                    partition: manifest::partition_of(&path),
                    path,
                    rows,
                    bytes,
                    min_timestamp: ts.map(|t| manifest::rfc3339(t.0)),
                    max_timestamp: ts.map(|t| manifest::rfc3339(t.1)),
                    closed: manifest::now(),
                    compacted_from: Vec::new(),
                });
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.lose(
                    rows,
                    format!("{}: {e}; {rows} rows given up", tmp.display()),
                );
            }
        }
        if p.cols.rows() == 0 {
            p.first_write = None;
        }
    }

    /// Write out the partition's rows and close its file.
    fn close(&mut self, p: &mut Part) {
        self.write_group(p, false);
        self.finish(p);
        p.first_write = None;
    }
}

/// Create `rel`'s directories under `dir`, refusing any that is not a plain directory (a
/// planted symbolic link would send files elsewhere).
fn make_dirs(dir: &Path, rel: &str) -> io::Result<()> {
    let mut d = dir.to_path_buf();
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        d.push(c);
        match std::fs::create_dir(&d) {
            Ok(()) => continue,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(at(&d, e)),
        }
        let m = std::fs::symlink_metadata(&d)?;
        if !m.file_type().is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: is not a directory (a symbolic link or a file); refusing to write there",
                    d.display()
                ),
            ));
        }
    }
    Ok(())
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        let w = self.writes;
        self.writes += 1;
        let mut chunks: Vec<Option<Chunk>> = (0..self.shards.len()).map(|_| None).collect();
        for msg in batch.iter() {
            let line = msg.strip_suffix(b"\n").unwrap_or(msg);
            let start = line
                .iter()
                .position(|c| !c.is_ascii_whitespace())
                .unwrap_or(line.len());
            let ts = self.route(&line[start..]);
            let k = self.shard_for();
            self.shards[k].load += 1;
            let c = chunks[k].get_or_insert_with(|| Chunk::new(w));
            let l0 = c.bytes.len();
            c.bytes.extend_from_slice(line);
            let k0 = c.keys.len();
            c.keys.extend_from_slice(&self.key_buf);
            c.rows.push((l0..c.bytes.len(), k0..c.keys.len(), ts));
        }
        for (k, c) in chunks.into_iter().enumerate() {
            let Some(c) = c else { continue };
            let h = &mut self.shards[k];
            let n = c.rows.len() as u64;
            // waits while the writer has a full queue: backpressure
            let stopped = || h.thread.as_ref().is_none_or(|t| t.is_finished());
            let sent = h
                .queued
                .admit(c.bytes.len(), self.options.queue_bytes, stopped)
                && h.tx
                    .as_ref()
                    .is_some_and(|tx| tx.send(Msg::Rows(c)).is_ok());
            if sent {
                h.sent.push_back(w);
            } else {
                self.dropped += n;
                self.lost.get_or_insert(format!(
                    "{}: a writer thread has stopped; {n} rows dropped",
                    self.dir.display()
                ));
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.gather();
        if let Err(e) = self.record() {
            tracing::warn!("{e}; the manifest is updated at the next flush");
        }
        match self.lost.take() {
            Some(m) => Err(io::Error::other(m)),
            None => Ok(()),
        }
    }

    fn close(&mut self) -> io::Result<()> {
        let mut waits = Vec::new();
        for h in &mut self.shards {
            if let Some(tx) = h.tx.take() {
                let (rtx, rrx) = crossbeam_channel::bounded(1);
                if tx.send(Msg::Close(rtx)).is_ok() {
                    waits.push(rrx);
                }
            }
        }
        for r in waits {
            let _ = r.recv();
        }
        for h in &mut self.shards {
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
        self.gather();
        self.record()?;
        match self.lost.take() {
            Some(m) => Err(io::Error::other(m)),
            None => Ok(()),
        }
    }

    fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    fn settled_writes(&self) -> Option<u64> {
        let mut settled = self.writes;
        for h in &self.shards {
            let st = h.state.locked();
            if let Some(m) = st.min_open {
                settled = settled.min(m);
            }
            // the first chunk it has not handled yet
            let handled = st.chunks_done.saturating_sub(h.sent_base) as usize;
            if let Some(&w) = h.sent.get(handled) {
                settled = settled.min(w);
            }
        }
        Some(settled)
    }

    fn pending(&self) -> bool {
        !self.closed.is_empty()
            || self.shards.iter().any(|h| {
                let st = h.state.locked();
                st.open
                    || !st.closed.is_empty()
                    || st.chunks_done < h.sent_base + h.sent.len() as u64
            })
    }

    fn hand_over(&self, uid: u32, gid: u32) -> io::Result<()> {
        use std::os::unix::fs::lchown;
        let named = |p: &Path, e: io::Error| at(p, e);
        let dir = &self.dir;
        lchown(dir, Some(uid), Some(gid)).map_err(|e| named(dir, e))?;
        for name in [DIR_LOCK, manifest::MANIFEST, "_manifest.lock"] {
            let p = dir.join(name);
            if p.exists() {
                lchown(&p, Some(uid), Some(gid)).map_err(|e| named(&p, e))?;
            }
        }
        // the manifest's date files written at start, read and replaced from now on
        if let Ok(rd) = std::fs::read_dir(dir.join(manifest::MANIFEST)) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    lchown(e.path(), Some(uid), Some(gid)).map_err(|x| named(&e.path(), x))?;
                }
            }
        }
        // the partition directories made so far (files in them are closed and stay root's)
        let mut stack = vec![(dir.clone(), 0)];
        while let Some((d, depth)) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(|e| named(&d, e))?.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) && depth < 4 {
                    lchown(e.path(), Some(uid), Some(gid)).map_err(|x| named(&e.path(), x))?;
                    stack.push((e.path(), depth + 1));
                }
            }
        }
        Ok(())
    }
}

impl Drop for ParquetSink {
    fn drop(&mut self) {
        // not closed (a panic, an abandoned output): the shards close their files on their
        // own when the channel goes; the next start lists them in the manifest
        for h in &mut self.shards {
            h.tx.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_cannot_leave_the_directory() {
        assert_eq!(encode_value(b"dns"), "dns");
        assert_eq!(encode_value(b"../../etc"), "%2E.%2F..%2Fetc");
        assert_eq!(encode_value(b".."), "%2E.");
        assert_eq!(encode_value(b""), DEFAULT_PARTITION);
        assert_eq!(encode_value(&[b'a'; 101]), DEFAULT_PARTITION);
        assert_eq!(encode_value("é=/".as_bytes()), "%C3%A9%3D%2F");
    }

    #[test]
    fn a_full_queue_holds_the_router_until_the_writer_takes_from_it() {
        let q = Arc::new(Queued::default());
        // one chunk is let in whatever its size, then the queue is full
        assert!(q.admit(3000, 1000, || false));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let q2 = q.clone();
        let waiting = std::thread::spawn(move || {
            let ok = q2.admit(500, 1000, || false);
            tx.send(()).unwrap();
            ok
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "let in over the limit"
        );
        q.done(3000);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("still waiting once the writer took its chunk");
        assert!(waiting.join().unwrap());
        assert!(q.admit(500, 1000, || false), "room for both");
        assert_eq!(*q.bytes.locked(), 1000);
        // a writer that stopped never takes from its queue: the router gives up, not waits
        assert!(!q.admit(1, 1000, || true));
    }

    /// Mostly distinct integers (top level and in objects) are written without a dictionary;
    /// repeated ones, text, and samples too small to judge keep theirs.
    #[test]
    fn integer_columns_of_mostly_distinct_values_are_written_plain() {
        use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
        use arrow_schema::{DataType, Field};
        let batch = |n: i64| {
            let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
            let ports: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 8)));
            // a quarter distinct: a query and its answer, twice over
            let quarter: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n).map(|i| i / 4)));
            let names: ArrayRef = Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("host{i}")),
            ));
            let dns = StructArray::from(vec![
                (
                    Arc::new(Field::new("id", DataType::Int64, true)),
                    Arc::clone(&ids),
                ),
                (
                    Arc::new(Field::new("port", DataType::Int64, true)),
                    Arc::clone(&ports),
                ),
            ]);
            RecordBatch::try_from_iter(vec![
                ("flow_id", ids),
                ("dest_port", ports),
                ("tx", quarter),
                ("name", names),
                ("dns", Arc::new(dns) as ArrayRef),
            ])
            .unwrap()
        };
        let plain = |n| {
            unique_integers(&batch(n))
                .iter()
                .map(|(c, _)| c.string())
                .collect::<Vec<_>>()
        };
        assert_eq!(plain(10_000), ["flow_id", "tx", "dns.id"]);
        assert!(plain(63).is_empty(), "63 values are too few to judge");
    }

    #[test]
    fn options_are_checked() {
        let o = |k: &str, v: &str| Options::parse(&[(k.to_string(), v.to_string())]);
        assert!(o("compression", "snappy").is_ok());
        assert!(o("compression", "zstd:9").is_ok());
        assert!(o("compression", "zstd:99").is_err());
        assert!(o("compression", "lz4").is_err());
        assert!(o("row_group_rows", "0").is_err());
        assert!(o("max_age_s", "abc").is_err());
        assert!(o("colour", "red").is_err());
        assert!(o("dictionary", "true").unwrap().dictionary);
        assert!(o("dictionary", "maybe").is_err());
        assert_eq!(o("queue_mb", "2").unwrap().queue_bytes, 2 << 20);
        assert!(o("queue_mb", "0").is_err());
        assert_eq!(o("partition_by", "").unwrap().partition_by.len(), 0);
        assert_eq!(
            o("partition_by", "event_type, src_ip")
                .unwrap()
                .partition_by,
            ["event_type", "src_ip"]
        );
    }
}
