//! The inputs: each on a thread of its own with its stop flag, handing its batches to the
//! workers split by partition key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use dragonfly_config::Config;
use dragonfly_io::sources::Prepared as PreparedSource;

use super::spawn_source;
use crate::partition::Partitioner;
use crate::stats::Stats;
use crate::worker::WorkItem;

/// Every input's thread and stop flag, and how they split batches over the workers.
pub(crate) struct Inputs {
    stops: Vec<Arc<AtomicBool>>,
    threads: Vec<JoinHandle<()>>,
    partitioner: Arc<Partitioner>,
}

impl Inputs {
    /// Start every input (`sources[i]` is `config.inputs[i]`, opened), handing batches to
    /// the workers' queues `work`.
    pub(crate) fn spawn(
        config: &Config,
        sources: Vec<Box<dyn PreparedSource>>,
        stats: &Arc<Stats>,
        work: &[Sender<WorkItem>],
    ) -> Inputs {
        let partitioner = Arc::new(Partitioner::new(&config.engine.partition_key, work.len()));
        let (stops, threads) = sources
            .into_iter()
            .enumerate()
            .map(|(i, src)| {
                let tag = &config.inputs[i].tag;
                spawn_source(i, tag, src, stats, &config.engine, work, &partitioner)
            })
            .unzip();
        Inputs {
            stops,
            threads,
            partitioner,
        }
    }

    /// Whether every input has ended by itself.
    pub(crate) fn all_ended(&self) -> bool {
        self.threads.iter().all(|h| h.is_finished())
    }

    /// Stop every input and wait until each has handed on what it had read.
    pub(crate) fn stop(&mut self) {
        for stop in &self.stops {
            stop.store(true, Ordering::Relaxed);
        }
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }

    /// Input `i` reopened (a reload): `src` starts, then the old one stops and hands on what
    /// it had read.
    pub(crate) fn replace(
        &mut self,
        i: usize,
        src: Box<dyn PreparedSource>,
        config: &Config,
        stats: &Arc<Stats>,
        work: &[Sender<WorkItem>],
    ) {
        let tag = &config.inputs[i].tag;
        let (stop, h) = spawn_source(i, tag, src, stats, &config.engine, work, &self.partitioner);
        let old_stop = std::mem::replace(&mut self.stops[i], stop);
        let old = std::mem::replace(&mut self.threads[i], h);
        old_stop.store(true, Ordering::Relaxed);
        let _ = old.join();
    }
}
