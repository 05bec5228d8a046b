//! `cjson_safe` (and the alias `cjson`): lua-cjson's API over [`crate::json`].
//!
//! Both names behave like `cjson.safe`: `decode` of bad JSON returns `nil, message` and
//! `encode` of an unsupported value returns `nil, message` instead of raising an error.

use mlua::{Lua, Table, Value};

use crate::json;

pub use crate::json::{array_mt, ArrayMt};

/// `cjson.encode(v)`: the JSON text, or `nil` and lua-cjson's message.
fn encode(lua: &Lua, v: Value) -> mlua::Result<(Value, Value)> {
    match json::encode_to_vec(lua, &v) {
        Ok(bytes) => Ok((Value::String(lua.create_string(bytes)?), Value::Nil)),
        Err(e) => Ok((Value::Nil, Value::String(lua.create_string(e.to_string())?))),
    }
}

/// `cjson.decode(s)`: the value, or `nil` and a message; a table is handed back unchanged.
fn decode(lua: &Lua, v: Value) -> mlua::Result<(Value, Value)> {
    match v {
        Value::String(s) => match json::decode(lua, &array_mt(lua), &s.as_bytes()) {
            Ok(v) => Ok((v, Value::Nil)),
            Err(e) => Ok((
                Value::Nil,
                Value::String(
                    lua.create_string(format!("Expected value but found invalid JSON: {e}"))?,
                ),
            )),
        },
        // Scripts written for engine versions that passed raw JSON strings call
        // cjson.decode(msg) on what is now already a table: hand it back unchanged.
        Value::Table(t) => Ok((Value::Table(t), Value::Nil)),
        other => Ok((
            Value::Nil,
            Value::String(lua.create_string(format!(
                "bad argument #1 to 'decode' (string expected, got {})",
                other.type_name()
            ))?),
        )),
    }
}

/// The array metatable, shared by every decoded array of every script and read-only.
fn new_array_mt(lua: &Lua) -> mlua::Result<Table> {
    let mt = lua.create_table()?;
    mt.set("__name", "cjson.array")?;
    // shared by every decoded array of every script: nobody may add a metamethod to it
    mt.set_metatable(Some(super::read_only_mt(lua, "cjson.array_mt")?))?;
    super::frozen(lua)?.raw_set(mt.clone(), true)?;
    lua.set_app_data(ArrayMt(mt.clone()));
    Ok(mt)
}

/// Configuration calls of lua-cjson: accepted so scripts run, settings fixed (see docs).
const SETTINGS: [&str; 10] = [
    "encode_sparse_array",
    "encode_max_depth",
    "decode_max_depth",
    "encode_number_precision",
    "encode_keep_buffer",
    "encode_invalid_numbers",
    "decode_invalid_numbers",
    "encode_empty_table_as_object",
    "decode_array_with_array_mt",
    "encode_escape_forward_slash",
];

/// Install `cjson_safe` and `cjson` as globals (and in `package.loaded`).
pub fn install(lua: &Lua) -> mlua::Result<Table> {
    let mt = new_array_mt(lua)?;
    let m = lua.create_table()?;
    m.set("encode", lua.create_function(encode)?)?;
    m.set("decode", lua.create_function(decode)?)?;
    m.set("null", Value::NULL)?;
    m.set("array_mt", mt.clone())?;
    m.set("empty_array_mt", mt.clone())?;
    m.set("empty_array", {
        let t = lua.create_table()?;
        t.set_metatable(Some(mt))?;
        t
    })?;
    m.set("_NAME", "cjson.safe")?;
    m.set("_VERSION", "2.1.0")?;
    let noop = lua.create_function(|_, _: mlua::MultiValue| Ok(()))?;
    for name in SETTINGS {
        m.set(name, noop.clone())?;
    }
    m.set(
        "new",
        lua.create_function({
            let m = m.clone();
            move |_, ()| Ok(m.clone())
        })?,
    )?;

    let globals = lua.globals();
    globals.set("cjson_safe", m.clone())?;
    globals.set("cjson", m.clone())?;
    let loaded: Table = globals.get::<Table>("package")?.get("loaded")?;
    for name in ["cjson", "cjson.safe", "cjson_safe"] {
        loaded.set(name, m.clone())?;
    }
    Ok(m)
}
