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

/// The active expiry samples (module doc): each sweep looks at a bounded number of keys, never
/// removes a live one, and over a few sweeps brings the expired share of the keys with a TTL
/// down to about a quarter, as Redis's does; a full sweep (KEYS, SCAN, DBSIZE, save) removes
/// every expired key.
#[test]
fn active_expiry_by_sampling_removes_only_expired_keys_and_keeps_up() {
    let mut db = Db::default();
    for i in 0..20_000 {
        let k = format!("k{i}").into_bytes();
        db.put(&k, Value::Str(b"v".to_vec()));
        // half expired long ago, half in a day; one in four has no TTL
        let at = match i % 4 {
            0 => None,
            1 | 2 => Some(1),
            _ => Some(now_ms() + 86_400_000),
        };
        db.set_expiry(&k, at);
    }
    let expired = |db: &Db| {
        db.map
            .values()
            .filter(|e| e.expire_at.is_some_and(|t| t <= now_ms()))
            .count()
    };
    assert_eq!(expired(&db), 10_000);
    let before = db.map.len();
    db.sweep(false);
    // one sweep looks at no more than 1,000 keys, so removes no more than that
    assert!(before - db.map.len() <= 1000, "{}", before - db.map.len());
    assert!(
        before - db.map.len() >= 20,
        "a sweep of a mostly expired set removed little"
    );
    for _ in 0..200 {
        db.sweep(false);
    }
    let left = expired(&db);
    let with_ttl = db.expiring.len();
    assert!(
        left * 100 <= with_ttl * 40,
        "{left} expired of {with_ttl} with a TTL"
    );
    // only expired keys went: every key without a TTL and every live one is still there
    assert_eq!(db.map.len(), 20_000 - (10_000 - left));
    db.sweep(true);
    assert_eq!(expired(&db), 0);
    assert_eq!(db.map.len(), 10_000);
    assert_eq!(db.expiring.len(), 5_000);
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

mod limits {
    use super::*;
    use crate::embedded::memory::{Limit, Policy, OOM};

    fn limited(kb: usize, policy: Policy) -> EmbeddedStore {
        EmbeddedStore::with_limit(Limit {
            max_bytes: kb << 10,
            policy,
        })
    }

    /// A 1 KiB value.
    fn set(s: &EmbeddedStore, key: &str) -> Reply {
        s.execute(&[b"SET".to_vec(), key.as_bytes().to_vec(), vec![b'x'; 1024]])
    }

    #[test]
    fn noeviction_refuses_writes_past_the_limit_and_still_reads_and_deletes() {
        let s = limited(20, Policy::NoEviction);
        let mut refused_at = None;
        for i in 0..100 {
            if set(&s, &format!("k{i}")) != Reply::ok() {
                refused_at = Some(i);
                break;
            }
        }
        let at = refused_at.expect("refused before 100 KiB");
        assert!((15..=25).contains(&at), "refused at key {at}");
        assert_eq!(set(&s, "more"), Reply::err(OOM));
        assert_eq!(run(&s, "INCR n"), Reply::err(OOM));
        assert_eq!(run(&s, "GET k0"), bulk(&"x".repeat(1024)));
        assert_eq!(run(&s, "DEL k0 k1 k2"), Reply::Integer(3));
        assert_eq!(set(&s, "again"), Reply::ok(), "deleting made room");
        let (keys, bytes, evicted, oom) = s.memory();
        assert_eq!(evicted, 0);
        assert_eq!(oom, 3, "the first refused SET, \"more\" and INCR");
        assert_eq!(keys, at - 3 + 1);
        assert!(bytes <= (20 << 10) + 2048, "{bytes}");
    }

    #[test]
    fn allkeys_lru_keeps_what_is_used_and_stays_near_the_limit() {
        let s = limited(50, Policy::AllKeysLru);
        assert_eq!(set(&s, "hot"), Reply::ok());
        for i in 0..500 {
            assert_eq!(set(&s, &format!("k{i}")), Reply::ok(), "never refused");
            assert!(
                run(&s, "GET hot") != Reply::Nil,
                "the key in use is kept ({i})"
            );
        }
        let (keys, bytes, evicted, oom) = s.memory();
        assert_eq!(oom, 0);
        assert!(evicted >= 440, "{evicted}");
        assert!(keys <= 50, "{keys}");
        assert!(bytes <= (50 << 10) + 2048, "{bytes}");
        // the newest keys are there, the oldest mostly gone
        assert!(run(&s, "EXISTS k499") == Reply::Integer(1));
        let old = (0..100)
            .filter(|i| run(&s, &format!("EXISTS k{i}")) == Reply::Integer(1))
            .count();
        assert!(old < 10, "{old} of the 100 oldest kept");
    }

    #[test]
    fn volatile_ttl_evicts_the_soonest_to_expire_and_never_keys_without_ttl() {
        let s = limited(30, Policy::VolatileTtl);
        for i in 0..10 {
            assert_eq!(set(&s, &format!("keep{i}")), Reply::ok());
        }
        for i in 0..200 {
            let r = s.execute(&[
                b"SETEX".to_vec(),
                format!("t{i}").into_bytes(),
                (10_000 - i).to_string().into_bytes(),
                vec![b'x'; 1024],
            ]);
            assert_eq!(r, Reply::ok());
        }
        for i in 0..10 {
            assert_eq!(run(&s, &format!("EXISTS keep{i}")), Reply::Integer(1));
        }
        // the last ones set expire soonest: they went first
        let late = (190..200)
            .filter(|i| run(&s, &format!("EXISTS t{i}")) == Reply::Integer(1))
            .count();
        let early = (0..10)
            .filter(|i| run(&s, &format!("EXISTS t{i}")) == Reply::Integer(1))
            .count();
        assert!(early > late, "early {early}, late {late}");
        // nothing with a TTL left to evict: refused
        let s = limited(5, Policy::VolatileLru);
        for i in 0..20 {
            let _ = set(&s, &format!("p{i}"));
        }
        assert_eq!(set(&s, "one-more"), Reply::err(OOM));
    }

    #[test]
    fn the_estimate_follows_writes_shrinks_deletes_and_expiry() {
        let s = EmbeddedStore::new();
        let used = |s: &EmbeddedStore| s.memory().1;
        assert_eq!(used(&s), 0);
        for i in 0..100 {
            run(&s, &format!("HSET h f{i} value-{i}"));
            run(&s, &format!("RPUSH l item-{i}"));
            run(&s, &format!("SADD st member-{i}"));
            run(&s, &format!("ZADD z {i} member-{i}"));
        }
        let full = used(&s);
        assert!(full > 4 * 100 * 40, "{full}");
        for i in 0..90 {
            run(&s, &format!("HDEL h f{i}"));
            run(&s, "LPOP l");
        }
        let shrunk = used(&s);
        assert!(shrunk < full, "{shrunk} < {full}");
        // what the store counts equals a recount from scratch
        {
            let mut db = s.lock();
            let before = db.used_bytes();
            db.account_all();
            assert_eq!(db.used_bytes(), before);
        }
        run(&s, "DEL h l st");
        run(&s, "PEXPIRE z 1");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(run(&s, "EXISTS z"), Reply::Integer(0));
        assert_eq!(used(&s), 0);
        run(&s, "SET a b");
        run(&s, "FLUSHALL");
        assert_eq!(used(&s), 0);
    }
}
