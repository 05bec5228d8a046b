//! JSON objects to Arrow columns, one pass per line, the schema inferred as rows come.
//!
//! A [`Columns`] is one partition's row group in the making: a tree of columns that mirrors
//! the objects appended so far. Each column has a kind, decided by the first non-null value
//! and widened in place when a later value allows it:
//!
//! | JSON | Arrow | widened by |
//! |---|---|---|
//! | only `null` so far | `Null` | any value (earlier rows stay null) |
//! | `true`/`false` | `Boolean` | |
//! | integers that fit an `i64` | `Int64`, exactly | a fraction or an exponent (or an integer beyond `i64`): `Float64` |
//! | other numbers | `Float64` | |
//! | EVE timestamps of one form and offset (`2025-03-10T09:00:17.260943+0000`) | `Timestamp(Microsecond, "+00:00")`, UTC, the text's offset in field metadata ([`timestamps`]) | a value of another form or offset: `Utf8`, every value as it was |
//! | other strings | `Utf8` (unescaped) | |
//! | objects | `Struct`, fields in order of first appearance | a new key: a new field, null in earlier rows |
//! | arrays | `List` of one element kind | (the element kind widens the same way) |
//! | anything else | `Utf8` holding each value's JSON text, as written (field metadata `dragonfly:json`) | |
//!
//! Anything else is a *conflict* (a string where numbers were, an object where strings were,
//! ...): [`Columns::append`] then leaves the tree as it was before the row and names the
//! column. The caller writes out the rows it has, makes that column JSON text
//! ([`Columns::make_json`]) and appends the row again. JSON text is for good: the column stays
//! text in later files of that partition, so its type never flips back and forth.
//! Also JSON text: objects nested deeper than [`MAX_DEPTH`], objects with more than
//! [`MAX_FIELDS`] keys or a key longer than [`MAX_NAME`] bytes, an object whose new field
//! would take the schema past [`MAX_COLUMNS`] columns in all (a hostile stream cannot make
//! thousands of columns), and objects that have only ever been empty (`{}`: Parquet has no
//! empty struct). The writer
//! also ends a row group at [`GROUP_CELLS`] values (rows times columns), so a wide schema
//! means smaller row groups rather than more memory.
//!
//! A key that appears twice in one object keeps its first value.
//!
//! A line that is not JSON (by the engine's scanner's rules: UTF-8, the grammar, finite
//! numbers) is refused whole, naming the byte where it goes wrong.
//!
//! Cost: one SIMD UTF-8 pass and one walk over each line that checks the grammar as it
//! parses (no separate validation), no allocation per value beyond the column buffers
//! themselves; a field is found by trying the next one in the previous row's order first
//! (events of one kind keep their keys in order), then a hash lookup. A field a row lacks
//! costs nothing then: its nulls are filled in when it next has a value (in bulk), or when
//! the rows are taken, so a row costs its own fields, not the width of its partition's
//! schema.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, NullArray, StringArray,
    StructArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, TimeUnit};

use super::timestamps;
use dragonfly_event::json::{literal, number, skip_ws as ws, string, utf8, ScanError, Scanner};

/// The time zone of typed timestamp columns (their values are UTC).
pub const UTC: &str = "+00:00";

/// Nesting below which values are kept as JSON text.
pub const MAX_DEPTH: usize = 16;
/// Keys an object may have before it is kept as JSON text.
pub const MAX_FIELDS: usize = 512;
/// Columns a partition's schema may have in all (every field at every level): past it, an
/// object that would add one is kept as JSON text. Suricata's widest events (`stats`) have
/// ~450; without a bound one line of nested objects (512 keys each) could make hundreds of
/// thousands, and every later row of its partition would carry a null in each.
pub const MAX_COLUMNS: usize = 2048;
/// Bytes a field's name may have (as written) before its object is kept as JSON text: a
/// column's name is kept for as long as the partition and written in every file's footer.
pub const MAX_NAME: usize = 256;
/// Values (rows times columns) in a row group before it is written out: a partition with
/// many columns writes smaller row groups, so the nulls a narrow row carries in a wide
/// schema stay bounded in memory and in encoding work (16M: 65,536 rows up to 256 columns).
pub const GROUP_CELLS: usize = 16 << 20;
/// The column a row's top-level fields go to when there is no room for them as columns of
/// their own (past [`MAX_FIELDS`] at the top, past [`MAX_COLUMNS`], or a name longer than
/// [`MAX_NAME`]): JSON text of one object holding those fields as written, in order; null in
/// rows where everything fit. The row is kept whole.
pub const OVERFLOW: &str = "dragonfly_overflow";
/// Field metadata key marking a column of JSON text.
pub const JSON_METADATA: &str = "dragonfly:json";

/// One step of a column's path: a field of an object, or the elements of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The field of that name.
    Field(String),
    /// The elements of a list.
    Item,
}

/// A column whose kind cannot take a value: its path from the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict(pub Vec<Step>);

/// Why a value could not be parsed into its column.
#[derive(Debug)]
enum Bad {
    /// The column cannot take it (see the module doc).
    Conflict(Conflict),
    /// The line is not JSON there.
    Syntax(ScanError),
}

impl From<ScanError> for Bad {
    fn from(e: ScanError) -> Self {
        Bad::Syntax(e)
    }
}

fn syntax<T>(offset: usize, what: &'static str) -> Result<T, Bad> {
    Err(Bad::Syntax(ScanError { offset, what }))
}

/// What a parse carries along: the scanner (for values checked whole) and whether the whole
/// line was found to be JSON already.
struct Cx<'s> {
    sc: &'s mut Scanner,
    checked: bool,
    /// Columns this row may still add ([`MAX_COLUMNS`]).
    room: usize,
    /// Values this row's list elements hold ([`Columns::cells`]).
    cells: usize,
    /// Fields of this row kept as JSON text for want of room: folded into the overflow
    /// column, or (new fields) made text in place.
    folded: usize,
    /// The last conflict was for want of room (fields, columns, a long name), not of type.
    no_room: bool,
}

impl Cx<'_> {
    /// Before a change a refused row could not undo (a new column, a kind widened): the whole
    /// line `b` must be JSON. Checked once per row; such changes are rare (a partition's
    /// first rows, a new field).
    fn before_change(&mut self, b: &[u8]) -> Result<(), Bad> {
        if !self.checked {
            self.sc.validate(b)?;
            self.checked = true;
        }
        Ok(())
    }
}

/// A conflict at the column itself (the callers prepend the path).
fn conflict<T>() -> Result<T, Bad> {
    Err(Bad::Conflict(Conflict(Vec::new())))
}

/// `r` with `step` prepended to a conflict's path.
fn at<T>(r: Result<T, Bad>, step: impl FnOnce() -> Step) -> Result<T, Bad> {
    r.map_err(|e| match e {
        Bad::Conflict(mut c) => {
            c.0.insert(0, step());
            Bad::Conflict(c)
        }
        e => e,
    })
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                Step::Field(n) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(n)?
                }
                Step::Item => f.write_str("[]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Validity bits (64 to a word) and their count of nulls: a push is a shift and an or, and
/// a column without nulls hands over no bitmap at all.
#[derive(Debug, Default)]
struct Valid {
    bits: Vec<u64>,
    len: usize,
    nulls: usize,
}

impl Valid {
    fn new() -> Self {
        Self::default()
    }
    fn nulls(n: usize) -> Self {
        Valid {
            bits: vec![0; n.div_ceil(64)],
            len: n,
            nulls: n,
        }
    }
    #[inline]
    fn push(&mut self, v: bool) {
        let i = self.len;
        if i.is_multiple_of(64) {
            self.bits.push(0);
        }
        if v {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.nulls += 1;
        }
        self.len = i + 1;
    }
    /// `k` nulls more (the bits past `len` are always clear).
    fn pad(&mut self, k: usize) {
        self.len += k;
        self.nulls += k;
        self.bits.resize(self.len.div_ceil(64), 0);
    }
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, i: usize) -> bool {
        self.bits[i / 64] >> (i % 64) & 1 == 1
    }
    fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        self.bits.truncate(n.div_ceil(64));
        if !n.is_multiple_of(64) {
            if let Some(last) = self.bits.last_mut() {
                *last &= (1u64 << (n % 64)) - 1;
            }
        }
        self.len = n;
        let set: usize = self.bits.iter().map(|w| w.count_ones() as usize).sum();
        self.nulls = n - set;
    }
    fn take(&mut self) -> Option<NullBuffer> {
        let Valid {
            mut bits,
            len,
            nulls,
        } = std::mem::take(self);
        if nulls == 0 {
            // no bitmap handed over: keep the words' memory for the next rows
            bits.clear();
            self.bits = bits;
            return None;
        }
        // Arrow numbers bits from the least significant of each byte: little-endian words
        bits.iter_mut().for_each(|w| *w = w.to_le());
        Some(NullBuffer::new(arrow_buffer::BooleanBuffer::new(
            Buffer::from_vec(bits),
            0,
            len,
        )))
    }
    fn recycle(&mut self, nulls: Option<NullBuffer>) {
        if let Some(n) = nulls {
            reuse(&mut self.bits, n.into_inner().into_inner());
        }
    }
    fn release(&mut self) {
        self.bits.shrink_to_fit();
    }
}

/// Put the memory of `b` (handed to Arrow by a `take`, now unshared) back under `into` if it
/// is larger, keeping what `into` holds. A buffer still shared (or not from a `Vec` of `T`)
/// is left alone: reuse is only ever of memory nothing else can see.
fn reuse<T: arrow_buffer::ArrowNativeType>(into: &mut Vec<T>, b: Buffer) {
    if let Ok(mut v) = b.into_vec::<T>() {
        if v.capacity() > into.capacity() {
            v.clear();
            v.extend_from_slice(into);
            *into = v;
        }
    }
}

/// The concrete array behind `a`, owned (its buffers unshared once `a` is dropped).
fn owned<T: arrow_array::Array + Clone + 'static>(a: ArrayRef) -> Option<T> {
    let t = a.as_any().downcast_ref::<T>()?.clone();
    drop(a);
    Some(t)
}

/// Strings (or JSON text): offsets into one byte buffer.
#[derive(Debug)]
struct Text {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    valid: Valid,
}

impl Text {
    fn nulls(n: usize) -> Self {
        Text {
            offsets: vec![0; n + 1],
            bytes: Vec::new(),
            valid: Valid::nulls(n),
        }
    }
    #[inline]
    fn push(&mut self, s: &[u8]) {
        self.bytes.extend_from_slice(s);
        self.offsets.push(self.bytes.len() as i32);
        self.valid.push(true);
    }
    #[inline]
    fn push_null(&mut self) {
        self.offsets.push(self.bytes.len() as i32);
        self.valid.push(false);
    }
    fn pad(&mut self, k: usize) {
        let end = self.bytes.len() as i32;
        self.offsets.resize(self.offsets.len() + k, end);
        self.valid.pad(k);
    }
    fn truncate(&mut self, n: usize) {
        self.offsets.truncate(n + 1);
        self.bytes.truncate(self.offsets[n] as usize);
        self.valid.truncate(n);
    }
    fn recycle(&mut self, a: ArrayRef) {
        if let Some(a) = owned::<StringArray>(a) {
            let (offsets, bytes, nulls) = a.into_parts();
            reuse(&mut self.offsets, offsets.into_inner().into_inner());
            reuse(&mut self.bytes, bytes);
            self.valid.recycle(nulls);
        }
    }
    fn release(&mut self) {
        self.offsets.shrink_to_fit();
        self.bytes.shrink_to_fit();
        self.valid.release();
    }
    fn take(&mut self) -> ArrayRef {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let bytes = std::mem::take(&mut self.bytes);
        let nulls = self.valid.take();
        // SAFETY: offsets start at 0 and never decrease (each push appends the buffer's new
        // length), and every slice pushed is valid UTF-8: it is a string of a line checked
        // as UTF-8 whole before its parse (`Columns::append`), cut at ASCII quote bytes, or a
        // string serde_json unescaped, or JSON text cut at value boundaries (ASCII bytes) of
        // such a line; the bytes of a row that failed are cut off again (`truncate`).
        Arc::new(unsafe {
            StringArray::new_unchecked(
                OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
                Buffer::from_vec(bytes),
                nulls,
            )
        })
    }
}

/// One column (see the module doc).
#[derive(Debug)]
enum Col {
    Null(usize),
    Bool(BooleanBufferBuilder, Valid),
    Int(Vec<i64>, Valid),
    Float(Vec<f64>, Valid),
    /// Timestamps of one form and offset (minutes), UTC microseconds ([`timestamps`]).
    Time(Vec<i64>, Valid, i32),
    Str(Text),
    Json(Text),
    Struct(Box<Obj>),
    List(Box<List>),
}

#[derive(Debug)]
struct Obj {
    names: Vec<String>,
    cols: Vec<Col>,
    index: HashMap<Box<[u8]>, usize>,
    valid: Valid,
    len: usize,
    depth: usize,
}

#[derive(Debug)]
struct List {
    offsets: Vec<i32>,
    item: Col,
    valid: Valid,
    /// Values one element makes (see [`Col::measure`]).
    flat: usize,
}

fn unescape(raw: &[u8]) -> Option<String> {
    serde_json::from_slice::<String>(raw).ok()
}

impl Obj {
    fn new(len: usize, depth: usize) -> Self {
        Obj {
            names: Vec::new(),
            cols: Vec::new(),
            index: HashMap::new(),
            valid: Valid::nulls(len),
            len,
            depth,
        }
    }

    /// Parse the object at `b[i]` (`{`) into a new row, checking its JSON grammar as it
    /// goes; returns the index after it. On an error some columns may hold one value more
    /// than `len`: the caller truncates.
    fn parse(&mut self, b: &[u8], i: usize, cx: &mut Cx) -> Result<usize, Bad> {
        let r = self.len;
        let mut next = 0usize;
        // the row's fields that found no room (at the top only): (key as written, value)
        let mut folded: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::new();
        let mut j = ws(b, i + 1);
        if b.get(j) == Some(&b'}') {
            j += 1;
        } else {
            loop {
                if b.get(j) != Some(&b'"') {
                    return syntax(j, "expected a key");
                }
                let kstart = j;
                let (kend, escaped) = string(b, j)?;
                let key = &b[j + 1..kend - 1];
                j = ws(b, kend);
                if b.get(j) != Some(&b':') {
                    return syntax(j, "expected ':'");
                }
                j = ws(b, j + 1);
                // the next key in the previous row's order, or one of the few after it (an
                // optional field absent), before a hash lookup
                let near = (next..self.names.len().min(next + 4)).find(|&i| {
                    let n = self.names[i].as_bytes();
                    // length and first byte before the bytes (most misses end there)
                    n.len() == key.len() && n.first() == key.first() && n == key
                });
                // a column added for this key in this row, and the room before it
                let mut added = None;
                let found = match near {
                    Some(i) if !escaped => Some(i),
                    _ => match self.find(key, escaped) {
                        Some(i) => Some(i),
                        None => {
                            if self.cols.len() >= MAX_FIELDS || cx.room == 0 || key.len() > MAX_NAME
                            {
                                if self.depth > 0 {
                                    cx.no_room = true;
                                    return conflict();
                                }
                                // no room for it as a column: it goes to the row's overflow
                                None
                            } else {
                                added = Some(cx.room);
                                cx.room -= 1;
                                cx.before_change(b)?;
                                Some(self.add(key, escaped, r))
                            }
                        }
                    },
                };
                j = match found {
                    None => {
                        let end = cx.sc.value_at(b, j)?;
                        folded.push((kstart..kend, j..end));
                        end
                    }
                    Some(i) => {
                        next = i + 1;
                        let col = &mut self.cols[i];
                        if col.len() > r {
                            cx.sc.value_at(b, j)? // the key again in this object: the first value stays
                        } else {
                            // rows where the field was absent: nulls, filled in only now
                            col.pad_to(r);
                            let depth = self.depth + 1;
                            cx.no_room = false;
                            let parsed = at(col.parse(b, j, depth, cx), || {
                                Step::Field(self.names[i].clone())
                            });
                            match (parsed, added) {
                                // a top-level field new in this row whose value needs more
                                // columns than there is room for (its earlier rows are all
                                // null): what did not fit becomes JSON text now, no retry
                                (Err(Bad::Conflict(c)), Some(_))
                                    if self.depth == 0 && cx.no_room =>
                                {
                                    self.text_in_place(b, i, j, r, c, cx)?
                                }
                                (p, _) => p?,
                            }
                        }
                    }
                };
                j = ws(b, j);
                match b.get(j) {
                    Some(b',') => j = ws(b, j + 1),
                    Some(b'}') => {
                        j += 1;
                        break;
                    }
                    None => return syntax(j, "EOF while parsing an object"),
                    _ => return syntax(j, "expected ',' or '}'"),
                }
            }
        }
        if !folded.is_empty() {
            self.fold(b, r, &folded, cx)?;
        }
        self.valid.push(true);
        self.len += 1;
        Ok(j)
    }

    /// Write the fields of row `r` that found no room as columns into the [`OVERFLOW`]
    /// column, as one JSON object of them as written (added past [`MAX_COLUMNS`] if need be:
    /// the schema's one column beyond it).
    fn fold(
        &mut self,
        b: &[u8],
        r: usize,
        folded: &[(std::ops::Range<usize>, std::ops::Range<usize>)],
        cx: &mut Cx,
    ) -> Result<(), Bad> {
        let i = match self.find(OVERFLOW.as_bytes(), false) {
            Some(i) => i,
            None => {
                cx.before_change(b)?;
                let i = self.add(OVERFLOW.as_bytes(), false, r);
                self.cols[i] = Col::Json(Text::nulls(r));
                i
            }
        };
        let Col::Json(t) = &mut self.cols[i] else {
            // a field of that very name came as something else: make it text, then again
            return Err(Bad::Conflict(Conflict(vec![Step::Field(OVERFLOW.into())])));
        };
        if t.valid.len() > r {
            // the row had a field of that name itself: it stays, with what did not fit lost
            // to the count below (rare by choice of name)
            return Err(Bad::Conflict(Conflict(vec![Step::Field(OVERFLOW.into())])));
        }
        t.pad(r - t.valid.len());
        let mut text = Vec::with_capacity(
            2 + folded
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>(),
        );
        text.push(b'{');
        for (n, (k, v)) in folded.iter().enumerate() {
            if n > 0 {
                text.push(b',');
            }
            text.extend_from_slice(&b[k.clone()]);
            text.push(b':');
            text.extend_from_slice(&b[v.clone()]);
        }
        text.push(b'}');
        t.push(&text);
        cx.folded += folded.len();
        Ok(())
    }

    fn find(&self, key: &[u8], escaped: bool) -> Option<usize> {
        if escaped {
            let name = unescape(&quoted(key))?;
            return self.index.get(name.as_bytes()).copied();
        }
        self.index.get(key).copied()
    }

    fn add(&mut self, key: &[u8], escaped: bool, len: usize) -> usize {
        let name = if escaped {
            unescape(&quoted(key)).unwrap_or_else(|| String::from_utf8_lossy(key).into_owned())
        } else {
            String::from_utf8_lossy(key).into_owned()
        };
        self.index
            .insert(name.as_bytes().to_vec().into_boxed_slice(), self.cols.len());
        self.names.push(name);
        self.cols.push(if self.depth + 1 >= MAX_DEPTH {
            Col::Json(Text::nulls(len))
        } else {
            Col::Null(len)
        });
        self.cols.len() - 1
    }

    /// Field `i` of the root, added in row `r` (its earlier rows are null), could not take
    /// its value at `b[j]` for want of room (`c`, from the field down): make the object that
    /// did not fit JSON text in place — the field's whole value if it was the field's own
    /// object — and parse the value again, until it fits. Returns the index after the value.
    fn text_in_place(
        &mut self,
        b: &[u8],
        i: usize,
        j: usize,
        r: usize,
        mut c: Conflict,
        cx: &mut Cx,
    ) -> Result<usize, Bad> {
        let depth = self.depth + 1;
        // each round makes one object text: at most one per level of nesting (and a few)
        for _ in 0..=MAX_DEPTH * 2 {
            let below = c.0.get(1..).unwrap_or(&[]);
            let Some(col) = self.cols[i].at_path(below) else {
                break;
            };
            *col = Col::Json(Text::nulls(col.len()));
            cx.folded += 1;
            // what the text took back
            let (width, _) = self.measure();
            cx.room = MAX_COLUMNS.saturating_sub(width);
            cx.no_room = false;
            self.cols[i].truncate(r);
            self.cols[i].pad_to(r);
            match at(self.cols[i].parse(b, j, depth, cx), || {
                Step::Field(self.names[i].clone())
            }) {
                Err(Bad::Conflict(again)) if cx.no_room => c = again,
                other => return other,
            }
        }
        Err(Bad::Conflict(c))
    }

    /// Its columns and the values a row makes (see [`Col::measure`]).
    fn measure(&mut self) -> (usize, usize) {
        self.cols
            .iter_mut()
            .map(Col::measure)
            .fold((0, 0), |(l, f), (l2, f2)| (l + l2, f + f2))
    }

    /// Values its fields hold over `rows` rows (see [`Col::cells`]).
    fn cells(&self, rows: usize) -> usize {
        self.cols.iter().map(|c| c.cells(rows)).sum()
    }

    /// `k` null rows: the fields catch up when they next get a value, or at the take.
    fn pad(&mut self, k: usize) {
        self.valid.pad(k);
        self.len += k;
    }

    fn truncate(&mut self, n: usize) {
        for c in &mut self.cols {
            c.truncate(n);
        }
        self.valid.truncate(n);
        self.len = self.len.min(n);
    }

    fn fields(&self) -> Fields {
        self.names
            .iter()
            .zip(&self.cols)
            .map(|(n, c)| c.field(n))
            .collect()
    }

    fn recycle(&mut self, arrays: Vec<ArrayRef>, nulls: Option<NullBuffer>) {
        for (c, a) in self.cols.iter_mut().zip(arrays) {
            c.recycle(a);
        }
        self.valid.recycle(nulls);
    }

    fn release(&mut self) {
        self.cols.iter_mut().for_each(Col::release);
        self.valid.release();
    }

    fn take(&mut self) -> (Fields, Vec<ArrayRef>, Option<NullBuffer>, usize) {
        let len = self.len;
        self.cols.iter_mut().for_each(|c| c.pad_to(len));
        let fields = self.fields();
        let arrays = self.cols.iter_mut().map(Col::take).collect();
        let len = std::mem::take(&mut self.len);
        (fields, arrays, self.valid.take(), len)
    }
}

fn quoted(key: &[u8]) -> Vec<u8> {
    let mut q = Vec::with_capacity(key.len() + 2);
    q.push(b'"');
    q.extend_from_slice(key);
    q.push(b'"');
    q
}

/// An integer that fits an `i64` (no fraction, no exponent), exactly.
#[inline]
fn parse_i64(v: &[u8]) -> Option<i64> {
    let (neg, digits) = match v.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, v),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        // accumulate negatively: i64::MIN has no positive counterpart
        n = n.checked_mul(10)?.checked_sub((d - b'0') as i64)?;
    }
    if neg {
        Some(n)
    } else {
        n.checked_neg()
    }
}

impl Col {
    /// Columns in the file (an object that has only ever been `{}` is one, of JSON text),
    /// and the values one row of this column makes: one per column not under a list, and
    /// a list's offset (its elements count their own, [`List::flat`], set here).
    fn measure(&mut self) -> (usize, usize) {
        match self {
            Col::Struct(o) if !o.cols.is_empty() => o.measure(),
            Col::List(l) => {
                let (leaves, flat) = l.item.measure();
                l.flat = flat;
                (leaves, 1)
            }
            _ => (1, 1),
        }
    }

    /// Values this column holds as a field of `rows` rows (padded or not yet): one per
    /// row for each column under it, and for a list its elements' own.
    fn cells(&self, rows: usize) -> usize {
        match self {
            Col::Struct(o) if !o.cols.is_empty() => o.cells(rows),
            Col::List(l) => rows + l.item.cells(l.item.len()),
            _ => rows,
        }
    }

    fn len(&self) -> usize {
        match self {
            Col::Null(n) => *n,
            Col::Bool(_, v) | Col::Int(_, v) | Col::Float(_, v) | Col::Time(_, v, _) => v.len(),
            Col::Str(t) | Col::Json(t) => t.valid.len(),
            Col::Struct(o) => o.len,
            Col::List(l) => l.valid.len(),
        }
    }

    fn push_null(&mut self) {
        self.pad(1)
    }

    /// Nulls up to row `r` (a field absent from the rows since its last value).
    #[inline]
    fn pad_to(&mut self, r: usize) {
        let n = self.len();
        if n < r {
            self.pad(r - n)
        }
    }

    fn pad(&mut self, k: usize) {
        match self {
            Col::Null(n) => *n += k,
            Col::Bool(b, v) => {
                b.append_n(k, false);
                v.pad(k)
            }
            Col::Int(x, v) | Col::Time(x, v, _) => {
                x.resize(x.len() + k, 0);
                v.pad(k)
            }
            Col::Float(x, v) => {
                x.resize(x.len() + k, 0.0);
                v.pad(k)
            }
            Col::Str(t) | Col::Json(t) => t.pad(k),
            Col::Struct(o) => o.pad(k),
            Col::List(l) => {
                let end = *l.offsets.last().unwrap();
                l.offsets.resize(l.offsets.len() + k, end);
                l.valid.pad(k)
            }
        }
    }

    /// Only the first `n` rows, and nothing of a row begun after them and not finished (the
    /// elements a list or the fields an object had taken when a conflict stopped the row);
    /// a column not yet padded to `n` rows is left as it is.
    fn truncate(&mut self, n: usize) {
        match self {
            Col::Struct(o) => return o.truncate(n),
            Col::List(l) => {
                if n < l.valid.len() {
                    l.offsets.truncate(n + 1);
                    l.valid.truncate(n);
                }
                let end = *l.offsets.last().expect("a list has its first offset") as usize;
                return l.item.truncate(end);
            }
            _ if n >= self.len() => return,
            _ => {}
        }
        match self {
            Col::Null(len) => *len = n.min(*len),
            Col::Bool(b, v) => {
                b.truncate(n);
                v.truncate(n)
            }
            Col::Int(x, v) | Col::Time(x, v, _) => {
                x.truncate(n);
                v.truncate(n)
            }
            Col::Float(x, v) => {
                x.truncate(n);
                v.truncate(n)
            }
            Col::Str(t) | Col::Json(t) => t.truncate(n),
            Col::Struct(_) | Col::List(_) => unreachable!("handled above"),
        }
    }

    /// Parse the value at `b[i]` into one more row, checking its JSON grammar; widen in
    /// place where the table in the module doc allows. Returns the index after the value.
    fn parse(&mut self, b: &[u8], i: usize, depth: usize, cx: &mut Cx) -> Result<usize, Bad> {
        let Some(&c) = b.get(i) else {
            return syntax(i, "EOF while parsing a value");
        };
        if let Col::Json(t) = self {
            let end = cx.sc.value_at(b, i)?;
            if c == b'n' {
                t.push_null();
            } else {
                t.push(&b[i..end]);
            }
            return Ok(end);
        }
        Ok(match c {
            b'n' => {
                let end = literal(b, i, b"null")?;
                self.push_null();
                end
            }
            b't' | b'f' => {
                let end = if c == b't' {
                    literal(b, i, b"true")?
                } else {
                    literal(b, i, b"false")?
                };
                if let Col::Null(n) = *self {
                    cx.before_change(b)?;
                    let mut bb = BooleanBufferBuilder::new(n);
                    bb.append_n(n, false);
                    *self = Col::Bool(bb, Valid::nulls(n));
                }
                let Col::Bool(bb, valid) = self else {
                    return conflict();
                };
                bb.append(c == b't');
                valid.push(true);
                end
            }
            b'"' => {
                let (end, escaped) = string(b, i)?;
                if matches!(self, Col::Null(_) | Col::Time(..)) {
                    // an EVE timestamp (never escaped): typed while every value is one
                    let ts = if escaped {
                        None
                    } else {
                        timestamps::parse(&b[i + 1..end - 1])
                    };
                    if let Col::Null(n) = *self {
                        cx.before_change(b)?;
                        *self = match ts {
                            Some((_, m)) => Col::Time(vec![0; n], Valid::nulls(n), m),
                            None => Col::Str(Text::nulls(n)),
                        };
                    }
                    if let Col::Time(x, valid, m) = self {
                        match ts {
                            Some((t, tm)) if tm == *m => {
                                x.push(t);
                                valid.push(true);
                                return Ok(end);
                            }
                            _ => {
                                // another form or offset: text again, the values as they were
                                cx.before_change(b)?;
                                let mut t = Text::nulls(0);
                                let mut buf = Vec::with_capacity(32);
                                for (k, &v) in x.iter().enumerate() {
                                    if valid.get(k) {
                                        buf.clear();
                                        timestamps::render(v, *m, &mut buf);
                                        t.push(&buf);
                                    } else {
                                        t.push_null();
                                    }
                                }
                                *self = Col::Str(t);
                            }
                        }
                    }
                }
                let Col::Str(t) = self else {
                    return conflict();
                };
                if escaped {
                    match unescape(&b[i..end]) {
                        Some(s) => t.push(s.as_bytes()),
                        None => return syntax(i, "invalid string"),
                    }
                } else {
                    t.push(&b[i + 1..end - 1]);
                }
                end
            }
            b'{' => {
                if let Col::Null(n) = *self {
                    cx.before_change(b)?;
                    *self = Col::Struct(Box::new(Obj::new(n, depth)));
                }
                let Col::Struct(o) = self else {
                    return conflict();
                };
                let before = o.len;
                match o.parse(b, i, cx) {
                    Ok(e) => e,
                    Err(e) => {
                        o.truncate(before);
                        return Err(e);
                    }
                }
            }
            b'[' => {
                if let Col::Null(n) = *self {
                    cx.before_change(b)?;
                    *self = Col::List(Box::new(List {
                        offsets: vec![0; n + 1],
                        item: if depth + 1 >= MAX_DEPTH {
                            Col::Json(Text::nulls(0))
                        } else {
                            Col::Null(0)
                        },
                        valid: Valid::nulls(n),
                        flat: 1, // measured once the row is in
                    }));
                }
                let Col::List(l) = self else {
                    return conflict();
                };
                let items = l.item.len();
                let mut j = ws(b, i + 1);
                if b.get(j) == Some(&b']') {
                    j += 1;
                } else {
                    loop {
                        j = ws(b, at(l.item.parse(b, j, depth + 1, cx), || Step::Item)?);
                        match b.get(j) {
                            Some(b',') => j = ws(b, j + 1),
                            Some(b']') => {
                                j += 1;
                                break;
                            }
                            None => return syntax(j, "EOF while parsing a list"),
                            _ => return syntax(j, "expected ',' or ']'"),
                        }
                    }
                }
                // each element holds a value in every column under the list's item
                cx.cells += (l.item.len() - items) * l.flat.max(1);
                l.offsets.push(l.item.len() as i32);
                l.valid.push(true);
                j
            }
            b'-' | b'0'..=b'9' => {
                let end = number(b, i)?;
                let v = &b[i..end];
                let int = parse_i64(v);
                if let Col::Null(n) = *self {
                    cx.before_change(b)?;
                    *self = if int.is_some() {
                        Col::Int(vec![0; n], Valid::nulls(n))
                    } else {
                        Col::Float(vec![0.0; n], Valid::nulls(n))
                    };
                }
                if let (Col::Int(x, valid), None) = (&mut *self, int) {
                    cx.before_change(b)?;
                    // a fraction where integers were: every value becomes a double
                    let x = x.iter().map(|&i| i as f64).collect();
                    let valid = std::mem::replace(valid, Valid::new());
                    *self = Col::Float(x, valid);
                }
                match self {
                    Col::Int(x, valid) => {
                        x.push(int.unwrap_or_default());
                        valid.push(true)
                    }
                    Col::Float(x, valid) => {
                        let f = match int {
                            Some(i) => i as f64,
                            None => std::str::from_utf8(v)
                                .ok()
                                .and_then(|s| s.parse::<f64>().ok())
                                .unwrap_or(f64::NAN),
                        };
                        x.push(f);
                        valid.push(true)
                    }
                    _ => return conflict(),
                }
                end
            }
            _ => return syntax(i, "expected a JSON value"),
        })
    }

    fn data_type(&self) -> DataType {
        match self {
            Col::Null(_) => DataType::Null,
            Col::Bool(..) => DataType::Boolean,
            Col::Int(..) => DataType::Int64,
            Col::Float(..) => DataType::Float64,
            Col::Time(..) => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            Col::Str(_) | Col::Json(_) => DataType::Utf8,
            Col::Struct(o) if o.cols.is_empty() => DataType::Utf8,
            Col::Struct(o) => DataType::Struct(o.fields()),
            Col::List(l) => DataType::List(Arc::new(l.item.field("item"))),
        }
    }

    fn field(&self, name: &str) -> Field {
        let f = Field::new(name, self.data_type(), true);
        if matches!(self, Col::Json(_)) || matches!(self, Col::Struct(o) if o.cols.is_empty()) {
            f.with_metadata([(JSON_METADATA.to_string(), "true".to_string())].into())
        } else if let Col::Time(_, _, m) = self {
            f.with_metadata(
                [(
                    timestamps::OFFSET_METADATA.to_string(),
                    timestamps::offset_text(*m),
                )]
                .into(),
            )
        } else {
            f
        }
    }

    /// The column's values so far, leaving it empty (its kind stays).
    fn take(&mut self) -> ArrayRef {
        match self {
            Col::Null(n) => Arc::new(NullArray::new(std::mem::take(n))),
            Col::Bool(b, v) => Arc::new(BooleanArray::new(b.finish(), v.take())),
            Col::Int(x, v) => Arc::new(Int64Array::new(std::mem::take(x).into(), v.take())),
            Col::Float(x, v) => Arc::new(Float64Array::new(std::mem::take(x).into(), v.take())),
            Col::Time(x, v, _) => Arc::new(
                TimestampMicrosecondArray::new(std::mem::take(x).into(), v.take())
                    .with_timezone(UTC),
            ),
            Col::Str(t) | Col::Json(t) => t.take(),
            Col::Struct(o) if o.cols.is_empty() => {
                // only ever `{}`: JSON text from now on (Parquet has no empty struct)
                let mut t = Text::nulls(0);
                for i in 0..o.len {
                    if o.valid.get(i) {
                        t.push(b"{}");
                    } else {
                        t.push_null();
                    }
                }
                *self = Col::Json(Text::nulls(0));
                t.take()
            }
            Col::Struct(o) => {
                let (fields, arrays, nulls, len) = o.take();
                Arc::new(
                    StructArray::try_new_with_length(fields, arrays, nulls, len).expect(
                        "struct columns have the struct's length (the take pads every field)",
                    ),
                )
            }
            Col::List(l) => {
                let offsets = std::mem::replace(&mut l.offsets, vec![0]);
                let field = Arc::new(l.item.field("item"));
                let values = l.item.take();
                let nulls = l.valid.take();
                Arc::new(ListArray::new(
                    field,
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    values,
                    nulls,
                ))
            }
        }
    }

    /// Take back the buffers of `a`, the array this column's last `take` made, once the
    /// writer is done with it (see [`Columns::recycle`]). An array of another kind is left.
    fn recycle(&mut self, a: ArrayRef) {
        match self {
            Col::Null(_) | Col::Bool(..) => {}
            Col::Int(x, v) => {
                if let Some(a) = owned::<Int64Array>(a) {
                    let (_, values, nulls) = a.into_parts();
                    reuse(x, values.into_inner());
                    v.recycle(nulls);
                }
            }
            Col::Float(x, v) => {
                if let Some(a) = owned::<Float64Array>(a) {
                    let (_, values, nulls) = a.into_parts();
                    reuse(x, values.into_inner());
                    v.recycle(nulls);
                }
            }
            Col::Time(x, v, _) => {
                if let Some(a) = owned::<TimestampMicrosecondArray>(a) {
                    let (_, values, nulls) = a.into_parts();
                    reuse(x, values.into_inner());
                    v.recycle(nulls);
                }
            }
            Col::Str(t) | Col::Json(t) => t.recycle(a),
            Col::Struct(o) => {
                if let Some(a) = owned::<StructArray>(a) {
                    let (_, arrays, nulls) = a.into_parts();
                    o.recycle(arrays, nulls);
                }
            }
            Col::List(l) => {
                if let Some(a) = owned::<ListArray>(a) {
                    let (_, offsets, values, nulls) = a.into_parts();
                    reuse(&mut l.offsets, offsets.into_inner().into_inner());
                    l.item.recycle(values);
                    l.valid.recycle(nulls);
                }
            }
        }
    }

    /// Let go of the memory kept for rows to come.
    fn release(&mut self) {
        match self {
            Col::Null(_) => {}
            Col::Bool(_, v) => v.release(),
            Col::Int(x, v) | Col::Time(x, v, _) => {
                x.shrink_to_fit();
                v.release()
            }
            Col::Float(x, v) => {
                x.shrink_to_fit();
                v.release()
            }
            Col::Str(t) | Col::Json(t) => t.release(),
            Col::Struct(o) => o.release(),
            Col::List(l) => {
                l.offsets.shrink_to_fit();
                l.item.release();
                l.valid.release()
            }
        }
    }

    fn at_path(&mut self, path: &[Step]) -> Option<&mut Col> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        match (self, first) {
            (Col::Struct(o), Step::Field(n)) => {
                let i = o.names.iter().position(|x| x == n)?;
                o.cols[i].at_path(rest)
            }
            (Col::List(l), Step::Item) => l.item.at_path(rest),
            _ => None,
        }
    }
}

/// One partition's rows in the making (see the module doc).
#[derive(Debug)]
pub struct Columns {
    root: Col,
    bytes: usize,
    /// JSON bytes of the row group whose buffers were taken back ([`Columns::recycle`]).
    retained: usize,
    /// Columns of the schema so far (counted again after any change to it).
    width: usize,
    /// Values a row makes outside its lists (measured with `width`).
    flat: usize,
    /// Values held: see [`Columns::cells`].
    cells: usize,
    /// For JSON text and repeated keys (values checked whole) and for lines that are not
    /// objects (told apart: JSON or not).
    scanner: Scanner,
    /// Fields kept as JSON text for want of room (folded into [`OVERFLOW`], or made text in
    /// place) since the last [`Columns::take_folded`].
    folded: u64,
}

impl Default for Columns {
    fn default() -> Self {
        Self::new()
    }
}

/// What a row could not be appended for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// The line is not JSON.
    NotJson(ScanError),
    /// The line is JSON but not an object (rows are objects).
    NotAnObject,
    /// A column cannot take a value, or a new field would make its object or the schema
    /// too wide (see the module doc): rows so far are unchanged.
    Conflict(Conflict),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::NotJson(e) => write!(f, "a message is not JSON ({e})"),
            AppendError::NotAnObject => f.write_str("a message is not a JSON object"),
            AppendError::Conflict(c) => write!(
                f,
                "column '{c}': its types keep disagreeing, or it would widen the schema past \
                 {MAX_FIELDS} fields in an object or {MAX_COLUMNS} columns, or a field name \
                 is longer than {MAX_NAME} bytes"
            ),
        }
    }
}

impl Columns {
    /// No rows, no columns.
    pub fn new() -> Self {
        Columns {
            root: Col::Struct(Box::new(Obj::new(0, 0))),
            bytes: 0,
            retained: 0,
            width: 0,
            flat: 0,
            cells: 0,
            scanner: Scanner::new(),
            folded: 0,
        }
    }

    /// Fields kept as JSON text for want of room since the last call (see
    /// [`Columns::append`]).
    pub fn take_folded(&mut self) -> u64 {
        std::mem::take(&mut self.folded)
    }

    fn count_width(&mut self) {
        let Col::Struct(o) = &mut self.root else {
            unreachable!("the root is an object")
        };
        (self.width, self.flat) = o.measure();
    }

    /// Columns of the schema so far (at most [`MAX_COLUMNS`] and a few: an object that only
    /// ever was `{}` counts as one).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Values held since the last take, nulls included: each row makes one per column
    /// outside its lists, each list element one per column under the list (a narrow row in a
    /// wide schema, or many small elements of a wide list item, count what they hold).
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// Rows appended since the last [`Columns::take`].
    pub fn rows(&self) -> usize {
        self.root.len()
    }

    /// Bytes of JSON appended since the last [`Columns::take`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// About the memory the columns hold, in JSON bytes: the rows appended, or the row
    /// group whose buffers were taken back for them, whichever is more.
    pub fn held(&self) -> usize {
        // a value's slot (8 bytes for a number, 4 for a string's offset) beside the JSON
        self.bytes
            .max(self.retained)
            .max(self.cells().saturating_mul(8))
    }

    /// Take back the buffers of `batch` (made by [`Columns::take`], of `bytes` JSON bytes)
    /// once the writer is done with it: the next rows fill memory already touched instead of
    /// growing new allocations (fresh pages and copies cost about as much as the parse of
    /// the values). Buffers still shared are left alone. [`Columns::release`] gives it up.
    pub fn recycle(&mut self, batch: arrow_array::RecordBatch, bytes: usize) {
        let Col::Struct(o) = &mut self.root else {
            unreachable!("the root is an object")
        };
        let (_, arrays, _) = batch.into_parts();
        o.recycle(arrays, None);
        self.retained = bytes;
    }

    /// Give back the memory kept for rows to come (those appended stay).
    pub fn release(&mut self) {
        self.root.release();
        self.retained = 0;
    }

    /// Append one line: a JSON object, optionally with whitespace around it (a line's
    /// newline). The line is checked as it is parsed (UTF-8 first, then the grammar as the
    /// engine's scanner checks it, [`Scanner::validate`]); on any error the rows are as they
    /// were.
    pub fn append(&mut self, line: &[u8]) -> Result<(), AppendError> {
        utf8(line).map_err(AppendError::NotJson)?;
        let start = ws(line, 0);
        if line.get(start) != Some(&b'{') {
            return Err(match self.scanner.validate(line) {
                Ok(_) => AppendError::NotAnObject,
                Err(e) => AppendError::NotJson(e),
            });
        }
        let Col::Struct(o) = &mut self.root else {
            unreachable!("the root is an object")
        };
        let before = o.len;
        let mut cx = Cx {
            sc: &mut self.scanner,
            checked: false,
            room: MAX_COLUMNS.saturating_sub(self.width),
            cells: 0,
            folded: 0,
            no_room: false,
        };
        let res = o.parse(line, start, &mut cx).and_then(|end| {
            let j = ws(line, end);
            if j == line.len() {
                Ok(end)
            } else {
                syntax(j, "trailing characters")
            }
        });
        let out = match res {
            Ok(end) => {
                self.bytes += end - start;
                self.folded += cx.folded as u64;
                Ok(())
            }
            Err(e) => {
                o.truncate(before);
                Err(match e {
                    // the parse stopped at the conflict: a line that is not JSON further on
                    // must not change a column's kind (conflicts are rare: check it whole)
                    Bad::Conflict(c) => match cx.before_change(line) {
                        Ok(()) => AppendError::Conflict(c),
                        Err(Bad::Syntax(e)) => AppendError::NotJson(e),
                        Err(Bad::Conflict(c)) => AppendError::Conflict(c),
                    },
                    Bad::Syntax(e) => AppendError::NotJson(e),
                })
            }
        };
        let (changed, list_cells) = (cx.checked, cx.cells);
        // every change to the schema checks the line first: only then can the width change
        if changed {
            self.count_width();
            // the row was counted with the widths before it: count every value again
            let Col::Struct(o) = &self.root else {
                unreachable!("the root is an object")
            };
            self.cells = o.cells(o.len);
        } else if out.is_ok() {
            self.cells += self.flat + list_cells;
        }
        out
    }

    /// Make the column at `path` JSON text for good. Only while no rows are held (after
    /// [`Columns::take`]); an empty path (the row itself) cannot be text: false then.
    pub fn make_json(&mut self, path: &[Step]) -> bool {
        if path.is_empty() || self.rows() > 0 {
            return false;
        }
        match self.root.at_path(path) {
            Some(c) => {
                *c = Col::Json(Text::nulls(0));
                self.count_width();
                true
            }
            None => false,
        }
    }

    /// The schema of the rows so far (every column seen since the start, not only since the
    /// last take).
    pub fn schema(&self) -> arrow_schema::Schema {
        let Col::Struct(o) = &self.root else {
            unreachable!("the root is an object")
        };
        arrow_schema::Schema::new(o.fields())
    }

    /// The rows so far as one batch, leaving no rows (the columns and their kinds stay).
    pub fn take(&mut self) -> arrow_array::RecordBatch {
        let Col::Struct(o) = &mut self.root else {
            unreachable!("the root is an object")
        };
        let (fields, arrays, _, len) = o.take();
        self.bytes = 0;
        self.cells = 0;
        let schema = Arc::new(arrow_schema::Schema::new(fields));
        arrow_array::RecordBatch::try_new_with_options(
            schema,
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(len)),
        )
        .expect("columns have the batch's length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use dragonfly_event::json::Scanner;

    fn append(c: &mut Columns, line: &str) -> Result<(), AppendError> {
        c.append(line.as_bytes())
    }

    fn json_of(batch: &arrow_array::RecordBatch) -> Vec<serde_json::Value> {
        // via arrow's own JSON writer would pull a crate: compare through the arrays
        let mut out = Vec::new();
        for row in 0..batch.num_rows() {
            let mut m = serde_json::Map::new();
            for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
                m.insert(f.name().clone(), value(a.as_ref(), row, f));
            }
            out.push(serde_json::Value::Object(m));
        }
        out
    }

    fn value(a: &dyn Array, i: usize, f: &Field) -> serde_json::Value {
        use arrow_array::cast::AsArray;
        use serde_json::Value as V;
        if a.is_null(i) || a.data_type() == &DataType::Null {
            return V::Null;
        }
        match a.data_type() {
            DataType::Boolean => V::Bool(a.as_boolean().value(i)),
            DataType::Int64 => V::from(a.as_primitive::<arrow_array::types::Int64Type>().value(i)),
            DataType::Float64 => {
                V::from(a.as_primitive::<arrow_array::types::Float64Type>().value(i))
            }
            DataType::Utf8 if f.metadata().contains_key(JSON_METADATA) => {
                serde_json::from_str(a.as_string::<i32>().value(i)).unwrap()
            }
            DataType::Utf8 => V::from(a.as_string::<i32>().value(i)),
            DataType::Timestamp(..) => {
                let m = f
                    .metadata()
                    .get(timestamps::OFFSET_METADATA)
                    .and_then(|o| timestamps::offset_minutes(o))
                    .expect("a typed timestamp has its offset");
                let t = a
                    .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
                    .value(i);
                let mut out = Vec::new();
                timestamps::render(t, m, &mut out);
                V::from(String::from_utf8(out).unwrap())
            }
            DataType::Struct(fs) => {
                let s = a.as_struct();
                V::Object(
                    fs.iter()
                        .zip(s.columns())
                        .map(|(f, c)| (f.name().clone(), value(c.as_ref(), i, f)))
                        .collect(),
                )
            }
            DataType::List(item) => {
                let l = a.as_list::<i32>();
                let v = l.value(i);
                V::Array((0..v.len()).map(|j| value(v.as_ref(), j, item)).collect())
            }
            t => panic!("unexpected {t}"),
        }
    }

    #[test]
    fn kinds_are_inferred_and_widened_in_place() {
        let mut c = Columns::new();
        append(&mut c, r#"{"a":1,"b":"x","n":null,"o":{"p":true},"l":[]}"#).unwrap();
        append(
            &mut c,
            r#"{"a":2.5,"new":[1,2],"o":{"q":"\u00e9\"\n"},"l":["s"]}"#,
        )
        .unwrap();
        append(&mut c, r#"{"b":"y","a":9007199254740993}"#).unwrap();
        let s = c.schema();
        assert_eq!(
            s.field_with_name("a").unwrap().data_type(),
            &DataType::Float64
        );
        assert_eq!(s.field_with_name("b").unwrap().data_type(), &DataType::Utf8);
        assert_eq!(s.field_with_name("n").unwrap().data_type(), &DataType::Null);
        let names: Vec<_> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["a", "b", "n", "o", "l", "new"]);
        let b = c.take();
        assert_eq!(b.num_rows(), 3);
        let rows = json_of(&b);
        assert_eq!(rows[0]["a"], serde_json::json!(1.0));
        assert_eq!(rows[1]["o"]["q"], "é\"\n");
        assert_eq!(rows[1]["o"]["p"], serde_json::Value::Null);
        assert_eq!(rows[0]["l"], serde_json::json!([]));
        assert_eq!(rows[1]["l"], serde_json::json!(["s"]));
        assert_eq!(rows[2]["l"], serde_json::Value::Null);
        assert_eq!(rows[1]["new"], serde_json::json!([1, 2]));
        assert_eq!(c.rows(), 0);
        // kinds stay after a take
        append(&mut c, r#"{"a":3}"#).unwrap();
        assert_eq!(c.take().schema().field(0).data_type(), &DataType::Float64);
    }

    #[test]
    fn integers_parse_exactly() {
        for v in [
            "0",
            "-0",
            "7",
            "-12",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert_eq!(parse_i64(v.as_bytes()), v.parse::<i64>().ok(), "{v}");
        }
        for v in [
            "9223372036854775808",
            "-9223372036854775809",
            "1.5",
            "1e3",
            "-",
            "",
        ] {
            assert_eq!(parse_i64(v.as_bytes()), None, "{v}");
        }
    }

    #[test]
    fn integers_stay_exact() {
        let mut c = Columns::new();
        append(
            &mut c,
            r#"{"flow_id":1251312473193421,"m":-9223372036854775808}"#,
        )
        .unwrap();
        append(&mut c, r#"{"flow_id":9223372036854775807,"m":-0}"#).unwrap();
        let b = c.take();
        let rows = json_of(&b);
        assert_eq!(rows[0]["flow_id"], serde_json::json!(1251312473193421i64));
        assert_eq!(rows[1]["flow_id"], serde_json::json!(i64::MAX));
        assert_eq!(rows[0]["m"], serde_json::json!(i64::MIN));
        assert_eq!(b.schema().field(0).data_type(), &DataType::Int64);
    }

    #[test]
    fn a_conflict_leaves_the_rows_and_names_the_column() {
        let mut c = Columns::new();
        append(&mut c, r#"{"a":{"b":[1,2],"c":"s"},"z":1}"#).unwrap();
        let e = append(&mut c, r#"{"a":{"b":[3,"x"],"c":"t"},"z":2}"#).unwrap_err();
        let AppendError::Conflict(p) = e else {
            panic!()
        };
        assert_eq!(p.to_string(), "a.b[]");
        assert_eq!(c.rows(), 1);
        let first = json_of(&c.take());
        assert_eq!(first[0]["a"]["b"], serde_json::json!([1, 2]));
        assert!(c.make_json(&p.0));
        append(&mut c, r#"{"a":{"b":[3,"x"],"c":"t"},"z":2}"#).unwrap();
        append(&mut c, r#"{"a":{"b":[{"k":[]}],"c":"t"}}"#).unwrap();
        let b = c.take();
        let rows = json_of(&b);
        assert_eq!(rows[0]["a"]["b"], serde_json::json!([3, "x"]));
        assert_eq!(rows[1]["a"]["b"], serde_json::json!([{"k": []}]));
        assert_eq!(rows[1]["z"], serde_json::Value::Null);
        // conflicts at the top: a string where numbers were
        append(&mut c, r#"{"z":1}"#).unwrap();
        let e = append(&mut c, r#"{"z":"one"}"#).unwrap_err();
        assert_eq!(
            e,
            AppendError::Conflict(Conflict(vec![Step::Field("z".into())]))
        );
        assert_eq!(append(&mut c, "[1]"), Err(AppendError::NotAnObject));
    }

    /// A field a row lacks is filled in later (when it next has a value, or at the take):
    /// the rows read back with nulls exactly where fields were absent, at every level, also
    /// after a row refused midway and a repeated key.
    #[test]
    fn absent_fields_read_back_as_nulls() {
        let mut c = Columns::new();
        let rows = [
            r#"{"a":1,"o":{"x":1,"y":"s"},"l":[{"p":1},{"q":2}]}"#,
            r#"{"b":true}"#,
            r#"{"o":{"y":"t"},"b":false}"#,
            r#"{"a":2,"a":3,"l":[]}"#,
        ];
        for r in rows {
            append(&mut c, r).unwrap();
        }
        // refused after the first field was set: that row is cut off again
        assert!(matches!(
            append(&mut c, r#"{"b":true,"o":{"x":"text"}}"#),
            Err(AppendError::Conflict(_))
        ));
        append(&mut c, r#"{"o":{"x":5}}"#).unwrap();
        assert_eq!(c.rows(), 5);
        assert_eq!(c.width(), 6, "a, o.x, o.y, l[].p, l[].q, b");
        let got = json_of(&c.take());
        let null = serde_json::Value::Null;
        let want = [
            serde_json::json!({"a":1,"o":{"x":1,"y":"s"},"l":[{"p":1,"q":null},{"p":null,"q":2}],"b":null}),
            serde_json::json!({"a":null,"o":null,"l":null,"b":true}),
            serde_json::json!({"a":null,"o":{"x":null,"y":"t"},"l":null,"b":false}),
            serde_json::json!({"a":2,"o":null,"l":[],"b":null}),
            serde_json::json!({"a":null,"o":{"x":5,"y":null},"l":null,"b":null}),
        ];
        assert_eq!(got, want);
        assert_eq!(got[1]["a"], null);
        // and again after the take: the columns stay, the rows start over
        append(&mut c, r#"{"b":true}"#).unwrap();
        let got = json_of(&c.take());
        assert_eq!(
            got,
            [serde_json::json!({"a":null,"o":null,"l":null,"b":true})]
        );
    }

    /// Past MAX_COLUMNS an object that would add a column becomes JSON text: at once when
    /// its column is new in the row (earlier rows are null there), else by a conflict at that
    /// object whose caller makes it text. Top-level fields with no room go to the overflow
    /// column. Every row fits, every value exact; the width and the cells (rows times
    /// columns) the writer bounds its row groups by are counted.
    #[test]
    fn the_schema_stops_at_max_columns() {
        let object = |k: usize| {
            let f: Vec<String> = (0..512).map(|i| format!(r#""f{i}":{i}"#)).collect();
            format!(r#""o{k}":{{{}}}"#, f.join(","))
        };
        let objects: Vec<String> = (0..5).map(object).collect();
        let line = format!(r#"{{"a":0,"w":{{{}}}}}"#, objects.join(","));
        let mut c = Columns::new();
        // a(1) + w.o0..o2 (3 x 512) leave room for part of o3: o3, then o4, become text
        append(&mut c, &line).unwrap();
        assert_eq!(c.take_folded(), 2);
        assert_eq!(c.width(), 1 + 3 * 512 + 2);
        assert!(c.width() <= MAX_COLUMNS);
        append(&mut c, r#"{"a":1}"#).unwrap();
        assert_eq!(c.cells(), 2 * c.width());
        assert!(c.held() >= c.cells() * 8);
        let DataType::Struct(w) = c.schema().field_with_name("w").unwrap().data_type().clone()
        else {
            panic!("w is a struct")
        };
        let text: Vec<&str> = w
            .iter()
            .filter(|f| f.metadata().contains_key(JSON_METADATA))
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(text, ["o3", "o4"]);
        // (json_of reads JSON text back as values)
        let rows = json_of(&c.take());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(rows[0], v);
        assert_eq!(rows[1]["w"], serde_json::Value::Null);
        // new top-level fields past the bound: as many columns as there is room for, the
        // rest in the overflow column; the row is whole
        let fields: Vec<String> = (0..600).map(|i| format!(r#""t{i}":{i}"#)).collect();
        let wide = format!("{{{}}}", fields.join(","));
        append(&mut c, &wide).unwrap();
        let room = MAX_COLUMNS - (1 + 3 * 512 + 2);
        assert_eq!(c.take_folded(), 600 - room as u64);
        assert_eq!(
            c.width(),
            MAX_COLUMNS + 1,
            "the overflow column past the bound"
        );
        let rows = json_of(&c.take());
        let mut row = rows[0].as_object().unwrap().clone();
        let extra = row.remove(OVERFLOW).unwrap();
        assert_eq!(extra.as_object().unwrap().len(), 600 - room);
        row.extend(extra.as_object().unwrap().clone());
        row.retain(|_, v| !v.is_null());
        assert_eq!(
            serde_json::Value::Object(row),
            serde_json::from_str::<serde_json::Value>(&wide).unwrap()
        );
    }

    /// A field name longer than MAX_NAME makes its object JSON text (a column's name lives
    /// as long as the partition); at the top, the field goes to the overflow column.
    #[test]
    fn long_field_names_are_not_columns() {
        let long = "k".repeat(MAX_NAME + 1);
        let line = format!(r#"{{"a":1,"o":{{"{long}":1,"b":2}}}}"#);
        let mut c = Columns::new();
        append(&mut c, &line).unwrap();
        assert_eq!(c.take_folded(), 1);
        let rows = json_of(&c.take());
        assert_eq!(
            rows[0],
            serde_json::from_str::<serde_json::Value>(&line).unwrap()
        );
        let ok = "k".repeat(MAX_NAME);
        append(&mut c, &format!(r#"{{"{ok}":1}}"#)).unwrap();
        append(&mut c, &format!(r#"{{"{long}":1}}"#)).unwrap();
        assert_eq!(c.take_folded(), 1);
        let rows = json_of(&c.take());
        assert_eq!(rows[1][OVERFLOW], serde_json::json!({ long: 1 }));
        assert_eq!(rows[0][OVERFLOW], serde_json::Value::Null);
    }

    /// Small elements of a list whose item is a wide object hold a value in each of its
    /// columns: counted, so the writer's row groups stay bounded in memory.
    #[test]
    fn list_elements_count_the_values_they_hold() {
        let wide: Vec<String> = (0..100).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let mut c = Columns::new();
        append(
            &mut c,
            &format!(r#"{{"a":1,"l":[{{{}}}]}}"#, wide.join(",")),
        )
        .unwrap();
        // a, l; each element: k0..k99
        assert_eq!(c.cells(), 2 + 100);
        let small = format!(r#"{{"a":2,"l":[{}]}}"#, vec![r#"{"k0":1}"#; 50].join(","));
        append(&mut c, &small).unwrap();
        assert_eq!(c.cells(), 102 + 2 + 50 * 100);
        append(&mut c, r#"{"a":3}"#).unwrap();
        assert_eq!(c.cells(), 5104 + 2);
        assert!(c.held() >= c.cells() * 8);
        let rows = json_of(&c.take());
        assert_eq!(rows[1]["l"].as_array().unwrap().len(), 50);
        assert_eq!(rows[1]["l"][49]["k0"], 1);
        assert_eq!(rows[1]["l"][49]["k99"], serde_json::Value::Null);
        assert_eq!(c.cells(), 0, "the take starts over");
    }

    #[test]
    fn empty_objects_deep_nesting_many_keys_and_repeated_keys() {
        let mut c = Columns::new();
        append(&mut c, r#"{"e":{},"k":1,"k":2}"#).unwrap();
        let deep = format!("{{\"d\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        append(&mut c, &deep).unwrap();
        let many: Vec<String> = (0..MAX_FIELDS + 1)
            .map(|i| format!("\"f{i}\":{i}"))
            .collect();
        let many = format!("{{\"w\":{{{}}}}}", many.join(","));
        // w is new: too many keys make it JSON text at once
        append(&mut c, &many).unwrap();
        assert_eq!(c.take_folded(), 1);
        let rows = json_of(&c.take());
        assert_eq!(rows[0]["e"], serde_json::json!({}));
        assert_eq!(rows[0]["k"], serde_json::json!(1));
        let v: serde_json::Value = serde_json::from_str(&deep).unwrap();
        assert_eq!(rows[1]["d"], v["d"]);
        let v: serde_json::Value = serde_json::from_str(&many).unwrap();
        assert_eq!(rows[2]["w"], v["w"]);
        // an object that already has typed columns and gains too many keys: a conflict at
        // it, which the writer resolves by making it text (rows so far written out first)
        let mut c = Columns::new();
        append(&mut c, r#"{"x":{"f0":1}}"#).unwrap();
        let many_x = many.replacen("\"w\"", "\"x\"", 1);
        let Err(AppendError::Conflict(p)) = append(&mut c, &many_x) else {
            panic!("a conflict")
        };
        assert_eq!(p.to_string(), "x");
        c.take();
        assert!(c.make_json(&p.0));
        append(&mut c, &many_x).unwrap();
    }

    /// A row group's buffers, taken back once written, hold the next one's values (the same
    /// memory: the test fails if nothing is reused), and the values are those of the new rows.
    #[test]
    fn buffers_are_taken_back_and_filled_again() {
        let mut c = Columns::new();
        let row = |i: i64| {
            format!(
                r#"{{"s":"value {i}","n":{i},"f":{i}.5,"o":{{"p":"x{i}","q":[{i},{}]}},"z":{}}}"#,
                i + 1,
                if i % 2 == 0 { "null" } else { "\"odd\"" }
            )
        };
        for i in 0..1000 {
            append(&mut c, &row(i)).unwrap();
        }
        let first = c.take();
        let values_at = |b: &arrow_array::RecordBatch| {
            let s = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            s.values().as_ptr() as usize
        };
        let at = values_at(&first);
        c.recycle(first, 1);
        assert_eq!(c.held(), 1);
        for i in 1000..1500 {
            append(&mut c, &row(i)).unwrap();
        }
        let second = c.take();
        assert_eq!(values_at(&second), at, "the strings' buffer was not reused");
        let rows = json_of(&second);
        assert_eq!(rows.len(), 500);
        for (k, r) in rows.iter().enumerate() {
            let i = 1000 + k as i64;
            let want: serde_json::Value = serde_json::from_str(&row(i)).unwrap();
            assert_eq!(r, &want, "row {i}");
        }
        // a batch still shared elsewhere is left alone (nothing reused, nothing broken)
        append(&mut c, &row(7)).unwrap();
        let third = c.take();
        let kept = third.clone();
        c.recycle(third, 1);
        append(&mut c, &row(8)).unwrap();
        assert_ne!(values_at(&c.take()), values_at(&kept));
        assert_eq!(json_of(&kept)[0]["s"], "value 7");
        c.release();
        assert_eq!(c.held(), 0);
    }

    /// Speed of the parse alone over the shared corpus, by event type (release:
    /// `cargo test --release -p dragonfly-io parse_speed -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn parse_speed() {
        use std::io::Read;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/eve-synth.json.gz"
        );
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut parts: HashMap<String, Columns> = HashMap::new();
        let mut scanner = Scanner::new();
        // every line once into its event type's columns (a full row group is taken)
        let pass = |parts: &mut HashMap<String, Columns>| {
            for l in &lines {
                let et = l.split("\"event_type\":\"").nth(1).unwrap();
                let c = parts
                    .entry(et[..et.find('"').unwrap()].to_string())
                    .or_default();
                c.append(l.as_bytes()).unwrap();
                if c.rows() >= 65536 {
                    c.take();
                }
            }
        };
        let t = std::time::Instant::now();
        for _ in 0..5 {
            pass(&mut parts);
        }
        let n = 5 * lines.len();
        let parse = t.elapsed();
        // the encoder over the same rows (once more, whole), with several settings
        parts.values_mut().for_each(|c| drop(c.take()));
        pass(&mut parts);
        let batches: Vec<_> = parts.values_mut().map(|c| c.take()).collect();
        use parquet::basic::Compression;
        use parquet::file::properties::{EnabledStatistics, WriterProperties};
        let base = || {
            WriterProperties::builder()
                .set_compression(Compression::ZSTD(Default::default()))
                .set_statistics_enabled(EnabledStatistics::Page)
        };
        for (name, props) in [
            (
                "default (zstd 1, page statistics, dictionaries)",
                base().build(),
            ),
            (
                "no dictionaries",
                base().set_dictionary_enabled(false).build(),
            ),
            (
                "chunk statistics",
                base()
                    .set_statistics_enabled(EnabledStatistics::Chunk)
                    .build(),
            ),
            (
                "uncompressed",
                base().set_compression(Compression::UNCOMPRESSED).build(),
            ),
            (
                "snappy",
                base().set_compression(Compression::SNAPPY).build(),
            ),
        ] {
            let t = std::time::Instant::now();
            let mut bytes = 0;
            for round in 0..3 {
                for b in &batches {
                    let mut w = parquet::arrow::ArrowWriter::try_new(
                        Vec::new(),
                        b.schema(),
                        Some(props.clone()),
                    )
                    .unwrap();
                    w.write(b).unwrap();
                    let n = w.into_inner().unwrap().len();
                    if round == 0 {
                        bytes += n;
                    }
                }
            }
            eprintln!(
                "encode, {name}: {:.2} us/event, {bytes} bytes",
                t.elapsed().as_secs_f64() * 1e6 / (3 * lines.len()) as f64
            );
        }
        let t = std::time::Instant::now();
        for _ in 0..5 {
            for l in &lines {
                scanner.validate(l.as_bytes()).unwrap();
            }
        }
        let validate = t.elapsed();
        eprintln!(
            "{n} events: parse (checking the grammar) + take {:.2} us/event; the scanner's validation alone {:.2}",
            parse.as_secs_f64() * 1e6 / n as f64,
            validate.as_secs_f64() * 1e6 / n as f64
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn leaf() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                (-1e6f64..1e6).prop_map(serde_json::Value::from),
                "[a-c\"\\\\\u{e9}\n]{0,4}".prop_map(serde_json::Value::from),
            ]
        }

        fn value() -> impl Strategy<Value = serde_json::Value> {
            leaf().prop_recursive(4, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::btree_map("[a-d]", inner, 0..4)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            /// Any sequence of objects comes back value for value: conflicts are resolved as
            /// the sink does (write out, make the column text, append again); integers exact,
            /// doubles exact, absent fields null.
            #[test]
            fn rows_round_trip(rows in prop::collection::vec(
                prop::collection::btree_map("[a-e]", value(), 0..5), 1..12)) {
                let mut c = Columns::new();
                let mut got = Vec::new();
                for r in &rows {
                    let line = serde_json::to_string(r).unwrap();
                    loop {
                        let res = append(&mut c, &line);
                        // the count kept row by row is the values held, counted afresh
                        let Col::Struct(o) = &c.root else { unreachable!() };
                        prop_assert_eq!(c.cells(), o.cells(o.len));
                        match res {
                            Ok(()) => break,
                            Err(AppendError::Conflict(p)) => {
                                // the writer's way: take, write, take the buffers back
                                let batch = c.take();
                                got.extend(json_of(&batch));
                                c.recycle(batch, 0);
                                prop_assert!(c.make_json(&p.0));
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
                got.extend(json_of(&c.take()));
                prop_assert_eq!(got.len(), rows.len());
                for (g, r) in got.iter().zip(&rows) {
                    for (k, v) in r {
                        prop_assert!(same(&g[k], v), "{k}: {} vs {}", g[k], v);
                    }
                }
            }
        }

        /// A JSON object as text, then spoiled: bytes cut out, put in (JSON's own
        /// punctuation and escapes, a control character, a byte that is not UTF-8), flipped.
        fn spoiled() -> impl Strategy<Value = Vec<u8>> {
            let edits = prop::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    0..3u8,
                    prop::sample::select(vec![
                        &b"{"[..],
                        b"}",
                        b"[",
                        b"]",
                        b"\"",
                        b":",
                        b",",
                        b" ",
                        b"\\",
                        b"\\u12",
                        b"\\ud800",
                        b"1e999",
                        b"-",
                        b".",
                        b"e",
                        b"0",
                        b"tru",
                        b"nul",
                        b"\x01",
                        b"\xff",
                        b"\xc3",
                        b"\n",
                    ]),
                ),
                0..4,
            );
            (prop::collection::btree_map("[a-e]", value(), 0..5), edits).prop_map(|(m, edits)| {
                let mut b = serde_json::to_vec(&m).unwrap();
                for (at, op, what) in edits {
                    let i = at.index(b.len() + 1);
                    match op {
                        0 => {
                            b.drain(i..(i + 1).min(b.len()));
                        }
                        1 => {
                            b.splice(i..i, what.iter().copied());
                        }
                        _ => {
                            if let Some(x) = b.get_mut(i) {
                                *x = what[0];
                            }
                        }
                    }
                }
                b
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            /// The parser refuses exactly the lines the engine's scanner refuses (as not
            /// JSON), takes every JSON object, calls other JSON values not objects, and leaves
            /// the rows as they were when it refuses a line (differential, on spoiled objects).
            #[test]
            fn accepts_what_the_scanner_accepts(line in spoiled()) {
                let mut c = Columns::new();
                append(&mut c, r#"{"a":1,"b":"x"}"#).unwrap();
                let got = c.append(&line);
                match Scanner::new().validate(&line) {
                    Ok(d) if d.kind == dragonfly_event::json::Kind::Object => {
                        // a valid object may still disagree with the first row's kinds
                        prop_assert!(
                            matches!(got, Ok(()) | Err(AppendError::Conflict(_))),
                            "{:?}: {got:?}", String::from_utf8_lossy(&line)
                        );
                    }
                    Ok(_) => prop_assert_eq!(got.clone(), Err(AppendError::NotAnObject)),
                    Err(_) => prop_assert!(
                        matches!(got, Err(AppendError::NotJson(_))),
                        "{:?}: {got:?}", String::from_utf8_lossy(&line)
                    ),
                }
                let rows = if got.is_ok() { 2 } else { 1 };
                prop_assert_eq!(c.rows(), rows);
                let batch = json_of(&c.take());
                // (a later valid row may have widened `a` to a double: 1.0 is the same)
                prop_assert!(same(&batch[0]["a"], &serde_json::json!(1)), "{}", batch[0]);
                prop_assert_eq!(&batch[0]["b"], &serde_json::json!("x"));
                if !matches!(got, Ok(()) | Err(AppendError::Conflict(_))) {
                    // a refused line changed nothing: no column, no kind (a conflicting row
                    // is appended again once the column is text, so its widenings stand)
                    prop_assert_eq!(batch[0].as_object().unwrap().len(), 2);
                    prop_assert!(batch[0]["a"].is_i64(), "{}", batch[0]);
                }
            }
        }

        /// Equal as JSON values, an integer read back as a double counting as equal when
        /// exact, and an absent field in a struct equal to null.
        fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
            use serde_json::Value as V;
            match (a, b) {
                (V::Number(x), V::Number(y)) => {
                    x == y || (x.as_f64() == y.as_f64() && (x.is_f64() || y.is_f64()))
                }
                (V::Object(x), V::Object(y)) => {
                    y.iter().all(|(k, v)| same(x.get(k).unwrap_or(&V::Null), v))
                        && x.iter().all(|(k, v)| y.contains_key(k) || v.is_null())
                }
                (V::Array(x), V::Array(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
                }
                _ => a == b,
            }
        }
    }
}
