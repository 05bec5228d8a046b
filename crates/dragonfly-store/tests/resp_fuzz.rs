//! The RESP reply path (the redis crate's parser, then ours) against a server that answers
//! with hostile bytes: random bytes, random but well-formed replies, deep nesting, lying
//! lengths. Every command returns a reply or an error; nothing panics, hangs or overflows.
//! scripts/fuzz runs it longer (PROPTEST_CASES).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use dragonfly_store::redis_backend::{RedisAddr, RedisTarget};
use dragonfly_store::Connection;
use proptest::prelude::*;

/// A server on 127.0.0.1 that answers connection set-up with +OK and the first other
/// command with `reply`, then closes. Returns the port.
fn hostile_server(reply: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Ok(n) = s.read(&mut buf) else { return };
            if n == 0 {
                return;
            }
            let req = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
            if req.contains("CLIENT") || req.contains("HELLO") || req.contains("SELECT") {
                // set-up commands, possibly pipelined: one +OK each
                let count = req.matches("\r\n*").count() + 1;
                let _ = s.write_all(&b"+OK\r\n".repeat(count));
                continue;
            }
            let _ = s.write_all(&reply);
            return;
        }
    });
    port
}

fn resp_value(depth: u32) -> BoxedStrategy<Vec<u8>> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
            let mut v = format!("${}\r\n", b.len()).into_bytes();
            v.extend(b);
            v.extend(b"\r\n");
            v
        }),
        "[a-zA-Z ]{0,20}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
        "[a-zA-Z ]{0,20}".prop_map(|s| format!("-ERR {s}\r\n").into_bytes()),
        Just(b"$-1\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        Just(b",3.25\r\n".to_vec()),
        Just(b"#t\r\n".to_vec()),
        Just(b"_\r\n".to_vec()),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(|items| {
            let mut v = format!("*{}\r\n", items.len()).into_bytes();
            for i in items {
                v.extend(i);
            }
            v
        })
    })
    .boxed()
}

fn hostile_reply() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        resp_value(4),
        (1usize..200_000).prop_map(|d| {
            let mut v = b"*1\r\n".repeat(d);
            v.extend(b":1\r\n");
            v
        }),
        prop::sample::select(vec![
            b"$99999999999\r\nabc".to_vec(),
            b"$-5\r\n".to_vec(),
            b"*99999999999\r\n".to_vec(),
            b"*-7\r\n".to_vec(),
            b":notanumber\r\n".to_vec(),
            b"$3\r\nabcdef\r\n".to_vec(),
            b"%2\r\n+a\r\n:1\r\n".to_vec(),
            b"\r\n\r\n".to_vec(),
            Vec::new(),
        ]),
    ]
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(200), ..ProptestConfig::default() })]
    #[test]
    fn hostile_replies_give_a_reply_or_an_error(reply in hostile_reply()) {
        let port = hostile_server(reply);
        // on a thread with the engine's worker stack size (the default for spawned threads)
        let h = std::thread::spawn(move || {
            let target = RedisTarget::new(RedisAddr::Tcp { host: "127.0.0.1".into(), port });
            if let Ok(mut c) = target.connect() {
                let _ = c.command(&[b"GET".to_vec(), b"k".to_vec()]);
            }
        });
        prop_assert!(h.join().is_ok(), "the reply path panicked");
    }
}

#[test]
fn deep_nesting_and_lying_lengths_are_errors_not_crashes() {
    use dragonfly_store::Reply;
    for (reply, ok) in [
        {
            let mut v = b"*1\r\n".repeat(100_000);
            v.extend(b":1\r\n");
            (v, false)
        },
        (b"$99999999999\r\nabc".to_vec(), false),
        (b"*99999999999\r\n".to_vec(), false),
        (b"+PONG\r\n".to_vec(), true),
    ] {
        let port = hostile_server(reply);
        let got = std::thread::spawn(move || {
            let target = RedisTarget::new(RedisAddr::Tcp {
                host: "127.0.0.1".into(),
                port,
            });
            let mut c = target.connect().expect("set-up is answered");
            c.command(&[b"GET".to_vec(), b"k".to_vec()])
        })
        .join()
        .expect("no panic");
        match got {
            Reply::Status(s) if ok => assert_eq!(s, "PONG"),
            Reply::Error(e) if !ok => assert!(e.contains("connection to Redis"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
