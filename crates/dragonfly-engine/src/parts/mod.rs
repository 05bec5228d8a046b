//! The running engine's parts, each owning its threads and how they stop: the inputs
//! ([`Inputs`]), the workers ([`Workers`]), the outputs ([`Outputs`]) and the engine's own
//! logs ([`OwnLogs`]). `topology.rs` builds them at the start, `running.rs` supervises and
//! drains them, `reload.rs` swaps a part's pieces through the part's own methods. Here too:
//! how a sink or an input gets its thread.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};
use dragonfly_io::{Batch, Emit, Sink, SourceCtx};

use crate::enginelog::EngineLog;
use crate::sinks::SinkRunner;
use crate::stats::{QueueDepth, Stats};
use crate::worker::WorkItem;
use crate::{partition, Control};

mod inputs;
mod outputs;
mod workers;

pub(crate) use inputs::Inputs;
pub(crate) use outputs::Reopened;
pub(crate) use outputs::{Outputs, OwnLogs};
pub use workers::MAX_PARKED;
pub(crate) use workers::{Fresh, Workers};

/// Hands a source's batches to the workers, split by partition key.
struct ToWorkers {
    input: usize,
    txs: Vec<Sender<WorkItem>>,
    partitioner: Arc<partition::Partitioner>,
}

impl Emit for ToWorkers {
    fn emit(&mut self, batch: Batch) -> bool {
        let parts = self.partitioner.split(batch);
        let mut alive = true;
        for (tx, batch) in self.txs.iter().zip(parts) {
            if batch.is_empty() {
                continue;
            }
            alive &= tx
                .send(WorkItem::Lines {
                    input: self.input,
                    batch,
                })
                .is_ok();
        }
        alive
    }
    fn clone_box(&self) -> Box<dyn Emit> {
        Box::new(ToWorkers {
            input: self.input,
            txs: self.txs.clone(),
            partitioner: self.partitioner.clone(),
        })
    }
}

pub(crate) fn depth<T: Send + 'static>(
    name: String,
    rx: crossbeam_channel::Receiver<T>,
) -> QueueDepth {
    (name, Box::new(move || rx.len()))
}

/// One sink on a thread of its own, fed by a queue of at most `cap` batches; `counters` are
/// the output's (none for the engine's own files). Returns the queue's two ends and the thread.
pub(crate) fn spawn_sink(
    tag: &str,
    sink: Box<dyn Sink>,
    cap: usize,
    counters: Option<(Arc<Stats>, usize)>,
    control: &Control,
    log: Option<EngineLog>,
    done: &Arc<AtomicBool>,
) -> (Sender<Batch>, Receiver<Batch>, JoinHandle<()>) {
    let (tx, rx) = bounded::<Batch>(cap);
    let (counters, index) = match counters {
        Some((s, i)) => (Some(s), i),
        None => (None, 0),
    };
    let runner = SinkRunner {
        tag: tag.to_string(),
        sink,
        rx: rx.clone(),
        counters,
        index,
        reopen: control.reopen.clone(),
        log,
        done: done.clone(),
    };
    let name = if index == 0 && runner.counters.is_none() {
        format!("sink-{tag}")
    } else {
        format!("out-{tag}")
    };
    (tx, rx, spawn(name, move || runner.run()))
}

/// Input `i` (`src`, opened) on a thread of its own, handing its batches to the workers;
/// returns its stop flag and its thread.
pub(crate) fn spawn_source(
    i: usize,
    tag: &str,
    src: Box<dyn dragonfly_io::sources::Prepared>,
    stats: &Arc<Stats>,
    engine: &dragonfly_config::Engine,
    work_txs: &[Sender<WorkItem>],
    partitioner: &Arc<partition::Partitioner>,
) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = SourceCtx {
        tag: tag.to_string(),
        counters: stats.inputs[i].io.clone(),
        shutdown: stop.clone(),
        max_line: engine.max_line_bytes,
        batch_lines: engine.batch_lines,
        out: Box::new(ToWorkers {
            input: i,
            txs: work_txs.to_vec(),
            partitioner: partitioner.clone(),
        }),
    };
    (stop, spawn(format!("in-{tag}"), move || src.run(ctx)))
}

pub(crate) fn spawn<F: FnOnce() + Send + 'static>(name: String, f: F) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .expect("spawning a thread")
}
