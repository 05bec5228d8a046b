//! Lists: LPUSH RPUSH LPOP RPOP LRANGE LLEN LTRIM.

use std::collections::VecDeque;

use super::{index_range as range, parse_i64, upper, Db, Value};
use crate::Reply;

type List = VecDeque<Vec<u8>>;

fn as_list(v: &mut Value) -> Option<&mut List> {
    match v {
        Value::List(l) => Some(l),
        _ => None,
    }
}

impl Db {
    fn list(&mut self, key: &[u8], create: bool) -> Result<Option<&mut List>, Reply> {
        let make: Option<fn() -> Value> = if create {
            Some(|| Value::List(VecDeque::new()))
        } else {
            None
        };
        self.typed(key, make, as_list)
    }

    pub(super) fn push(&mut self, a: &[Vec<u8>]) -> Reply {
        let left = upper(&a[0]) == "LPUSH";
        match self.list(&a[1], true) {
            Ok(l) => {
                let l = l.expect("created");
                for v in &a[2..] {
                    if left {
                        l.push_front(v.clone());
                    } else {
                        l.push_back(v.clone());
                    }
                }
                Reply::Integer(l.len() as i64)
            }
            Err(r) => r,
        }
    }

    pub(super) fn pop(&mut self, a: &[Vec<u8>]) -> Reply {
        let left = upper(&a[0]) == "LPOP";
        if a.len() > 3 {
            return Reply::arity(&upper(&a[0]));
        }
        let count = match a.get(2) {
            None => None,
            Some(c) => match parse_i64(c) {
                Some(n) if n >= 0 => Some(n as usize),
                _ => return Reply::err("ERR value is out of range, must be positive"),
            },
        };
        let reply = match self.list(&a[1], false) {
            Ok(Some(l)) => {
                let mut take = || if left { l.pop_front() } else { l.pop_back() };
                match count {
                    None => take().map_or(Reply::Nil, Reply::Bulk),
                    Some(n) => {
                        Reply::Array((0..n).map_while(|_| take()).map(Reply::Bulk).collect())
                    }
                }
            }
            Ok(None) => Reply::Nil,
            Err(r) => return r,
        };
        self.drop_if_empty(&a[1]);
        reply
    }

    pub(super) fn lrange(&mut self, a: &[Vec<u8>]) -> Reply {
        let (Some(start), Some(stop)) = (parse_i64(&a[2]), parse_i64(&a[3])) else {
            return Reply::not_integer();
        };
        match self.list(&a[1], false) {
            Ok(Some(l)) => match range(start, stop, l.len()) {
                Some((s, e)) => Reply::Array(l.range(s..e).cloned().map(Reply::Bulk).collect()),
                None => Reply::Array(vec![]),
            },
            Ok(None) => Reply::Array(vec![]),
            Err(r) => r,
        }
    }

    pub(super) fn llen(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.list(&a[1], false) {
            Ok(l) => Reply::Integer(l.map_or(0, |l| l.len()) as i64),
            Err(r) => r,
        }
    }

    pub(super) fn ltrim(&mut self, a: &[Vec<u8>]) -> Reply {
        let (Some(start), Some(stop)) = (parse_i64(&a[2]), parse_i64(&a[3])) else {
            return Reply::not_integer();
        };
        match self.list(&a[1], false) {
            Ok(Some(l)) => match range(start, stop, l.len()) {
                Some((s, e)) => {
                    l.truncate(e);
                    l.drain(..s);
                }
                None => l.clear(),
            },
            Ok(None) => {}
            Err(r) => return r,
        }
        self.drop_if_empty(&a[1]);
        Reply::ok()
    }
}
