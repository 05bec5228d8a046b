//! The embedded store: an in-process keyspace shared by every Lua runtime of the engine.
//!
//! This first cut answers the commands the quick start and the hello-world analyzer need
//! (connection, strings and counters, keys, hashes); replies and error texts are Redis 7's.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::{Connection, Reply};

#[derive(Debug, Clone)]
enum Value {
    Str(Vec<u8>),
    Hash(HashMap<Vec<u8>, Vec<u8>>),
}

#[derive(Debug, Default)]
struct Db {
    keys: HashMap<Vec<u8>, Value>,
}

/// A store shared by all connections made from it.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedStore {
    db: Arc<Mutex<Db>>,
}

impl EmbeddedStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn connect(&self) -> EmbeddedConnection {
        EmbeddedConnection {
            db: self.db.clone(),
            pending: VecDeque::new(),
        }
    }

    /// Run one command outside any connection (tests, tools).
    pub fn execute(&self, args: &[Vec<u8>]) -> Reply {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        db.execute(args)
    }
}

pub struct EmbeddedConnection {
    db: Arc<Mutex<Db>>,
    pending: VecDeque<Reply>,
}

impl Connection for EmbeddedConnection {
    fn command(&mut self, args: &[Vec<u8>]) -> Reply {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
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

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

impl Db {
    fn execute(&mut self, args: &[Vec<u8>]) -> Reply {
        let Some(name) = args.first() else {
            return Reply::err("ERR empty command");
        };
        let cmd = String::from_utf8_lossy(name).to_ascii_uppercase();
        let a = &args[1..];
        let arity = |ok: bool| if ok { None } else { Some(Reply::arity(&cmd)) };
        macro_rules! need {
            ($cond:expr) => {
                if let Some(r) = arity($cond) {
                    return r;
                }
            };
        }
        match cmd.as_str() {
            "PING" => {
                need!(a.len() <= 1);
                match a.first() {
                    Some(m) => Reply::bulk(m.clone()),
                    None => Reply::Status("PONG".into()),
                }
            }
            "ECHO" => {
                need!(a.len() == 1);
                Reply::bulk(a[0].clone())
            }
            "GET" => {
                need!(a.len() == 1);
                match self.keys.get(&a[0]) {
                    None => Reply::Nil,
                    Some(Value::Str(s)) => Reply::bulk(s.clone()),
                    Some(_) => Reply::wrong_type(),
                }
            }
            "SET" => {
                need!(a.len() == 2);
                self.keys.insert(a[0].clone(), Value::Str(a[1].clone()));
                Reply::ok()
            }
            "INCR" | "DECR" => {
                need!(a.len() == 1);
                self.incr(&a[0], if cmd == "INCR" { 1 } else { -1 })
            }
            "INCRBY" | "DECRBY" => {
                need!(a.len() == 2);
                match parse_i64(&a[1]) {
                    Some(n) => self.incr(&a[0], if cmd == "INCRBY" { n } else { -n }),
                    None => Reply::not_integer(),
                }
            }
            "DEL" | "EXISTS" => {
                need!(!a.is_empty());
                let n = a
                    .iter()
                    .filter(|k| {
                        if cmd == "DEL" {
                            self.keys.remove(*k).is_some()
                        } else {
                            self.keys.contains_key(*k)
                        }
                    })
                    .count();
                Reply::Integer(n as i64)
            }
            "HSET" => {
                need!(a.len() >= 3 && a.len() % 2 == 1);
                let h = match self.hash(&a[0]) {
                    Ok(h) => h,
                    Err(r) => return r,
                };
                let added = a[1..]
                    .chunks(2)
                    .filter(|kv| h.insert(kv[0].clone(), kv[1].clone()).is_none())
                    .count();
                Reply::Integer(added as i64)
            }
            "HGET" => {
                need!(a.len() == 2);
                match self.keys.get(&a[0]) {
                    None => Reply::Nil,
                    Some(Value::Hash(h)) => {
                        h.get(&a[1]).map_or(Reply::Nil, |v| Reply::bulk(v.clone()))
                    }
                    Some(_) => Reply::wrong_type(),
                }
            }
            "HINCRBY" => {
                need!(a.len() == 3);
                let Some(by) = parse_i64(&a[2]) else {
                    return Reply::not_integer();
                };
                let h = match self.hash(&a[0]) {
                    Ok(h) => h,
                    Err(r) => return r,
                };
                let cur = match h.get(&a[1]) {
                    None => 0,
                    Some(v) => match parse_i64(v) {
                        Some(n) => n,
                        None => return Reply::err("ERR hash value is not an integer"),
                    },
                };
                let Some(n) = cur.checked_add(by) else {
                    return Reply::err("ERR increment or decrement would overflow");
                };
                h.insert(a[1].clone(), n.to_string().into_bytes());
                Reply::Integer(n)
            }
            _ => Reply::err(format!(
                "ERR unknown command '{}', with args beginning with: {}",
                String::from_utf8_lossy(name),
                a.iter()
                    .map(|x| format!("'{}' ", String::from_utf8_lossy(x)))
                    .collect::<String>()
            )),
        }
    }

    fn incr(&mut self, key: &[u8], by: i64) -> Reply {
        let cur = match self.keys.get(key) {
            None => 0,
            Some(Value::Str(s)) => match parse_i64(s) {
                Some(n) => n,
                None => return Reply::not_integer(),
            },
            Some(_) => return Reply::wrong_type(),
        };
        let Some(n) = cur.checked_add(by) else {
            return Reply::err("ERR increment or decrement would overflow");
        };
        self.keys
            .insert(key.to_vec(), Value::Str(n.to_string().into_bytes()));
        Reply::Integer(n)
    }

    fn hash(&mut self, key: &[u8]) -> Result<&mut HashMap<Vec<u8>, Vec<u8>>, Reply> {
        match self
            .keys
            .entry(key.to_vec())
            .or_insert_with(|| Value::Hash(HashMap::new()))
        {
            Value::Hash(h) => Ok(h),
            _ => Err(Reply::wrong_type()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &EmbeddedStore, line: &str) -> Reply {
        let args: Vec<Vec<u8>> = line.split(' ').map(|x| x.as_bytes().to_vec()).collect();
        s.execute(&args)
    }

    #[test]
    fn counters_and_errors_match_redis() {
        let s = EmbeddedStore::new();
        assert_eq!(cmd(&s, "PING"), Reply::Status("PONG".into()));
        assert_eq!(cmd(&s, "INCR count:dns"), Reply::Integer(1));
        assert_eq!(cmd(&s, "INCRBY count:dns 41"), Reply::Integer(42));
        assert_eq!(cmd(&s, "GET count:dns"), Reply::bulk("42"));
        assert_eq!(cmd(&s, "SET s abc"), Reply::ok());
        assert_eq!(cmd(&s, "INCR s"), Reply::not_integer());
        assert_eq!(cmd(&s, "HSET s f v"), Reply::wrong_type());
        assert_eq!(cmd(&s, "GET"), Reply::arity("get"));
        assert_eq!(cmd(&s, "HINCRBY h f 2"), Reply::Integer(2));
        assert_eq!(cmd(&s, "HGET h f"), Reply::bulk("2"));
        assert_eq!(cmd(&s, "DEL h s nope"), Reply::Integer(2));
    }
}
