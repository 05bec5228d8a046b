//! Which worker gets which event: the value of a top-level field (by default `flow_id`, never one
//! inside a nested object), read from the raw line without parsing it, hashed over the workers. Events with equal values go
//! to the same worker, in input order; events without the field go to worker 0.

use dragonfly_event::json::FieldKey;
use dragonfly_io::Batch;

/// Picks a worker for each line by the value of one top-level field.
pub struct Partitioner {
    key: FieldKey,
    workers: usize,
}

impl Partitioner {
    /// Partition on `key` over `workers` workers.
    pub fn new(key: &str, workers: usize) -> Self {
        Self {
            key: FieldKey::new(key),
            workers: workers.max(1),
        }
    }

    /// The worker a line goes to (0 without the field).
    pub fn worker_of(&self, line: &[u8]) -> usize {
        if self.workers == 1 {
            return 0;
        }
        match self.key.raw(line) {
            // FNV-1a: stable, fast on short keys
            Some(v) => {
                let mut h: u64 = 0xcbf29ce484222325;
                for &b in v {
                    h ^= b as u64;
                    h = h.wrapping_mul(0x100000001b3);
                }
                (h % self.workers as u64) as usize
            }
            None => 0,
        }
    }

    /// Split a batch into one batch per worker (empty ones included).
    pub fn split(&self, batch: Batch) -> Vec<Batch> {
        if self.workers == 1 {
            return vec![batch];
        }
        let mut out: Vec<Batch> = (0..self.workers)
            .map(|_| {
                Batch::with_capacity(
                    batch.len() / self.workers + 8,
                    batch.bytes() / self.workers + 1024,
                )
            })
            .collect();
        for line in batch.iter() {
            out[self.worker_of(line)].push(line);
        }
        // every part carries the input's receipts: the input is done when all parts are
        for part in out.iter_mut().filter(|p| !p.is_empty()) {
            part.acks.extend(batch.acks.iter().cloned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_go_to_one_worker_and_missing_keys_to_the_first() {
        let p = Partitioner::new("flow_id", 4);
        let a = br#"{"timestamp":"x","flow_id":1251312473193421,"event_type":"dns"}"#;
        let b = br#"{"flow_id": 1251312473193421, "event_type":"flow"}"#;
        assert_eq!(p.worker_of(a), p.worker_of(b));
        assert_eq!(p.worker_of(br#"{"event_type":"stats"}"#), 0);
        let spread: std::collections::HashSet<usize> = (0..100)
            .map(|i| p.worker_of(format!("{{\"flow_id\":{}}}", 1000 + i).as_bytes()))
            .collect();
        assert_eq!(spread.len(), 4);
        let s = Partitioner::new("src_ip", 2);
        assert_eq!(
            s.key.raw(br#"{"src_ip":"10.0.0.1","x":1}"#),
            Some(&br#""10.0.0.1""#[..])
        );
    }

    #[test]
    fn the_key_is_read_from_the_top_level_only() {
        let p = Partitioner::new("flow_id", 64);
        let top = p.worker_of(br#"{"flow_id":2}"#);
        assert_ne!(
            top,
            p.worker_of(br#"{"flow_id":1}"#),
            "pick keys that differ"
        );
        assert_eq!(p.worker_of(br#"{"a":{"flow_id":1},"flow_id":2}"#), top);
        // only a nested key: as if the field were missing
        assert_eq!(p.worker_of(br#"{"a":{"flow_id":2}}"#), 0);
    }
}
