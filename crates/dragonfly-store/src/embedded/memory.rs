//! Memory accounting and eviction for the embedded store, after Redis's `maxmemory`
//! (`engine.store_maxmemory_mb`, `engine.store_maxmemory_policy`).
//!
//! Behaviour: every key carries an estimate of the bytes it holds (key, value, the map's and
//! the allocator's overheads; a collection's from its length and a sample of its first
//! members, as Redis's `MEMORY USAGE` samples), updated after each command that writes it and
//! whenever a key goes away. Before a command that can grow the store (Redis's `denyoom`
//! commands: SET, INCR, HSET, SADD, ZADD, LPUSH, PFADD, the ML.* setters...) runs while the
//! estimate is over the limit, the policy acts: `noeviction` refuses the command with Redis's
//! `OOM command not allowed when used memory > 'maxmemory'.` (reads, deletes and expiries
//! still work); `allkeys-lru`/`volatile-lru` evict the least recently used of 5 sampled keys
//! (all keys, or those with a TTL), `allkeys-random`/`volatile-random` a random one,
//! `volatile-ttl` the one of 5 sampled keys with a TTL that expires soonest — until the
//! estimate is under the limit. With no key left to evict (none with a TTL, for `volatile-*`)
//! the command is refused as with `noeviction`.
//!
//! Cost: one length and a few sampled members per write; an eviction samples 5 keys by index
//! (the keyspace is an `IndexMap`).

use super::{Db, Entry, Value};

/// What to do when the store is over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Refuse commands that could grow the store.
    #[default]
    NoEviction,
    /// Evict the least recently used key.
    AllKeysLru,
    /// Evict the least recently used key with a TTL.
    VolatileLru,
    /// Evict a random key.
    AllKeysRandom,
    /// Evict a random key with a TTL.
    VolatileRandom,
    /// Evict the key with a TTL that expires soonest.
    VolatileTtl,
}

impl Policy {
    /// The names `engine.store_maxmemory_policy` takes (Redis's).
    pub const NAMES: &'static [&'static str] = &[
        "noeviction",
        "allkeys-lru",
        "volatile-lru",
        "allkeys-random",
        "volatile-random",
        "volatile-ttl",
    ];

    /// The policy named `name` (Redis's names).
    pub fn parse(name: &str) -> Option<Policy> {
        Some(match name {
            "noeviction" => Policy::NoEviction,
            "allkeys-lru" => Policy::AllKeysLru,
            "volatile-lru" => Policy::VolatileLru,
            "allkeys-random" => Policy::AllKeysRandom,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            _ => return None,
        })
    }

    fn volatile(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru | Policy::VolatileRandom | Policy::VolatileTtl
        )
    }
}

/// The limit (0 bytes: none) and what to do past it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limit {
    /// Bytes (estimated) the store may hold; 0 = no limit.
    pub max_bytes: usize,
    /// What happens past it.
    pub policy: Policy,
}

/// Redis's reply to a command refused for memory.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Per-key bookkeeping: the estimate counted for the key, and when it was last used (the
/// store's command clock). Not part of the key's content: any two are equal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta {
    pub(crate) cost: usize,
    pub(crate) access: u64,
}

impl PartialEq for Meta {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The map slot, the entry and the allocator's rounding, per key.
const PER_KEY: usize = 64;
/// Per member of a collection, beside the member's bytes.
const PER_MEMBER: usize = 32;
/// Members sampled to estimate a collection's average member.
const SAMPLE: usize = 4;

/// `n` members whose first few are `sample` (their bytes each): `n` times their average.
fn collection(n: usize, sample: impl Iterator<Item = usize>) -> usize {
    let (sum, k) = sample
        .take(SAMPLE)
        .fold((0usize, 0usize), |(s, k), b| (s + b + PER_MEMBER, k + 1));
    sum.checked_div(k).map_or(0, |avg| n.saturating_mul(avg))
}

/// The bytes (estimated) `key` and its entry hold.
pub(crate) fn cost(key: &[u8], e: &Entry) -> usize {
    PER_KEY
        + key.len()
        + match &e.value {
            Value::Str(s) => s.capacity(),
            Value::Hash(h) => collection(h.len(), h.iter().map(|(k, v)| k.len() + v.len())),
            Value::Set(s) => collection(s.len(), s.iter().map(Vec::len)),
            Value::ZSet(z) => collection(z.len(), z.members().map(|m| m.len() + 16)),
            Value::List(l) => collection(l.len(), l.iter().map(Vec::len)),
            Value::Hll(h) => h.memory(),
            Value::Model(m) => dragonfly_models::encode::encode(m).len(),
        }
}

/// Whether a command (upper-case name) can grow the store (Redis's `denyoom` flag).
pub(crate) fn grows(cmd: &str) -> bool {
    const GROWS: &[&str] = &[
        "SET",
        "SETEX",
        "PSETEX",
        "SETNX",
        "INCR",
        "DECR",
        "INCRBY",
        "DECRBY",
        "INCRBYFLOAT",
        "APPEND",
        "HSET",
        "HMSET",
        "HSETNX",
        "HINCRBY",
        "HINCRBYFLOAT",
        "SADD",
        "ZADD",
        "ZINCRBY",
        "LPUSH",
        "RPUSH",
        "PFADD",
        "PFMERGE",
    ];
    GROWS.contains(&cmd)
        || (cmd.starts_with("ML.")
            && !cmd.ends_with(".PREDICT")
            && !cmd.ends_with(".RUN")
            && !cmd.ends_with(".GET"))
}

/// Whether a command (upper-case name) can shrink the key it names (its estimate is counted
/// anew after it; deletions and expiries are counted as keys go).
pub(crate) fn shrinks(cmd: &str) -> bool {
    matches!(
        cmd,
        "LPOP" | "RPOP" | "LTRIM" | "HDEL" | "SREM" | "ZREM" | "ZREMRANGEBYSCORE"
    )
}

impl Db {
    /// Bytes (estimated) the store holds.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    /// Set the limit and its policy.
    pub fn set_limit(&mut self, limit: Limit) {
        self.limit = limit;
    }

    /// Keys evicted, and commands refused for memory, so far.
    pub fn memory_counters(&self) -> (u64, u64) {
        (self.evicted, self.oom)
    }

    /// Count `key`'s estimate anew (after a command wrote it).
    pub(crate) fn account(&mut self, key: &[u8]) {
        if let Some(e) = self.map.get_mut(key) {
            let new = cost(key, e);
            self.used = self.used.saturating_sub(e.meta.cost) + new;
            e.meta.cost = new;
        }
    }

    /// Count every key anew (after a snapshot was loaded).
    pub(crate) fn account_all(&mut self) {
        self.used = 0;
        for (k, e) in self.map.iter_mut() {
            e.meta.cost = cost(k, e);
            self.used += e.meta.cost;
        }
    }

    /// Make room for a command that can grow the store: true if it may run.
    pub(crate) fn make_room(&mut self) -> bool {
        let limit = self.limit;
        if limit.max_bytes == 0 || self.used <= limit.max_bytes {
            return true;
        }
        if limit.policy == Policy::NoEviction {
            self.oom += 1;
            return false;
        }
        while self.used > limit.max_bytes {
            let Some(victim) = self.victim(limit.policy) else {
                self.oom += 1;
                return false;
            };
            self.remove_at(victim);
            self.evicted += 1;
        }
        true
    }

    pub(crate) fn random(&mut self) -> u64 {
        // xorshift64*: sampling, not secrecy
        let mut x = self.rng | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The index of the key the policy evicts next, from a sample of 5 (volatile policies
    /// look at up to 64 keys to find 5 with a TTL).
    fn victim(&mut self, policy: Policy) -> Option<usize> {
        let n = self.map.len();
        if n == 0 {
            return None;
        }
        let mut best: Option<(usize, u64)> = None;
        let (mut found, mut tries) = (0, 0);
        while found < 5 && tries < 64 {
            tries += 1;
            let i = (self.random() % n as u64) as usize;
            let e = &self.map[i];
            if policy.volatile() && e.expire_at.is_none() {
                continue;
            }
            found += 1;
            // lower is evicted first
            let rank = match policy {
                Policy::AllKeysLru | Policy::VolatileLru => e.meta.access,
                Policy::VolatileTtl => e.expire_at.unwrap_or(u64::MAX),
                _ => 0,
            };
            if best.is_none_or(|(_, r)| rank < r) {
                best = Some((i, rank));
            }
            if matches!(policy, Policy::AllKeysRandom | Policy::VolatileRandom) {
                break;
            }
        }
        best.map(|(i, _)| i)
    }
}
