//! Drain, receipts, dead letters and partitioning, in-process.

use std::collections::HashMap;

use super::{run, MemorySink, MemorySource, Root};

const FILTER: &str = r#"
function setup() end
function loop(msg) dragonfly.analyze_event(default_analyzer, msg) end
"#;

/// One input `in` (filter above) -> analyzer `a` (`analyzer`) -> output `out`.
fn root(analyzer: &str, engine: &str) -> Root {
    Root::new(
        &format!(
            r#"
inputs = {{ {{ tag="in", uri="file://unused.json", script="filter.lua", default_analyzer="a" }} }}
analyzers = {{ {{ tag="a", script="a.lua", default_analyzer="", default_output="out" }} }}
outputs = {{ {{ tag="out", uri="file://unused-out.json" }} }}
engine = {{ {engine} }}
"#
        ),
        &[("filter/filter.lua", FILTER), ("analyzer/a.lua", analyzer)],
    )
}

const PASS: &str = r#"
function setup() end
function loop(msg) dragonfly.output_event(default_output, msg) end
"#;

fn events(n: usize, flows: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"seq":{i},"flow_id":{},"event_type":"dns"}}"#,
                i as u64 % flows
            )
        })
        .collect()
}

fn seq(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["seq"].as_u64().unwrap()
}

#[test]
fn a_finite_run_drains_every_event_and_every_receipt_comes_back_ok() {
    let r = root(PASS, "");
    let mut plan = r.plan();
    let (src, receipts) = MemorySource::new(events(1000, 7), 64);
    let out = MemorySink::default();
    assert!(plan.replace_source("in", Box::new(src)));
    assert!(plan.replace_sink("out", Box::new(out.clone())));
    let summary = run(plan, r.path());
    assert_eq!(summary.exit_code(), 0);
    let lines = out.lines();
    assert_eq!(lines.len(), 1000);
    // one worker: input order
    assert!(lines.iter().map(|l| seq(l)).eq(0..1000));
    assert_eq!(summary.stats.operations.input, 1000);
    assert_eq!(summary.stats.operations.output, 1000);
    assert_eq!(summary.stats.outputs["out"].events, 1000);
    // 16 batches of 64 (the last 40): each receipt once, each ok, after the outputs flushed
    let mut got: Vec<(u64, bool)> = receipts.try_iter().collect();
    got.sort();
    assert_eq!(got, (0..16).map(|i| (i, true)).collect::<Vec<_>>());
    assert!(out.0.lock().unwrap().flushes >= 1);
}

#[test]
fn failed_events_become_dead_letters_holding_the_input_line_byte_for_byte() {
    let r = root(
        r#"
function setup() end
function loop(msg)
  if msg.seq % 10 == 3 then error("broke on " .. msg.seq) end
  dragonfly.output_event(default_output, msg)
end
"#,
        "",
    );
    let mut plan = r.plan();
    // number text the encoder would write otherwise: the dead letter keeps it
    let lines: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"seq":{i},"flow_id":1.50,"x":1e2}}"#))
        .collect();
    let (src, receipts) = MemorySource::new(lines.clone(), 25);
    let (out, dead) = (MemorySink::default(), MemorySink::default());
    plan.replace_source("in", Box::new(src));
    plan.replace_sink("out", Box::new(out.clone()));
    plan.replace_dead_letter(Box::new(dead.clone()));
    let summary = run(plan, r.path());
    assert_eq!(summary.exit_code(), crate::exit::SCRIPT_FAILURES);
    assert_eq!(summary.script_failures, 10);
    assert_eq!(summary.dead_letters, 10);
    assert_eq!(out.lines().len(), 90);
    let dead = dead.lines();
    assert_eq!(dead.len(), 10);
    for (d, i) in dead.iter().zip((3..100).step_by(10)) {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(
            v["error"]
                .as_str()
                .map(|e| e.contains(&format!("broke on {i}"))),
            Some(true),
            "{d}"
        );
        // the line's own bytes, not a re-encoding (1.50 stays 1.50, 1e2 stays 1e2)
        assert!(
            d.contains(&serde_json::to_string(&lines[i]).unwrap()) || d.contains(&lines[i]),
            "{d}"
        );
    }
    // a failed script is a handled event: its receipt is ok
    assert!(receipts.try_iter().all(|(_, ok)| ok));
}

#[test]
fn with_two_workers_every_flow_keeps_its_order_and_nothing_is_lost() {
    let r = root(PASS, r#"workers = 2, partition_key = "flow_id""#);
    let mut plan = r.plan();
    let (src, _) = MemorySource::new(events(4000, 13), 100);
    let out = MemorySink::default();
    plan.replace_source("in", Box::new(src));
    plan.replace_sink("out", Box::new(out.clone()));
    let summary = run(plan, r.path());
    assert_eq!(summary.exit_code(), 0);
    let lines = out.lines();
    assert_eq!(lines.len(), 4000);
    let mut per_flow: HashMap<u64, Vec<u64>> = HashMap::new();
    for l in &lines {
        let s = seq(l);
        per_flow.entry(s % 13).or_default().push(s);
    }
    assert_eq!(per_flow.len(), 13);
    for (flow, seqs) in per_flow {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "flow {flow} out of order"
        );
    }
    // both workers ran
    assert_eq!(summary.stats.workers.len(), 2);
    assert!(summary.stats.workers.values().all(|w| w.batches > 0));
}
