//! Hashes: HSET HMSET HSETNX HGET HMGET HGETALL HINCRBY HINCRBYFLOAT HDEL HLEN HEXISTS HKEYS
//! HVALS.

use super::HashMap;

use super::{human_double, parse_f64, parse_i64, upper, Db, Value};
use crate::Reply;

type Hash = HashMap<Vec<u8>, Vec<u8>>;

fn as_hash(v: &mut Value) -> Option<&mut Hash> {
    match v {
        Value::Hash(h) => Some(h),
        _ => None,
    }
}

fn new_hash() -> Value {
    Value::Hash(HashMap::default())
}

impl Db {
    fn hash(&mut self, key: &[u8], create: bool) -> Result<Option<&mut Hash>, Reply> {
        self.typed(key, if create { Some(new_hash) } else { None }, as_hash)
    }

    pub(super) fn hset(&mut self, a: &[Vec<u8>]) -> Reply {
        if !a.len().is_multiple_of(2) {
            return Reply::arity(&upper(&a[0]));
        }
        let h = match self.hash(&a[1], true) {
            Ok(h) => h.expect("created"),
            Err(r) => return r,
        };
        let added = a[2..]
            .chunks(2)
            .filter(|kv| h.insert(kv[0].clone(), kv[1].clone()).is_none())
            .count();
        if upper(&a[0]) == "HMSET" {
            Reply::ok()
        } else {
            Reply::Integer(added as i64)
        }
    }

    pub(super) fn hsetnx(&mut self, a: &[Vec<u8>]) -> Reply {
        let h = match self.hash(&a[1], true) {
            Ok(h) => h.expect("created"),
            Err(r) => return r,
        };
        if h.contains_key(&a[2]) {
            return Reply::Integer(0);
        }
        h.insert(a[2].clone(), a[3].clone());
        Reply::Integer(1)
    }

    pub(super) fn hget(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.hash(&a[1], false) {
            Ok(Some(h)) => h.get(&a[2]).map_or(Reply::Nil, |v| Reply::bulk(v.clone())),
            Ok(None) => Reply::Nil,
            Err(r) => r,
        }
    }

    pub(super) fn hmget(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.hash(&a[1], false) {
            Ok(h) => Reply::Array(
                a[2..]
                    .iter()
                    .map(|f| {
                        h.as_ref()
                            .and_then(|h| h.get(f))
                            .map_or(Reply::Nil, |v| Reply::bulk(v.clone()))
                    })
                    .collect(),
            ),
            Err(r) => r,
        }
    }

    fn hash_items(&mut self, a: &[Vec<u8>], keys: bool, vals: bool) -> Reply {
        match self.hash(&a[1], false) {
            Ok(Some(h)) => {
                let mut items: Vec<(&Vec<u8>, &Vec<u8>)> = h.iter().collect();
                items.sort();
                let mut out = Vec::new();
                for (k, v) in items {
                    if keys {
                        out.push(Reply::bulk(k.clone()));
                    }
                    if vals {
                        out.push(Reply::bulk(v.clone()));
                    }
                }
                Reply::Array(out)
            }
            Ok(None) => Reply::Array(vec![]),
            Err(r) => r,
        }
    }

    pub(super) fn hgetall(&mut self, a: &[Vec<u8>]) -> Reply {
        self.hash_items(a, true, true)
    }

    pub(super) fn hkeys(&mut self, a: &[Vec<u8>]) -> Reply {
        self.hash_items(a, true, false)
    }

    pub(super) fn hvals(&mut self, a: &[Vec<u8>]) -> Reply {
        self.hash_items(a, false, true)
    }

    pub(super) fn hincrby(&mut self, a: &[Vec<u8>]) -> Reply {
        let Some(by) = parse_i64(&a[3]) else {
            return Reply::not_integer();
        };
        let h = match self.hash(&a[1], true) {
            Ok(h) => h.expect("created"),
            Err(r) => return r,
        };
        let cur = match h.get(&a[2]) {
            None => 0,
            Some(v) => match parse_i64(v) {
                Some(n) => n,
                None => return Reply::err("ERR hash value is not an integer"),
            },
        };
        let Some(n) = cur.checked_add(by) else {
            return Reply::err("ERR increment or decrement would overflow");
        };
        h.insert(a[2].clone(), n.to_string().into_bytes());
        Reply::Integer(n)
    }

    pub(super) fn hincrbyfloat(&mut self, a: &[Vec<u8>]) -> Reply {
        let Some(by) = parse_f64(&a[3]) else {
            return Reply::err("ERR value is not a valid float");
        };
        let h = match self.hash(&a[1], true) {
            Ok(h) => h.expect("created"),
            Err(r) => return r,
        };
        let cur = match h.get(&a[2]) {
            None => 0.0,
            Some(v) => match parse_f64(v) {
                Some(n) => n,
                None => return Reply::err("ERR hash value is not a float"),
            },
        };
        let n = cur + by;
        if !n.is_finite() {
            return Reply::err("ERR increment would produce NaN or Infinity");
        }
        let text = human_double(n);
        h.insert(a[2].clone(), text.clone());
        Reply::bulk(text)
    }

    pub(super) fn hdel(&mut self, a: &[Vec<u8>]) -> Reply {
        let n = match self.hash(&a[1], false) {
            Ok(Some(h)) => a[2..].iter().filter(|f| h.remove(*f).is_some()).count(),
            Ok(None) => 0,
            Err(r) => return r,
        };
        self.drop_if_empty(&a[1]);
        Reply::Integer(n as i64)
    }

    pub(super) fn hlen(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.hash(&a[1], false) {
            Ok(h) => Reply::Integer(h.map_or(0, |h| h.len()) as i64),
            Err(r) => r,
        }
    }

    pub(super) fn hexists(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.hash(&a[1], false) {
            Ok(h) => Reply::Integer(h.is_some_and(|h| h.contains_key(&a[2])) as i64),
            Err(r) => r,
        }
    }
}
