//! The embedded store against a real redis-server 7: the same command sequences, replies
//! compared exactly (except where Redis itself leaves things unspecified: the order of
//! unordered collections, HyperLogLog estimates, TTLs that tick while the test runs).

use dragonfly_store::embedded::EmbeddedStore;
use dragonfly_store::redis_backend::{RedisAddr, RedisTarget};
use dragonfly_store::{Connection, Reply};
use dragonfly_testkit::RedisServer;
use proptest::prelude::*;

fn args(line: &str) -> Vec<Vec<u8>> {
    line.split(' ').map(|s| s.as_bytes().to_vec()).collect()
}

fn sorted(mut v: Vec<Reply>) -> Vec<Reply> {
    v.sort_by_key(|r| format!("{r:?}"));
    v
}

/// Put both replies in a comparable form for the command that produced them.
fn normalize(cmd: &[Vec<u8>], r: Reply) -> Reply {
    let name = String::from_utf8_lossy(&cmd[0]).to_ascii_uppercase();
    match (name.as_str(), r) {
        ("KEYS" | "SMEMBERS" | "HKEYS" | "HVALS", Reply::Array(v)) => Reply::Array(sorted(v)),
        ("HGETALL", Reply::Array(v)) => {
            let mut pairs: Vec<Vec<Reply>> = v.chunks(2).map(|c| c.to_vec()).collect();
            pairs.sort_by_key(|p| format!("{p:?}"));
            Reply::Array(pairs.into_iter().flatten().collect())
        }
        (_, r) => r,
    }
}

fn close(cmd: &[Vec<u8>], a: &Reply, b: &Reply) -> bool {
    let name = String::from_utf8_lossy(&cmd[0]).to_ascii_uppercase();
    match (name.as_str(), a, b) {
        ("PFCOUNT", Reply::Integer(x), Reply::Integer(y)) => {
            (*x - *y).abs() as f64 <= (*y as f64 * 0.02).max(1.0)
        }
        ("TTL", Reply::Integer(x), Reply::Integer(y)) => {
            *x < 0 && x == y || (*x >= 0 && (*x - *y).abs() <= 1)
        }
        ("PTTL", Reply::Integer(x), Reply::Integer(y)) => {
            *x < 0 && x == y || (*x >= 0 && (*x - *y).abs() <= 200)
        }
        _ => a == b,
    }
}

struct Pair {
    _server: RedisServer,
    redis: Box<dyn Connection>,
    embedded: EmbeddedStore,
}

impl Pair {
    fn new() -> Self {
        let server = RedisServer::start();
        let target = RedisTarget::new(RedisAddr::Tcp {
            host: "127.0.0.1".into(),
            port: server.port,
        });
        let redis = Box::new(target.connect().unwrap());
        Pair {
            _server: server,
            redis,
            embedded: EmbeddedStore::new(),
        }
    }

    fn reset(&mut self) {
        self.redis.command(&args("FLUSHALL"));
        self.embedded.execute(&args("FLUSHALL"));
    }

    /// Run one command on both; Err describes the first difference.
    fn run(&mut self, cmd: &[Vec<u8>]) -> Result<(), String> {
        let want = normalize(cmd, self.redis.command(cmd));
        let got = normalize(cmd, self.embedded.execute(cmd));
        if close(cmd, &got, &want) {
            Ok(())
        } else {
            let line: Vec<String> = cmd
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Err(format!(
                "{}\n  redis:    {want:?}\n  embedded: {got:?}",
                line.join(" ")
            ))
        }
    }

    fn script(&mut self, lines: &[&str]) {
        self.reset();
        let mut diffs = Vec::new();
        for l in lines {
            if let Err(d) = self.run(&args(l)) {
                diffs.push(d);
            }
        }
        assert!(
            diffs.is_empty(),
            "{} differences:\n{}",
            diffs.len(),
            diffs.join("\n")
        );
    }
}

#[test]
fn every_command_by_hand() {
    let mut p = Pair::new();
    // connection, strings and counters
    p.script(&[
        "PING",
        "PING hello",
        "PING a b",
        "ECHO hi",
        "ECHO",
        "GET nope",
        "SET s v",
        "GET s",
        "SET s",
        "SET s v2 NX",
        "SET s v3 XX",
        "GET s",
        "SET n v NX",
        "SET s v GET",
        "SET s v EX 100",
        "TTL s",
        "SET s v PX 100000",
        "SET s v EX 0",
        "SET s v EX x",
        "SET s v EX 10 PX 10",
        "SET s v NX XX",
        "SET s v KEEPTTL",
        "TTL s",
        "SET s v BOGUS",
        "SETEX e 100 v",
        "TTL e",
        "SETEX e 0 v",
        "SETEX e x v",
        "SETEX e",
        "SETNX s x",
        "SETNX s2 x",
        "MGET s s2 nope",
        "INCR c",
        "INCR c",
        "INCRBY c 10",
        "INCRBY c -3",
        "DECR c",
        "DECRBY c 5",
        "INCRBY c x",
        "INCRBY c 1.5",
        "INCR s",
        "SET big 9223372036854775807",
        "INCR big",
        "DECRBY c -9223372036854775808",
        "INCRBYFLOAT f 0.1",
        "INCRBYFLOAT f 0.2",
        "INCRBYFLOAT f 10",
        "INCRBYFLOAT f -10.3",
        "INCRBYFLOAT f abc",
        "INCRBYFLOAT s 1",
        "INCRBYFLOAT f 1e3",
        "APPEND a x",
        "APPEND a yz",
        "GET a",
        "STRLEN a",
        "STRLEN nope",
        "SET lead 007",
        "INCR lead",
        "SET plus +5",
        "INCR plus",
        "INCR",
        "INCRBY c",
        "MGET",
    ]);
    // keys
    p.script(&[
        "SET k1 v",
        "SET k2 v",
        "HSET h f v",
        "SADD st m",
        "ZADD z 1 m",
        "RPUSH l x",
        "PFADD p a",
        "DEL k1 nope",
        "EXISTS k1 k2 k2 nope",
        "TYPE k2",
        "TYPE h",
        "TYPE st",
        "TYPE z",
        "TYPE l",
        "TYPE p",
        "TYPE nope",
        "KEYS *",
        "KEYS k?",
        "KEYS [kh]*",
        "KEYS nomatch*",
        "DBSIZE",
        "EXPIRE k2 100",
        "TTL k2",
        "PTTL nope",
        "TTL h",
        "EXPIRE k2 100 NX",
        "EXPIRE k2 200 XX",
        "EXPIRE k2 50 GT",
        "EXPIRE k2 50 LT",
        "TTL k2",
        "EXPIRE h 10 XX",
        "EXPIRE h 10 GT",
        "EXPIRE h 10 NX XX",
        "EXPIRE h 10 GT LT",
        "EXPIRE h 10 FOO",
        "EXPIRE k2 x",
        "PEXPIRE k2 100000",
        "PERSIST k2",
        "PERSIST k2",
        "PERSIST nope",
        "EXPIRE nope 10",
        "EXPIRE k2 -1",
        "EXISTS k2",
        "DEL",
        "EXISTS",
        "FLUSHDB",
        "DBSIZE",
        "FLUSHALL BOGUS",
        "DBSIZE x",
    ]);
    // hashes
    p.script(&[
        "HSET h a 1 b 2",
        "HSET h a 3",
        "HSET h a",
        "HSET h a 1 b",
        "HMSET h c 4",
        "HMSET h c",
        "HGET h a",
        "HGET h nope",
        "HGET nope a",
        "HMGET h a b nope",
        "HMGET nope a",
        "HGETALL h",
        "HGETALL nope",
        "HKEYS h",
        "HVALS h",
        "HLEN h",
        "HLEN nope",
        "HEXISTS h a",
        "HEXISTS h z",
        "HINCRBY h a 5",
        "HINCRBY h new -2",
        "HINCRBY h a x",
        "HSET h s str",
        "HINCRBY h s 1",
        "HINCRBYFLOAT h fl 1.5",
        "HINCRBYFLOAT h fl 0.1",
        "HINCRBYFLOAT h s 1",
        "HINCRBYFLOAT h fl x",
        "HSETNX h a 9",
        "HSETNX h n 9",
        "HDEL h a nope",
        "HDEL h b c s new fl n",
        "EXISTS h",
        "HLEN h",
        "SET str v",
        "HGET str a",
        "HSET str a 1",
        "HGETALL str",
    ]);
    // sets
    p.script(&[
        "SADD s a b c",
        "SADD s a d",
        "SADD s",
        "SREM s a nope",
        "SISMEMBER s b",
        "SISMEMBER s a",
        "SISMEMBER nope a",
        "SCARD s",
        "SCARD nope",
        "SMEMBERS s",
        "SMEMBERS nope",
        "SREM s b c d",
        "EXISTS s",
        "SET str v",
        "SADD str a",
        "SCARD str",
    ]);
    // sorted sets
    p.script(&[
        "ZADD z 1 a 2 b 3 c",
        "ZADD z 1.5 a",
        "ZADD z NX 9 a 4 d",
        "ZADD z XX 9 a 5 e",
        "ZADD z CH 1 a 2 b",
        "ZADD z GT 0 a",
        "ZADD z LT 0 a",
        "ZADD z GT CH 100 c",
        "ZADD z INCR 2 a",
        "ZADD z INCR 2 a 3 b",
        "ZADD z NX XX 1 a",
        "ZADD z GT LT 1 a",
        "ZADD z x a",
        "ZADD z 1",
        "ZADD z 1 a 2",
        "ZADD z XX INCR 1 nope",
        "ZADD z 0.1 f",
        "ZADD z -inf g +inf h",
        "ZSCORE z f",
        "ZSCORE z g",
        "ZSCORE z nope",
        "ZINCRBY z 1.25 f",
        "ZINCRBY z x f",
        "ZINCRBY nz 3 m",
        "ZRANK z a",
        "ZRANK z nope",
        "ZREVRANK z a",
        "ZCARD z",
        "ZCARD nope",
        "ZRANGE z 0 -1",
        "ZRANGE z 0 -1 WITHSCORES",
        "ZRANGE z 1 2",
        "ZRANGE z -2 -1",
        "ZRANGE z 5 1",
        "ZRANGE z 0 100",
        "ZRANGE z a b",
        "ZRANGE z (1 5 BYSCORE",
        "ZRANGE z 5 (1 BYSCORE REV",
        "ZRANGE z 0 -1 LIMIT 0 1",
        "ZRANGE z -inf +inf BYSCORE LIMIT 1 2 WITHSCORES",
        "ZREVRANGE z 0 1 WITHSCORES",
        "ZRANGEBYSCORE z 1 3",
        "ZRANGEBYSCORE z (1 3",
        "ZRANGEBYSCORE z -inf +inf WITHSCORES",
        "ZRANGEBYSCORE z -inf +inf LIMIT 1 2",
        "ZRANGEBYSCORE z -inf +inf LIMIT 1 -1",
        "ZRANGEBYSCORE z x 3",
        "ZRANGEBYSCORE z 1 3 BOGUS",
        "ZREVRANGEBYSCORE z +inf 2",
        "ZREVRANGEBYSCORE z 3 (1 WITHSCORES LIMIT 0 2",
        "ZRANGEBYSCORE nope 0 1",
        "ZREM z a nope",
        "ZREMRANGEBYSCORE z -inf 2",
        "ZREMRANGEBYSCORE z x 1",
        "ZRANGE z 0 -1 WITHSCORES",
        "SET str v",
        "ZADD str 1 a",
        "ZSCORE str a",
        "ZRANGE str 0 -1",
    ]);
    // lists
    p.script(&[
        "RPUSH l a b c",
        "LPUSH l z y",
        "LRANGE l 0 -1",
        "LRANGE l 1 2",
        "LRANGE l -2 -1",
        "LRANGE l 5 10",
        "LRANGE l x 1",
        "LLEN l",
        "LLEN nope",
        "LPOP l",
        "RPOP l",
        "LPOP l 2",
        "LPOP l 0",
        "RPOP l -1",
        "LPOP nope",
        "LPOP nope 2",
        "LRANGE l 0 -1",
        "RPUSH l d e f g",
        "LTRIM l 1 -2",
        "LRANGE l 0 -1",
        "LTRIM l 5 1",
        "EXISTS l",
        "LTRIM nope 0 1",
        "SET str v",
        "LPUSH str a",
        "LLEN str",
    ]);
    // hyperloglog
    p.script(&[
        "PFADD p a b c",
        "PFADD p a",
        "PFADD p d",
        "PFADD q",
        "PFADD q",
        "PFCOUNT p",
        "PFCOUNT p q nope",
        "PFADD q x y",
        "PFMERGE m p q",
        "PFCOUNT m",
        "PFCOUNT nope",
        "SET str v",
        "PFADD str a",
        "PFCOUNT str",
        "HSET h f v",
        "PFADD h a",
        "TYPE p",
    ]);
    // unknown commands and arity
    p.script(&[
        "NOSUCH",
        "NOSUCH a b",
        "GET a b",
        "HGET h",
        "ZADD z",
        "LRANGE l 0",
    ]);
}

#[test]
fn scan_visits_every_key_once() {
    let p = Pair::new();
    let mut p = p;
    p.reset();
    for i in 0..57 {
        p.redis.command(&args(&format!("SET key:{i} v")));
        p.embedded.execute(&args(&format!("SET key:{i} v")));
    }
    p.redis.command(&args("HSET other f v"));
    p.embedded.execute(&args("HSET other f v"));
    let collect = |f: &mut dyn FnMut(&[Vec<u8>]) -> Reply| {
        let mut seen = Vec::new();
        let mut cursor = b"0".to_vec();
        loop {
            let cmd = vec![
                b"SCAN".to_vec(),
                cursor.clone(),
                b"MATCH".to_vec(),
                b"key:*".to_vec(),
                b"COUNT".to_vec(),
                b"7".to_vec(),
            ];
            let Reply::Array(v) = f(&cmd) else {
                panic!("SCAN reply")
            };
            let Reply::Bulk(c) = &v[0] else {
                panic!("cursor")
            };
            let Reply::Array(keys) = &v[1] else {
                panic!("keys")
            };
            seen.extend(keys.iter().cloned());
            cursor = c.clone();
            if cursor == b"0" {
                break;
            }
        }
        sorted(seen)
    };
    let from_redis = collect(&mut |c| p.redis.command(c));
    let emb = p.embedded.clone();
    let from_embedded = collect(&mut |c| emb.execute(c));
    assert_eq!(from_redis.len(), 57);
    assert_eq!(from_embedded, from_redis);
}

/// Run `f` on this thread's pair (started once per thread, emptied before each run).
fn with_pair(f: impl FnOnce(&mut Pair) -> Result<(), TestCaseError>) -> Result<(), TestCaseError> {
    thread_local! {
        static PAIR: std::cell::RefCell<Option<Pair>> = const { std::cell::RefCell::new(None) };
    }
    PAIR.with(|p| {
        let mut p = p.borrow_mut();
        let pair = p.get_or_insert_with(Pair::new);
        pair.reset();
        f(pair)
    })
}

fn arb_command() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec!["a", "b", "c", "h", "z", "l", "s"]);
    let member = prop::sample::select(vec!["m1", "m2", "m3", "x", "1", "-2", "0.5"]);
    let num = prop::sample::select(vec!["0", "1", "-1", "3", "2.5", "-0.5", "inf", "x", "100"]);
    (
        0usize..29,
        key,
        member,
        num,
        prop::sample::select(vec!["m1", "m2", "m3"]),
    )
        .prop_map(|(op, k, m, n, m2)| match op {
            0 => format!("SET {k} {m}"),
            1 => format!("GET {k}"),
            2 => format!("INCR {k}"),
            3 => format!("INCRBY {k} {n}"),
            4 => format!("INCRBYFLOAT {k} {n}"),
            5 => format!("APPEND {k} {m}"),
            6 => format!("DEL {k}"),
            7 => format!("EXISTS {k} {k}"),
            8 => format!("TYPE {k}"),
            9 => format!("HSET {k} {m} {n}"),
            10 => format!("HGET {k} {m}"),
            11 => format!("HINCRBY {k} {m} {n}"),
            12 => format!("HDEL {k} {m}"),
            13 => format!("HGETALL {k}"),
            14 => format!("SADD {k} {m} {m2}"),
            15 => format!("SREM {k} {m}"),
            16 => format!("SMEMBERS {k}"),
            17 => format!("ZADD {k} {n} {m}"),
            18 => format!("ZINCRBY {k} {n} {m}"),
            19 => format!("ZRANGE {k} 0 -1 WITHSCORES"),
            27 if k == "a" => "PFCOUNT hll".to_string(),
            20 => format!("ZRANGEBYSCORE {k} -inf {n} WITHSCORES"),
            21 => format!("ZRANK {k} {m}"),
            22 => format!("ZREM {k} {m}"),
            23 => format!("RPUSH {k} {m}"),
            24 => format!("LPOP {k}"),
            25 => format!("LRANGE {k} 0 -1"),
            26 => format!("LTRIM {k} 1 -1"),
            // HyperLogLogs live on their own key: Redis stores them as strings in its own
            // encoding, which the embedded store does not reproduce byte for byte (documented);
            // type clashes with HLLs are covered by every_command_by_hand.
            _ => format!("PFADD hll {m} {m2}"),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    /// Random command sequences over a few keys of mixed types give the same replies.
    #[test]
    fn random_sequences_match_redis(cmds in prop::collection::vec(arb_command(), 1..60)) {
        with_pair(|pair| {
            for c in &cmds {
                if let Err(d) = pair.run(&args(c)) {
                    return Err(TestCaseError::fail(format!("after {cmds:?}\n{d}")));
                }
            }
            Ok(())
        })?;
    }
}

#[derive(Debug, Clone)]
enum Issue {
    /// `command()`: sent and answered at once (after everything appended before it).
    Now(String),
    /// `append_command()`: answered later by `get_reply()`.
    Append(String),
    /// `get_reply()` this many times.
    Read(usize),
    /// `submit()`: answered by `await_reply()` with its ticket.
    Submit(String),
    /// `await_reply()` for one of the tickets not taken yet (picked by this number).
    Await(usize),
}

/// `got` is the reply `want` (as compared by [`close`]).
fn same_reply(cmd: &[Vec<u8>], got: Option<Reply>, want: Reply) -> Result<(), TestCaseError> {
    let got = got.ok_or_else(|| TestCaseError::fail(format!("no reply for {cmd:?}")))?;
    let (got, want) = (normalize(cmd, got), normalize(cmd, want));
    prop_assert!(
        close(cmd, &got, &want),
        "{:?}: redis {:?}, sequential {:?}",
        cmd,
        got,
        want
    );
    Ok(())
}

fn arb_issue() -> impl Strategy<Value = Issue> {
    prop_oneof![
        2 => arb_command().prop_map(Issue::Now),
        6 => arb_command().prop_map(Issue::Append),
        1 => (1usize..40).prop_map(Issue::Read),
        4 => arb_command().prop_map(Issue::Submit),
        3 => any::<usize>().prop_map(Issue::Await),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    /// Commands appended (sent in chunks as they gather), submitted (taken by ticket in any
    /// order), sent at once, and replies read at any point: every reply is the one its
    /// command gets when the same commands run one at a time in the order they were issued
    /// (error replies included).
    #[test]
    fn pipelined_replies_match_sequential_ones(issues in prop::collection::vec(arb_issue(), 1..150)) {
        with_pair(|pair| {
            let mut pending: std::collections::VecDeque<(Vec<Vec<u8>>, Reply)> = Default::default();
            let mut tickets: Vec<(u64, Vec<Vec<u8>>, Reply)> = Vec::new();
            for i in &issues {
                match i {
                    Issue::Now(c) => {
                        let cmd = args(c);
                        let want = pair.embedded.execute(&cmd);
                        let got = pair.redis.command(&cmd);
                        same_reply(&cmd, Some(got), want)?;
                    }
                    Issue::Append(c) => {
                        let cmd = args(c);
                        let want = pair.embedded.execute(&cmd);
                        pair.redis.append_command(cmd.clone());
                        pending.push_back((cmd, want));
                    }
                    Issue::Submit(c) => {
                        let cmd = args(c);
                        let want = pair.embedded.execute(&cmd);
                        let t = pair.redis.submit(&cmd).expect("Redis takes submissions");
                        tickets.push((t, cmd, want));
                    }
                    Issue::Await(i) => {
                        if !tickets.is_empty() {
                            let (t, cmd, want) = tickets.remove(i % tickets.len());
                            same_reply(&cmd, Some(pair.redis.await_reply(t)), want)?;
                        }
                    }
                    Issue::Read(n) => {
                        for _ in 0..*n {
                            let Some((cmd, want)) = pending.pop_front() else {
                                prop_assert!(pair.redis.get_reply().is_none());
                                break;
                            };
                            let got = pair.redis.get_reply();
                            same_reply(&cmd, got, want)?;
                        }
                    }
                }
            }
            while let Some((cmd, want)) = pending.pop_front() {
                let got = pair.redis.get_reply();
                same_reply(&cmd, got, want)?;
            }
            for (t, cmd, want) in tickets {
                same_reply(&cmd, Some(pair.redis.await_reply(t)), want)?;
            }
            prop_assert!(pair.redis.get_reply().is_none());
            Ok(())
        })?;
    }
}

/// A server killed while appended commands are in flight: each of them still gets exactly one
/// reply, in order (answered ones their value, the rest the connection error), and once the
/// server is back commands succeed again.
#[test]
fn pipelined_commands_in_flight_when_redis_dies_each_get_one_reply() {
    let mut server = RedisServer::start();
    let target = RedisTarget::new(RedisAddr::Tcp {
        host: "127.0.0.1".into(),
        port: server.port,
    });
    let mut c = target.connect().unwrap();
    for _ in 0..100 {
        c.append_command(args("INCR n"));
    }
    // the first chunks are on their way; the server dies before the rest is sent
    server.kill();
    let mut answered = 0;
    let mut failed = 0;
    for i in 0..100 {
        match c.get_reply() {
            Some(Reply::Integer(n)) => {
                assert_eq!(failed, 0, "an answer after an error, at {i}");
                answered += 1;
                assert_eq!(n, answered);
            }
            Some(Reply::Error(e)) => {
                assert!(e.contains("Redis at 127.0.0.1"), "{e}");
                failed += 1;
            }
            other => panic!("reply {i}: {other:?}"),
        }
    }
    assert_eq!(answered + failed, 100);
    assert!(
        failed > 0,
        "every command was answered: the kill came too late"
    );
    assert!(c.get_reply().is_none());
    server.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while c.command(&args("PING")) != Reply::Status("PONG".into()) {
        assert!(std::time::Instant::now() < deadline, "never reconnected");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    c.append_command(args("SET k v"));
    c.append_command(args("GET k"));
    assert_eq!(c.get_reply(), Some(Reply::ok()));
    assert_eq!(c.get_reply(), Some(Reply::Bulk(b"v".to_vec())));
}
