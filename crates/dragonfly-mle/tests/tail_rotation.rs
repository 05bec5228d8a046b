//! The tail's rotation race, alone in its test binary: a writer that rotates every 10 ms
//! leaves each file at PATH for 10 ms and at its rotated name for 10 more, so the tail's
//! watcher must get a time slice within that window. Beside the flood tests of
//! boundaries.rs (128 connections at once on 2 cores) it did not always (a whole file of
//! ~550 lines missed, seen 2 runs in 3); cargo runs test binaries one after another, so here
//! nothing else of the suite competes with it.

mod common;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// A writer that renames its file every 10 ms (over the previous `.1`: each rotated file is
/// gone at the next rotation) and writes on in a new one: the tail reads every file to its
/// end before it lets it go, and finds each new one as it appears: no line lost.
#[test]
fn a_file_rotated_every_10_ms_loses_no_line() {
    const N: u64 = 100_000;
    let r = Root::passthrough("tail://eve.json<");
    r.write("analyzer/pass.lua", PASS_READY);
    let eve = r.path().join("eve.json");
    std::fs::write(&eve, "").unwrap();
    let child = r.spawn(&[]);
    wait_for(T, "engine start-up", || r.path().join("ready").exists());
    let rotated = r.path().join("eve.json.1");
    let mut f = std::fs::OpenOptions::new().append(true).open(&eve).unwrap();
    let mut last = Instant::now();
    let mut rotations = 0;
    for i in 0..N {
        writeln!(f, "{{\"seq\":{i}}}").unwrap();
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
        if last.elapsed() >= Duration::from_millis(10) {
            std::fs::rename(&eve, &rotated).unwrap();
            f = std::fs::File::create(&eve).unwrap();
            last = Instant::now();
            rotations += 1;
        }
    }
    drop(f);
    let got = || r.lines("out.json").len() as u64;
    let t = Instant::now();
    while got() < N && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, err) = stop(child, T);
    assert!(status.success(), "{err}");
    let lines = r.lines("out.json");
    let mut seen = seqs(&lines);
    seen.sort_unstable();
    seen.dedup();
    eprintln!(
        "{rotations} rotations: {} lines out, {} distinct of {N}",
        lines.len(),
        seen.len()
    );
    assert!(rotations > 30, "{rotations}");
    assert_eq!(seen.len() as u64, N, "lines lost");
    assert_eq!(lines.len() as u64, N, "lines repeated");
}
