//! Strings and counters: GET SET SETEX PSETEX SETNX MGET INCR DECR INCRBY DECRBY INCRBYFLOAT
//! APPEND STRLEN.

use super::{human_double, now_ms, parse_f64, parse_i64, upper, Db, Value};
use crate::Reply;

fn as_str(v: &mut Value) -> Option<&mut Vec<u8>> {
    match v {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

impl Db {
    pub(super) fn get(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.value(&a[1]) {
            None => Reply::Nil,
            Some(Value::Str(s)) => Reply::bulk(s.clone()),
            Some(_) => Reply::wrong_type(),
        }
    }

    pub(super) fn set(&mut self, a: &[Vec<u8>]) -> Reply {
        let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
        let mut expire: Option<u64> = None;
        let mut i = 3;
        while i < a.len() {
            let opt = upper(&a[i]);
            let has_next = i + 1 < a.len();
            match opt.as_str() {
                "NX" if !xx => nx = true,
                "XX" if !nx => xx = true,
                "GET" => get = true,
                "KEEPTTL" if expire.is_none() => keepttl = true,
                "EX" | "PX" | "EXAT" | "PXAT" if has_next && expire.is_none() && !keepttl => {
                    i += 1;
                    let Some(n) = parse_i64(&a[i]) else {
                        return Reply::not_integer();
                    };
                    if n <= 0 {
                        return Reply::err("ERR invalid expire time in 'set' command");
                    }
                    let at = match opt.as_str() {
                        "EX" => (n as u64)
                            .checked_mul(1000)
                            .and_then(|ms| ms.checked_add(now_ms())),
                        "PX" => (n as u64).checked_add(now_ms()),
                        "EXAT" => (n as u64).checked_mul(1000),
                        _ => Some(n as u64),
                    };
                    match at {
                        Some(t) => expire = Some(t),
                        None => return Reply::err("ERR invalid expire time in 'set' command"),
                    }
                }
                _ => return Reply::err("ERR syntax error"),
            }
            i += 1;
        }
        let old = match self.value(&a[1]) {
            None => None,
            Some(Value::Str(s)) => Some(s.clone()),
            Some(_) if get => return Reply::wrong_type(),
            Some(_) => Some(Vec::new()),
        };
        let exists = old.is_some();
        let old_reply = || match &old {
            Some(s) => Reply::bulk(s.clone()),
            None => Reply::Nil,
        };
        if (nx && exists) || (xx && !exists) {
            return if get { old_reply() } else { Reply::Nil };
        }
        let ttl = if keepttl {
            self.entry(&a[1]).and_then(|e| e.expire_at)
        } else {
            None
        };
        self.put(&a[1], Value::Str(a[2].clone()));
        self.set_expiry(&a[1], expire.or(ttl));
        if get {
            old_reply()
        } else {
            Reply::ok()
        }
    }

    pub(super) fn setex(&mut self, a: &[Vec<u8>]) -> Reply {
        let cmd = upper(&a[0]);
        let Some(n) = parse_i64(&a[2]) else {
            return Reply::not_integer();
        };
        let ms = if cmd == "SETEX" {
            (n as u64).checked_mul(1000)
        } else {
            Some(n as u64)
        };
        let at = ms.and_then(|ms| ms.checked_add(now_ms()));
        if n <= 0 || at.is_none() {
            return Reply::err(format!(
                "ERR invalid expire time in '{}' command",
                cmd.to_ascii_lowercase()
            ));
        }
        self.put(&a[1], Value::Str(a[3].clone()));
        self.set_expiry(&a[1], at);
        Reply::ok()
    }

    pub(super) fn setnx(&mut self, a: &[Vec<u8>]) -> Reply {
        if self.value(&a[1]).is_some() {
            return Reply::Integer(0);
        }
        self.put(&a[1], Value::Str(a[2].clone()));
        Reply::Integer(1)
    }

    pub(super) fn mget(&mut self, a: &[Vec<u8>]) -> Reply {
        Reply::Array(
            a[1..]
                .iter()
                .map(|k| match self.value(k) {
                    Some(Value::Str(s)) => Reply::bulk(s.clone()),
                    _ => Reply::Nil,
                })
                .collect(),
        )
    }

    pub(super) fn incr(&mut self, a: &[Vec<u8>]) -> Reply {
        let name = a[0].as_slice();
        let by = if name.eq_ignore_ascii_case(b"INCR") {
            1
        } else if name.eq_ignore_ascii_case(b"DECR") {
            -1
        } else {
            let Some(n) = parse_i64(&a[2]) else {
                return Reply::not_integer();
            };
            if name.eq_ignore_ascii_case(b"INCRBY") {
                n
            } else {
                match n.checked_neg() {
                    Some(n) => n,
                    None => {
                        return Reply::err("ERR decrement would overflow");
                    }
                }
            }
        };
        // one lookup: the value is replaced in place (keeping the key's expiry) or created
        let slot = match self.value(&a[1]) {
            None => None,
            Some(Value::Str(s)) => Some(s),
            Some(_) => return Reply::wrong_type(),
        };
        let cur = match &slot {
            None => 0,
            Some(s) => match parse_i64(s) {
                Some(n) => n,
                None => return Reply::not_integer(),
            },
        };
        let Some(n) = cur.checked_add(by) else {
            return Reply::err("ERR increment or decrement would overflow");
        };
        let text = n.to_string().into_bytes();
        match slot {
            Some(s) => *s = text,
            None => self.put(&a[1], Value::Str(text)),
        }
        Reply::Integer(n)
    }

    /// Replace a string value, keeping the key's expiry (INCR and friends do).
    fn store_keep_ttl(&mut self, key: &[u8], v: Vec<u8>) {
        match self.typed(key, None, as_str) {
            Ok(Some(s)) => *s = v,
            _ => self.put(key, Value::Str(v)),
        }
    }

    pub(super) fn incrbyfloat(&mut self, a: &[Vec<u8>]) -> Reply {
        // Redis checks the key's type and value before the increment.
        let cur = match self.value(&a[1]) {
            None => 0.0,
            Some(Value::Str(s)) => match parse_f64(s) {
                Some(n) => n,
                None => return Reply::err("ERR value is not a valid float"),
            },
            Some(_) => return Reply::wrong_type(),
        };
        let Some(by) = parse_f64(&a[2]) else {
            return Reply::err("ERR value is not a valid float");
        };
        let n = cur + by;
        if !n.is_finite() {
            return Reply::err("ERR increment would produce NaN or Infinity");
        }
        let text = human_double(n);
        self.store_keep_ttl(&a[1], text.clone());
        Reply::bulk(text)
    }

    pub(super) fn append(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.typed(&a[1], Some(|| Value::Str(Vec::new())), as_str) {
            Ok(Some(s)) => {
                s.extend_from_slice(&a[2]);
                Reply::Integer(s.len() as i64)
            }
            Ok(None) => unreachable!("created"),
            Err(r) => r,
        }
    }

    pub(super) fn strlen(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.value(&a[1]) {
            None => Reply::Integer(0),
            Some(Value::Str(s)) => Reply::Integer(s.len() as i64),
            Some(_) => Reply::wrong_type(),
        }
    }
}
