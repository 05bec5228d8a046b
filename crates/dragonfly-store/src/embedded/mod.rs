//! The embedded store: an in-process keyspace shared by every Lua runtime of the engine,
//! answering the Redis commands analyzers use with Redis 7's replies and error texts.
//!
//! Types: strings (and counters), hashes, sets, sorted sets, lists, HyperLogLogs (reported as
//! `string` by TYPE, as in Redis). Keys expire lazily on access and actively: at most every
//! 100 ms a command first samples keys with a TTL (20 at a time, again while more than a
//! quarter of a sample had expired, at most 1,000 keys), as Redis's active expiry does, so its
//! cost does not grow with the number of keys that have a TTL. [`EmbeddedStore::save`]/[`EmbeddedStore::load`] keep a snapshot file so
//! counters survive a restart.
//!
//! Differences from Redis a script could notice: the order of KEYS, SCAN, SMEMBERS, HKEYS,
//! HVALS and HGETALL (Redis's is a hash-table order too, just a different one); GET on a
//! HyperLogLog key does not return Redis's binary encoding.

mod glob;
mod hashes;
mod hll;
mod keys;
mod lists;
pub mod memory;
mod sets;
mod snapshot;
mod strings;
mod zsets;

use dragonfly_event::sync::Locked;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Connection, Reply};

pub use hll::Hll;
pub use zsets::ZSet;

/// A value in the keyspace.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(Vec<u8>),
    /// A hash.
    Hash(HashMap<Vec<u8>, Vec<u8>>),
    /// A set.
    Set(HashSet<Vec<u8>>),
    /// A sorted set.
    ZSet(ZSet),
    /// A list.
    List(VecDeque<Vec<u8>>),
    /// A HyperLogLog.
    Hll(Box<Hll>),
    /// A RedisML model (ML.* commands).
    Model(Box<dragonfly_models::Model>),
}

impl Value {
    /// What `TYPE` replies.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) | Value::Hll(_) => "string",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::List(_) => "list",
            Value::Model(m) => m.type_name(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
/// A key's value and its expiry.
pub struct Entry {
    /// The value.
    pub value: Value,
    /// Absolute expiry, milliseconds since the epoch.
    pub expire_at: Option<u64>,
    /// Its memory estimate and last use ([`memory`]).
    pub(crate) meta: memory::Meta,
}

impl Entry {
    /// A value without expiry.
    pub fn new(value: Value, expire_at: Option<u64>) -> Self {
        Entry {
            value,
            expire_at,
            meta: memory::Meta::default(),
        }
    }
}

/// Milliseconds since the epoch (expiry times).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The hasher of every map the store keeps: ahash, keyed at random per process, so that
/// keys an attacker chooses (they come from events) cannot be made to collide, as with the
/// standard SipHash, at a fraction of its cost.
pub(crate) type Hasher = ahash::RandomState;
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, Hasher>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, Hasher>;

/// The keyspace. All commands run with the store's lock held, so each is atomic.
#[derive(Debug, Default)]
pub struct Db {
    pub(crate) map: indexmap::IndexMap<Vec<u8>, Entry, Hasher>,
    /// The keys with a TTL (indexed: the active expiry samples it).
    expiring: indexmap::IndexSet<Vec<u8>, Hasher>,
    last_sweep: u64,
    /// Bytes (estimated) the keys hold ([`memory`]).
    used: usize,
    limit: memory::Limit,
    /// Commands run (the clock of last uses).
    clock: u64,
    rng: u64,
    evicted: u64,
    oom: u64,
}

/// A store shared by all connections made from it.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedStore {
    db: Arc<Mutex<Db>>,
}

impl EmbeddedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store limited to `limit` ([`memory`]).
    pub fn with_limit(limit: memory::Limit) -> Self {
        let s = Self::default();
        s.lock().set_limit(limit);
        s
    }

    /// Keys, bytes held (estimated), keys evicted and commands refused for memory so far.
    /// Cheap enough for every stats request (the live page asks each second): expired keys
    /// are swept as a command would (at most 1000), not all of them under the store's lock.
    pub fn memory(&self) -> (usize, usize, u64, u64) {
        let mut db = self.lock();
        db.sweep(false);
        let (evicted, oom) = db.memory_counters();
        (db.map.len(), db.used_bytes(), evicted, oom)
    }

    /// A connection for one runtime (`hiredis.connect()`).
    pub fn connect(&self) -> EmbeddedConnection {
        EmbeddedConnection {
            db: self.db.clone(),
            pending: VecDeque::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.locked()
    }

    /// Run one command outside any connection (tests, tools).
    pub fn execute(&self, args: &[Vec<u8>]) -> Reply {
        self.lock().execute(args)
    }

    /// Write a snapshot of every live key to `path` (atomically: a temporary file, renamed).
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<usize> {
        let bytes = {
            let mut db = self.lock();
            db.sweep(true);
            snapshot::encode(&db)
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // never through a link planted at the temporary's name (dragonfly_event::fsx)
        dragonfly_event::fsx::write_atomic(path, &bytes.0, 0o600, true)?;
        Ok(bytes.1)
    }

    /// Load a snapshot written by [`EmbeddedStore::save`], replacing the keyspace; expired
    /// keys are dropped. A missing file is an empty store.
    pub fn load(&self, path: &std::path::Path) -> std::io::Result<usize> {
        // a regular file (not a link, a FIFO or a device), read whole
        let bytes = match dragonfly_event::fsx::read_capped(path, u64::MAX) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let db = snapshot::decode(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        let n = db.map.len();
        let mut cur = self.lock();
        let limit = cur.limit;
        *cur = db;
        cur.set_limit(limit);
        cur.account_all();
        Ok(n)
    }
}

/// One client of the embedded store: runs commands, holds pipelined replies.
pub struct EmbeddedConnection {
    db: Arc<Mutex<Db>>,
    pending: VecDeque<Reply>,
}

impl Connection for EmbeddedConnection {
    fn command(&mut self, args: &[Vec<u8>]) -> Reply {
        let mut db = self.db.locked();
        db.execute(args)
    }

    fn append_command(&mut self, args: Vec<Vec<u8>>) {
        let r = self.command(&args);
        self.pending.push_back(r);
    }

    fn get_reply(&mut self) -> Option<Reply> {
        self.pending.pop_front()
    }
}

/// Command table: name and Redis arity (positive: exact, negative: at least, counting the
/// command name).
type Handler = fn(&mut Db, &[Vec<u8>]) -> Reply;

/// A command's entry: Redis arity, handler, and how it changes the store's size
/// ([`memory::grows`], [`memory::shrinks`]), worked out once.
#[derive(Clone, Copy)]
struct Command {
    arity: i32,
    handler: Handler,
    grows: bool,
    shrinks: bool,
}

fn table() -> &'static HashMap<&'static str, Command> {
    static T: std::sync::OnceLock<HashMap<&'static str, Command>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let list: &[(&str, i32, Handler)] = &[
            ("PING", -1, Db::ping),
            ("ECHO", 2, |_, a| Reply::bulk(a[1].clone())),
            ("GET", 2, Db::get),
            ("SET", -3, Db::set),
            ("SETEX", 4, Db::setex),
            ("PSETEX", 4, Db::setex),
            ("SETNX", 3, Db::setnx),
            ("MGET", -2, Db::mget),
            ("INCR", 2, Db::incr),
            ("DECR", 2, Db::incr),
            ("INCRBY", 3, Db::incr),
            ("DECRBY", 3, Db::incr),
            ("INCRBYFLOAT", 3, Db::incrbyfloat),
            ("APPEND", 3, Db::append),
            ("STRLEN", 2, Db::strlen),
            ("DEL", -2, Db::del),
            ("UNLINK", -2, Db::del),
            ("EXISTS", -2, Db::exists),
            ("EXPIRE", -3, Db::expire),
            ("PEXPIRE", -3, Db::expire),
            ("TTL", 2, Db::ttl),
            ("PTTL", 2, Db::ttl),
            ("PERSIST", 2, Db::persist),
            ("TYPE", 2, Db::type_cmd),
            ("KEYS", 2, Db::keys),
            ("SCAN", -2, Db::scan),
            ("FLUSHDB", -1, Db::flush),
            ("FLUSHALL", -1, Db::flush),
            ("DBSIZE", 1, Db::dbsize),
            ("HSET", -4, Db::hset),
            ("HMSET", -4, Db::hset),
            ("HSETNX", 4, Db::hsetnx),
            ("HGET", 3, Db::hget),
            ("HMGET", -3, Db::hmget),
            ("HGETALL", 2, Db::hgetall),
            ("HINCRBY", 4, Db::hincrby),
            ("HINCRBYFLOAT", 4, Db::hincrbyfloat),
            ("HDEL", -3, Db::hdel),
            ("HLEN", 2, Db::hlen),
            ("HEXISTS", 3, Db::hexists),
            ("HKEYS", 2, Db::hkeys),
            ("HVALS", 2, Db::hvals),
            ("SADD", -3, Db::sadd),
            ("SREM", -3, Db::srem),
            ("SISMEMBER", 3, Db::sismember),
            ("SCARD", 2, Db::scard),
            ("SMEMBERS", 2, Db::smembers),
            ("ZADD", -4, Db::zadd),
            ("ZINCRBY", 4, Db::zincrby),
            ("ZSCORE", 3, Db::zscore),
            ("ZRANK", 3, Db::zrank),
            ("ZREVRANK", 3, Db::zrank),
            ("ZCARD", 2, Db::zcard),
            ("ZRANGE", -4, Db::zrange),
            ("ZREVRANGE", -4, Db::zrange),
            ("ZRANGEBYSCORE", -4, Db::zrange),
            ("ZREVRANGEBYSCORE", -4, Db::zrange),
            ("ZREM", -3, Db::zrem),
            ("ZREMRANGEBYSCORE", 4, Db::zremrangebyscore),
            ("LPUSH", -3, Db::push),
            ("RPUSH", -3, Db::push),
            ("LPOP", -2, Db::pop),
            ("RPOP", -2, Db::pop),
            ("LRANGE", 4, Db::lrange),
            ("LLEN", 2, Db::llen),
            ("LTRIM", 4, Db::ltrim),
            ("PFADD", -2, Db::pfadd),
            ("PFCOUNT", -2, Db::pfcount),
            ("PFMERGE", -2, Db::pfmerge),
        ];
        list.iter()
            .map(|&(n, arity, handler)| {
                let c = Command {
                    arity,
                    handler,
                    grows: memory::grows(n),
                    shrinks: memory::shrinks(n),
                };
                (n, c)
            })
            .collect()
    })
}

/// The command name in upper case (ASCII).
pub(crate) fn upper(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_uppercase()
}

pub(crate) fn parse_i64(b: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(b).ok()?;
    // Redis rejects leading '+', spaces and leading zeros ("01"); Rust's parse accepts '+'.
    if s.starts_with('+') || (s.len() > 1 && s.starts_with('0')) || s.starts_with("-0") {
        return None;
    }
    s.parse().ok()
}

/// Parse a double the way Redis does (`inf`, `-inf`, `+inf` allowed; NaN and junk rejected).
pub(crate) fn parse_f64(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.trim() != s {
        return None;
    }
    let v: f64 = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => s.parse().ok()?,
    };
    if v.is_nan() {
        None
    } else {
        Some(v)
    }
}

/// How Redis prints a double in a reply (RESP2 bulk, `%.17g`).
pub(crate) fn reply_double(v: f64) -> Reply {
    Reply::bulk(crate::numfmt::fmt_g(v, 17).into_bytes())
}

/// How INCRBYFLOAT/HINCRBYFLOAT print their result: fixed notation, no trailing zeros
/// (Redis prints a long double with `%.17Lf`; 15 significant digits reproduce it for the
/// values a double can hold).
pub(crate) fn human_double(v: f64) -> Vec<u8> {
    if v == 0.0 {
        return b"0".to_vec();
    }
    let decimals = (14 - (v.abs().log10().floor() as i32)).clamp(0, 17) as usize;
    let s = format!("{:.*}", decimals, v);
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        b"0".to_vec()
    } else {
        s.into_bytes()
    }
}

fn ml_reply(r: dragonfly_models::MlReply) -> Reply {
    use dragonfly_models::MlReply;
    match r {
        MlReply::Ok => Reply::ok(),
        MlReply::Double(v) => reply_double(v),
        MlReply::Integer(i) => Reply::Integer(i),
        MlReply::Array(v) => Reply::Array(v.into_iter().map(ml_reply).collect()),
        MlReply::Error(e) => Reply::Error(e),
    }
}

/// Models live in the keyspace beside every other type.
impl dragonfly_models::Keyspace for Db {
    fn kind(&mut self, key: &[u8]) -> dragonfly_models::Kind {
        match self.value(key) {
            None => dragonfly_models::Kind::Missing,
            Some(Value::Model(m)) => dragonfly_models::Kind::of(m),
            Some(_) => dragonfly_models::Kind::Other,
        }
    }
    fn read<R>(&mut self, key: &[u8], f: impl FnOnce(&dragonfly_models::Model) -> R) -> Option<R> {
        match self.value(key) {
            Some(Value::Model(m)) => Some(f(m)),
            _ => None,
        }
    }
    fn put(&mut self, key: &[u8], model: dragonfly_models::Model) {
        // like a module type's set: the key keeps its TTL
        let ttl = self.entry(key).and_then(|e| e.expire_at);
        self.put(key, Value::Model(Box::new(model)));
        self.set_expiry(key, ttl);
    }
    fn delete(&mut self, key: &[u8]) {
        self.remove(key);
    }
}

/// A Redis index range [start, stop] (negative counts from the end) over `len` items, as a
/// half-open range; None when it selects nothing.
pub(crate) fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    if start > stop || start >= len {
        None
    } else {
        Some((start as usize, stop as usize + 1))
    }
}

impl Db {
    /// Run one command (name and arguments) and give its reply.
    pub fn execute(&mut self, args: &[Vec<u8>]) -> Reply {
        let Some(name) = args.first() else {
            return Reply::err("ERR empty command");
        };
        self.clock += 1;
        // the name upper-cased on the stack (every command name is short); a long or
        // non-ASCII one (unknown anyway) on the heap
        let mut buf = [0u8; 32];
        let long;
        let cmd: &str = match buf.get_mut(..name.len()) {
            Some(b) if name.is_ascii() => {
                b.copy_from_slice(name);
                b.make_ascii_uppercase();
                std::str::from_utf8(b).expect("ASCII")
            }
            _ => {
                long = upper(name);
                &long
            }
        };
        // the RedisML commands (all named ML.*) first
        if name.len() > 3
            && name[..3].eq_ignore_ascii_case(b"ML.")
            && dragonfly_models::is_ml_command(name)
        {
            let grows = memory::grows(cmd);
            if grows && !self.make_room() {
                return Reply::err(memory::OOM);
            }
            let r = dragonfly_models::execute(self, args).map(ml_reply);
            if grows {
                for k in [args.get(1), args.last()].into_iter().flatten() {
                    self.account(k);
                }
            }
            if let Some(r) = r {
                return r;
            }
        }
        let Some(&Command {
            arity,
            handler,
            grows,
            shrinks,
        }) = table().get(cmd)
        else {
            let mut msg = format!(
                "ERR unknown command '{}', with args beginning with: ",
                String::from_utf8_lossy(name)
            );
            for a in &args[1..] {
                msg.push_str(&format!("'{}' ", String::from_utf8_lossy(a)));
            }
            return Reply::Error(msg);
        };
        let n = args.len() as i32;
        if (arity > 0 && n != arity) || (arity < 0 && n < -arity) {
            return Reply::arity(cmd);
        }
        let now = now_ms();
        if now >= self.last_sweep + 100 {
            self.last_sweep = now;
            self.sweep(false);
        }
        if grows && !self.make_room() {
            return Reply::err(memory::OOM);
        }
        let r = handler(self, args);
        // the estimate follows what the command wrote (a shrinking one too: LPOP, HDEL...)
        if grows || shrinks {
            if let Some(key) = args.get(1) {
                self.account(key);
            }
        }
        r
    }

    /// Remove expired keys: all of them, or (`all` false) those found by sampling (module
    /// doc: rounds of 20 while more than a quarter of a round had expired, at most 1,000 keys
    /// looked at).
    fn sweep(&mut self, all: bool) {
        if self.expiring.is_empty() {
            return;
        }
        let now = now_ms();
        let expired = |db: &Db, k: &[u8]| {
            db.map
                .get(k)
                .and_then(|e| e.expire_at)
                .is_none_or(|t| t <= now)
        };
        if all {
            let dead: Vec<Vec<u8>> = self
                .expiring
                .iter()
                .filter(|k| expired(self, k))
                .cloned()
                .collect();
            for k in dead {
                self.remove(&k);
            }
            return;
        }
        const ROUND: usize = 20;
        for _ in 0..1000 / ROUND {
            let mut dead = 0;
            for _ in 0..ROUND.min(self.expiring.len()) {
                let i = (self.random() % self.expiring.len() as u64) as usize;
                if expired(self, &self.expiring[i]) {
                    let k = self.expiring[i].clone();
                    self.remove(&k);
                    dead += 1;
                }
            }
            if dead * 4 <= ROUND || self.expiring.is_empty() {
                break;
            }
        }
    }

    /// Drop `key` if it has expired; true if it is (still) there.
    fn live(&mut self, key: &[u8]) -> bool {
        let expired = match self.map.get(key) {
            None => return false,
            Some(e) => e.expire_at.is_some_and(|t| t <= now_ms()),
        };
        if expired {
            self.remove(key);
            return false;
        }
        true
    }

    pub(crate) fn entry(&mut self, key: &[u8]) -> Option<&mut Entry> {
        if self.live(key) {
            let clock = self.clock;
            let e = self.map.get_mut(key)?;
            e.meta.access = clock;
            Some(e)
        } else {
            None
        }
    }

    pub(crate) fn value(&mut self, key: &[u8]) -> Option<&mut Value> {
        self.entry(key).map(|e| &mut e.value)
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.expiring.swap_remove(key);
        let e = self.map.swap_remove(key)?;
        self.used = self.used.saturating_sub(e.meta.cost);
        Some(e)
    }

    /// Remove the key at index `i` of the keyspace (eviction).
    pub(crate) fn remove_at(&mut self, i: usize) {
        if let Some((k, e)) = self.map.swap_remove_index(i) {
            self.expiring.swap_remove(&k);
            self.used = self.used.saturating_sub(e.meta.cost);
        }
    }

    /// Drop every key.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.expiring.clear();
        self.used = 0;
    }

    /// Insert or replace a value, dropping any expiry.
    pub(crate) fn put(&mut self, key: &[u8], value: Value) {
        self.expiring.swap_remove(key);
        let mut e = Entry::new(value, None);
        e.meta = memory::Meta {
            cost: memory::cost(key, &e),
            access: self.clock,
        };
        self.used += e.meta.cost;
        if let Some(old) = self.map.insert(key.to_vec(), e) {
            self.used = self.used.saturating_sub(old.meta.cost);
        }
    }

    pub(crate) fn set_expiry(&mut self, key: &[u8], at: Option<u64>) {
        if let Some(e) = self.map.get_mut(key) {
            e.expire_at = at;
            if at.is_none() {
                self.expiring.swap_remove(key);
            } else if !self.expiring.contains(key) {
                self.expiring.insert(key.to_vec());
            }
        }
    }

    /// The value at `key` if it has the kind `want` picks out; creates it with `make` when
    /// missing and `make` is given. Wrong kind: WRONGTYPE.
    pub(crate) fn typed<T>(
        &mut self,
        key: &[u8],
        make: Option<fn() -> Value>,
        want: fn(&mut Value) -> Option<&mut T>,
    ) -> Result<Option<&mut T>, Reply> {
        if !self.live(key) {
            match make {
                Some(m) => self.put(key, m()),
                None => return Ok(None),
            }
        }
        let v = &mut self.map.get_mut(key).expect("live").value;
        want(v).map(Some).ok_or_else(Reply::wrong_type)
    }

    /// Remove `key` if its collection became empty.
    pub(crate) fn drop_if_empty(&mut self, key: &[u8]) {
        let empty = match self.map.get(key).map(|e| &e.value) {
            Some(Value::Hash(h)) => h.is_empty(),
            Some(Value::Set(s)) => s.is_empty(),
            Some(Value::ZSet(z)) => z.is_empty(),
            Some(Value::List(l)) => l.is_empty(),
            _ => false,
        };
        if empty {
            self.remove(key);
        }
    }

    fn ping(&mut self, a: &[Vec<u8>]) -> Reply {
        match a.len() {
            1 => Reply::Status("PONG".into()),
            2 => Reply::bulk(a[1].clone()),
            _ => Reply::arity("ping"),
        }
    }
}

#[cfg(test)]
mod tests;
