//! A short history of each node's totals, for the live page's sparklines and
//! `GET /api/history`: every [`INTERVAL`] the HTTP listener's thread samples the events and
//! errors of each input, filter, analyzer and output, keeping the last [`SAMPLES`] (ten
//! minutes). Rates are the differences between samples over the interval.
//!
//! Kept only while the HTTP listener runs (it is for the page). Cost: one stats snapshot per
//! interval; memory: SAMPLES × nodes × 16 bytes (a 20-node root: 39 KiB).

use std::collections::VecDeque;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{json, Value};

use crate::record::StatsRecord;

/// How often the totals are sampled.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: ten minutes, plus one to take the first difference from.
pub const SAMPLES: usize = 121;

/// The samples (see the module docs).
#[derive(Debug, Default)]
pub struct History {
    /// Seconds since the epoch of each sample.
    times: VecDeque<u64>,
    /// Node id -> (events, errors) at each sample.
    nodes: IndexMap<String, VecDeque<(u64, u64)>>,
}

impl History {
    /// Add a sample of `r`'s totals, dropping the oldest past [`SAMPLES`].
    pub fn sample(&mut self, r: &StatsRecord, at: u64) {
        let mut now: Vec<(String, u64, u64)> = Vec::new();
        for (tag, i) in &r.inputs {
            now.push((format!("input:{tag}"), i.lines, i.io_errors + i.oversized));
            now.push((
                format!("filter:{tag}"),
                i.events,
                i.lua_errors + i.malformed,
            ));
        }
        for (tag, a) in &r.analyzers {
            now.push((format!("analyzer:{tag}"), a.events, a.lua_errors));
        }
        for (tag, o) in &r.outputs {
            now.push((format!("output:{tag}"), o.events, o.errors + o.dropped));
        }
        let n = self.times.len();
        for (id, events, errors) in now {
            // a node that appears later (none do today) starts with zeros
            let series = self
                .nodes
                .entry(id)
                .or_insert_with(|| std::iter::repeat_n((0, 0), n).collect());
            series.push_back((events, errors));
            if series.len() > SAMPLES {
                series.pop_front();
            }
        }
        self.times.push_back(at);
        if self.times.len() > SAMPLES {
            self.times.pop_front();
        }
    }

    /// `{"interval_s", "times": [...], "nodes": {"analyzer:dns": {"events": [...],
    /// "errors": [...]}}}`: totals at each sample, oldest first.
    pub fn to_json(&self) -> Value {
        let nodes: serde_json::Map<String, Value> = self
            .nodes
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    json!({
                        "events": s.iter().map(|x| x.0).collect::<Vec<_>>(),
                        "errors": s.iter().map(|x| x.1).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        json!({ "interval_s": INTERVAL.as_secs(), "times": self.times, "nodes": nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_ten_minutes_of_each_nodes_totals() {
        let mut h = History::default();
        let mut r = StatsRecord::default();
        r.analyzers.insert("dns".into(), Default::default());
        r.inputs.insert("eve".into(), Default::default());
        for i in 0..(SAMPLES as u64 + 9) {
            r.analyzers["dns"].events = i * 10;
            r.inputs["eve"].lines = i;
            h.sample(&r, 1000 + i);
        }
        let v = h.to_json();
        let events = v["nodes"]["analyzer:dns"]["events"].as_array().unwrap();
        assert_eq!(events.len(), SAMPLES);
        assert_eq!(events[0], 90);
        assert_eq!(events[SAMPLES - 1], (SAMPLES as u64 + 8) * 10);
        assert_eq!(v["times"].as_array().unwrap().len(), SAMPLES);
        assert_eq!(v["nodes"]["input:eve"]["events"][0], 9);
        assert!(v["nodes"]["filter:eve"].is_object());
    }
}
