//! `kafka://BROKERS/TOPIC?group=NAME`: a member of a consumer group, so engines started with
//! the same group split the topic's partitions between them.
//!
//! At-least-once: auto-commit is off. Each batch carries an [`Ack`]; when every output has
//! flushed what the batch became, its offsets are done. Per partition a [`Watermark`] keeps
//! the commit point from passing a batch still in flight (workers finish out of order), and
//! done offsets are committed every `commit_ms` (default 1 s), before a partition is taken
//! away in a rebalance (after letting its in-flight batches finish, up to 5 s), and at shutdown (after everything read has been written). A batch
//! that failed downstream stops its partition's commit point: after a restart the engine
//! reads again from there. After SIGKILL, what was read since the last commit is read
//! again: duplicates are bounded by what arrives within one commit interval (plus batches
//! in flight), and nothing is lost.

use dragonfly_event::sync::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{await_receipts, io_error, Collector, SourceCtx};
use crate::ack::{Ack, Receipt, Watermark};
use crate::kafka_uri::KafkaUri;

#[derive(Debug)]
/// A consumer-group member.
pub struct KafkaSource {
    /// What to consume.
    pub uri: KafkaUri,
}

/// Offsets read and done, per partition, shared with the rebalance callback (which runs on
/// the polling thread, inside `poll`).
struct Tracker {
    topic: String,
    marks: HashMap<i32, Watermark>,
    /// batch id -> partitions it has messages of
    batches: HashMap<u64, Vec<i32>>,
    receipts: Receiver<Receipt>,
    failed_logged: bool,
    /// offsets collected and not yet committed (partition -> next offset)
    ready: HashMap<i32, i64>,
}

impl Tracker {
    /// Take in the receipts that arrived; the offsets to commit now (partition -> next offset).
    fn collect(&mut self) -> Vec<(i32, i64)> {
        while let Ok((id, ok)) = self.receipts.try_recv() {
            for p in self.batches.remove(&id).unwrap_or_default() {
                if let Some(w) = self.marks.get_mut(&p) {
                    if !w.receipt(id, ok) && !self.failed_logged {
                        self.failed_logged = true;
                        tracing::error!(topic = %self.topic, partition = p,
                            "an output failed to deliver events of this partition: its offset is \
                             no longer committed; they are read again after a restart");
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (&p, w) in self.marks.iter_mut() {
            if let Some(end) = w.advance() {
                out.push((p, end as i64));
            }
        }
        out
    }

    fn pending(&self) -> usize {
        self.marks.values().map(Watermark::pending).sum()
    }

    fn commit(&mut self, consumer: &BaseConsumer<Ctx>, mode: CommitMode) {
        let more = self.collect();
        self.ready.extend(more);
        let offsets: Vec<(i32, i64)> = self.ready.drain().collect();
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &offsets {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o));
        }
        if let Err(e) = consumer.commit(&tpl, mode) {
            tracing::warn!(topic = %self.topic, "offset commit failed: {e}");
        }
    }
}

struct Ctx {
    tracker: Arc<Mutex<Tracker>>,
    counters: Arc<crate::sources::InputCounters>,
}

impl ClientContext for Ctx {
    /// librdkafka's statistics (`statistics.interval.ms`): each assigned partition's consumer
    /// lag, for the stats and /metrics (partitions no longer assigned drop out).
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lag = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|(p, part)| **p >= 0 && part.consumer_lag >= 0)
            .map(|(p, part)| (*p, part.consumer_lag))
            .collect();
        *self.counters.lag.locked() = lag;
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Let what is in flight for these partitions finish (the workers and sinks run on
            // other threads), so the next owner does not read it again; bounded, as the group
            // waits for us.
            let deadline = Instant::now() + REVOKE_WAIT;
            loop {
                let mut t = self.tracker.locked();
                let offsets = t.collect();
                t.ready.extend(offsets);
                let busy = tpl.elements().iter().any(|e| {
                    t.marks
                        .get(&e.partition())
                        .is_some_and(|w| w.pending() > 0 && !w.is_failed())
                });
                if !busy || Instant::now() >= deadline {
                    break;
                }
                drop(t);
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut t = self.tracker.locked();
            // what is done so far is committed before another member takes over
            t.commit(consumer, CommitMode::Sync);
            for e in tpl.elements() {
                t.marks.remove(&e.partition());
            }
            tracing::info!(topic = %t.topic, partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut t = self.tracker.locked();
            for e in tpl.elements() {
                t.marks.insert(e.partition(), Watermark::default());
            }
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(topic = %t.topic, ?parts, "partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!("commit: {e}");
        }
    }
}

/// How long a revoked partition's in-flight batches may take to finish before it is handed on.
const REVOKE_WAIT: Duration = Duration::from_secs(5);

impl KafkaSource {
    /// Consume until the engine stops.
    pub fn run(self, mut ctx: SourceCtx) {
        let (tx, rx) = unbounded::<Receipt>();
        let tracker = Arc::new(Mutex::new(Tracker {
            topic: self.uri.topic.clone(),
            marks: HashMap::new(),
            batches: HashMap::new(),
            receipts: rx,
            failed_logged: false,
            ready: HashMap::new(),
        }));
        let consumer = match self.consumer(&tracker, &ctx.counters) {
            Ok(c) => c,
            Err(e) => {
                ctx.not_ready(format!("kafka {}: {e}", self.uri.brokers));
                io_error(
                    &ctx,
                    &format!("kafka {}", self.uri.brokers),
                    &std::io::Error::other(e.to_string()),
                );
                return;
            }
        };
        let mut col = Collector::manual(&ctx);
        ctx.ready("consuming");
        let mut healthy = true;
        let mut next_id = 0u64;
        let mut last_commit = Instant::now();
        let commit_every = Duration::from_millis(self.uri.commit_ms);
        // partition -> next offset of the batch being collected
        let mut open: HashMap<i32, i64> = HashMap::new();
        while !ctx.stopping() && !col.closed() {
            let mut got = 0usize;
            let mut wait = Duration::from_millis(100);
            while got < ctx.batch_lines.max(1) {
                match consumer.poll(wait) {
                    Some(Ok(m)) => {
                        if !healthy {
                            healthy = true;
                            ctx.ready("consuming");
                        }
                        got += 1;
                        wait = Duration::ZERO;
                        open.insert(m.partition(), m.offset() + 1);
                        col.message(&mut ctx, m.payload().unwrap_or_default());
                    }
                    Some(Err(e)) => {
                        healthy = false;
                        ctx.not_ready(format!("kafka {}: {e}", self.uri.topic));
                        io_error(
                            &ctx,
                            &format!("kafka {}", self.uri.topic),
                            &std::io::Error::other(e.to_string()),
                        );
                        break;
                    }
                    None => break,
                }
            }
            if !open.is_empty() {
                next_id += 1;
                self.emit(&mut col, &mut ctx, &tracker, &tx, next_id, &mut open);
            }
            if last_commit.elapsed() >= commit_every {
                tracker.locked().commit(&consumer, CommitMode::Async);
                last_commit = Instant::now();
            }
        }
        // Shutdown: read nothing more; wait until what was read has been written, commit it.
        await_receipts(Duration::from_millis(20), || {
            let mut t = tracker.locked();
            t.commit(&consumer, CommitMode::Sync);
            if t.pending() == 0 || t.marks.values().any(Watermark::is_failed) {
                return true;
            }
            drop(t);
            // keep serving the group (heartbeats) while waiting
            let _ = consumer.poll(Duration::ZERO);
            false
        });
        let pending = tracker.locked().pending();
        if pending > 0 {
            tracing::warn!(topic = %self.uri.topic, batches = pending,
                "stopping with batches not confirmed by every output: they are read again on restart");
        }
        consumer.unsubscribe();
    }

    fn consumer(
        &self,
        tracker: &Arc<Mutex<Tracker>>,
        counters: &Arc<crate::sources::InputCounters>,
    ) -> KafkaResult<BaseConsumer<Ctx>> {
        let mut c = self.uri.client_config();
        c.set("group.id", &self.uri.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("enable.partition.eof", "false")
            // consumer lag per partition, for the stats (ClientContext::stats)
            .set("statistics.interval.ms", "1000");
        self.uri.apply_options(&mut c);
        let consumer: BaseConsumer<Ctx> = c.create_with_context(Ctx {
            tracker: tracker.clone(),
            counters: counters.clone(),
        })?;
        consumer.subscribe(&[&self.uri.topic])?;
        Ok(consumer)
    }

    /// Hand the collected lines over with a receipt covering their offsets.
    fn emit(
        &self,
        col: &mut Collector,
        ctx: &mut SourceCtx,
        tracker: &Arc<Mutex<Tracker>>,
        tx: &Sender<Receipt>,
        id: u64,
        open: &mut HashMap<i32, i64>,
    ) {
        {
            let mut t = tracker.locked();
            let parts: Vec<i32> = open.keys().copied().collect();
            for (&p, &end) in open.iter() {
                t.marks.entry(p).or_default().emitted(id, end as u64);
            }
            t.batches.insert(id, parts);
        }
        open.clear();
        col.attach(Ack::new(id, tx.clone()));
        col.flush(ctx);
    }
}

/// `kafka://BROKERS/TOPIC?group=NAME&commit_ms=N`
pub const KAFKA: super::SourceScheme = super::SourceScheme {
    name: "kafka",
    form: "kafka://BROKERS/TOPIC?group=NAME&commit_ms=N",
    finite: false,
    options: &[super::OptionDoc {
        name: "*",
        kind: super::OptKind::Any,
        default: "",
        doc: "librdkafka consumer properties (`[\"session.timeout.ms\"] = 6000`)",
    }],
    query: crate::kafka_uri::INPUT_QUERY,
    parse: |uri, rest, options| {
        Ok(Box::new(KafkaSource {
            uri: crate::kafka_uri::KafkaUri::parse_with(uri, rest, crate::kafka_uri::INPUT_QUERY)?
                .with_options(&options.passed_on()),
        }))
    },
};

impl super::Source for KafkaSource {
    fn scheme(&self) -> &'static super::SourceScheme {
        &KAFKA
    }
    fn prepare(&self, _max_line: usize) -> std::io::Result<Box<dyn super::Prepared>> {
        Ok(Box::new(KafkaSource {
            uri: self.uri.clone(),
        }))
    }
}

impl super::Prepared for KafkaSource {
    fn run(self: Box<Self>, ctx: SourceCtx) {
        KafkaSource::run(*self, ctx)
    }
}
