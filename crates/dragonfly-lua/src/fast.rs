//! The hot paths on the raw Lua C API: decoding a batch of JSON lines straight into Lua tables,
//! and encoding output values straight from Lua tables into output batches, with no
//! intermediate tree and no per-value registry references.
//!
//! Soundness: every function here runs on the thread that owns the Lua state (a runtime is
//! never shared between threads), only inside `Lua::exec_raw` or as a C function called by Lua,
//! and keeps the stack balanced on every path (callers reset the top after an error). Nothing
//! here raises a Lua error on purpose; the only Lua calls that can raise are allocations
//! (`lua_createtable`, `lua_pushlstring`), which fail only when the process is out of memory —
//! then the longjmp skips frames that own nothing but heap buffers, which leak.

use std::ffi::c_int;
use std::ptr;

use dragonfly_event::Batch;
use mlua::ffi;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::json::{write_number, write_string, EncodeError};
use crate::outcome::TagKind;

/// Deepest nesting encoded (tables scripts build); decoding uses the shared
/// `dragonfly_event::json::MAX_DEPTH`.
const ENCODE_MAX_DEPTH: usize = 1000;
use dragonfly_event::json::MAX_DEPTH as DECODE_MAX_DEPTH;

/// Registry key (a light userdata with this static's address) of cjson's array metatable.
static ARRAY_MT_KEY: u8 = 0;

fn key(k: &'static u8) -> *mut std::ffi::c_void {
    k as *const u8 as *mut std::ffi::c_void
}

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

/// Push the registry entry keyed by the address of `k`.
///
/// # Safety
/// `state` is the running Lua state on its own thread; pushes one value.
unsafe fn registry_get(state: *mut ffi::lua_State, k: &'static u8) {
    unsafe {
        ffi::lua_pushlightuserdata(state, key(k));
        ffi::lua_rawget(state, ffi::LUA_REGISTRYINDEX);
    }
}

/// The bytes of the string at stack index `idx`.
///
/// # Safety
/// The value at `idx` is a string (checked by the caller); the slice is valid while that value
/// stays on the stack, and the caller must not keep it longer.
pub(crate) unsafe fn bytes<'a>(state: *mut ffi::lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    // SAFETY: only called on values of type string, for which lua_tolstring converts nothing
    // and returns a pointer valid while the value is on the stack.
    unsafe {
        let p = ffi::lua_tolstring(state, idx, &mut len);
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }
}

/// `out_raw(tag, value)`: encode `value` as one line of output `tag`. Returns nothing on
/// success, or an error message (the Lua wrapper raises it with the script's line).
///
/// # Safety
/// Called by Lua as a C function, on a runtime's state (see [`output_inner`]).
pub unsafe extern "C-unwind" fn output_event(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        let err = output_inner(state);
        match err {
            None => 0,
            Some(msg) => {
                ffi::lua_pushlstring(state, msg.as_ptr().cast(), msg.len());
                drop(msg);
                1
            }
        }
    }
}

/// The work of [`output_event`]: `None` when the line is written (or the tag counted as
/// unknown), the error message otherwise.
///
/// # Safety
/// As [`output_event`]: called inside a Lua call on a runtime's state (prepared by
/// [`register`] and `outcome::install`), whose channel is not otherwise borrowed during the
/// call.
unsafe fn output_inner(state: *mut ffi::lua_State) -> Option<String> {
    unsafe {
        if ffi::lua_type(state, 1) != ffi::LUA_TSTRING {
            return Some("the tag must be a string".into());
        }
        let tag = bytes(state, 1);
        // SAFETY: this state is a runtime's; nothing below runs Lua code (encoding reads the
        // value raw) so the reference is the only one live (outcome.rs)
        let ch = crate::outcome::channel(state);
        let Some(&i) = ch.outputs.get(tag) else {
            ch.outcome
                .unknown
                .push((String::from_utf8_lossy(tag).into_owned(), TagKind::Output));
            return None;
        };
        registry_get(state, &ARRAY_MT_KEY);
        let mt = ffi::lua_gettop(state);
        let batch = &mut ch.outcome.outputs[i];
        let res = batch.push_with(|buf| {
            encode_value(state, 2, mt, buf, 0)?;
            buf.push(b'\n');
            Ok::<(), EncodeError>(())
        });
        ffi::lua_settop(state, 2);
        res.err().map(|e| e.to_string())
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
                crate::lazy::lazy_state(state, ffi::lua_gettop(state))
            };
            ffi::lua_pop(state, 1);
            (eq, lazy)
        } else {
            (false, None)
        };
        if let Some(p) = lazy {
            return crate::lazy::encode(state, idx, p, mt, out, depth);
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

/// Decode every line of `batch` into a new Lua array on top of the stack: element i is the
/// decoded event, or nil for a line that is not JSON (its error is in the returned list).
///
/// # Safety
/// Runs inside `exec_raw`; the array metatable is at stack index `mt`.
pub unsafe fn decode_batch(
    state: *mut ffi::lua_State,
    mt: c_int,
    batch: &Batch,
) -> Vec<(usize, String)> {
    unsafe { batch_into_array(state, batch, |line| push_json_checked(state, mt, line)) }
}

/// Push a new array holding, at i + 1, what `push` pushed for line i: a hole where it failed
/// (JSON null is a light userdata, so nil marks a line that is not JSON); returns the failures.
///
/// # Safety
/// `state` is the running Lua state; `push` pushes exactly one value on success and nothing on
/// failure. Pushes the array.
unsafe fn batch_into_array(
    state: *mut ffi::lua_State,
    batch: &Batch,
    mut push: impl FnMut(&[u8]) -> Result<(), String>,
) -> Vec<(usize, String)> {
    let mut bad = Vec::new();
    unsafe {
        ffi::lua_createtable(state, batch.len() as c_int, 0);
        let arr = ffi::lua_gettop(state);
        for (i, line) in batch.iter().enumerate() {
            match push(line) {
                Ok(()) => ffi::lua_rawseti(state, arr, (i + 1) as _),
                Err(e) => {
                    ffi::lua_settop(state, arr);
                    bad.push((i, e));
                }
            }
        }
    }
    bad
}

/// Decode one JSON document onto the stack (nothing pushed on error).
///
/// # Safety
/// `mt` is the absolute stack index of cjson's array metatable on the running state.
unsafe fn push_json_checked(
    state: *mut ffi::lua_State,
    mt: c_int,
    line: &[u8],
) -> Result<(), String> {
    // sonic-rs: SIMD scanning and UTF-8 validation of the line
    let mut de = sonic_rs::Deserializer::from_slice(line);
    Push {
        state,
        mt,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(|e| e.to_string())
}

/// Decode validated JSON onto the stack eagerly (nil if it is not JSON after all).
///
/// # Safety
/// A live state; the array metatable at `mt`.
pub(crate) unsafe fn push_json(state: *mut ffi::lua_State, mt: c_int, b: &[u8]) {
    unsafe {
        let top = ffi::lua_gettop(state);
        if push_json_checked(state, mt, b).is_err() {
            ffi::lua_settop(state, top);
            ffi::lua_pushnil(state);
        }
    }
}

/// Like [`decode_batch`], but events that are objects with simple keys become lazy proxies
/// (see lazy.rs); the context table is at `ctx`.
///
/// # Safety
/// Runs inside `exec_raw`.
pub unsafe fn lazy_batch(
    state: *mut ffi::lua_State,
    ctx: c_int,
    batch: &Batch,
) -> Vec<(usize, String)> {
    let mut scanner = dragonfly_event::json::Scanner::new();
    unsafe {
        batch_into_array(state, batch, |line| {
            crate::lazy::push_line(state, ctx, &mut scanner, line)
        })
    }
}

/// The value of a JSON number exactly as the eager decoder makes it (sonic-rs: `-0` is 0,
/// integers beyond 2^53 are rounded as doubles); NaN if `b` is not a number.
pub(crate) fn json_number(b: &[u8]) -> f64 {
    struct Num;
    impl<'de> Visitor<'de> for Num {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_i64<E>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_f64<E>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
    }
    let mut de = sonic_rs::Deserializer::from_slice(b);
    (&mut de).deserialize_any(Num).unwrap_or(f64::NAN)
}

/// Pushes one JSON value onto the Lua stack.
#[derive(Clone, Copy)]
struct Push {
    state: *mut ffi::lua_State,
    mt: c_int,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Push {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Push {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        unsafe { ffi::lua_pushboolean(self.state, v as c_int) };
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        unsafe { ffi::lua_pushnumber(self.state, v as f64) };
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        unsafe { ffi::lua_pushnumber(self.state, v as f64) };
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        unsafe { ffi::lua_pushnumber(self.state, v) };
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        unsafe { ffi::lua_pushlstring(self.state, v.as_ptr().cast(), v.len()) };
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        unsafe { ffi::lua_pushlightuserdata(self.state, ptr::null_mut()) };
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let s = self.state;
        unsafe {
            if ffi::lua_checkstack(s, 4) == 0 || self.depth >= DECODE_MAX_DEPTH {
                return Err(serde::de::Error::custom("JSON nested too deeply"));
            }
            ffi::lua_createtable(s, seq.size_hint().unwrap_or(4) as c_int, 0);
            let t = ffi::lua_gettop(s);
            let inner = Push {
                depth: self.depth + 1,
                ..self
            };
            let mut i = 1;
            while seq.next_element_seed(inner)?.is_some() {
                ffi::lua_rawseti(s, t, i);
                i += 1;
            }
            ffi::lua_pushvalue(s, self.mt);
            ffi::lua_setmetatable(s, t);
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let s = self.state;
        unsafe {
            if ffi::lua_checkstack(s, 4) == 0 || self.depth >= DECODE_MAX_DEPTH {
                return Err(serde::de::Error::custom("JSON nested too deeply"));
            }
            ffi::lua_createtable(s, 0, map.size_hint().unwrap_or(16) as c_int);
            let t = ffi::lua_gettop(s);
            let inner = Push {
                depth: self.depth + 1,
                ..self
            };
            while map.next_key_seed(KeyPush(s))?.is_some() {
                map.next_value_seed(inner)?;
                ffi::lua_rawset(s, t);
            }
        }
        Ok(())
    }
}

struct KeyPush(*mut ffi::lua_State);

impl<'de> DeserializeSeed<'de> for KeyPush {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyPush {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        unsafe { ffi::lua_pushlstring(self.0, v.as_ptr().cast(), v.len()) };
        Ok(())
    }
}
