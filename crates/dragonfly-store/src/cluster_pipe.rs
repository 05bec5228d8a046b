//! Pipelining on a Redis Cluster: appended commands (`append_command`, the scheduler's
//! submissions) go out per node — each node gets its commands in one write, replies are read
//! per node in order and put back in the order the commands were given.
//!
//! Routing: a command's node is the master that holds the slot of its first argument (the
//! key; a `{hash tag}` counts as Redis defines it), from a slot map read with
//! `CLUSTER SLOTS` and read again after a `MOVED`. Commands that are not one key's — keyless
//! ones and those the cluster client splits over nodes (`MGET`, `DEL` of several keys, ...) —
//! are left to the `redis` crate's cluster connection, one at a time, as before.
//!
//! Guarantees: a command is sent once. A `MOVED` or `ASK` reply means the node did not run
//! it, so such a command is sent again, alone, through the cluster connection (which follows
//! the redirection); every other reply, error replies included, is the command's. A node
//! whose connection fails fails the commands it had not answered (they are not sent again:
//! the node may have run them), like a lost connection to one server.
//!
//! Cost: one write and one read loop per node per batch instead of one round trip per command.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;

use crate::resp::Resp;
use crate::Reply;

/// The 16384 slots, by range, to the master that holds them.
#[derive(Debug, Default)]
pub(crate) struct SlotMap {
    ranges: Vec<(u16, u16, (String, u16))>,
}

impl SlotMap {
    /// From a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id], replicas...], ...]`.
    pub fn parse(v: &Value) -> Option<SlotMap> {
        let Value::Array(items) = v else {
            return None;
        };
        let mut ranges = Vec::new();
        for item in items {
            let Value::Array(f) = item else { continue };
            let (Some(Value::Int(a)), Some(Value::Int(b)), Some(Value::Array(m))) =
                (f.first(), f.get(1), f.get(2))
            else {
                continue;
            };
            let host = match m.first() {
                Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                Some(Value::SimpleString(h)) => h.clone(),
                _ => continue,
            };
            let Some(Value::Int(port)) = m.get(1) else {
                continue;
            };
            ranges.push((*a as u16, *b as u16, (host, *port as u16)));
        }
        ranges.sort();
        (!ranges.is_empty()).then_some(SlotMap { ranges })
    }

    fn node(&self, slot: u16) -> Option<&(String, u16)> {
        let i = self.ranges.partition_point(|r| r.1 < slot);
        self.ranges
            .get(i)
            .filter(|r| r.0 <= slot && slot <= r.1)
            .map(|r| &r.2)
    }
}

/// The slot of `key`: CRC16 (XMODEM) of the key, or of its `{hash tag}` if it has a non-empty
/// one, modulo 16384.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&c| c == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % 16384
}

/// Whether a command (its name) is one key's, so it can go to its slot's node in a pipeline.
pub(crate) fn one_key(args: &[Vec<u8>]) -> bool {
    const NOT: &[&[u8]] = &[
        b"MGET",
        b"MSET",
        b"MSETNX",
        b"DEL",
        b"UNLINK",
        b"EXISTS",
        b"TOUCH",
        b"WATCH",
        b"UNWATCH",
        b"SCAN",
        b"KEYS",
        b"FLUSHALL",
        b"FLUSHDB",
        b"DBSIZE",
        b"PING",
        b"ECHO",
        b"INFO",
        b"SCRIPT",
        b"FUNCTION",
        b"CLUSTER",
        b"CONFIG",
        b"MULTI",
        b"EXEC",
        b"DISCARD",
        b"EVAL",
        b"EVALSHA",
        b"FCALL",
        b"RANDOMKEY",
        b"TIME",
        b"CLIENT",
        b"COMMAND",
        b"MEMORY",
        b"OBJECT",
        b"SELECT",
        b"WAIT",
        b"PUBLISH",
        b"SUBSCRIBE",
    ];
    match args.first() {
        Some(name) if args.len() >= 2 => !NOT.iter().any(|n| name.eq_ignore_ascii_case(n)),
        _ => false,
    }
}

/// Per-node connections and the slot map.
#[derive(Default)]
pub(crate) struct Pipes {
    pub map: Option<SlotMap>,
    conns: HashMap<(String, u16), Resp>,
}

/// What became of one command of a batch.
pub(crate) enum Outcome {
    /// Its reply.
    Reply(Reply),
    /// Not sent here (keyless, several keys, no map): the cluster connection runs it.
    Elsewhere,
    /// The node did not run it (MOVED, ASK): the cluster connection runs it.
    Redirected,
}

impl Pipes {
    /// Run `cmds` (each packed, with its key's slot if it is one key's: [`one_key`]) per
    /// node; one outcome per command.
    pub fn run(
        &mut self,
        cmds: &[(&[u8], Option<u16>)],
        timeout: Option<Duration>,
        spin: Duration,
        limits: crate::resp::ReplyLimits,
    ) -> Vec<Outcome> {
        let mut out: Vec<Outcome> = cmds.iter().map(|_| Outcome::Elsewhere).collect();
        let Some(map) = &self.map else {
            return out;
        };
        // group by node, keeping each node's commands in order
        let mut groups: Vec<((String, u16), Vec<usize>)> = Vec::new();
        for (i, (_, slot)) in cmds.iter().enumerate() {
            let Some(node) = slot.and_then(|s| map.node(s)) else {
                continue;
            };
            match groups.iter_mut().find(|g| &g.0 == node) {
                Some(g) => g.1.push(i),
                None => groups.push((node.clone(), vec![i])),
            }
        }
        for (node, idx) in groups {
            let mut packed = Vec::new();
            for &i in &idx {
                packed.extend_from_slice(cmds[i].0);
            }
            let conn = match self.conns.entry(node.clone()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    match Resp::tcp(&node.0, node.1, Duration::from_secs(2)).and_then(|mut c| {
                        c.set_timeouts(timeout, timeout)?;
                        c.set_spin(spin);
                        c.set_limits(limits);
                        Ok(c)
                    }) {
                        Ok(c) => e.insert(c),
                        // not reached: leave them to the cluster connection (nothing was sent)
                        Err(_) => continue,
                    }
                }
            };
            if let Err(e) = conn.send(&packed) {
                // a failed write may have sent part of it: no command of it is sent again
                for &i in &idx {
                    out[i] = Outcome::Reply(lost(&node, &e.to_string()));
                }
                self.conns.remove(&node);
                continue;
            }
            let mut failed: Option<String> = None;
            for &i in &idx {
                if let Some(why) = &failed {
                    out[i] = Outcome::Reply(lost(&node, why));
                    continue;
                }
                match conn.recv() {
                    Ok(Value::ServerError(e)) if matches!(e.code(), "MOVED" | "ASK") => {
                        if e.code() == "MOVED" {
                            self.map = None;
                        }
                        out[i] = Outcome::Redirected;
                    }
                    Ok(v) => out[i] = Outcome::Reply(crate::redis_backend::from_value(v)),
                    Err(e) => {
                        let why = e.to_string();
                        out[i] = Outcome::Reply(lost(&node, &why));
                        failed = Some(why);
                    }
                }
            }
            if failed.is_some() {
                self.conns.remove(&node);
            }
            if self.map.is_none() {
                // MOVED: the rest of the batch follows the cluster connection this time
                break;
            }
        }
        out
    }
}

fn lost(node: &(String, u16), why: &str) -> Reply {
    Reply::err(format!(
        "ERR dragonfly-mle: connection to Redis Cluster node {}:{} lost: {why}",
        node.0, node.1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_s() {
        // values from the Redis Cluster specification and `CLUSTER KEYSLOT`
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"a"), 15495);
        assert_eq!(slot(b"b"), 3300);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"), "an empty tag is no tag");
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn only_one_key_commands_are_pipelined_per_node() {
        let c = |w: &str| -> Vec<Vec<u8>> { w.split(' ').map(|x| x.as_bytes().to_vec()).collect() };
        assert!(one_key(&c("INCR k")));
        assert!(one_key(&c("hset h f v")));
        assert!(!one_key(&c("MGET a b")));
        assert!(!one_key(&c("del a")));
        assert!(!one_key(&c("PING")));
        assert!(!one_key(&c("ECHO hi")));
    }
}
