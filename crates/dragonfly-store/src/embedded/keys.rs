//! Keys: DEL UNLINK EXISTS EXPIRE PEXPIRE TTL PTTL PERSIST TYPE KEYS SCAN FLUSHDB FLUSHALL
//! DBSIZE.

use super::{glob, now_ms, parse_i64, upper, Db};
use crate::Reply;

impl Db {
    pub(super) fn del(&mut self, a: &[Vec<u8>]) -> Reply {
        let mut n = 0;
        for k in &a[1..] {
            if self.live(k) {
                self.remove(k);
                n += 1;
            }
        }
        Reply::Integer(n)
    }

    pub(super) fn exists(&mut self, a: &[Vec<u8>]) -> Reply {
        Reply::Integer(a[1..].iter().filter(|k| self.live(k)).count() as i64)
    }

    pub(super) fn expire(&mut self, a: &[Vec<u8>]) -> Reply {
        let cmd = upper(&a[0]);
        let Some(n) = parse_i64(&a[2]) else {
            return Reply::not_integer();
        };
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for opt in &a[3..] {
            match upper(opt).as_str() {
                "NX" => nx = true,
                "XX" => xx = true,
                "GT" => gt = true,
                "LT" => lt = true,
                other => return Reply::err(format!("ERR Unsupported option {other}")),
            }
        }
        if nx && (xx || gt || lt) {
            return Reply::err(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            );
        }
        if gt && lt {
            return Reply::err("ERR GT and LT options at the same time are not compatible");
        }
        let ms = if cmd == "EXPIRE" {
            n.checked_mul(1000)
        } else {
            Some(n)
        };
        let Some(at) = ms.and_then(|ms| ms.checked_add(now_ms() as i64)) else {
            return Reply::err(format!(
                "ERR invalid expire time in '{}' command",
                cmd.to_ascii_lowercase()
            ));
        };
        let Some(current) = self.entry(&a[1]).map(|e| e.expire_at) else {
            return Reply::Integer(0);
        };
        // a key without a TTL counts as an infinite TTL for GT/LT
        let allowed = match current {
            None => !xx && !gt,
            Some(t) => !nx && (!gt || at > t as i64) && (!lt || at < t as i64),
        };
        if !allowed {
            return Reply::Integer(0);
        }
        if at <= now_ms() as i64 {
            self.remove(&a[1]);
        } else {
            self.set_expiry(&a[1], Some(at as u64));
        }
        Reply::Integer(1)
    }

    pub(super) fn ttl(&mut self, a: &[Vec<u8>]) -> Reply {
        let ms = upper(&a[0]) == "PTTL";
        match self.entry(&a[1]).map(|e| e.expire_at) {
            None => Reply::Integer(-2),
            Some(None) => Reply::Integer(-1),
            Some(Some(t)) => {
                let left = t.saturating_sub(now_ms()) as i64;
                Reply::Integer(if ms { left } else { (left + 500) / 1000 })
            }
        }
    }

    pub(super) fn persist(&mut self, a: &[Vec<u8>]) -> Reply {
        match self.entry(&a[1]).map(|e| e.expire_at) {
            Some(Some(_)) => {
                self.set_expiry(&a[1], None);
                Reply::Integer(1)
            }
            _ => Reply::Integer(0),
        }
    }

    pub(super) fn type_cmd(&mut self, a: &[Vec<u8>]) -> Reply {
        Reply::Status(self.value(&a[1]).map_or("none", |v| v.type_name()).into())
    }

    fn live_keys(&mut self) -> Vec<Vec<u8>> {
        self.sweep(true);
        let mut keys: Vec<Vec<u8>> = self.map.keys().cloned().collect();
        keys.sort();
        keys
    }

    pub(super) fn keys(&mut self, a: &[Vec<u8>]) -> Reply {
        let pat = a[1].clone();
        Reply::Array(
            self.live_keys()
                .into_iter()
                .filter(|k| glob::matches(&pat, k))
                .map(Reply::Bulk)
                .collect(),
        )
    }

    /// SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]. The cursor is a position in the sorted
    /// key list: every key present for the whole scan is returned once.
    pub(super) fn scan(&mut self, a: &[Vec<u8>]) -> Reply {
        let Some(cursor) = std::str::from_utf8(&a[1])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return Reply::err("ERR invalid cursor");
        };
        let (mut pattern, mut count, mut typ) = (None, 10usize, None);
        let mut i = 2;
        while i < a.len() {
            if i + 1 >= a.len() {
                return Reply::err("ERR syntax error");
            }
            match upper(&a[i]).as_str() {
                "MATCH" => pattern = Some(a[i + 1].clone()),
                "COUNT" => match parse_i64(&a[i + 1]) {
                    Some(n) if n >= 1 => count = n as usize,
                    Some(_) => return Reply::err("ERR syntax error"),
                    None => return Reply::not_integer(),
                },
                "TYPE" => typ = Some(String::from_utf8_lossy(&a[i + 1]).to_ascii_lowercase()),
                _ => return Reply::err("ERR syntax error"),
            }
            i += 2;
        }
        let keys = self.live_keys();
        let start = (cursor as usize).min(keys.len());
        let end = (start + count).min(keys.len());
        let mut out = Vec::new();
        for k in &keys[start..end] {
            if pattern.as_ref().is_some_and(|p| !glob::matches(p, k)) {
                continue;
            }
            if let Some(t) = &typ {
                if self.map.get(k).map(|e| e.value.type_name()) != Some(t.as_str()) {
                    continue;
                }
            }
            out.push(Reply::Bulk(k.clone()));
        }
        let next = if end >= keys.len() { 0 } else { end };
        Reply::Array(vec![
            Reply::bulk(next.to_string().into_bytes()),
            Reply::Array(out),
        ])
    }

    pub(super) fn flush(&mut self, a: &[Vec<u8>]) -> Reply {
        for opt in &a[1..] {
            match upper(opt).as_str() {
                "ASYNC" | "SYNC" => {}
                _ => return Reply::err("ERR syntax error"),
            }
        }
        self.clear();
        Reply::ok()
    }

    pub(super) fn dbsize(&mut self, _a: &[Vec<u8>]) -> Reply {
        self.sweep(true);
        Reply::Integer(self.map.len() as i64)
    }
}
