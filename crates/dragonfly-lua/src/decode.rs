//! Eager decoding on the raw Lua C API: one JSON document straight onto the Lua stack (objects
//! as tables, arrays as tables with cjson's array metatable, `null` as `cjson.null`), with
//! sonic-rs's grammar and number rules ([`json_number`]) and the shared depth limit
//! (`dragonfly_event::json::MAX_DEPTH`). Used for input events that are not lazy (fast.rs)
//! and for the fields lazy events decode (lazy.rs).
//!
//! Soundness: as fast.rs (the running state's own thread, a balanced stack; allocations are
//! the only calls that raise).

use std::ffi::c_int;

use dragonfly_event::json::MAX_DEPTH as DECODE_MAX_DEPTH;
use mlua::ffi;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Decode one JSON document onto the stack (nothing pushed on error).
///
/// # Safety
/// `mt` is the absolute stack index of cjson's array metatable on the running state.
pub(crate) unsafe fn push_json_checked(
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
        unsafe { ffi::lua_pushlightuserdata(self.state, std::ptr::null_mut()) };
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
