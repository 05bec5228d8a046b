//! NATS in and out against a real nats-server (JetStream on) started here: core publish and
//! subscribe with a queue group, and a JetStream durable consumer shared by two engines, one
//! killed with SIGKILL mid-stream and restarted, with every event out at least once.

use std::time::Duration;

use crate::common::*;
use dragonfly_testkit::NatsServer;

const T: Duration = Duration::from_secs(60);

#[test]
fn nats_core_queue_group_shares_a_subject() {
    let server = NatsServer::start();
    let uri = format!("nats://{}/eve.core?queue=mle", server.addr());
    let a = Root::passthrough(&uri);
    let b = Root::passthrough(&uri);
    let ea = spawn_logged(&a);
    let eb = spawn_logged(&b);
    wait_for(T, "both subscribed", || {
        stderr_log(&a).contains("subscribed") && stderr_log(&b).contains("subscribed")
    });
    const N: usize = 2000;
    produce(&format!("nats://{}/eve.core", server.addr()), N);
    wait_for(T, "every event", || {
        a.lines("out.json").len() + b.lines("out.json").len() >= N
    });
    let (sa, _) = stop(ea, T);
    let (sb, _) = stop(eb, T);
    assert!(sa.success() && sb.success());
    // a queue group delivers each message to one member
    let seen = count_seqs(&[&a, &b]);
    assert_eq!(seen.len(), N);
    assert!(seen.values().all(|&c| c == 1));
    assert!(!a.lines("out.json").is_empty() && !b.lines("out.json").is_empty());
}

#[test]
fn nats_jetstream_durable_consumer_is_at_least_once_across_sigkill() {
    let server = NatsServer::start();
    const N: usize = 8000;
    let uri = format!(
        "nats://{}/eve.js?stream=EVE&durable=mle&ack_wait_ms=2000",
        server.addr()
    );
    let a = slow_consumer(&uri, "");
    let b = slow_consumer(&uri, "");
    let mut ea = spawn_logged(&a);
    let mut eb = spawn_logged(&b);
    wait_for(T, "both consumers ready", || {
        stderr_log(&a).contains("JetStream consumer ready")
            && stderr_log(&b).contains("JetStream consumer ready")
    });
    // published with JetStream acknowledgements: the producer knows the stream has them
    produce(&format!("nats://{}/eve.js?jetstream=1", server.addr()), N);
    // one engine is killed mid-stream, once it has written some: how the server splits the
    // stream between the two pull consumers varies (one may take nearly all, the other a batch
    // or none), so the victim is whichever gets to 200 lines first; what it had fetched and not
    // acked must then come out of the other or of the victim restarted
    let t = std::time::Instant::now();
    let a_is_victim = loop {
        let (la, lb) = (a.lines("out.json").len(), b.lines("out.json").len());
        if la >= 200 || lb >= 200 {
            break la >= lb;
        }
        assert!(
            t.elapsed() < T,
            "consuming: a {la} lines, b {lb} lines\n--- a:\n{}\n--- b:\n{}",
            stderr_log(&a),
            stderr_log(&b)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (victim, child) = if a_is_victim {
        (&a, &mut ea)
    } else {
        (&b, &mut eb)
    };
    kill9(child);
    let before = victim.lines("out.json").len();
    *child = spawn_logged(victim);
    wait_all_seqs(&[&a, &b], N, Duration::from_secs(120));
    let (sa, ea_err) = stop(ea, T);
    let (sb, eb_err) = stop(eb, T);
    assert!(sa.success() && sb.success(), "{ea_err}{eb_err}");
    let seen = count_seqs(&[&a, &b]);
    assert_eq!(seen.len(), N);
    let dups = seen.values().sum::<usize>() - N;
    eprintln!(
        "nats jetstream: {N} events, the victim wrote {before} before SIGKILL, {dups} duplicates"
    );
    // redelivered: what a had written but not acked (one flush hold) plus what it had
    // fetched and not written (its queue: 8 batches of 64)
    assert!(dups <= 3_000, "{dups} duplicates");
}
