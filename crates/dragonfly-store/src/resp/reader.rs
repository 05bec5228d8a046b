//! Reading Redis replies (RESP2 and RESP3) off a socket with limits: a server — a hostile one,
//! a broken proxy, a man in the middle — cannot make the engine allocate more than it allows.
//!
//! Limits, checked before anything is allocated for them:
//! - a reply holds at most [`ReplyLimits::max_bytes`] (`engine.redis_max_reply_mb`, default
//!   [`DEFAULT_MAX_REPLY_MB`] MiB): every string's bytes plus [`ELEMENT_COST`] per element, so
//!   a declared 4 GB bulk string or a billion-element array is refused at its header;
//! - nesting is at most [`MAX_DEPTH`] deep;
//! - a line (a status, an error, a number, a header) is at most [`MAX_LINE`] bytes.
//!
//! Past any of them the read fails with an `InvalidData` error naming the limit; the caller
//! drops the connection (what is left of the reply on the wire cannot be skipped safely) and
//! the command returns an error to the script. Nothing is allocated up front from a header:
//! a long string grows as its bytes arrive, an aggregate as its elements do.
//!
//! Cost: one pass over the bytes, the same as the `redis` crate's parser it replaces; error
//! replies are handed to that parser (bounded by [`MAX_LINE`]) to build its error value.

use std::io::{self, Read};

use redis::Value;

/// Bytes one element costs against [`ReplyLimits::max_bytes`] (about what it takes in memory).
pub const ELEMENT_COST: usize = 64;
/// Deepest nesting of aggregates accepted.
pub const MAX_DEPTH: usize = 128;
/// Longest line accepted (a status, an error, a number, a header).
pub const MAX_LINE: usize = 64 * 1024;
/// Default of `engine.redis_max_reply_mb`.
pub const DEFAULT_MAX_REPLY_MB: usize = 64;
/// Stage reads through a buffer of this size; longer strings are read straight into place.
const CHUNK: usize = 16 * 1024;

/// What one reply may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Bytes of strings plus [`ELEMENT_COST`] per element.
    pub max_bytes: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_REPLY_MB << 20,
        }
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("Redis reply refused: {what}"),
    )
}

/// A buffered reader of replies; bytes past one reply (pipelined replies) stay for the next.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
    start: usize,
}

struct Budget {
    left: usize,
    max: usize,
}

impl Budget {
    fn take(&mut self, n: usize, what: &str) -> io::Result<()> {
        if n > self.left {
            return Err(bad(format!(
                "{what} takes it past {} bytes (engine.redis_max_reply_mb)",
                self.max
            )));
        }
        self.left -= n;
        Ok(())
    }
}

impl ReplyReader {
    /// A reader with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes read off the socket and not used yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Read one reply from `src` within `limits`.
    pub fn read(&mut self, src: &mut impl Read, limits: ReplyLimits) -> io::Result<Value> {
        let mut budget = Budget {
            left: limits.max_bytes,
            max: limits.max_bytes,
        };
        let v = budget
            .take(ELEMENT_COST, "an element")
            .and_then(|()| self.value(src, &mut budget, 0));
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > 4 * CHUNK {
                self.buf.shrink_to(CHUNK);
            }
        }
        v
    }

    /// Read more bytes into the buffer (at least one, or an error).
    fn fill(&mut self, src: &mut impl Read) -> io::Result<()> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > CHUNK && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + CHUNK, 0);
        loop {
            match src.read(&mut self.buf[len..]) {
                Ok(0) => {
                    self.buf.truncate(len);
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed in the middle of a Redis reply",
                    ));
                }
                Ok(n) => {
                    self.buf.truncate(len + n);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        }
    }

    /// The next line, without its CRLF (the bytes are consumed).
    fn line(&mut self, src: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.start..];
            if let Some(i) = memchr::memchr(b'\n', &avail[scanned..]) {
                let end = scanned + i;
                if end == 0 || avail[end - 1] != b'\r' {
                    return Err(bad("a line not ended by CRLF".into()));
                }
                let line = avail[..end - 1].to_vec();
                self.start += end + 1;
                return Ok(line);
            }
            scanned = avail.len();
            if scanned > MAX_LINE {
                return Err(bad(format!("a line longer than {MAX_LINE} bytes")));
            }
            self.fill(src)?;
        }
    }

    fn number(&mut self, src: &mut impl Read) -> io::Result<i64> {
        let line = self.line(src)?;
        std::str::from_utf8(&line)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| bad("a length or integer that is not a number".into()))
    }

    /// `n` bytes then CRLF, grown as they arrive.
    fn blob(&mut self, src: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n.min(CHUNK));
        loop {
            let avail = self.buf.len() - self.start;
            let want = n - out.len();
            let k = avail.min(want);
            out.extend_from_slice(&self.buf[self.start..self.start + k]);
            self.start += k;
            if out.len() == n {
                break;
            }
            if n - out.len() > CHUNK {
                // long: straight into place, as it arrives
                let len = out.len();
                let grow = (n - len).min(1 << 20);
                out.resize(len + grow, 0);
                let got = loop {
                    match src.read(&mut out[len..]) {
                        Ok(0) => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the connection closed in the middle of a Redis reply",
                            ))
                        }
                        Ok(g) => break g,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                };
                out.truncate(len + got);
            } else {
                self.fill(src)?;
            }
        }
        while self.buf.len() - self.start < 2 {
            self.fill(src)?;
        }
        if &self.buf[self.start..self.start + 2] != b"\r\n" {
            return Err(bad("a string not followed by CRLF".into()));
        }
        self.start += 2;
        Ok(out)
    }

    /// A length from a header: -1 (none) or within the budget at `cost` bytes each.
    fn length(
        &mut self,
        src: &mut impl Read,
        budget: &mut Budget,
        cost: usize,
        what: &str,
    ) -> io::Result<Option<usize>> {
        let n = self.number(src)?;
        if n < 0 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| bad(format!("{what} of {n}")))?;
        budget.take(n.saturating_mul(cost), &format!("{what} of {n}"))?;
        Ok(Some(n))
    }

    fn items(
        &mut self,
        src: &mut impl Read,
        budget: &mut Budget,
        depth: usize,
        n: usize,
    ) -> io::Result<Vec<Value>> {
        // grown as elements arrive, never sized from the header alone
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(self.value(src, budget, depth + 1)?);
            // (each element was paid for by the aggregate's header)
        }
        Ok(v)
    }

    fn pairs(
        &mut self,
        src: &mut impl Read,
        budget: &mut Budget,
        depth: usize,
        n: usize,
    ) -> io::Result<Vec<(Value, Value)>> {
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let k = self.value(src, budget, depth + 1)?;
            let x = self.value(src, budget, depth + 1)?;
            v.push((k, x));
        }
        Ok(v)
    }

    fn text(&mut self, src: &mut impl Read) -> io::Result<String> {
        Ok(String::from_utf8_lossy(&self.line(src)?).into_owned())
    }

    /// One value, already paid [`ELEMENT_COST`] for (by the caller, or its aggregate's
    /// header); its contents are paid for here.
    fn value(
        &mut self,
        src: &mut impl Read,
        budget: &mut Budget,
        depth: usize,
    ) -> io::Result<Value> {
        if depth > MAX_DEPTH {
            return Err(bad(format!("nested deeper than {MAX_DEPTH}")));
        }
        while self.start == self.buf.len() {
            self.fill(src)?;
        }
        let kind = self.buf[self.start];
        self.start += 1;
        Ok(match kind {
            b'+' => {
                let s = self.text(src)?;
                if s == "OK" {
                    Value::Okay
                } else {
                    Value::SimpleString(s)
                }
            }
            b':' => Value::Int(self.number(src)?),
            b'$' => match self.length(src, budget, 1, "a string")? {
                None => Value::Nil,
                Some(n) => Value::BulkString(self.blob(src, n)?),
            },
            b'*' => match self.length(src, budget, ELEMENT_COST, "an array")? {
                None => Value::Nil,
                Some(n) => Value::Array(self.items(src, budget, depth, n)?),
            },
            b'~' => match self.length(src, budget, ELEMENT_COST, "a set")? {
                None => Value::Nil,
                Some(n) => Value::Set(self.items(src, budget, depth, n)?),
            },
            b'>' => match self.length(src, budget, ELEMENT_COST, "a push")? {
                None | Some(0) => Value::Push {
                    kind: redis::PushKind::Other(String::new()),
                    data: Vec::new(),
                },
                Some(n) => {
                    let mut items = self.items(src, budget, depth, n)?;
                    let kind = match items.remove(0) {
                        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                        Value::SimpleString(s) => s,
                        _ => return Err(bad("a push whose kind is not a string".into())),
                    };
                    Value::Push {
                        kind: redis::PushKind::Other(kind),
                        data: items,
                    }
                }
            },
            b'%' => match self.length(src, budget, 2 * ELEMENT_COST, "a map")? {
                None => Value::Nil,
                Some(n) => Value::Map(self.pairs(src, budget, depth, n)?),
            },
            b'|' => match self.length(src, budget, 2 * ELEMENT_COST, "an attribute")? {
                None => Value::Nil,
                Some(n) => {
                    let attributes = self.pairs(src, budget, depth, n)?;
                    budget.take(ELEMENT_COST, "an element")?;
                    let data = Box::new(self.value(src, budget, depth + 1)?);
                    Value::Attribute { data, attributes }
                }
            },
            b'-' => error_value(&self.line(src)?)?,
            b'!' => match self.length(src, budget, 1, "an error")? {
                None => Value::Nil,
                Some(n) if n > MAX_LINE => {
                    return Err(bad(format!("an error of {n} bytes (at most {MAX_LINE})")))
                }
                Some(n) => error_value(&self.blob(src, n)?)?,
            },
            b'=' => match self.length(src, budget, 1, "a verbatim string")? {
                None => Value::Nil,
                Some(n) => {
                    let b = self.blob(src, n)?;
                    let text = String::from_utf8_lossy(&b).into_owned();
                    let (format, text) = match text.split_once(':') {
                        Some(("txt", t)) => (redis::VerbatimFormat::Text, t.to_string()),
                        Some(("mkd", t)) => (redis::VerbatimFormat::Markdown, t.to_string()),
                        Some((f, t)) => {
                            (redis::VerbatimFormat::Unknown(f.to_string()), t.to_string())
                        }
                        None => return Err(bad("a verbatim string without its format".into())),
                    };
                    Value::VerbatimString { format, text }
                }
            },
            b'_' => {
                self.line(src)?;
                Value::Nil
            }
            b',' => {
                let s = self.text(src)?;
                Value::Double(match s.trim() {
                    "inf" => f64::INFINITY,
                    "-inf" => f64::NEG_INFINITY,
                    t => t
                        .parse::<f64>()
                        .map_err(|_| bad("a double that is not a number".into()))?,
                })
            }
            b'#' => match self.line(src)?.as_slice() {
                b"t" => Value::Boolean(true),
                b"f" => Value::Boolean(false),
                _ => return Err(bad("a boolean that is neither t nor f".into())),
            },
            b'(' => {
                let line = self.line(src)?;
                budget.take(line.len(), "a big number")?;
                big_number(line)
            }
            other => {
                return Err(bad(format!(
                    "a reply of unknown type {:?}",
                    char::from(other)
                )))
            }
        })
    }
}

fn big_number(line: Vec<u8>) -> Value {
    Value::BigNumber(line)
}

/// The `redis` crate's error value for an error line (its parser builds it; the line is at
/// most [`MAX_LINE`] bytes).
fn error_value(line: &[u8]) -> io::Result<Value> {
    let mut raw = Vec::with_capacity(line.len() + 3);
    raw.push(b'-');
    // an error line cannot hold CR or LF (RESP3's blob errors may: keep the first line)
    raw.extend(
        line.iter()
            .copied()
            .take_while(|&b| b != b'\r' && b != b'\n'),
    );
    raw.extend_from_slice(b"\r\n");
    redis::parse_redis_value(&raw).map_err(|e| bad(format!("an error reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A source that hands out `data` in pieces of the given sizes, then ends.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        next: usize,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let want = self
                .sizes
                .get(self.next)
                .copied()
                .unwrap_or(usize::MAX)
                .max(1);
            self.next += 1;
            let n = want.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn read_all(data: &[u8], sizes: Vec<usize>, max: usize) -> io::Result<Vec<Value>> {
        let mut src = Pieces {
            data: data.to_vec(),
            at: 0,
            sizes,
            next: 0,
        };
        let mut r = ReplyReader::new();
        let mut out = Vec::new();
        while src.at < src.data.len() || r.buffered() > 0 {
            out.push(r.read(&mut src, ReplyLimits { max_bytes: max })?);
        }
        Ok(out)
    }

    fn refused(data: &[u8], max: usize) -> String {
        match read_all(data, vec![], max) {
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
                e.to_string()
            }
            Ok(v) => panic!("accepted: {v:?}"),
        }
    }

    #[test]
    fn declared_sizes_past_the_limit_are_refused_at_the_header() {
        // nothing after the header: had the reader waited for the bytes, it would say EOF
        let e = refused(b"$4294967296\r\n", 64 << 20);
        assert!(e.contains("redis_max_reply_mb"), "{e}");
        refused(b"*2000000000\r\n", 64 << 20);
        refused(b"%2000000000\r\n", 64 << 20);
        refused(b"~2000000000\r\n", 64 << 20);
        refused(b"$100\r\n", 50);
        // many small elements add up
        let mut many = b"*100\r\n".to_vec();
        for _ in 0..100 {
            many.extend(b":1\r\n");
        }
        refused(&many, 100 * ELEMENT_COST);
        assert_eq!(
            read_all(&many, vec![], 102 * ELEMENT_COST).unwrap().len(),
            1
        );
    }

    #[test]
    fn depth_lines_and_framing_are_bounded() {
        let mut deep = b"*1\r\n".repeat(MAX_DEPTH + 5);
        deep.extend(b":1\r\n");
        assert!(refused(&deep, usize::MAX).contains("nested deeper"));
        let mut ok = b"*1\r\n".repeat(MAX_DEPTH - 1);
        ok.extend(b":1\r\n");
        assert!(read_all(&ok, vec![], usize::MAX).is_ok());
        let mut long = b"+".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        assert!(refused(&long, usize::MAX).contains("line longer"));
        refused(b"$3\r\nabcdef\r\n", 1 << 20);
        refused(b":12\n", 1 << 20);
        refused(b"?what\r\n", 1 << 20);
        let e = read_all(b"$10\r\nabc", vec![], 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// Well-formed replies, RESP2 and RESP3.
    fn reply(depth: u32) -> BoxedStrategy<Vec<u8>> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| {
                let mut v = format!("${}\r\n", b.len()).into_bytes();
                v.extend(b);
                v.extend(b"\r\n");
                v
            }),
            "[a-zA-Z0-9 ]{0,30}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
            "[A-Z]{1,8} [a-z ]{0,20}".prop_map(|s| format!("-{s}\r\n").into_bytes()),
            Just(b"$-1\r\n".to_vec()),
            Just(b"*-1\r\n".to_vec()),
            Just(b"+OK\r\n".to_vec()),
            Just(b"_\r\n".to_vec()),
            Just(b"#f\r\n".to_vec()),
            Just(b",-2.5\r\n".to_vec()),
            Just(b"(123456789012345678901234567890\r\n".to_vec()),
            Just(b"=8\r\ntxt:abcd\r\n".to_vec()),
        ];
        leaf.prop_recursive(depth, 64, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(|items| {
                    let mut v = format!("*{}\r\n", items.len()).into_bytes();
                    items.into_iter().for_each(|i| v.extend(i));
                    v
                }),
                prop::collection::vec((inner.clone(), inner), 0..3).prop_map(|pairs| {
                    let mut v = format!("%{}\r\n", pairs.len()).into_bytes();
                    for (k, x) in pairs {
                        v.extend(k);
                        v.extend(x);
                    }
                    v
                }),
            ]
        })
        .boxed()
    }

    proptest! {
        /// However the bytes are cut into reads, the reader gives what the `redis` crate's
        /// parser gives for the whole, reply after reply.
        #[test]
        fn replies_read_as_the_redis_crate_parses_them(
            replies in prop::collection::vec(reply(3), 1..4),
            sizes in prop::collection::vec(1usize..40, 0..50),
        ) {
            let mut data = Vec::new();
            let mut want = Vec::new();
            for r in &replies {
                want.push(redis::parse_redis_value(r).unwrap());
                data.extend(r);
            }
            let got = read_all(&data, sizes, usize::MAX).unwrap();
            prop_assert_eq!(got, want);
        }
    }
}
