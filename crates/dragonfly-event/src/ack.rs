//! Delivery receipts: how an input learns that what it read has been fully handled.
//!
//! A source that can redeliver (Kafka, NATS JetStream, a Redis list with a processing list)
//! attaches an [`Ack`] to each batch it emits. The receipt travels with the batch to the
//! workers, is attached to every output batch made from it, and is held by each sink until
//! that sink has flushed those messages (for Kafka: until the broker confirmed them). When
//! the last holder lets go, the source gets `(id, ok)` on its channel and may commit.
//! A holder that failed (a write dropped, a delivery refused) marks it with [`Ack::fail`]:
//! the source then must not commit past it.
//!
//! Cost: one `Arc` per input batch, a clone per output batch; nothing per event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

/// What a source receives once a batch is done: its id, and whether every step succeeded.
pub type Receipt = (u64, bool);

/// A receipt for one input batch (see the module doc): cloned onto every batch made from it;
/// when the last clone is dropped the source hears `(id, ok)`.
#[derive(Clone)]
pub struct Ack(Arc<Inner>);

struct Inner {
    id: u64,
    failed: AtomicBool,
    done: Sender<Receipt>,
}

impl Ack {
    /// A receipt for batch `id`; `(id, ok)` goes to `done` when the last clone is dropped.
    pub fn new(id: u64, done: Sender<Receipt>) -> Self {
        Ack(Arc::new(Inner {
            id,
            failed: AtomicBool::new(false),
            done,
        }))
    }

    /// Something downstream failed: the source must not treat this batch as delivered.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Relaxed);
    }

    /// The batch this receipt is for.
    pub fn id(&self) -> u64 {
        self.0.id
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ack({})", self.0.id)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // the source may be gone at shutdown: then nobody needs the receipt
        let _ = self
            .done
            .send((self.id, !self.failed.load(Ordering::Relaxed)));
    }
}

/// Tracks receipts of one ordered stream (a Kafka partition, a Redis processing list) and
/// says how far it is done without a gap: batches can complete out of order when several
/// workers run, but a commit point must never pass an unfinished or failed batch.
#[derive(Debug, Default)]
pub struct Watermark {
    /// (batch id, position after the batch), in emission order
    inflight: std::collections::VecDeque<(u64, u64)>,
    done: std::collections::HashSet<u64>,
    failed: bool,
    committed: Option<u64>,
}

impl Watermark {
    /// A batch ending at `end` (exclusive position: the next offset to read) was emitted.
    pub fn emitted(&mut self, id: u64, end: u64) {
        self.inflight.push_back((id, end));
    }

    /// A receipt arrived. Returns false if the batch failed (the watermark then stops).
    pub fn receipt(&mut self, id: u64, ok: bool) -> bool {
        if !ok {
            self.failed = true;
        }
        self.done.insert(id);
        ok
    }

    /// The position up to which everything is done, if it moved since the last call.
    pub fn advance(&mut self) -> Option<u64> {
        if self.failed {
            return None;
        }
        let mut end = None;
        while let Some(&(id, e)) = self.inflight.front() {
            if !self.done.remove(&id) {
                break;
            }
            self.inflight.pop_front();
            end = Some(e);
        }
        if end.is_some() && end != self.committed {
            self.committed = end;
            return end;
        }
        None
    }

    /// Batches still out.
    pub fn pending(&self) -> usize {
        self.inflight.len()
    }

    /// Whether a holder marked it failed.
    pub fn is_failed(&self) -> bool {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_holder_sends_the_receipt() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let a = Ack::new(7, tx);
        let b = a.clone();
        drop(a);
        assert!(rx.try_recv().is_err());
        b.fail();
        drop(b);
        assert_eq!(rx.try_recv().unwrap(), (7, false));
    }

    #[test]
    fn watermark_moves_only_over_a_done_prefix() {
        let mut w = Watermark::default();
        w.emitted(1, 10);
        w.emitted(2, 20);
        w.emitted(3, 30);
        w.receipt(2, true);
        assert_eq!(w.advance(), None);
        w.receipt(1, true);
        assert_eq!(w.advance(), Some(20));
        assert_eq!(w.advance(), None);
        w.receipt(3, false);
        assert_eq!(w.advance(), None);
        assert!(w.is_failed());
    }
}
