//! The engine tested in-process: an in-memory source and sink through the `Source` and
//! `Destination` traits, a root on disk for config.lua and the scripts, and the engine run
//! to its end on a thread of the test. Each test takes milliseconds; what needs a real
//! process (signals, exit codes, privileges) stays in `crates/dragonfly-mle/tests`.

mod engine;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use dragonfly_event::sync::Locked;
use dragonfly_event::{Ack, Batch, Receipt};
use dragonfly_io::sinks::{Destination, Sink, SinkScheme};
use dragonfly_io::sources::{Prepared, Source, SourceCtx, SourceScheme};

use crate::{Control, Options, Plan, Summary};

const MEMORY_IN: SourceScheme = SourceScheme {
    name: "memory",
    form: "memory:// (tests)",
    finite: true,
    options: &[],
    query: &[],
    parse: |_, _, _| unreachable!("made by the tests, never parsed"),
};

const MEMORY_OUT: SinkScheme = SinkScheme {
    name: "memory",
    form: "memory:// (tests)",
    options: &[],
    query: &[],
    parse: |_, _, _, _| unreachable!("made by the tests, never parsed"),
};

/// A finite input of the given lines, in batches of `batch` lines, each batch with a receipt
/// (sent to [`MemorySource::receipts`] once every output has it).
#[derive(Debug, Clone)]
pub struct MemorySource {
    lines: Vec<String>,
    batch: usize,
    receipts: Sender<Receipt>,
}

impl MemorySource {
    /// The source, and where its receipts arrive.
    pub fn new(lines: Vec<String>, batch: usize) -> (Self, Receiver<Receipt>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            Self {
                lines,
                batch: batch.max(1),
                receipts: tx,
            },
            rx,
        )
    }
}

impl Source for MemorySource {
    fn scheme(&self) -> &'static SourceScheme {
        &MEMORY_IN
    }
    fn prepare(&self, _max_line: usize) -> io::Result<Box<dyn Prepared>> {
        Ok(Box::new(self.clone()))
    }
}

impl Prepared for MemorySource {
    fn run(self: Box<Self>, mut ctx: SourceCtx) {
        ctx.ready("reading");
        for (id, chunk) in self.lines.chunks(self.batch).enumerate() {
            let mut b = Batch::default();
            for l in chunk {
                b.push(l.as_bytes());
                ctx.counters
                    .lines
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            b.acks.push(Ack::new(id as u64, self.receipts.clone()));
            if !ctx.out.emit(b) {
                break;
            }
        }
        ctx.ready("ended");
    }
}

/// What a memory output received: its lines, and how many flushes it saw.
#[derive(Debug, Default)]
pub struct Received {
    pub lines: Vec<String>,
    pub flushes: usize,
}

/// An output that keeps what it gets in memory.
#[derive(Debug, Clone, Default)]
pub struct MemorySink(pub Arc<Mutex<Received>>);

impl MemorySink {
    /// Its lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.locked().lines.clone()
    }
}

impl Destination for MemorySink {
    fn scheme(&self) -> &'static SinkScheme {
        &MEMORY_OUT
    }
    fn describe(&self) -> String {
        "memory".into()
    }
    fn open(&self) -> io::Result<Box<dyn Sink>> {
        Ok(Box::new(self.clone()))
    }
}

impl Sink for MemorySink {
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        let mut r = self.0.locked();
        for m in batch.iter() {
            let m = std::str::from_utf8(m).expect("UTF-8");
            r.lines.push(m.strip_suffix('\n').unwrap_or(m).to_string());
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.locked().flushes += 1;
        Ok(())
    }
}

/// A root on disk: config.lua and scripts written by the test.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    /// A root whose config.lua is `config`, with these files (path, text) beside it.
    pub fn new(config: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let write = |p: &str, text: &str| {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("config/config.lua", config);
        for (p, t) in files {
            write(p, t);
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The plan of this root (LOGDIR inside it), as `--exit-on-eof` runs it.
    pub fn plan(&self) -> Plan {
        let root: PathBuf = self.path().to_path_buf();
        let config = dragonfly_config::load(&root).expect("config.lua loads");
        Plan::new(
            config,
            Options {
                root: root.clone(),
                logdir: root.join("log"),
                exit_on_eof: true,
                chroot: false,
            },
        )
        .unwrap_or_else(|e| panic!("{:?}", e.problems()))
    }
}

/// Run `plan` to its end (every input finite) and return what the run says of itself.
pub fn run(plan: Plan, root: &Path) -> Summary {
    let running = plan
        .prepare()
        .unwrap_or_else(|e| panic!("{:?}", e.problems()))
        .start(root.to_path_buf(), Control::default())
        .unwrap_or_else(|e| panic!("{:?}", e.problems()));
    running.wait()
}
