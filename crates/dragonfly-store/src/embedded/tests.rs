use super::*;

fn run(s: &EmbeddedStore, line: &str) -> Reply {
    let args: Vec<Vec<u8>> = line.split(' ').map(|x| x.as_bytes().to_vec()).collect();
    s.execute(&args)
}

fn bulk(s: &str) -> Reply {
    Reply::bulk(s.as_bytes().to_vec())
}

#[test]
fn counters_and_errors_match_redis() {
    let s = EmbeddedStore::new();
    assert_eq!(run(&s, "PING"), Reply::Status("PONG".into()));
    assert_eq!(run(&s, "INCR count:dns"), Reply::Integer(1));
    assert_eq!(run(&s, "INCRBY count:dns 41"), Reply::Integer(42));
    assert_eq!(run(&s, "GET count:dns"), bulk("42"));
    assert_eq!(run(&s, "SET s abc"), Reply::ok());
    assert_eq!(run(&s, "INCR s"), Reply::not_integer());
    assert_eq!(run(&s, "HSET s f v"), Reply::wrong_type());
    assert_eq!(run(&s, "GET"), Reply::arity("get"));
    assert_eq!(run(&s, "INCRBYFLOAT f 0.1"), bulk("0.1"));
    assert_eq!(run(&s, "INCRBYFLOAT f 0.2"), bulk("0.3"));
    assert_eq!(
        run(&s, "NOPE a b"),
        Reply::err("ERR unknown command 'NOPE', with args beginning with: 'a' 'b' ")
    );
}

#[test]
fn sorted_sets_order_and_ranges() {
    let s = EmbeddedStore::new();
    assert_eq!(run(&s, "ZADD z 1 a 2 b 3 c 0.1 d"), Reply::Integer(4));
    assert_eq!(run(&s, "ZSCORE z d"), bulk("0.10000000000000001"));
    assert_eq!(run(&s, "ZRANK z c"), Reply::Integer(3));
    assert_eq!(run(&s, "ZREVRANK z c"), Reply::Integer(0));
    assert_eq!(
        run(&s, "ZRANGEBYSCORE z (1 +inf LIMIT 0 1"),
        Reply::Array(vec![bulk("b")])
    );
    assert_eq!(
        run(&s, "ZREVRANGE z 0 1 WITHSCORES"),
        Reply::Array(vec![bulk("c"), bulk("3"), bulk("b"), bulk("2")])
    );
    assert_eq!(run(&s, "ZINCRBY z 2.5 a"), bulk("3.5"));
    assert_eq!(run(&s, "ZREMRANGEBYSCORE z -inf 2"), Reply::Integer(2));
    assert_eq!(run(&s, "ZCARD z"), Reply::Integer(2));
}

#[test]
fn expiry_is_lazy_and_active() {
    let s = EmbeddedStore::new();
    run(&s, "SET k v");
    assert_eq!(run(&s, "TTL k"), Reply::Integer(-1));
    assert_eq!(run(&s, "PEXPIRE k 30"), Reply::Integer(1));
    assert!(matches!(run(&s, "PTTL k"), Reply::Integer(n) if n > 0 && n <= 30));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while run(&s, "EXISTS k") != Reply::Integer(0) {
        assert!(std::time::Instant::now() < deadline, "key never expired");
        std::thread::yield_now();
    }
    assert_eq!(run(&s, "TTL k"), Reply::Integer(-2));
    assert_eq!(run(&s, "SETEX e 100 v"), Reply::ok());
    assert_eq!(run(&s, "TTL e"), Reply::Integer(100));
    assert_eq!(run(&s, "PERSIST e"), Reply::Integer(1));
    assert_eq!(run(&s, "TTL e"), Reply::Integer(-1));
}

#[test]
fn snapshot_round_trips_every_type() {
    let s = EmbeddedStore::new();
    for c in [
        "SET a 1",
        "HSET h f v",
        "SADD s x y",
        "ZADD z 1.5 m",
        "RPUSH l 1 2 3",
        "PFADD p a b c",
        "SETEX t 1000 v",
    ] {
        run(&s, c);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.snap");
    assert_eq!(s.save(&path).unwrap(), 7);
    let t = EmbeddedStore::new();
    assert_eq!(t.load(&path).unwrap(), 7);
    assert_eq!(run(&t, "GET a"), bulk("1"));
    assert_eq!(run(&t, "HGET h f"), bulk("v"));
    assert_eq!(run(&t, "SCARD s"), Reply::Integer(2));
    assert_eq!(run(&t, "ZSCORE z m"), bulk("1.5"));
    assert_eq!(
        run(&t, "LRANGE l 0 -1"),
        Reply::Array(vec![bulk("1"), bulk("2"), bulk("3")])
    );
    assert_eq!(run(&t, "PFCOUNT p"), Reply::Integer(3));
    assert!(matches!(run(&t, "TTL t"), Reply::Integer(n) if n > 990));
    assert_eq!(t.load(&dir.path().join("missing")).unwrap(), 0);
}
