//! Encoding Lua values as JSON, in one place: the number and string rules
//! ([`write_number`]: integers as integers, other numbers as `%.14g`; [`write_string`]), plain
//! tables ([`encode_value`]: arrays, objects with sorted keys, lua-cjson's errors) and lazy
//! events ([`encode_lazy`]: their original bytes where unchanged, see lazy.rs's module doc).
//! A plain table may hold a lazy event and a lazy event's changed fields hold plain values, so
//! the two recurse into each other here, inside this module; what it reads of a lazy event
//! (its view, its bytes, what was decoded) comes from lazy.rs, which never encodes.
//!
//! Callers: `output_event` (fast.rs), `cjson.encode`, `log_event`, `stats_event` and failure
//! records (through json.rs and outcome.rs, all via [`encode_value`] or [`encode_at`]).
//!
//! Soundness: every function runs on the thread that owns the Lua state, inside `exec_raw` or
//! as a C function called by Lua, and keeps the stack balanced on every path. Nothing here
//! raises a Lua error on purpose; the only Lua calls that can raise are allocations (key
//! strings), which fail only at the memory limit; the frames they unwind own nothing but heap
//! buffers, which leak.

use std::ffi::c_int;

use dragonfly_event::json::{self as scan, Elements, Fields, Kind};
use dragonfly_models::numfmt::fmt_g;
use mlua::ffi;

use crate::lazy::{
    decoded, lazy_state, number, view, view_of, State, View, HAS_EXTRA, M_ADDED, NEAR,
};
use crate::raw::{bytes, key, registry_get};

/// Why a value cannot be encoded (lua-cjson's messages).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("Cannot serialise {0}: type not supported")]
    /// A value JSON cannot hold (a function, userdata...).
    Unsupported(&'static str),
    #[error("Cannot serialise number: must not be NaN or Infinity")]
    /// NaN or infinity.
    InvalidNumber,
    #[error("Cannot serialise table: excessively sparse array")]
    /// An array with too many holes (as lua-cjson refuses).
    SparseArray,
    #[error("Cannot serialise table: table key must be a number or string")]
    /// A table key that is neither a string nor a number.
    BadKey,
    #[error("Cannot serialise, excessive nesting ({0})")]
    /// Nesting deeper than the limit.
    Depth(usize),
    #[error("Cannot serialise table: {0}")]
    /// A Lua error while reading the value.
    Lua(String),
}

/// Write a number the way the engine prints numbers in JSON.
pub fn write_number(v: f64, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if !v.is_finite() {
        return Err(EncodeError::InvalidNumber);
    }
    if v.fract() == 0.0 && v.abs() < 9.2e18 {
        let mut b = itoa::Buffer::new();
        if v == 0.0 && v.is_sign_negative() {
            out.extend_from_slice(b"-0");
        } else {
            out.extend_from_slice(b.format(v as i64).as_bytes());
        }
    } else {
        out.extend_from_slice(fmt_g(v, 14).as_bytes());
    }
    Ok(())
}

/// Bytes that need escaping inside a JSON string.
const ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0x7f] = true;
    t
};

/// Write a JSON string literal (bytes that are not UTF-8 pass through unchanged, as in cjson).
pub fn write_string(s: &[u8], out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if !ESCAPE[b as usize] {
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Deepest nesting encoded (tables scripts build); decoding uses the shared
/// `dragonfly_event::json::MAX_DEPTH`.
const ENCODE_MAX_DEPTH: usize = 1000;
/// Registry key (a light userdata with this static's address) of cjson's array metatable.
static ARRAY_MT_KEY: u8 = 0;

/// Keep cjson's array metatable (at `mt_idx`) in the registry for the C functions.
///
/// # Safety
/// `state` is a live Lua state owned by the calling thread; `array_mt` is at `mt_idx`.
pub unsafe fn register(state: *mut ffi::lua_State, mt_idx: c_int) {
    unsafe {
        ffi::lua_pushlightuserdata(state, key(&ARRAY_MT_KEY));
        ffi::lua_pushvalue(state, mt_idx);
        ffi::lua_rawset(state, ffi::LUA_REGISTRYINDEX);
    }
}

/// Push cjson's array metatable (kept by [`register`]).
///
/// # Safety
/// A live state prepared by [`register`], on its own thread; pushes one value.
pub(crate) unsafe fn push_array_mt(state: *mut ffi::lua_State) {
    unsafe { registry_get(state, &ARRAY_MT_KEY) }
}

/// Encode the value at absolute index `idx` into a fresh buffer.
///
/// # Safety
/// A valid absolute index of the running state, prepared by [`register`]; the stack is left
/// as it was.
pub(crate) unsafe fn encode_at(
    state: *mut ffi::lua_State,
    idx: c_int,
) -> Result<Vec<u8>, EncodeError> {
    unsafe {
        let top = ffi::lua_gettop(state);
        registry_get(state, &ARRAY_MT_KEY);
        let mut out = Vec::with_capacity(256);
        let r = encode_value(state, idx, top + 1, &mut out, 0);
        ffi::lua_settop(state, top);
        r.map(|()| out)
    }
}

/// Encode the value at absolute stack index `idx`; the array metatable is at `mt`.
///
/// # Safety
/// Valid absolute indices of a live state.
pub(crate) unsafe fn encode_value(
    state: *mut ffi::lua_State,
    idx: c_int,
    mt: c_int,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), EncodeError> {
    unsafe {
        match ffi::lua_type(state, idx) {
            ffi::LUA_TNIL => out.extend_from_slice(b"null"),
            ffi::LUA_TBOOLEAN => out.extend_from_slice(if ffi::lua_toboolean(state, idx) != 0 {
                b"true"
            } else {
                b"false"
            }),
            ffi::LUA_TNUMBER => write_number(ffi::lua_tonumber(state, idx), out)?,
            ffi::LUA_TSTRING => write_string(bytes(state, idx), out),
            ffi::LUA_TLIGHTUSERDATA if ffi::lua_touserdata(state, idx).is_null() => {
                out.extend_from_slice(b"null")
            }
            ffi::LUA_TTABLE => encode_table(state, idx, mt, out, depth + 1)?,
            ffi::LUA_TLIGHTUSERDATA | ffi::LUA_TUSERDATA => {
                return Err(EncodeError::Unsupported("userdata"))
            }
            ffi::LUA_TFUNCTION => return Err(EncodeError::Unsupported("function")),
            ffi::LUA_TTHREAD => return Err(EncodeError::Unsupported("thread")),
            _ => return Err(EncodeError::Unsupported("value")),
        }
        Ok(())
    }
}

/// Encode the table at `idx` (a lazy proxy through the lazy encoder), as an array when it
/// has cjson's array metatable or only positive integer keys.
///
/// # Safety
/// As [`encode_value`]: `idx` and `mt` are valid absolute indices of the running state; the
/// stack is left as it was.
unsafe fn encode_table(
    state: *mut ffi::lua_State,
    idx: c_int,
    mt: c_int,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), EncodeError> {
    unsafe {
        if depth > ENCODE_MAX_DEPTH || ffi::lua_checkstack(state, 6) == 0 {
            return Err(EncodeError::Depth(depth));
        }
        let (is_array_mt, lazy) = if ffi::lua_getmetatable(state, idx) != 0 {
            let eq = ffi::lua_rawequal(state, -1, mt) != 0;
            let lazy = if eq {
                None
            } else {
                lazy_state(state, ffi::lua_gettop(state))
            };
            ffi::lua_pop(state, 1);
            (eq, lazy)
        } else {
            (false, None)
        };
        if let Some(p) = lazy {
            return encode_lazy(state, idx, p, mt, out, depth);
        }
        encode_plain(state, idx, mt, is_array_mt, out, depth)
    }
}

/// Encode the table at `idx` from its entries alone (no lazy event bytes): an array if every
/// key is a positive integer, else an object with its keys sorted.
///
/// # Safety
/// Absolute indices of a live state, 6 free stack slots.
pub(crate) unsafe fn encode_plain(
    state: *mut ffi::lua_State,
    idx: c_int,
    mt: c_int,
    is_array_mt: bool,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), EncodeError> {
    unsafe {
        let (mut max, mut count, mut total, mut array) = (0usize, 0usize, 0usize, true);
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, idx) != 0 {
            total += 1;
            if array {
                if ffi::lua_type(state, -2) == ffi::LUA_TNUMBER {
                    let n = ffi::lua_tonumber(state, -2);
                    if n >= 1.0 && n.fract() == 0.0 && n < 9.0e15 {
                        max = max.max(n as usize);
                        count += 1;
                    } else {
                        array = false;
                    }
                } else {
                    array = false;
                }
            }
            ffi::lua_pop(state, 1);
        }
        if total == 0 {
            out.extend_from_slice(if is_array_mt { b"[]" } else { b"{}" });
            return Ok(());
        }
        if array {
            if max > count * 2 && max > 10 {
                return Err(EncodeError::SparseArray);
            }
            out.push(b'[');
            for i in 1..=max {
                if i > 1 {
                    out.push(b',');
                }
                ffi::lua_rawgeti(state, idx, i as _);
                let top = ffi::lua_gettop(state);
                encode_value(state, top, mt, out, depth)?;
                ffi::lua_pop(state, 1);
            }
            out.push(b']');
            return Ok(());
        }
        out.push(b'{');
        let mut first = true;
        encode_other_pairs(state, idx, mt, out, depth, &mut first, &|_, _| false)?;
        out.push(b'}');
        Ok(())
    }
}

/// A table key, for sorting: numbers first (by value), then strings (by bytes).
#[derive(PartialEq, PartialOrd)]
enum SortKey<'a> {
    Num(f64),
    Str(&'a [u8]),
}

/// Write the entries of the table at `t` whose key `skip` does not select, as `"k":v` after
/// a comma (none before the first), in sorted key order, so that a table's encoding is the
/// same in every run (Lua's own order depends on a per-process hash seed). A table too large
/// to hold on the stack is written in Lua's order.
///
/// # Safety
/// `t` and `mt` are absolute indices of a live state.
pub(crate) unsafe fn encode_other_pairs(
    state: *mut ffi::lua_State,
    t: c_int,
    mt: c_int,
    out: &mut Vec<u8>,
    depth: usize,
    first: &mut bool,
    skip: &dyn Fn(*mut ffi::lua_State, c_int) -> bool,
) -> Result<(), EncodeError> {
    unsafe {
        let base = ffi::lua_gettop(state);
        let mut n = 0usize;
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, t) != 0 {
            ffi::lua_pop(state, 1);
            if !skip(state, ffi::lua_gettop(state)) {
                n += 1;
            }
        }
        let sorted = n < 4000 && ffi::lua_checkstack(state, 2 * n as c_int + 4) != 0;
        if !sorted {
            // too large to sort on the stack
            ffi::lua_pushnil(state);
            while ffi::lua_next(state, t) != 0 {
                let k = ffi::lua_gettop(state) - 1;
                if !skip(state, k) {
                    write_pair(state, k, mt, out, depth, first)?;
                }
                ffi::lua_pop(state, 1);
            }
            return Ok(());
        }
        // every (key, value) kept on the stack, then written in key order
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, t) != 0 {
            let k = ffi::lua_gettop(state) - 1;
            if skip(state, k) {
                ffi::lua_pop(state, 1);
            } else {
                ffi::lua_pushvalue(state, k);
            }
        }
        let mut order: Vec<(SortKey, c_int)> = Vec::with_capacity(n);
        for i in 0..n {
            let k = base + 1 + 2 * i as c_int;
            let key = match ffi::lua_type(state, k) {
                ffi::LUA_TNUMBER => SortKey::Num(ffi::lua_tonumber(state, k)),
                ffi::LUA_TSTRING => SortKey::Str(bytes(state, k)),
                _ => {
                    ffi::lua_settop(state, base);
                    return Err(EncodeError::BadKey);
                }
            };
            order.push((key, k));
        }
        order.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let mut res = Ok(());
        for (_, k) in order {
            res = write_pair(state, k, mt, out, depth, first);
            if res.is_err() {
                break;
            }
        }
        ffi::lua_settop(state, base);
        res
    }
}

/// Write `,"key":value` for the key at `k` and the value at `k + 1`.
///
/// # Safety
/// `k` and `k + 1` and `mt` are valid absolute indices of the running state.
unsafe fn write_pair(
    state: *mut ffi::lua_State,
    k: c_int,
    mt: c_int,
    out: &mut Vec<u8>,
    depth: usize,
    first: &mut bool,
) -> Result<(), EncodeError> {
    unsafe {
        if !*first {
            out.push(b',');
        }
        *first = false;
        write_key(state, k, out)?;
        encode_value(state, k + 1, mt, out, depth)
    }
}

/// Write the key at `k` and its colon: a string as a JSON string, a number as `"12"`.
///
/// # Safety
/// `k` is a valid index of a live state.
pub(crate) unsafe fn write_key(
    state: *mut ffi::lua_State,
    k: c_int,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    unsafe {
        match ffi::lua_type(state, k) {
            ffi::LUA_TSTRING => write_string(bytes(state, k), out),
            ffi::LUA_TNUMBER => {
                out.push(b'"');
                write_number(ffi::lua_tonumber(state, k), out)?;
                out.push(b'"');
            }
            _ => return Err(EncodeError::BadKey),
        }
        out.push(b':');
        Ok(())
    }
}

/// Whether the proxy with metatable `mt` has nothing decoded, added or stored.
///
/// # Safety
/// `t` is the proxy's stack index and `v` its view, on the running state; the stack is left as
/// it was.
unsafe fn clean(state: *mut ffi::lua_State, t: c_int, v: &View) -> bool {
    unsafe {
        if v.mask != 0 || v.full {
            return false;
        }
        if v.lists != 0 {
            return false;
        }
        ffi::lua_pushnil(state);
        if ffi::lua_next(state, t) != 0 {
            ffi::lua_pop(state, 2);
            return false;
        }
        true
    }
}

/// Whether the Lua value at `idx` equals the JSON value `raw` (at `root[at..]`), so the raw
/// bytes can stand for it.
///
/// # Safety
/// `idx` and `array_mt` are valid stack indices of the running state and `at` a range of a
/// validated value in `root`; the stack is left as it was.
unsafe fn same(
    state: *mut ffi::lua_State,
    idx: c_int,
    array_mt: c_int,
    root: &[u8],
    at: std::ops::Range<usize>,
) -> bool {
    unsafe {
        let raw = &root[at.clone()];
        match (ffi::lua_type(state, idx), scan::kind(raw)) {
            (ffi::LUA_TBOOLEAN, Some(Kind::Bool)) => {
                (ffi::lua_toboolean(state, idx) != 0) == (raw[0] == b't')
            }
            (ffi::LUA_TLIGHTUSERDATA, Some(Kind::Null)) => {
                ffi::lua_touserdata(state, idx).is_null()
            }
            (ffi::LUA_TNUMBER, Some(Kind::Number)) => {
                number(raw).to_bits() == ffi::lua_tonumber(state, idx).to_bits()
            }
            (ffi::LUA_TSTRING, Some(Kind::String)) if memchr::memchr(b'\\', raw).is_none() => {
                bytes(state, idx) == &raw[1..raw.len() - 1]
            }
            (ffi::LUA_TTABLE, Some(Kind::Object)) => {
                if ffi::lua_getmetatable(state, idx) == 0 {
                    return false;
                }
                let mt = ffi::lua_gettop(state);
                let r = match view(state, idx, mt) {
                    Some(v) => {
                        std::ptr::eq(v.root.as_ptr(), root.as_ptr())
                            && v.start == at.start
                            && v.end == at.end
                            && clean(state, idx, &v)
                    }
                    None => false,
                };
                ffi::lua_settop(state, mt - 1);
                r
            }
            (ffi::LUA_TTABLE, Some(Kind::Array)) => {
                if ffi::lua_getmetatable(state, idx) == 0 {
                    return false;
                }
                let is_array = ffi::lua_rawequal(state, -1, array_mt) != 0;
                ffi::lua_pop(state, 1);
                if !is_array || ffi::lua_checkstack(state, 4) == 0 {
                    return false;
                }
                let mut n = 0;
                for r in Elements::new(raw) {
                    n += 1;
                    ffi::lua_rawgeti(state, idx, n);
                    let top = ffi::lua_gettop(state);
                    let eq = same(
                        state,
                        top,
                        array_mt,
                        root,
                        at.start + r.start..at.start + r.end,
                    );
                    ffi::lua_pop(state, 1);
                    if !eq {
                        return false;
                    }
                }
                // nothing beyond the elements
                let mut count = 0;
                ffi::lua_pushnil(state);
                while ffi::lua_next(state, idx) != 0 {
                    count += 1;
                    ffi::lua_pop(state, 1);
                }
                count == n
            }
            _ => false,
        }
    }
}

/// Encode the proxy at `t` whose state is `p` (from [`lazy_state`]). See the module docs.
///
/// # Safety
/// `t` is an absolute index; the array metatable is at `array_mt`.
pub(crate) unsafe fn encode_lazy(
    state: *mut ffi::lua_State,
    t: c_int,
    p: *mut State,
    array_mt: c_int,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), EncodeError> {
    unsafe {
        if ffi::lua_checkstack(state, 8) == 0 {
            return Err(EncodeError::Depth(depth));
        }
        let base = ffi::lua_gettop(state);
        ffi::lua_getmetatable(state, t);
        let mt = base + 1;
        let Some(v) = view_of(state, p, t) else {
            ffi::lua_settop(state, base);
            return Err(EncodeError::Unsupported("corrupt lazy event"));
        };
        if clean(state, t, &v) {
            out.extend_from_slice(v.obj());
            ffi::lua_settop(state, base);
            return Ok(());
        }
        let res = encode_dirty(state, t, mt, array_mt, &v, out, depth);
        ffi::lua_settop(state, base);
        res
    }
}

/// Where the object `obj`'s last field ends (before the whitespace and the closing brace).
fn body_end(obj: &[u8]) -> usize {
    let inner = &obj[..obj.len() - 1];
    inner.len()
        - inner
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_whitespace())
            .count()
}

/// Write original field `f` of `v`, whose current value is at `val`: its bytes if the value
/// still equals them (number text and escapes kept), else its key and the value encoded.
///
/// # Safety
/// `val` and `array_mt` are valid stack indices of the running state, `f` a field of `v`'s
/// object, and `v` a view whose metatable is reachable.
unsafe fn write_field(
    state: *mut ffi::lua_State,
    val: c_int,
    array_mt: c_int,
    v: &View,
    f: &scan::Field,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), EncodeError> {
    let obj = v.obj();
    let at = v.start + f.value.start..v.start + f.value.end;
    unsafe {
        if same(state, val, array_mt, v.root, at) {
            out.extend_from_slice(&obj[f.span.clone()]);
        } else {
            out.extend_from_slice(&obj[f.span.start..f.key.end + 1]);
            out.push(b':');
            encode_value(state, val, array_mt, out, depth)?;
        }
    }
    Ok(())
}

thread_local! {
    static WALK_ALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// For tests: on this thread, encode changed events by walking every field (the general
/// path) instead of going straight to the remembered ones; both must give the same bytes.
#[doc(hidden)]
pub fn encode_walking_every_field(on: bool) {
    WALK_ALL.with(|w| w.set(on));
}

/// The original fields of a proxy whose decoded fields are all remembered (see
/// [`State::near_at`]) and all still present: the bytes up to the first of them, each of them
/// (its bytes if its value is unchanged, else its key and the value encoded), the bytes
/// between and after them up to the last field's end. Returns where it stopped (None, having
/// written nothing, when the proxy does not qualify; the general walk then does the work).
///
/// # Safety
/// As [`write_field`]; `t` is the stack index of the proxy `v` was made from.
unsafe fn encode_near(
    state: *mut ffi::lua_State,
    t: c_int,
    array_mt: c_int,
    v: &View,
    out: &mut Vec<u8>,
    depth: usize,
    written: &mut Seen,
) -> Result<Option<usize>, EncodeError> {
    unsafe {
        let st = &*v.core;
        let n = st.near_len as usize;
        if n == 0 || v.full || v.lists & HAS_EXTRA != 0 || n != v.mask.count_ones() as usize {
            return Ok(None);
        }
        if WALK_ALL.with(|w| w.get()) {
            return Ok(None);
        }
        let obj = v.obj();
        let mut near: [(u8, u32); NEAR] = [(0, 0); NEAR];
        for (i, x) in near[..n].iter_mut().enumerate() {
            *x = (st.near_ord[i], st.near_at[i]);
        }
        near[..n].sort_unstable();
        let mark = out.len();
        let mut prev = 0;
        for &(_, at) in &near[..n] {
            let Some(f) = Fields::at(obj, at as usize).next() else {
                out.truncate(mark);
                return Ok(None);
            };
            let key = &obj[f.key.clone()];
            ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
            let k: *const u8 = ffi::lua_tolstring(state, -1, std::ptr::null_mut()).cast();
            ffi::lua_rawget(state, t);
            let val = ffi::lua_gettop(state);
            if ffi::lua_type(state, val) == ffi::LUA_TNIL {
                // deleted: the general walk drops it with its separator
                ffi::lua_pop(state, 1);
                out.truncate(mark);
                *written = Seen::default();
                return Ok(None);
            }
            written.push(k);
            out.extend_from_slice(&obj[prev..f.span.start]);
            write_field(state, val, array_mt, v, &f, out, depth)?;
            ffi::lua_pop(state, 1);
            prev = f.span.end;
        }
        // the fields after the last decoded one, as they came
        let end = body_end(obj).max(prev);
        out.extend_from_slice(&obj[prev..end]);
        Ok(Some(end))
    }
}

/// A changed proxy being encoded, and where its encoding stands across its three parts.
struct Dirty<'a, 'v> {
    state: *mut ffi::lua_State,
    /// The proxy's and its metatable's stack indices, cjson's array metatable's.
    t: c_int,
    mt: c_int,
    array_mt: c_int,
    v: &'a View<'v>,
    depth: usize,
    /// The proxy's object bytes.
    obj: &'v [u8],
    /// Nothing written inside the braces yet.
    first: bool,
    /// Keys written that the table holds (to tell whether other keys are left).
    present: usize,
    /// The string keys written so far (interned strings: same pointer, same key).
    written: Seen,
    /// The number keys written so far.
    added_nums: Vec<f64>,
    /// Where the last original field written ended.
    prev_end: Option<usize>,
}

impl Dirty<'_, '_> {
    /// Before an entry: nothing for the first; else the original bytes between the previous
    /// field and this one (`start`) when both are original (whitespace kept), or a comma.
    fn gap(&mut self, out: &mut Vec<u8>, start: usize, prev: Option<usize>) {
        if !self.first {
            match prev {
                Some(p) if p < start => out.extend_from_slice(&self.obj[p..start]),
                _ => out.push(b','),
            }
        }
        self.first = false;
    }
}

/// Encode a proxy that decoded or added something: its original fields in order, then its
/// added keys, then any other key, sorted.
///
/// # Safety
/// `t` and `mt` are the proxy's and its metatable's stack indices, `v` its view, `array_mt`
/// cjson's array metatable's index, all on the running state.
unsafe fn encode_dirty(
    state: *mut ffi::lua_State,
    t: c_int,
    mt: c_int,
    array_mt: c_int,
    v: &View,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), EncodeError> {
    unsafe {
        let obj = v.obj();
        if only_integer_keys(state, t, mt, v) {
            // every original field deleted, only positive integer keys left: an array, as
            // the same table decoded eagerly would be
            return encode_plain(state, t, array_mt, false, out, depth);
        }
        let mut d = Dirty {
            state,
            t,
            mt,
            array_mt,
            v,
            depth,
            obj,
            first: true,
            present: 0,
            written: Seen::default(),
            added_nums: Vec::new(),
            prev_end: None,
        };
        let near_done = encode_near(state, t, array_mt, v, out, depth, &mut d.written)?;
        if let Some(end) = near_done {
            d.first = false;
            d.present = (*v.core).near_len as usize;
            d.prev_end = Some(end);
        } else {
            d.write_original_fields(out)?;
        }
        d.write_added_keys(out)?;
        // anything else the table holds (rawset on new keys), sorted
        let mut total = 0usize;
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, t) != 0 {
            total += 1;
            ffi::lua_pop(state, 1);
        }
        if total > d.present {
            let (written, added_nums) = (&d.written, &d.added_nums);
            encode_other_pairs(state, t, array_mt, out, depth, &mut d.first, &|state, k| {
                match ffi::lua_type(state, k) {
                    ffi::LUA_TSTRING => {
                        let p: *const u8 =
                            ffi::lua_tolstring(state, k, std::ptr::null_mut()).cast();
                        written.contains(p)
                    }
                    ffi::LUA_TNUMBER => added_nums.contains(&ffi::lua_tonumber(state, k)),
                    _ => false,
                }
            })?;
        }
        let tail = d.prev_end.map_or(obj.len() - 1, |e| e.min(obj.len() - 1));
        out.extend_from_slice(&obj[tail..]);
        Ok(())
    }
}

impl Dirty<'_, '_> {
    /// The original fields of a changed proxy, walked in order (the general path): the bytes
    /// before the first, each field not decoded as its bytes, each decoded one still present as
    /// [`write_field`] writes it, and past the last decoded field the rest in one piece; the
    /// original whitespace is kept before the first field, between fields (with the comma) and
    /// before the closing brace.
    ///
    /// # Safety
    /// As [`encode_dirty`]: the indices and view `self` holds are those of the running state.
    unsafe fn write_original_fields(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let (state, t, mt, array_mt, v, depth) = (
            self.state,
            self.t,
            self.mt,
            self.array_mt,
            self.v,
            self.depth,
        );
        let d = self;
        unsafe {
            let obj = d.obj;
            let mut fields = Fields::new(obj).peekable();
            let lead = fields.peek().map_or(obj.len() - 1, |f| f.span.start);
            out.extend_from_slice(&obj[..lead.max(1)]);
            // past the last decoded field every field is as it came: copied in one piece
            let last_decoded = if v.full || v.lists & HAS_EXTRA != 0 {
                usize::MAX
            } else {
                (u64::BITS - v.mask.leading_zeros()) as usize
            };
            for (ord, f) in fields.enumerate() {
                if ord >= last_decoded {
                    let body_end = body_end(obj);
                    d.gap(out, f.span.start, d.prev_end);
                    out.extend_from_slice(&obj[f.span.start..body_end.max(f.span.start)]);
                    d.prev_end = Some(body_end);
                    break;
                }
                let prev = d.prev_end.replace(f.span.end);
                if !decoded(state, mt, v, ord) {
                    d.gap(out, f.span.start, prev);
                    out.extend_from_slice(&obj[f.span.clone()]);
                    continue;
                }
                let key = &obj[f.key.clone()];
                ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
                d.written
                    .push(ffi::lua_tolstring(state, -1, std::ptr::null_mut()).cast());
                ffi::lua_rawget(state, t);
                let val = ffi::lua_gettop(state);
                if ffi::lua_type(state, val) != ffi::LUA_TNIL {
                    d.present += 1;
                    d.gap(out, f.span.start, prev);
                    write_field(state, val, array_mt, v, &f, out, depth)?;
                }
                ffi::lua_pop(state, 1);
            }
            Ok(())
        }
    }

    /// The keys a changed proxy added, in the order they were first added (each once, and none
    /// written already as an original field).
    ///
    /// # Safety
    /// As [`encode_dirty`]: the indices and view `self` holds are those of the running state.
    unsafe fn write_added_keys(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let (state, t, mt, array_mt, v, depth) = (
            self.state,
            self.t,
            self.mt,
            self.array_mt,
            self.v,
            self.depth,
        );
        let d = self;
        unsafe {
            for i in 1..=(*v.core).added as c_int {
                ffi::lua_rawgeti(state, mt, (M_ADDED + i) as _);
                let k = ffi::lua_gettop(state);
                let dup = match ffi::lua_type(state, k) {
                    ffi::LUA_TSTRING => {
                        let p: *const u8 =
                            ffi::lua_tolstring(state, k, std::ptr::null_mut()).cast();
                        let dup = d.written.contains(p);
                        d.written.push(p);
                        dup
                    }
                    ffi::LUA_TNUMBER => {
                        let x = ffi::lua_tonumber(state, k);
                        let dup = d.added_nums.contains(&x);
                        d.added_nums.push(x);
                        dup
                    }
                    _ => true,
                };
                if !dup {
                    ffi::lua_pushvalue(state, k);
                    ffi::lua_rawget(state, t);
                    if ffi::lua_type(state, -1) != ffi::LUA_TNIL {
                        d.present += 1;
                        d.gap(out, 0, None);
                        write_key(state, k, out)?;
                        let val = ffi::lua_gettop(state);
                        encode_value(state, val, array_mt, out, depth)?;
                    }
                    ffi::lua_pop(state, 1);
                }
                ffi::lua_pop(state, 1);
            }
            Ok(())
        }
    }
}

/// Whether no original field is left and the table holds only positive integer keys (at
/// least one).
///
/// # Safety
/// `t` and `mt` are the proxy's and its metatable's stack indices and `v` its view, on the
/// running state; the stack is left as it was.
unsafe fn only_integer_keys(state: *mut ffi::lua_State, t: c_int, mt: c_int, v: &View) -> bool {
    unsafe {
        if !v.full && v.lists & HAS_EXTRA == 0 && v.mask.count_ones() < v.fields {
            return false; // a field never decoded is still there
        }
        let obj = v.obj();
        for (ord, f) in Fields::new(obj).enumerate() {
            if !decoded(state, mt, v, ord) {
                return false;
            }
            let key = &obj[f.key.clone()];
            ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
            ffi::lua_rawget(state, t);
            let present = ffi::lua_type(state, -1) != ffi::LUA_TNIL;
            ffi::lua_pop(state, 1);
            if present {
                return false;
            }
        }
        let mut any = false;
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, t) != 0 {
            ffi::lua_pop(state, 1);
            let n = ffi::lua_tonumber(state, -1);
            if ffi::lua_type(state, -1) != ffi::LUA_TNUMBER || n < 1.0 || n.fract() != 0.0 {
                ffi::lua_pop(state, 1);
                return false;
            }
            any = true;
        }
        any
    }
}

/// A small set of string pointers, on the stack while it is small (no allocation per event).
struct Seen {
    few: [*const u8; 32],
    n: usize,
    more: Vec<*const u8>,
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            few: [std::ptr::null(); 32],
            n: 0,
            more: Vec::new(),
        }
    }
}

impl Seen {
    fn push(&mut self, p: *const u8) {
        if self.n < self.few.len() {
            self.few[self.n] = p;
            self.n += 1;
        } else {
            self.more.push(p);
        }
    }
    fn contains(&self, p: *const u8) -> bool {
        self.few[..self.n].contains(&p) || self.more.contains(&p)
    }
}
