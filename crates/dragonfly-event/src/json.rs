//! JSON scanning without building values: validating an untrusted line in one pass, and walking
//! the fields of an object (or the elements of an array) that was validated before.
//!
//! Behaviour:
//! - [`Scanner::validate`] accepts exactly what the engine's decoder (sonic-rs) accepts: one
//!   JSON value with optional surrounding whitespace, UTF-8, strings without raw control
//!   characters, the JSON number grammar with finite values, at most [`MAX_DEPTH`] levels of
//!   nesting (`tests/lazy_events.rs` in `dragonfly-lua` checks the two against each other on
//!   random and hand-made input). It also tells whether a top-level object is *simple*: no key
//!   written with an escape and no key twice, the objects [`Fields`] can look up by raw bytes.
//! - [`Fields`], [`Elements`] and [`skip`] trust that their input was validated: on bytes that
//!   were not, they stop early or return garbage ranges, but never panic and never read out of
//!   bounds (every access is checked).
//!
//! Cost: validation reads each byte once, strings eight bytes at a time; it allocates nothing
//! once the scanner's scratch space has grown. Walking fields skips nested values with `memchr`
//! (strings) or a byte loop (brackets), so a lookup costs about the bytes before the field.

use std::ops::Range;

/// Deepest nesting accepted (the decoder's limit: 254 levels nest, 255 do not).
pub const MAX_DEPTH: usize = 254;

/// Why a line is not JSON, and where (byte offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub what: &'static str,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for ScanError {}

/// The kind of a JSON value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{...}`
    Object,
    /// `[...]`
    Array,
    /// `"..."`
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
}

/// Whether `b` is UTF-8 (SIMD; the offset of the first bad byte if not).
pub fn utf8(b: &[u8]) -> Result<(), ScanError> {
    if simdutf8::basic::from_utf8(b).is_ok() {
        return Ok(());
    }
    match simdutf8::compat::from_utf8(b) {
        Ok(_) => Ok(()),
        Err(e) => err(e.valid_up_to(), "invalid UTF-8"),
    }
}

/// The kind of the value that starts at `b[0]` (None for garbage).
pub fn kind(b: &[u8]) -> Option<Kind> {
    Some(match *b.first()? {
        b'{' => Kind::Object,
        b'[' => Kind::Array,
        b'"' => Kind::String,
        b't' | b'f' => Kind::Bool,
        b'n' => Kind::Null,
        b'-' | b'0'..=b'9' => Kind::Number,
        _ => return None,
    })
}

/// A validated document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// The value's bytes (surrounding whitespace excluded).
    pub value: Range<usize>,
    /// Its kind.
    pub kind: Kind,
    /// For an object: no key has an escape and no key appears twice.
    pub simple: bool,
    /// For a simple object: bit [`key_bucket`]`(k)` is set for each of its keys `k`, so a key
    /// whose bit is clear is certainly not one of them. All ones otherwise.
    pub keys: u64,
    /// For a simple object: how many fields it has (0 otherwise).
    pub fields: usize,
}

/// Reusable scratch space for validation (one per thread or batch).
#[derive(Default, Debug)]
pub struct Scanner {
    stack: Vec<u8>,
    keys: Keys,
}

/// The keys of one object seen so far, to find a key that appears twice: up to [`Keys::FEW`]
/// keys are compared as they come (only with keys of the same small hash), more are sorted
/// once at the end, so that no object costs more than n log n comparisons.
#[derive(Default, Debug)]
struct Keys {
    spans: Vec<(usize, usize, u8)>,
    mask: u64,
}

impl Keys {
    const FEW: usize = 64;

    fn clear(&mut self) {
        self.spans.clear();
        self.mask = 0;
    }

    /// Record the key at `b[span]`; false if it was seen before (found now or at `finish`).
    fn add(&mut self, b: &[u8], span: Range<usize>) -> bool {
        let key = &b[span.clone()];
        let h = bucket(key);
        if self.spans.len() < Self::FEW
            && self.mask & (1 << h) != 0
            && self
                .spans
                .iter()
                .any(|&(s, e, kh)| kh == h && b.get(s..e) == Some(key))
        {
            return false;
        }
        self.mask |= 1 << h;
        self.spans.push((span.start, span.end, h));
        true
    }

    /// False if two of many keys are the same.
    fn finish(&mut self, b: &[u8]) -> bool {
        if self.spans.len() <= Self::FEW {
            return true;
        }
        let key = |&(s, e, _): &(usize, usize, u8)| b.get(s..e).unwrap_or(&[]);
        self.spans.sort_unstable_by(|x, y| key(x).cmp(key(y)));
        self.spans.windows(2).all(|w| key(&w[0]) != key(&w[1]))
    }
}

const fn ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn err<T>(offset: usize, what: &'static str) -> Result<T, ScanError> {
    Err(ScanError { offset, what })
}

impl Scanner {
    /// A scanner with empty scratch space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validate `line` as one JSON document.
    pub fn validate(&mut self, line: &[u8]) -> Result<Doc, ScanError> {
        utf8(line)?;
        let mut i = 0;
        while i < line.len() && ws(line[i]) {
            i += 1;
        }
        let start = i;
        let k = match kind(&line[i.min(line.len())..]) {
            Some(k) => k,
            None if i == line.len() => return err(i, "EOF while parsing a value"),
            None => return err(i, "expected a JSON value"),
        };
        let (end, simple) = self.value(line, i)?;
        let (keys, fields) = if k == Kind::Object && simple {
            (self.keys.mask, self.keys.spans.len())
        } else {
            (u64::MAX, 0)
        };
        let mut j = end;
        while j < line.len() && ws(line[j]) {
            j += 1;
        }
        if j != line.len() {
            return err(j, "trailing characters");
        }
        Ok(Doc {
            value: start..end,
            kind: k,
            simple,
            keys,
            fields,
        })
    }

    /// Validate the value at `b[i]`; returns its end and, for a top-level object, whether
    /// its keys are simple.
    fn value(&mut self, b: &[u8], mut i: usize) -> Result<(usize, bool), ScanError> {
        self.stack.clear();
        self.keys.clear();
        let mut simple = true;
        loop {
            // a value starts at b[i] (whitespace skipped)
            let Some(&c) = b.get(i) else {
                return err(i, "EOF while parsing a value");
            };
            match c {
                b'{' | b'[' => {
                    if self.stack.len() >= MAX_DEPTH {
                        return err(i, "recursion limit exceeded");
                    }
                    self.stack.push(c);
                    i = skip_ws(b, i + 1);
                    let close = if c == b'{' { b'}' } else { b']' };
                    if b.get(i) == Some(&close) {
                        self.stack.pop();
                        i += 1;
                    } else if c == b'{' {
                        i = self.key(b, i, &mut simple)?;
                        continue;
                    } else {
                        continue;
                    }
                }
                b'"' => i = string(b, i)?.0,
                b'-' | b'0'..=b'9' => i = number(b, i)?,
                b't' => i = literal(b, i, b"true")?,
                b'f' => i = literal(b, i, b"false")?,
                b'n' => i = literal(b, i, b"null")?,
                _ => return err(i, "expected a JSON value"),
            }
            // after a value: close containers or move to the next element
            loop {
                let Some(&top) = self.stack.last() else {
                    let simple = simple && self.keys.finish(b);
                    return Ok((i, simple));
                };
                i = skip_ws(b, i);
                match (b.get(i), top) {
                    (Some(b','), b'[') => {
                        i = skip_ws(b, i + 1);
                        break;
                    }
                    (Some(b','), _) => {
                        i = skip_ws(b, i + 1);
                        i = self.key(b, i, &mut simple)?;
                        break;
                    }
                    (Some(b']'), b'[') | (Some(b'}'), b'{') => {
                        self.stack.pop();
                        i += 1;
                    }
                    (None, _) => return err(i, "EOF while parsing"),
                    (Some(_), b'[') => return err(i, "expected ',' or ']'"),
                    (Some(_), _) => return err(i, "expected ',' or '}'"),
                }
            }
        }
    }

    /// A key and its colon at `b[i]`; returns where the value starts.
    fn key(&mut self, b: &[u8], i: usize, simple: &mut bool) -> Result<usize, ScanError> {
        if b.get(i) != Some(&b'"') {
            return err(i, "expected a key");
        }
        let (end, escaped) = string(b, i)?;
        if self.stack.len() == 1 && *simple {
            *simple = !escaped && self.keys.add(b, i + 1..end - 1);
        }
        let j = skip_ws(b, end);
        if b.get(j) != Some(&b':') {
            return err(j, "expected ':'");
        }
        Ok(skip_ws(b, j + 1))
    }

    /// Validate the one value at `b[i]` (whitespace before it skipped by the caller, the
    /// line's UTF-8 checked); returns its end. Nesting counts from this value.
    pub fn value_at(&mut self, b: &[u8], i: usize) -> Result<usize, ScanError> {
        self.value(b, i).map(|(end, _)| end)
    }

    /// Whether the object at `b` (validated) has simple keys (none escaped, none twice):
    /// if so, the bits of its keys as in [`Doc::keys`] and how many fields it has.
    pub fn simple_keys(&mut self, b: &[u8]) -> Option<(u64, usize)> {
        self.keys.clear();
        for f in Fields::new(b) {
            if memchr::memchr(b'\\', &b[f.key.clone()]).is_some() || !self.keys.add(b, f.key) {
                return None;
            }
        }
        self.keys
            .finish(b)
            .then_some((self.keys.mask, self.keys.spans.len()))
    }
}

/// The bit of [`Doc::keys`] that stands for `key` (its bytes as written, without quotes).
pub fn key_bucket(key: &[u8]) -> u8 {
    bucket(key)
}

fn bucket(key: &[u8]) -> u8 {
    let first = key.first().copied().unwrap_or(0) as usize;
    let last = key.last().copied().unwrap_or(0) as usize;
    ((key.len() * 7 + first * 3 + last) & 63) as u8
}

/// Past the whitespace at `b[i..]`.
pub fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && ws(b[i]) {
        i += 1;
    }
    i
}

/// The literal `lit` (`true`, `false`, `null`) at `b[i]`; returns its end.
pub fn literal(b: &[u8], i: usize, lit: &[u8]) -> Result<usize, ScanError> {
    if b.get(i..i + lit.len()) == Some(lit) {
        Ok(i + lit.len())
    } else {
        err(i, "invalid literal")
    }
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// A number at `b[i]`; returns its end. Values too large for a double are refused.
pub fn number(b: &[u8], start: usize) -> Result<usize, ScanError> {
    let mut i = start;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i + 1),
        _ => return err(i, "invalid number"),
    }
    let mut exp = false;
    if b.get(i) == Some(&b'.') {
        let j = digits(b, i + 1);
        if j == i + 1 {
            return err(j, "invalid number");
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        exp = true;
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let j = digits(b, i);
        if j == i {
            return err(j, "invalid number");
        }
        i = j;
    }
    if exp || i - start > 300 {
        // only an exponent or a very long number can overflow
        let text = std::str::from_utf8(&b[start..i]).unwrap_or("x");
        if !text.parse::<f64>().is_ok_and(f64::is_finite) {
            return err(start, "number out of range");
        }
    }
    Ok(i)
}

/// The offset of the first byte in `b` that is `"`, `\\` or below 0x20 (a control
/// character), or `b.len()` if none is.
#[inline]
fn special(b: &[u8]) -> usize {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86_64; every load reads 16 bytes inside `b` (i + 16 <= len)
        // with an unaligned load.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let bs = _mm_set1_epi8(b'\\' as i8);
            let ctl = _mm_set1_epi8(0x1f);
            while i + 16 <= b.len() {
                let x = _mm_loadu_si128(b.as_ptr().add(i).cast());
                // x <= 0x1f (unsigned): max(x, 0x1f) == 0x1f
                let low = _mm_cmpeq_epi8(_mm_max_epu8(x, ctl), ctl);
                let hit = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bs)),
                    low,
                );
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
                i += 16;
            }
        }
    }
    while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..=0x1f) {
        i += 1;
    }
    i
}

/// A string at `b[i]` (the opening quote); returns its end (after the closing quote) and
/// whether it contains an escape. Checks everything but UTF-8 (checked once per line).
pub fn string(b: &[u8], start: usize) -> Result<(usize, bool), ScanError> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        i += special(b.get(i..).unwrap_or(&[]));
        let Some(&c) = b.get(i) else {
            return err(i, "EOF while parsing a string");
        };
        match c {
            b'"' => return Ok((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let Some(u) = hex4(b, i + 2) else {
                            return err(i, "invalid escape");
                        };
                        i += 6;
                        match u {
                            // a high surrogate must be followed by a low one
                            0xd800..=0xdbff => match b.get(i..i + 2) {
                                Some(b"\\u") if matches!(hex4(b, i + 2), Some(0xdc00..=0xdfff)) => {
                                    i += 6
                                }
                                _ => return err(i, "invalid surrogate"),
                            },
                            0xdc00..=0xdfff => return err(i, "invalid surrogate"),
                            _ => {}
                        }
                    }
                    _ => return err(i, "invalid escape"),
                }
            }
            0..=0x1f => return err(i, "control character while parsing a string"),
            _ => i += 1,
        }
    }
}

/// The four hex digits at `b[i..i + 4]` as a number.
fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let h = b.get(i..i + 4)?;
    let s = std::str::from_utf8(h).ok()?;
    if !h.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// The end of the value that starts at `b[i]` in validated JSON.
pub fn skip(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => string_end(b, i),
        Some(&open @ (b'{' | b'[')) => {
            // in valid JSON the brackets of the other kind balance inside, so only this
            // kind's brackets and the strings (which may hold any bracket) matter
            let close = if open == b'{' { b'}' } else { b']' };
            let mut depth = 0usize;
            let mut j = i;
            while let Some(n) = memchr::memchr3(b'"', open, close, b.get(j..).unwrap_or(&[])) {
                j += n;
                match b[j] {
                    b'"' => {
                        j = string_end(b, j);
                        continue;
                    }
                    c if c == open => depth += 1,
                    _ => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                }
                j += 1;
            }
            b.len()
        }
        Some(_) => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            j
        }
        None => i,
    }
}

/// The end (after the closing quote) of the string at `b[i]` in validated JSON, or the end
/// of `b` (16 bytes at a time).
pub fn string_end(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        j += special(&b[j..]);
        match b.get(j) {
            Some(b'"') => return j + 1,
            Some(b'\\') => j += 2,
            // a control character: only in bytes that were not validated
            Some(_) => j += 1,
            None => break,
        }
    }
    b.len()
}

/// Where the next item of a container starts, from the end of the previous one (or just
/// after the opening bracket): past whitespace and one comma.
fn item_start(b: &[u8], i: usize) -> usize {
    let i = skip_ws(b, i);
    if b.get(i) == Some(&b',') {
        skip_ws(b, i + 1)
    } else {
        i
    }
}

/// One field of an object: where its key (inside the quotes) and its value are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The whole field, from the key's opening quote to the end of the value.
    pub span: Range<usize>,
    /// The key's bytes, without the quotes (escapes as written).
    pub key: Range<usize>,
    /// The value's bytes.
    pub value: Range<usize>,
}

/// The fields of the validated object at the start of `b`, in order.
pub struct Fields<'a> {
    b: &'a [u8],
    i: usize,
    done: bool,
}

impl<'a> Fields<'a> {
    /// Iterate the object that starts at `b[0]` (`{`).
    pub fn new(b: &'a [u8]) -> Self {
        Self {
            b,
            i: 1,
            done: b.first() != Some(&b'{'),
        }
    }

    /// Iterate the same object's fields from the one whose key starts at `b[i]` (a
    /// [`Field::span`] start from an earlier walk).
    pub fn at(b: &'a [u8], i: usize) -> Self {
        Self {
            b,
            i,
            done: b.first() != Some(&b'{'),
        }
    }
}

impl Iterator for Fields<'_> {
    type Item = Field;
    fn next(&mut self) -> Option<Field> {
        if self.done {
            return None;
        }
        let b = self.b;
        let i = item_start(b, self.i);
        if b.get(i) != Some(&b'"') {
            self.done = true;
            return None;
        }
        let kend = string_end(b, i);
        let colon = skip_ws(b, kend);
        if b.get(colon) != Some(&b':') || kend < i + 2 {
            self.done = true;
            return None;
        }
        let vstart = skip_ws(b, colon + 1);
        let vend = skip(b, vstart);
        self.i = vend;
        if vend <= vstart {
            self.done = true;
            return None;
        }
        Some(Field {
            span: i..vend,
            key: i + 1..kend - 1,
            value: vstart..vend,
        })
    }
}

/// The value of one top-level field of a raw line, found without parsing the line: used to
/// partition events over workers and to key Kafka records (`flow_id`, `src_ip`, ...).
///
/// Only the object's own fields are looked at ([`Fields`]): a nested object that holds the
/// same key is skipped whole (`{"a":{"flow_id":1},"flow_id":2}` gives `2`). Keys compare
/// byte for byte as written, so a key spelled with an escape does not match; the first
/// field with the key wins. On a line that is not a JSON object the answer is `None` or
/// meaningless bytes of the line, never a panic. Cost: about the bytes before the field.
#[derive(Debug, Clone)]
pub struct FieldKey {
    key: Box<[u8]>,
}

impl FieldKey {
    /// A lookup of the top-level field `key`.
    pub fn new(key: &str) -> Self {
        Self {
            key: key.as_bytes().into(),
        }
    }

    /// The raw bytes of the field's value: a number as written, a string with its quotes.
    pub fn raw<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        let obj = &line[skip_ws(line, 0)..];
        Fields::new(obj)
            .find(|f| obj[f.key.clone()] == *self.key)
            .map(|f| &obj[f.value])
    }

    /// The value without the quotes of a string.
    pub fn value<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        let v = self.raw(line)?;
        Some(
            v.strip_prefix(b"\"")
                .and_then(|s| s.strip_suffix(b"\""))
                .unwrap_or(v),
        )
    }
}

/// The elements of the validated array at the start of `b`, in order.
pub struct Elements<'a> {
    b: &'a [u8],
    i: usize,
    done: bool,
}

impl<'a> Elements<'a> {
    /// Iterate the array that starts at `b[0]` (`[`).
    pub fn new(b: &'a [u8]) -> Self {
        Self {
            b,
            i: 1,
            done: b.first() != Some(&b'['),
        }
    }
}

impl Iterator for Elements<'_> {
    type Item = Range<usize>;
    fn next(&mut self) -> Option<Range<usize>> {
        if self.done {
            return None;
        }
        let b = self.b;
        let i = item_start(b, self.i);
        if kind(b.get(i..).unwrap_or(&[])).is_none() {
            self.done = true;
            return None;
        }
        let end = skip(b, i);
        self.i = end;
        if end <= i {
            self.done = true;
            return None;
        }
        Some(i..end)
    }
}

/// The value of a number already validated, when it is an integer of at most 15 digits
/// (exact as a double); None otherwise (parse it the long way).
pub fn small_integer(b: &[u8]) -> Option<f64> {
    let (neg, digits) = match b.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (d - b'0') as i64;
    }
    Some(if neg { -(n as f64) } else { n as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_key_reads_the_top_level_only() {
        let k = FieldKey::new("flow_id");
        assert_eq!(
            k.raw(br#"{"a":1,"flow_id": 1251312473193421,"b":2}"#),
            Some(&b"1251312473193421"[..])
        );
        assert_eq!(k.raw(br#"  {"flow_id":7}"#), Some(&b"7"[..]));
        assert_eq!(k.raw(br#"{"x":1}"#), None);
        // a nested object with the key is skipped, as is a string value holding it
        assert_eq!(
            k.raw(br#"{"a":{"flow_id":1},"s":"\"flow_id\":3","flow_id":2}"#),
            Some(&b"2"[..])
        );
        assert_eq!(k.raw(br#"{"a":{"flow_id":1}}"#), None);
        assert_eq!(k.raw(br#"[{"flow_id":1}]"#), None);
        let ip = FieldKey::new("src_ip");
        assert_eq!(
            ip.raw(br#"{"src_ip":"10.0.0.1","x":1}"#),
            Some(&b"\"10.0.0.1\""[..])
        );
        assert_eq!(
            ip.value(br#"{"src_ip":"10.0.0.1","x":1}"#),
            Some(&b"10.0.0.1"[..])
        );
        // garbage: no panic
        for junk in [
            &b"{"[..],
            b"{\"",
            b"{\"flow_id\"",
            b"{\"flow_id\":",
            b"}{",
            b"",
        ] {
            let _ = k.raw(junk);
        }
    }

    fn ok(s: &str) -> bool {
        Scanner::new().validate(s.as_bytes()).is_ok()
    }

    #[test]
    fn accepts_json_and_refuses_the_rest() {
        for good in [
            "{}",
            " {\"a\":1} ",
            "[1,2.5,-0,1e5,1E-5,true,false,null,\"x\\n\\u00e9\"]",
            "\"s\"",
            "0",
            "{\"a\":{\"b\":[{}]}}",
            "\t[ ]\r\n",
            "\"\\ud800\\udc00\"",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "",
            " ",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "tru",
            "nul",
            "\"a",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"a\u{1}\"",
            "{} x",
            "[1 2]",
            "{\"a\" 1}",
            "1e400",
            "{'a':1}",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        assert!(Scanner::new().validate(b"\"\xff\"").is_err());
    }

    #[test]
    fn depth_is_limited() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(ok(&deep(MAX_DEPTH)));
        assert!(!ok(&deep(MAX_DEPTH + 1)));
        // far too deep is refused without recursion
        assert!(!ok(&"[".repeat(1 << 20)));
    }

    #[test]
    fn simple_keys() {
        let mut s = Scanner::new();
        assert!(s.validate(br#"{"a":1,"b":{"a":2}}"#).unwrap().simple);
        assert!(!s.validate(br#"{"a":1,"a":2}"#).unwrap().simple);
        assert!(!s.validate(br#"{"\u0061":1}"#).unwrap().simple);
        assert!(s.simple_keys(br#"{"x":1,"y":2}"#).is_some());
        assert!(s.simple_keys(br#"{"x":1,"x":2}"#).is_none());
    }

    #[test]
    fn key_bits_cover_every_key() {
        let mut s = Scanner::new();
        let line = br#"{"timestamp":1,"flow_id":2,"event_type":"dns","dns":{"rrname":"x"},"":0}"#;
        let d = s.validate(line).unwrap();
        assert_eq!(d.fields, 5);
        let (nested, n) = s.simple_keys(br#"{"rrname":"x","rrtype":"A"}"#).unwrap();
        assert_eq!(n, 2);
        for k in [&b"timestamp"[..], b"flow_id", b"event_type", b"dns", b""] {
            assert_ne!(d.keys & (1 << key_bucket(k)), 0, "{k:?}");
        }
        for k in [&b"rrname"[..], b"rrtype"] {
            assert_ne!(nested & (1 << key_bucket(k)), 0, "{k:?}");
        }
        // only the keys' bits: a key of another length and bytes is ruled out
        assert_eq!(d.keys.count_ones(), 5);
        assert_eq!(d.keys & (1 << key_bucket(b"event_count")), 0);
        // not simple, not an object: every key may be there
        assert_eq!(s.validate(br#"{"a":1,"a":2}"#).unwrap().keys, u64::MAX);
        assert_eq!(s.validate(br#"[1]"#).unwrap().keys, u64::MAX);
    }

    #[test]
    fn many_keys_alike_are_checked_by_sorting() {
        // 200,000 keys of one length with the same first and last byte: one small-hash
        // bucket; compared pairwise this test would run for minutes, sorted it takes ms
        let body: Vec<String> = (0..200_000).map(|i| format!("\"a{i:07}a\":1")).collect();
        let line = format!("{{{}}}", body.join(","));
        let mut s = Scanner::new();
        assert!(s.validate(line.as_bytes()).unwrap().simple);
        assert!(s.simple_keys(line.as_bytes()).is_some());
        let dup = format!("{{{},\"a0000007a\":2}}", body.join(","));
        assert!(!s.validate(dup.as_bytes()).unwrap().simple);
        assert!(s.simple_keys(dup.as_bytes()).is_none());
    }

    #[test]
    fn walks_fields_and_elements() {
        let b = br#"{"a" : "x\"}" , "b":[1,{"c":"]"}], "d":{"e":null},"f":-1.5e3}"#;
        let f: Vec<_> = Fields::new(b)
            .map(|f| {
                (
                    String::from_utf8_lossy(&b[f.key]).into_owned(),
                    String::from_utf8_lossy(&b[f.value]).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            f,
            [
                ("a".into(), r#""x\"}""#.into()),
                ("b".into(), r#"[1,{"c":"]"}]"#.into()),
                ("d".into(), r#"{"e":null}"#.into()),
                ("f".into(), "-1.5e3".into()),
            ]
        );
        // a walk can resume at any field it found before
        for f in Fields::new(b) {
            assert_eq!(Fields::at(b, f.span.start).next(), Some(f.clone()));
            let rest: Vec<_> = Fields::at(b, f.span.start).collect();
            let all: Vec<_> = Fields::new(b).skip_while(|g| g.span != f.span).collect();
            assert_eq!(rest, all);
        }
        let a = br#"[ 1, "a,b" ,[2],{}]"#;
        let e: Vec<_> = Elements::new(a).map(|r| &a[r]).collect();
        assert_eq!(e, [&b"1"[..], b"\"a,b\"", b"[2]", b"{}"]);
        assert_eq!(Elements::new(b"[]").count(), 0);
        assert_eq!(Fields::new(b"{ }").count(), 0);
    }

    #[test]
    fn garbage_never_panics() {
        for g in [
            &b"{\"a"[..],
            b"{\"a\":",
            b"[",
            b"{\"a\":[",
            b"\"",
            b"{,",
            b"[,,",
        ] {
            let _ = Fields::new(g).count();
            let _ = Elements::new(g).count();
            let _ = skip(g, 0);
        }
    }

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_character() {
        for len in 0..40 {
            for filler in [b'a', b' ', 0x7f, 0x80, 0xc3, 0xff] {
                let plain = vec![filler; len];
                assert_eq!(special(&plain), len);
                for pos in 0..len {
                    for c in [b'"', b'\\', 0, 0x1f] {
                        let mut v = plain.clone();
                        v[pos] = c;
                        assert_eq!(special(&v), pos, "{v:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn small_integers() {
        assert_eq!(small_integer(b"-12"), Some(-12.0));
        assert_eq!(small_integer(b"1251312473193421"), None);
        assert_eq!(small_integer(b"1.5"), None);
    }
}
