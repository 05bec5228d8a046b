//! The libraries every script sees: `cjson_safe`/`cjson`, `dragonfly`, `hiredis`.

pub mod cjson;
pub mod dragonfly;
pub mod hiredis;

/// The set (a weak-keyed Lua table) of the tables every script shares and none may change:
/// cjson's array metatable, hiredis's constants, the views of the string metatable. The
/// sandbox's `rawset` refuses them; each is protected against plain assignment by its own
/// metatable. Made on first use, kept in the registry.
pub(crate) fn frozen(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    const KEY: &str = "dragonfly.frozen";
    if let Ok(t) = lua.named_registry_value::<mlua::Table>(KEY) {
        return Ok(t);
    }
    let t = lua.create_table()?;
    let mt = lua.create_table()?;
    mt.raw_set("__mode", "k")?;
    t.set_metatable(Some(mt))?;
    lua.set_named_registry_value(KEY, t.clone())?;
    Ok(t)
}

/// A metatable that makes a table read-only: a new key is an error (`__newindex`, raised
/// as a plain Lua string), and the metatable cannot be replaced (`__metatable` = `name`).
pub(crate) fn read_only_mt(lua: &mlua::Lua, name: &str) -> mlua::Result<mlua::Table> {
    lua.load(
        "local name = ...
         return { __metatable = name, __newindex = function(_, k)
           error('cannot set \\'' .. tostring(k) .. '\\' in ' .. name ..
             ': it is shared by every script and read-only', 2)
         end }",
    )
    .set_name("=dragonfly-read-only")
    .call(name)
}
