//! JSON <-> Lua values with lua-cjson's conventions, fixed where the original lost data: the
//! crate's JSON API on `mlua` values (`cjson`, the libraries, the runtime use it). Encoding is
//! encode.rs's (re-exported here); decoding raw onto the stack is decode.rs's.
//!
//! - `null` decodes to `cjson.null` (a NULL light userdata) and encodes back to `null`.
//! - Arrays decode to sequences carrying `cjson.array_mt`, so `[]` encodes back as `[]`
//!   (the original turned it into `{}`); an empty table without it encodes as `{}`.
//! - Integral numbers encode as integers (`flow_id` stays `1251312473193421`, not
//!   `1.2513124731934e+15`); other numbers as `%.14g`, like the original.
//! - Tables with only positive integer keys encode as arrays (`null` in holes); excessively
//!   sparse ones (max key > 2 x count and > 10) are an error, as in cjson.
//! - NaN and infinity are an error; nesting is limited to 1000 levels when encoding, and to
//!   `dragonfly_event::json::MAX_DEPTH` (254) when decoding.
//! - Decoding: `cjson.decode` here, eager input events and lazy fields (decode.rs) all read
//!   JSON with sonic-rs's grammar and number rules (an integer beyond 2^53 rounds as a double,
//!   `-0` is 0) and the same depth limit.

use mlua::{ffi, Lua, Table, Value};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub use crate::encode::{write_number, write_string, EncodeError};

/// The array metatable shared by decoded arrays, kept in the Lua app data (made by
/// `libs::cjson::install`).
#[derive(Clone)]
pub struct ArrayMt(pub Table);

/// The array metatable of this state (decoded arrays carry it, so `[]` stays `[]`).
pub fn array_mt(lua: &Lua) -> Table {
    lua.app_data_ref::<ArrayMt>()
        .expect("cjson installed")
        .0
        .clone()
}

/// Decode one JSON document into a Lua value (the message says why it is not JSON).
pub fn decode(lua: &Lua, array_mt: &Table, bytes: &[u8]) -> Result<Value, String> {
    let mut de = sonic_rs::Deserializer::from_slice(bytes);
    let v = Seed {
        lua,
        array_mt,
        depth: 0,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

#[derive(Clone, Copy)]
struct Seed<'a> {
    lua: &'a Lua,
    array_mt: &'a Table,
    depth: usize,
}

impl Seed<'_> {
    /// The seed for a value one level down, or an error past the shared depth limit.
    fn inner<E: serde::de::Error>(self) -> Result<Self, E> {
        if self.depth >= dragonfly_event::json::MAX_DEPTH {
            return Err(E::custom("JSON nested too deeply"));
        }
        Ok(Seed {
            depth: self.depth + 1,
            ..self
        })
    }
}

fn lua_err<E: serde::de::Error>(e: mlua::Error) -> E {
    E::custom(e.to_string())
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.lua
            .create_string(v)
            .map(Value::String)
            .map_err(lua_err)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::NULL)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let t = self
            .lua
            .create_table_with_capacity(seq.size_hint().unwrap_or(4), 0)
            .map_err(lua_err)?;
        let mut i = 1usize;
        while let Some(v) = seq.next_element_seed(inner)? {
            t.raw_seti(i, v).map_err(lua_err)?;
            i += 1;
        }
        t.set_metatable(Some(self.array_mt.clone()))
            .map_err(lua_err)?;
        Ok(Value::Table(t))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let t = self
            .lua
            .create_table_with_capacity(0, map.size_hint().unwrap_or(16))
            .map_err(lua_err)?;
        while let Some(k) = map.next_key_seed(KeySeed(self.lua))? {
            let v = map.next_value_seed(inner)?;
            t.raw_set(k, v).map_err(lua_err)?;
        }
        Ok(Value::Table(t))
    }
}

struct KeySeed<'a>(&'a Lua);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = mlua::LuaString;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<mlua::LuaString, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = mlua::LuaString;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<mlua::LuaString, E> {
        self.0.create_string(v).map_err(lua_err)
    }
}

/// Encode a Lua value as JSON, appending to `out` (lazy events as their bytes where
/// unchanged; object keys in a fixed order).
pub fn encode(lua: &Lua, v: &Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mt = array_mt(lua);
    let mut res = Ok(());
    // SAFETY: encode_value reads the stack only (its allocations are Lua strings for keys);
    // the value is argument 1 and the array metatable argument 2.
    let r = unsafe {
        lua.exec_raw::<()>((v, mt), |state| {
            res = crate::encode::encode_value(state, 1, 2, out, 0);
            ffi::lua_settop(state, 0);
        })
    };
    r.map_err(|e| EncodeError::Lua(e.to_string()))?;
    res
}

/// Encode into a fresh string.
pub fn encode_to_vec(lua: &Lua, v: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    encode(lua, v, &mut out)?;
    Ok(out)
}

/// A copy of a value, as the original gave each analyzer its own copy of an event (chain.lua's
/// copy: tables deeply, lazy events as a new view of the same bytes).
pub fn deep_copy(lua: &Lua, v: &Value) -> mlua::Result<Value> {
    lua.named_registry_value::<mlua::Function>("dragonfly.copy")?
        .call(v)
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    fn deep(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn cjson_decode_shares_the_event_decoders_depth_limit_and_number_rules() {
        let lua = Lua::new();
        let mt = lua.create_table().unwrap();
        let max = dragonfly_event::json::MAX_DEPTH;
        assert!(decode(&lua, &mt, deep(max).as_bytes()).is_ok());
        assert!(decode(&lua, &mt, deep(max + 1).as_bytes()).is_err());
        // the scanner (lazy events) draws the line at the same place
        let mut sc = dragonfly_event::json::Scanner::new();
        assert!(sc.validate(deep(max).as_bytes()).is_ok());
        assert!(sc.validate(deep(max + 1).as_bytes()).is_err());
        // numbers as the eager decoder makes them
        for n in [
            "-0",
            "12345678901234567890",
            "9007199254740993",
            "1.5e300",
            "-1e-320",
            "0.1",
        ] {
            let v = decode(&lua, &mt, n.as_bytes()).unwrap();
            let want = crate::decode::json_number(n.as_bytes());
            assert_eq!(v, Value::Number(want), "{n}");
        }
        assert!(decode(&lua, &mt, b"1e400").is_err());
        // hostile: a megabyte of openings is an error, not a stack overflow
        let open = "[".repeat(1 << 20);
        assert!(decode(&lua, &mt, open.as_bytes()).is_err());
        let objects = "{\"a\":".repeat(1 << 18);
        assert!(decode(&lua, &mt, objects.as_bytes()).is_err());
    }
}
