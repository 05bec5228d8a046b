//! The units that cross from one stage to the next: many messages in one allocation.

/// Messages packed end to end in one buffer, with the end offset of each.
///
/// Sources hand whole batches of raw lines to the workers and workers hand whole batches of
/// encoded output lines to the sinks, so a hand-off costs one channel operation per batch,
/// not per event.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    data: Vec<u8>,
    ends: Vec<usize>,
    /// Receipts of the input data these messages came from (see [`crate::ack`]): whoever
    /// holds the batch holds them, and lets go once the messages are safely handed on.
    pub acks: Vec<crate::ack::Ack>,
}

impl Batch {
    /// An empty batch with room for `messages` messages of `bytes` bytes in all.
    pub fn with_capacity(messages: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(messages),
            acks: Vec::new(),
        }
    }

    /// Append one message.
    pub fn push(&mut self, msg: &[u8]) {
        self.data.extend_from_slice(msg);
        self.ends.push(self.data.len());
    }

    /// Append one message written by `f` straight into the buffer.
    pub fn push_with<E>(&mut self, f: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let start = self.data.len();
        match f(&mut self.data) {
            Ok(()) => {
                self.ends.push(self.data.len());
                Ok(())
            }
            Err(e) => {
                self.data.truncate(start);
                Err(e)
            }
        }
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No message.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total payload bytes.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Bytes of memory the batch holds (its buffers' capacity), which is what a queue of
    /// batches really costs: a batch of one small message may hold a buffer sized for many.
    pub fn held_bytes(&self) -> usize {
        self.data.capacity()
            + self.ends.capacity() * std::mem::size_of::<usize>()
            + self.acks.capacity() * std::mem::size_of::<crate::ack::Ack>()
            + std::mem::size_of::<Self>()
    }

    /// Give back buffer space well beyond what the messages use (before a batch waits in a
    /// queue for long).
    pub fn shrink(&mut self) {
        if self.data.capacity() > 2 * self.data.len() + 4096 {
            self.data.shrink_to_fit();
        }
        if self.ends.capacity() > 2 * self.ends.len() + 64 {
            self.ends.shrink_to_fit();
        }
    }

    /// Message `i` (panics past the end, like indexing).
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    /// Every message, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let s = &self.data[start..end];
            start = end;
            s
        })
    }

    /// Drop every message, keeping the buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// Take the contents, leaving an empty batch with the same capacity hint.
    pub fn take(&mut self) -> Batch {
        let cap = self.ends.capacity();
        let bytes = self.data.capacity();
        std::mem::replace(self, Batch::with_capacity(cap, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_iterate() {
        let mut b = Batch::default();
        b.push(b"one");
        b.push(b"");
        let r: Result<(), ()> = b.push_with(|buf| {
            buf.extend_from_slice(b"three");
            Ok(())
        });
        r.unwrap();
        let r: Result<(), &str> = b.push_with(|buf| {
            buf.extend_from_slice(b"junk");
            Err("no")
        });
        assert!(r.is_err());
        let v: Vec<&[u8]> = b.iter().collect();
        assert_eq!(v, vec![&b"one"[..], b"", b"three"]);
        assert_eq!(b.get(2), b"three");
        assert_eq!(b.bytes(), 8);
    }

    #[test]
    fn a_nearly_empty_batch_gives_its_buffer_back() {
        let mut b = Batch::with_capacity(256, 256 * 800);
        b.push(b"{}");
        assert!(b.held_bytes() > 200_000);
        b.shrink();
        assert!(b.held_bytes() < 8192, "{}", b.held_bytes());
        assert_eq!(b.get(0), b"{}");
    }
}
