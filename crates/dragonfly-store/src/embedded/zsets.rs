//! Sorted sets: ZADD ZINCRBY ZSCORE ZRANK ZREVRANK ZCARD ZRANGE ZREVRANGE ZRANGEBYSCORE
//! ZREVRANGEBYSCORE ZREM ZREMRANGEBYSCORE. Ordered by score, then member bytes.

use super::HashMap;
use std::collections::BTreeSet;

use super::{parse_f64, parse_i64, reply_double, upper, Db, Value};
use crate::Reply;

/// A score with a total order (NaN never gets in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Score {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
/// A sorted set: members by score, then by member.
pub struct ZSet {
    scores: HashMap<Vec<u8>, f64>,
    order: BTreeSet<(Score, Vec<u8>)>,
}

impl ZSet {
    /// Every member, in no order.
    pub(crate) fn members(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.scores.keys()
    }

    /// Members.
    pub fn len(&self) -> usize {
        self.scores.len()
    }
    /// No member.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
    /// A member's score.
    pub fn score(&self, m: &[u8]) -> Option<f64> {
        self.scores.get(m).copied()
    }
    /// Set a member's score; true if the member is new.
    pub fn insert(&mut self, m: &[u8], s: f64) -> bool {
        // -0.0 and 0.0 are one score in Redis
        let s = if s == 0.0 { 0.0 } else { s };
        let new = match self.scores.insert(m.to_vec(), s) {
            Some(old) => {
                self.order.remove(&(Score(old), m.to_vec()));
                false
            }
            None => true,
        };
        self.order.insert((Score(s), m.to_vec()));
        new
    }
    /// Remove a member; whether it was there.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self.scores.remove(m) {
            Some(s) => {
                self.order.remove(&(Score(s), m.to_vec()));
                true
            }
            None => false,
        }
    }
    /// Members and scores in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.order.iter().map(|(s, m)| (m.as_slice(), s.0))
    }
    /// A member's 0-based rank.
    pub fn rank(&self, m: &[u8]) -> Option<usize> {
        let s = self.scores.get(m)?;
        Some(self.order.range(..(Score(*s), m.to_vec())).count())
    }
}

fn as_zset(v: &mut Value) -> Option<&mut ZSet> {
    match v {
        Value::ZSet(z) => Some(z),
        _ => None,
    }
}

/// A score range bound: value and whether it is exclusive.
fn parse_bound(b: &[u8]) -> Option<(f64, bool)> {
    match b.strip_prefix(b"(") {
        Some(rest) => parse_f64(rest).map(|v| (v, true)),
        None => parse_f64(b).map(|v| (v, false)),
    }
}

fn in_range(s: f64, min: (f64, bool), max: (f64, bool)) -> bool {
    (if min.1 { s > min.0 } else { s >= min.0 }) && (if max.1 { s < max.0 } else { s <= max.0 })
}

fn members(items: Vec<(&[u8], f64)>, withscores: bool) -> Reply {
    let mut out = Vec::with_capacity(items.len() * (1 + withscores as usize));
    for (m, s) in items {
        out.push(Reply::bulk(m.to_vec()));
        if withscores {
            out.push(reply_double(s));
        }
    }
    Reply::Array(out)
}

impl Db {
    fn zset(&mut self, key: &[u8], create: bool) -> Result<Option<&mut ZSet>, Reply> {
        let make: Option<fn() -> Value> = if create {
            Some(|| Value::ZSet(ZSet::default()))
        } else {
            None
        };
        self.typed(key, make, as_zset)
    }

    pub(super) fn zadd(&mut self, a: &[Vec<u8>]) -> Reply {
        let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
            (false, false, false, false, false, false);
        let mut i = 2;
        while i < a.len() {
            match upper(&a[i]).as_str() {
                "NX" => nx = true,
                "XX" => xx = true,
                "GT" => gt = true,
                "LT" => lt = true,
                "CH" => ch = true,
                "INCR" => incr = true,
                _ => break,
            }
            i += 1;
        }
        let pairs = &a[i..];
        if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
            return Reply::err("ERR syntax error");
        }
        if nx && xx {
            return Reply::err("ERR XX and NX options at the same time are not compatible");
        }
        if ((gt || lt) && nx) || (gt && lt) {
            return Reply::err("ERR GT, LT, and/or NX options at the same time are not compatible");
        }
        if incr && pairs.len() > 2 {
            return Reply::err("ERR INCR option supports a single increment-element pair");
        }
        let mut parsed = Vec::with_capacity(pairs.len() / 2);
        for p in pairs.chunks(2) {
            match parse_f64(&p[0]) {
                Some(s) => parsed.push((s, &p[1])),
                None => return Reply::err("ERR value is not a valid float"),
            }
        }
        let z = match self.zset(&a[1], !xx) {
            Ok(Some(z)) => z,
            Ok(None) => return if incr { Reply::Nil } else { Reply::Integer(0) },
            Err(r) => return r,
        };
        let (mut added, mut changed) = (0, 0);
        let mut last = None;
        for (s, m) in parsed {
            let old = z.score(m);
            let new = if incr { old.unwrap_or(0.0) + s } else { s };
            if new.is_nan() {
                return Reply::err("ERR resulting score is not a number (NaN)");
            }
            let skip = match old {
                Some(o) => nx || (gt && new <= o) || (lt && new >= o),
                None => xx,
            };
            if skip {
                last = None;
                continue;
            }
            if old.is_none() {
                added += 1;
            } else if old != Some(new) {
                changed += 1;
            }
            z.insert(m, new);
            last = Some(new);
        }
        self.drop_if_empty(&a[1]);
        if incr {
            return last.map_or(Reply::Nil, reply_double);
        }
        Reply::Integer(if ch { added + changed } else { added })
    }

    pub(super) fn zincrby(&mut self, a: &[Vec<u8>]) -> Reply {
        let Some(by) = parse_f64(&a[2]) else {
            return Reply::err("ERR value is not a valid float");
        };
        let z = match self.zset(&a[1], true) {
            Ok(z) => z.expect("created"),
            Err(r) => return r,
        };
        let new = z.score(&a[3]).unwrap_or(0.0) + by;
        if new.is_nan() {
            self.drop_if_empty(&a[1]);
            return Reply::err("ERR resulting score is not a number (NaN)");
        }
        z.insert(&a[3], new);
        reply_double(new)
    }

    pub(super) fn zscore(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.zset(&a[1], false) {
            Ok(z) => z
                .and_then(|z| z.score(&a[2]))
                .map_or(Reply::Nil, reply_double),
            Err(r) => r,
        }
    }

    pub(super) fn zrank(&mut self, a: &[Vec<u8>]) -> Reply {
        let rev = upper(&a[0]) == "ZREVRANK";
        match self.zset(&a[1], false) {
            Ok(Some(z)) => match z.rank(&a[2]) {
                Some(r) => Reply::Integer(if rev { z.len() - 1 - r } else { r } as i64),
                None => Reply::Nil,
            },
            Ok(None) => Reply::Nil,
            Err(r) => r,
        }
    }

    pub(super) fn zcard(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.zset(&a[1], false) {
            Ok(z) => Reply::Integer(z.map_or(0, |z| z.len()) as i64),
            Err(r) => r,
        }
    }

    /// ZRANGE (by index, or BYSCORE, REV, LIMIT, WITHSCORES), ZREVRANGE, ZRANGEBYSCORE,
    /// ZREVRANGEBYSCORE.
    pub(super) fn zrange(&mut self, a: &[Vec<u8>]) -> Reply {
        let cmd = upper(&a[0]);
        let mut rev = cmd.starts_with("ZREV");
        let mut byscore = cmd.ends_with("BYSCORE");
        let (mut withscores, mut limit) = (false, None::<(i64, i64)>);
        let mut i = 4;
        while i < a.len() {
            match upper(&a[i]).as_str() {
                "WITHSCORES" => withscores = true,
                "BYSCORE" if cmd == "ZRANGE" => byscore = true,
                "REV" if cmd == "ZRANGE" => rev = true,
                "LIMIT" if i + 2 < a.len() && cmd != "ZREVRANGE" => {
                    match (parse_i64(&a[i + 1]), parse_i64(&a[i + 2])) {
                        (Some(o), Some(c)) => limit = Some((o, c)),
                        _ => return Reply::not_integer(),
                    }
                    i += 2;
                }
                _ => return Reply::err("ERR syntax error"),
            }
            i += 1;
        }
        if limit.is_some() && !byscore {
            return Reply::err(
                "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
            );
        }
        let (lo, hi) = if rev && byscore {
            (&a[3], &a[2]) // reversed score ranges are given max first
        } else {
            (&a[2], &a[3])
        };
        if byscore {
            let (Some(min), Some(max)) = (parse_bound(lo), parse_bound(hi)) else {
                return Reply::err("ERR min or max is not a float");
            };
            let z = match self.zset(&a[1], false) {
                Ok(Some(z)) => z,
                Ok(None) => return Reply::Array(vec![]),
                Err(r) => return r,
            };
            let it: Box<dyn Iterator<Item = (&[u8], f64)>> = if rev {
                Box::new(z.iter().rev())
            } else {
                Box::new(z.iter())
            };
            let mut items: Vec<(&[u8], f64)> = it.filter(|(_, s)| in_range(*s, min, max)).collect();
            if let Some((off, count)) = limit {
                if off < 0 {
                    items.clear();
                } else {
                    items = items.into_iter().skip(off as usize).collect();
                    if count >= 0 {
                        items.truncate(count as usize);
                    }
                }
            }
            return members(items, withscores);
        }
        let (Some(start), Some(stop)) = (parse_i64(lo), parse_i64(hi)) else {
            return Reply::not_integer();
        };
        let z = match self.zset(&a[1], false) {
            Ok(Some(z)) => z,
            Ok(None) => return Reply::Array(vec![]),
            Err(r) => return r,
        };
        let Some((s, e)) = super::index_range(start, stop, z.len()) else {
            return Reply::Array(vec![]);
        };
        let items: Vec<(&[u8], f64)> = if rev {
            z.iter().rev().skip(s).take(e - s).collect()
        } else {
            z.iter().skip(s).take(e - s).collect()
        };
        members(items, withscores)
    }

    pub(super) fn zrem(&mut self, a: &[Vec<u8>]) -> Reply {
        let n = match self.zset(&a[1], false) {
            Ok(Some(z)) => a[2..].iter().filter(|m| z.remove(m)).count(),
            Ok(None) => 0,
            Err(r) => return r,
        };
        self.drop_if_empty(&a[1]);
        Reply::Integer(n as i64)
    }

    pub(super) fn zremrangebyscore(&mut self, a: &[Vec<u8>]) -> Reply {
        let (Some(min), Some(max)) = (parse_bound(&a[2]), parse_bound(&a[3])) else {
            return Reply::err("ERR min or max is not a float");
        };
        let n = match self.zset(&a[1], false) {
            Ok(Some(z)) => {
                let dead: Vec<Vec<u8>> = z
                    .iter()
                    .filter(|(_, s)| in_range(*s, min, max))
                    .map(|(m, _)| m.to_vec())
                    .collect();
                for m in &dead {
                    z.remove(m);
                }
                dead.len()
            }
            Ok(None) => 0,
            Err(r) => return r,
        };
        self.drop_if_empty(&a[1]);
        Reply::Integer(n as i64)
    }
}
