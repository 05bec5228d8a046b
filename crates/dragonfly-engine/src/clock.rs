//! The event-time clock (`engine.clock = "event"`): time as the events tell it.
//!
//! Behaviour. Each worker keeps its own clock: the largest `timestamp` among the events it
//! has run (whole seconds, as `dragonfly.date2epoch` reads them; events without one, or with
//! one it cannot read, leave the clock where it is), minus `engine.clock_lateness_s` — the
//! watermark. The clock never goes back. A timer set by an event's call is due its delay after
//! that event's point on the clock; one set where no event is running (`setup()`, a timer
//! callback) after the clock's current time; one set before any event had a time waits until
//! the first does. A timer fires when the clock reaches its due time, *before* the event that
//! moves the clock there runs, so a report over the events before it sees exactly those (as a
//! live run would have); when several are due, in due order. At the end of the input every
//! pending timer fires once, as under the wall clock. `dragonfly.now()` gives the clock.
//!
//! Guarantees: a replay of the same lines gives the same timer firings at the same event
//! times, however fast it runs and however the lines fall into batches (tested). With
//! several workers each keeps its own clock over the events it gets (its flows).
//!
//! Cost: reading the timestamp of every line of a batch (`json::FieldKey`: the field is
//! usually the first) and parsing it; a batch is run in pieces only where a timer falls
//! inside it. Nothing under the wall clock.

use dragonfly_event::json::FieldKey;
use dragonfly_io::Batch;

/// A worker's event-time clock, and the time at each line of the batch it is running.
pub struct EventClock {
    lateness: f64,
    /// The largest timestamp among the events run so far.
    seen: Option<f64>,
    key: FieldKey,
    /// For the batch being run: the largest timestamp up to and including each line.
    upto: Vec<Option<f64>>,
}

impl EventClock {
    /// A clock `lateness` seconds behind the largest timestamp seen.
    pub fn new(lateness: f64) -> Self {
        EventClock {
            lateness,
            seen: None,
            key: FieldKey::new("timestamp"),
            upto: Vec::new(),
        }
    }

    /// Read the timestamps of `batch` (from the clock's current time on).
    pub fn scan(&mut self, batch: &Batch) {
        self.upto.clear();
        let mut m = self.seen;
        for i in 0..batch.len() {
            if let Some(t) = self.timestamp(batch.get(i)) {
                m = Some(m.map_or(t, |m: f64| m.max(t)));
            }
            self.upto.push(m);
        }
    }

    fn timestamp(&self, line: &[u8]) -> Option<f64> {
        let v = self.key.value(line)?;
        let s = std::str::from_utf8(v).ok()?;
        dragonfly_lua::libs::dragonfly::date2epoch(s).map(|t| t as f64)
    }

    /// The clock now (None before any event had a time).
    pub fn now(&self) -> Option<f64> {
        self.seen.map(|s| s - self.lateness)
    }

    /// The clock once line `i` of the scanned batch has been seen.
    pub fn at_line(&self, i: usize) -> Option<f64> {
        self.upto
            .get(i)
            .copied()
            .flatten()
            .map(|s| s - self.lateness)
    }

    /// The clock at each line of the scanned batch.
    pub fn times(&self) -> impl Iterator<Item = Option<f64>> + '_ {
        self.upto.iter().map(|t| t.map(|s| s - self.lateness))
    }

    /// Move the clock to line `i` of the scanned batch (never back).
    pub fn advance_to(&mut self, i: usize) {
        if let Some(Some(t)) = self.upto.get(i) {
            self.seen = Some(self.seen.map_or(*t, |s| s.max(*t)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_the_largest_timestamp_seen_minus_the_lateness() {
        let mut b = Batch::default();
        for l in [
            r#"{"timestamp":"2025-03-10T09:00:10.5+0000","x":1}"#,
            r#"{"x":"no time"}"#,
            r#"{"timestamp":"2025-03-10T09:00:05+0000"}"#,
            "not json",
            r#"{"timestamp":"2025-03-10T09:01:00+0000"}"#,
        ] {
            b.push(l.as_bytes());
        }
        let mut c = EventClock::new(2.0);
        assert_eq!(c.now(), None);
        c.scan(&b);
        let t0 = 1741597210.0; // 2025-03-10T09:00:10Z
        let want = [
            Some(t0 - 2.0),
            Some(t0 - 2.0),
            Some(t0 - 2.0), // an earlier event does not move it back
            Some(t0 - 2.0),
            Some(t0 + 50.0 - 2.0),
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(c.at_line(i), *w, "line {i}");
        }
        c.advance_to(2);
        assert_eq!(c.now(), Some(t0 - 2.0));
        c.advance_to(4);
        assert_eq!(c.now(), Some(t0 + 48.0));
        // the next batch starts where this one left off
        let mut b2 = Batch::default();
        b2.push(br#"{"timestamp":"2025-03-10T09:00:00+0000"}"#);
        c.scan(&b2);
        assert_eq!(c.at_line(0), Some(t0 + 48.0));
    }
}
