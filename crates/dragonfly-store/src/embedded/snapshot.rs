//! The embedded store's snapshot file: a small length-prefixed binary format.
//!
//! ```text
//! "DFMLE-STORE\x01"  then per key:
//!   u8 type (1 str, 2 hash, 3 set, 4 zset, 5 list, 6 hll, 7 model)  bytes key  i64 expire_at (-1: none)
//!   payload: str: bytes | hash: u64 n, n x (bytes, bytes) | set/list: u64 n, n x bytes |
//!            zset: u64 n, n x (bytes, f64) | hll: 16384 bytes | model: bytes (dragonfly_models::encode)
//! bytes = u64 length + data; numbers little-endian
//! ```

use super::{HashMap, HashSet};
use std::collections::VecDeque;

use super::{now_ms, Db, Entry, Hll, Value, ZSet};

const MAGIC: &[u8] = b"DFMLE-STORE\x01";

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend((b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

/// Encode every key; returns the bytes and the number of keys.
pub fn encode(db: &Db) -> (Vec<u8>, usize) {
    let mut out = MAGIC.to_vec();
    for (k, e) in &db.map {
        let t = match &e.value {
            Value::Str(_) => 1u8,
            Value::Hash(_) => 2,
            Value::Set(_) => 3,
            Value::ZSet(_) => 4,
            Value::List(_) => 5,
            Value::Hll(_) => 6,
            Value::Model(_) => 7,
        };
        out.push(t);
        put_bytes(&mut out, k);
        out.extend(e.expire_at.map_or(-1i64, |t| t as i64).to_le_bytes());
        match &e.value {
            Value::Str(s) => put_bytes(&mut out, s),
            Value::Hash(h) => {
                out.extend((h.len() as u64).to_le_bytes());
                for (f, v) in h {
                    put_bytes(&mut out, f);
                    put_bytes(&mut out, v);
                }
            }
            Value::Set(s) => {
                out.extend((s.len() as u64).to_le_bytes());
                for m in s {
                    put_bytes(&mut out, m);
                }
            }
            Value::List(l) => {
                out.extend((l.len() as u64).to_le_bytes());
                for m in l {
                    put_bytes(&mut out, m);
                }
            }
            Value::ZSet(z) => {
                out.extend((z.len() as u64).to_le_bytes());
                for (m, s) in z.iter() {
                    put_bytes(&mut out, m);
                    out.extend(s.to_le_bytes());
                }
            }
            Value::Hll(h) => out.extend_from_slice(&h.registers()),
            Value::Model(m) => put_bytes(&mut out, &dragonfly_models::encode::encode(m)),
        }
    }
    (out, db.map.len())
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err("snapshot is truncated".into());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u64()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

pub fn decode(bytes: &[u8]) -> Result<Db, String> {
    let mut r = Reader { b: bytes };
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not a dragonfly-mle store snapshot".into());
    }
    let mut db = Db::default();
    let now = now_ms();
    while !r.b.is_empty() {
        let t = r.take(1)?[0];
        let key = r.bytes()?;
        let exp = r.u64()? as i64;
        let value = match t {
            1 => Value::Str(r.bytes()?),
            2 => {
                let n = r.u64()?;
                let mut h = HashMap::default();
                for _ in 0..n {
                    h.insert(r.bytes()?, r.bytes()?);
                }
                Value::Hash(h)
            }
            3 => {
                let n = r.u64()?;
                let mut s = HashSet::default();
                for _ in 0..n {
                    s.insert(r.bytes()?);
                }
                Value::Set(s)
            }
            4 => {
                let n = r.u64()?;
                let mut z = ZSet::default();
                for _ in 0..n {
                    let m = r.bytes()?;
                    let s = f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
                    z.insert(&m, s);
                }
                Value::ZSet(z)
            }
            5 => {
                let n = r.u64()?;
                let mut l = VecDeque::new();
                for _ in 0..n {
                    l.push_back(r.bytes()?);
                }
                Value::List(l)
            }
            6 => Value::Hll(Box::new(Hll::from_registers(
                r.take(super::hll::REGISTERS)?.to_vec(),
            ))),
            7 => Value::Model(Box::new(dragonfly_models::encode::decode(&r.bytes()?)?)),
            other => return Err(format!("unknown value type {other} in snapshot")),
        };
        let expire_at = (exp >= 0).then_some(exp as u64);
        if expire_at.is_some_and(|t| t <= now) {
            continue;
        }
        db.map.insert(key.clone(), Entry::new(value, expire_at));
        if expire_at.is_some() {
            db.set_expiry(&key, expire_at);
        }
    }
    Ok(db)
}
