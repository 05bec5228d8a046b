//! The `hiredis` table: lua-hiredis 0.2's API over a [`dragonfly_store::Connection`].
//!
//! Replies convert as in lua-hiredis: integer -> number, bulk -> string, array -> table,
//! nil -> `hiredis.NIL`, status -> the shared constant `hiredis.status[NAME]` (so replies compare
//! by identity with `hiredis.OK`, `hiredis.status.PONG`), error -> a new constant table
//! `{ name = "<error text>", type = hiredis.REPLY_ERROR }`.

mod conn;

use dragonfly_store::embedded::EmbeddedStore;
use dragonfly_store::redis_backend::RedisTarget;
use mlua::{ffi, Lua, MultiValue, Table, Value};

use conn::Conn;

/// Where `hiredis.connect()` connects to.
#[derive(Clone)]
pub enum Backend {
    /// The in-process store shared by every runtime of the engine.
    Embedded(EmbeddedStore),
    /// A Redis server; each `connect()` opens a connection of its own.
    Redis(RedisTarget),
    /// No backend can be used; `connect()` returns `nil, reason`.
    Unavailable(String),
}

const PRELUDE: &str = r##"
local frozen = ...
local M = { _VERSION = "lua-hiredis 0.2.1 (dragonfly-mle)" }
M.ERR_IO, M.ERR_OTHER, M.ERR_EOF, M.ERR_PROTOCOL = 1, 2, 3, 4
M.REPLY_STRING, M.REPLY_ARRAY, M.REPLY_INTEGER = 1, 2, 3
M.REPLY_NIL, M.REPLY_STATUS, M.REPLY_ERROR = 4, 5, 6
-- constants are shared by every script (compared by identity): read-only, their fields
-- (name, type) behind __index, so that no script can change what another compares against
local function read_only(_, k)
  error("cannot set '" .. tostring(k) .. "': hiredis constants are read-only", 2)
end
local function const_tostring(t) return t.name end
local function new_const(name, type)
  local c = setmetatable({}, { __index = { name = name, type = type }, __newindex = read_only,
    __tostring = const_tostring, __metatable = "lua-hiredis.const" })
  frozen[c] = true
  return c
end
M.NIL = new_const("NIL", M.REPLY_NIL)
-- status constants by name, made on first use; weak, so that a server answering with ever new
-- status words cannot grow it without end (a constant somebody holds stays, and with it its
-- identity)
local statuses = setmetatable({}, { __mode = "v" })
M.status = setmetatable({}, {
  __index = function(_, k)
    local c = statuses[k]
    if c == nil then
      c = new_const(k, M.REPLY_STATUS)
      statuses[k] = c
    end
    return c
  end,
  __newindex = read_only,
  __metatable = "lua-hiredis.status",
})
frozen[M.status] = true
M.OK, M.QUEUED, M.PONG = M.status.OK, M.status.QUEUED, M.status.PONG
M.unwrap_reply = function(reply, ...)
  if type(reply) ~= "table" then
    if reply == nil and select("#", ...) > 0 then return nil, (...) end
    return reply
  end
  if getmetatable(reply) ~= "lua-hiredis.const" then return reply end
  if reply.type == M.REPLY_STATUS then return reply.name, M.REPLY_STATUS end
  if reply.type == M.REPLY_ERROR then return nil, reply.name end
  return reply
end
return M, new_const
"##;

/// Split a command line the way the original did: on single spaces, runs of spaces
/// collapsing, tabs and newlines kept inside tokens; `%%` is a literal `%`.
pub fn split_command_line(line: &[u8]) -> Vec<Vec<u8>> {
    line.split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .map(|t| {
            let mut out = Vec::with_capacity(t.len());
            let mut i = 0;
            while i < t.len() {
                if t[i] == b'%' && t.get(i + 1) == Some(&b'%') {
                    out.push(b'%');
                    i += 2;
                } else {
                    out.push(t[i]);
                    i += 1;
                }
            }
            out
        })
        .collect()
}

/// Connections as scripts see them: a table holding the connection userdata, whose
/// `command` and `command_line` yield to chain.lua's scheduler while a Redis reply is on its
/// way (when the scheduler runs the calling event, and the call can yield); otherwise every
/// call goes straight to the userdata.
const WRAP: &str = r##"
local M, sched = ...
local raw_connect = M.connect
local yield, running, pcall = coroutine.yield, coroutine.running, pcall
local Conn = {}
Conn.__index = Conn
Conn.__tostring = function() return "lua-hiredis.connection" end
Conn.__metatable = "lua-hiredis.connection"
local function waited(ud, t)
  if t == nil then return false end
  -- a script may call from where Lua cannot yield (a metamethod, a sort comparator): wait here
  local ok, r = pcall(yield, sched.WAIT, ud, t)
  if ok then return true, r end
  return true, ud:_await(t)
end
function Conn:command(...)
  local ud = self[1]
  if sched.current ~= nil and running() == sched.current then
    local done, r = waited(ud, ud:_submit(...))
    if done then return r end
  end
  return ud:command(...)
end
function Conn:command_line(line)
  local ud = self[1]
  if sched.current ~= nil and running() == sched.current then
    local done, r = waited(ud, ud:_submit_line(line))
    if done then return r end
  end
  return ud:command_line(line)
end
function Conn:append_command(...) return self[1]:append_command(...) end
function Conn:get_reply() return self[1]:get_reply() end
function Conn:close() return self[1]:close() end
M.connect = function(...)
  local ud, err, code = raw_connect(...)
  if ud == nil then return ud, err, code end
  return setmetatable({ ud }, Conn)
end
"##;

/// Install `hiredis` as a global (and in `package.loaded`), connecting to `backend`.
pub fn install(lua: &Lua, backend: Backend) -> mlua::Result<Table> {
    let overlap = matches!(backend, Backend::Redis(_));
    let (module, new_const): (Table, mlua::Function) = lua
        .load(PRELUDE)
        .set_name("=hiredis")
        .call(super::frozen(lua)?)?;
    // SAFETY: builds the connection metatable from the two values passed: no Lua code runs
    unsafe {
        lua.exec_raw::<()>((module.clone(), new_const), |state| {
            conn::register(state, 1, 2);
            ffi::lua_settop(state, 0);
        })?;
    }
    module.set(
        "connect",
        lua.create_function(move |lua, _args: MultiValue| {
            // Host and port come from config.lua, as in the original's hiredis.connect().
            match &backend {
                Backend::Embedded(store) => Ok((
                    new_conn(lua, Conn::new(Box::new(store.connect()), false))?,
                    Value::Nil,
                    Value::Nil,
                )),
                Backend::Redis(target) => match crate::watchdog::native_io(|| target.connect()) {
                    Ok(c) => {
                        let socket = !target.restarts_after_signals();
                        Ok((
                            new_conn(lua, Conn::new(Box::new(c), socket))?,
                            Value::Nil,
                            Value::Nil,
                        ))
                    }
                    Err(e) => Ok((
                        Value::Nil,
                        Value::String(lua.create_string(e)?),
                        Value::Integer(1),
                    )),
                },
                Backend::Unavailable(why) => Ok((
                    Value::Nil,
                    Value::String(lua.create_string(why)?),
                    Value::Integer(1),
                )),
            }
        })?,
    )?;
    let sched = lua.create_table()?;
    sched.set("WAIT", lua.create_table()?)?;
    // events may overlap their Redis round trips (chain.lua: when an analyzer asks for
    // concurrency); the embedded store answers at once
    sched.set("redis", overlap)?;
    lua.set_named_registry_value("dragonfly.sched", sched.clone())?;
    lua.load(WRAP)
        .set_name("=hiredis-wrap")
        .call::<()>((module.clone(), sched))?;
    lua.globals().set("hiredis", module.clone())?;
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("hiredis", module.clone())?;
    Ok(module)
}

/// A connection userdata for a script (conn.rs).
fn new_conn(lua: &Lua, c: Conn) -> mlua::Result<Value> {
    // SAFETY: pushes one userdata with the metatable `install` registered; no Lua code runs
    unsafe { lua.exec_raw::<Value>((), |state| conn::push_new(state, c)) }
}

#[cfg(test)]
mod tests {
    use super::split_command_line;

    #[test]
    fn command_line_splits_like_the_original() {
        let got = split_command_line(b"ML.FOREST.ADD  f 0 . LEAF 1 \n");
        let want: Vec<&[u8]> = vec![b"ML.FOREST.ADD", b"f", b"0", b".", b"LEAF", b"1", b"\n"];
        assert_eq!(got, want);
        assert_eq!(
            split_command_line(b"SET k 100%%\tx"),
            vec![b"SET".to_vec(), b"k".to_vec(), b"100%\tx".to_vec()]
        );
    }
}
