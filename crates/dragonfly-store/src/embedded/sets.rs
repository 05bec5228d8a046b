//! Sets: SADD SREM SISMEMBER SCARD SMEMBERS.

use super::HashSet;

use super::{Db, Value};
use crate::Reply;

type Set = HashSet<Vec<u8>>;

fn as_set(v: &mut Value) -> Option<&mut Set> {
    match v {
        Value::Set(s) => Some(s),
        _ => None,
    }
}

impl Db {
    fn set_at(&mut self, key: &[u8], create: bool) -> Result<Option<&mut Set>, Reply> {
        let make: Option<fn() -> Value> = if create {
            Some(|| Value::Set(HashSet::default()))
        } else {
            None
        };
        self.typed(key, make, as_set)
    }

    pub(super) fn sadd(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.set_at(&a[1], true) {
            Ok(s) => {
                let s = s.expect("created");
                Reply::Integer(a[2..].iter().filter(|m| s.insert((*m).clone())).count() as i64)
            }
            Err(r) => r,
        }
    }

    pub(super) fn srem(&mut self, a: &[Vec<u8>]) -> Reply {
        let n = match self.set_at(&a[1], false) {
            Ok(Some(s)) => a[2..].iter().filter(|m| s.remove(*m)).count(),
            Ok(None) => 0,
            Err(r) => return r,
        };
        self.drop_if_empty(&a[1]);
        Reply::Integer(n as i64)
    }

    pub(super) fn sismember(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.set_at(&a[1], false) {
            Ok(s) => Reply::Integer(s.is_some_and(|s| s.contains(&a[2])) as i64),
            Err(r) => r,
        }
    }

    pub(super) fn scard(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.set_at(&a[1], false) {
            Ok(s) => Reply::Integer(s.map_or(0, |s| s.len()) as i64),
            Err(r) => r,
        }
    }

    pub(super) fn smembers(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.set_at(&a[1], false) {
            Ok(s) => {
                let mut m: Vec<Vec<u8>> =
                    s.map(|s| s.iter().cloned().collect()).unwrap_or_default();
                m.sort();
                Reply::Array(m.into_iter().map(Reply::Bulk).collect())
            }
            Err(r) => r,
        }
    }
}
