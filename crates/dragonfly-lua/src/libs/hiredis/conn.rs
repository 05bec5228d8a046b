//! A connection as Lua sees it: a full userdata made here, whose methods are C functions on
//! the raw Lua API.
//!
//! Behaviour: `command(...)`, `command_line(line)`, `append_command(...)`, `get_reply()`,
//! `close()` as in lua-hiredis 0.2 (replies converted as the module doc says), plus the
//! overlap scheduler's `_submit`, `_submit_line`, `_await(ticket)` and `_flush` (WRAP, in
//! mod.rs). Arguments are strings or numbers (numbers sent as Lua prints them, `%.14g`); a
//! wrong argument, a closed connection or a missing command name raises a Lua error (a
//! string). `__gc` closes the connection; `__metatable` hides the metatable from scripts.
//!
//! Cost: this is the hottest call a script makes (the triage root makes ~8 per event). A call
//! copies its arguments once into the `Vec`s the store takes and pushes the reply straight onto
//! the stack: no `mlua` callback frame, no per-argument registry reference, no protected
//! closure per string (through `mlua` the call path cost as much as the store's own work).
//!
//! Soundness: every function here is a C function called by Lua on the state's own thread.
//! The userdata holds a [`Conn`] written once when it is made ([`push_new`]); a method finds it
//! only through [`this`], which checks the value's metatable is this module's (scripts cannot
//! make a userdata with it: they never reach it, `__metatable` hides it). The `&mut Conn`
//! lives only while the store call runs, which calls no Lua code, so it is the only reference.
//! `__gc` takes the connection out instead of dropping the struct in place, so a finalized
//! userdata that a later finalizer reaches is a closed connection, not freed memory. Errors are
//! raised (`lua_error`) only from [`finish`], whose frame owns nothing by then; the only other
//! calls that can raise are allocations at the memory limit and the status and error
//! constructors of the prelude (Lua code that fails only then), whose unwinding skips frames
//! owning at most a reply, which leaks.

use std::ffi::{c_int, CStr};

use dragonfly_models::numfmt::lua_number;
use dragonfly_store::{Connection, Reply};
use mlua::ffi;

use super::split_command_line;
use crate::raw::{bytes, registry_get};

/// Registry key (this static's address) of the connection metatable.
static CONN_MT: u8 = 0;

/// Upvalues of every method: the module table and the prelude's `new_const`.
const UV_MODULE: c_int = 1;
const UV_NEW_CONST: c_int = 2;

/// Deepest array reply converted (a server cannot make the conversion exhaust the C stack).
const MAX_DEPTH: usize = 64;

/// One connection of a script.
pub(super) struct Conn {
    inner: Option<Box<dyn Connection>>,
    /// A connection that waits on sockets whose calls a signal cuts short (a Redis Cluster
    /// link): its calls hold signals back (watchdog::native_io). A one-server link restarts
    /// its own calls (dragonfly_store::resp).
    socket: bool,
}

impl Conn {
    pub(super) fn new(inner: Box<dyn Connection>, socket: bool) -> Conn {
        Conn {
            inner: Some(inner),
            socket,
        }
    }

    /// Run `f` on the connection as a native call (see `socket`).
    fn io<T>(&mut self, f: impl FnOnce(&mut Box<dyn Connection>) -> T) -> Result<T, String> {
        let socket = self.socket;
        let conn = self.get()?;
        Ok(if socket {
            crate::watchdog::native_io(|| f(conn))
        } else {
            crate::watchdog::native(|| f(conn))
        })
    }

    fn get(&mut self) -> Result<&mut Box<dyn Connection>, String> {
        self.inner
            .as_mut()
            .ok_or_else(|| "lua-hiredis error: attempted to use closed connection".to_string())
    }
}

/// Make the connection metatable (registry) whose methods close over `module` and
/// `new_const`, found at stack indices `module` and `new_const`.
///
/// # Safety
/// Inside `exec_raw` on a live state; the indices are valid. Leaves the stack as it was.
pub(super) unsafe fn register(state: *mut ffi::lua_State, module: c_int, new_const: c_int) {
    unsafe {
        ffi::lua_pushlightuserdata(state, crate::raw::key(&CONN_MT));
        ffi::lua_createtable(state, 0, 4);
        let mt = ffi::lua_gettop(state);
        ffi::lua_createtable(state, 0, METHODS.len() as c_int);
        for (name, f) in METHODS {
            ffi::lua_pushvalue(state, module);
            ffi::lua_pushvalue(state, new_const);
            ffi::lua_pushcclosure(state, f, 2);
            ffi::lua_setfield(state, -2, cstr(name).as_ptr());
        }
        ffi::lua_setfield(state, mt, c"__index".as_ptr());
        ffi::lua_pushcfunction(state, gc);
        ffi::lua_setfield(state, mt, c"__gc".as_ptr());
        ffi::lua_pushcfunction(state, tostring);
        ffi::lua_setfield(state, mt, c"__tostring".as_ptr());
        push_str(state, "lua-hiredis.connection");
        ffi::lua_setfield(state, mt, c"__metatable".as_ptr());
        ffi::lua_rawset(state, ffi::LUA_REGISTRYINDEX);
    }
}

fn cstr(name: &str) -> std::ffi::CString {
    std::ffi::CString::new(name).expect("method names have no NUL")
}

/// Push a new connection userdata holding `conn`.
///
/// # Safety
/// Inside `exec_raw` on a state prepared by [`register`].
pub(super) unsafe fn push_new(state: *mut ffi::lua_State, conn: Conn) {
    unsafe {
        // LuaJIT aligns userdata payloads to 8 bytes, enough for Conn (pointers and a bool)
        const { assert!(std::mem::align_of::<Conn>() <= 8) };
        let p = ffi::lua_newuserdata(state, std::mem::size_of::<Conn>()).cast::<Conn>();
        p.write(conn);
        registry_get(state, &CONN_MT);
        ffi::lua_setmetatable(state, -2);
    }
}

/// The connection at stack index 1, if it is one of ours.
///
/// # Safety
/// In a method (C function) call; the reference must not outlive the call nor overlap a call
/// into Lua.
unsafe fn this<'a>(state: *mut ffi::lua_State, method: &str) -> Result<&'a mut Conn, String> {
    unsafe {
        if ffi::lua_type(state, 1) == ffi::LUA_TUSERDATA && ffi::lua_getmetatable(state, 1) != 0 {
            registry_get(state, &CONN_MT);
            let ours = ffi::lua_rawequal(state, -1, -2) != 0;
            ffi::lua_settop(state, -3);
            if ours {
                return Ok(&mut *ffi::lua_touserdata(state, 1).cast::<Conn>());
            }
        }
        Err(format!(
            "bad argument #1 to '{method}' (lua-hiredis.connection expected, got {}; call it as conn:{method}(...))",
            type_name(state, 1)
        ))
    }
}

unsafe fn type_name(state: *mut ffi::lua_State, idx: c_int) -> String {
    unsafe {
        CStr::from_ptr(ffi::lua_typename(state, ffi::lua_type(state, idx)))
            .to_string_lossy()
            .into_owned()
    }
}

/// The command's arguments from stack index 2 on.
unsafe fn args(state: *mut ffi::lua_State, method: &str) -> Result<Vec<Vec<u8>>, String> {
    unsafe {
        let top = ffi::lua_gettop(state);
        if top < 2 {
            return Err("missing command name".into());
        }
        let mut out = Vec::with_capacity((top - 1) as usize);
        for i in 2..=top {
            out.push(arg(state, i).ok_or_else(|| {
                format!(
                    "bad argument #{} to '{method}' (expected a string or number value, got {})",
                    i - 1,
                    type_name(state, i)
                )
            })?);
        }
        Ok(out)
    }
}

/// A string or number argument's bytes (numbers as Lua prints them).
unsafe fn arg(state: *mut ffi::lua_State, i: c_int) -> Option<Vec<u8>> {
    unsafe {
        match ffi::lua_type(state, i) {
            ffi::LUA_TSTRING => Some(bytes(state, i).to_vec()),
            ffi::LUA_TNUMBER => Some(lua_number(ffi::lua_tonumber(state, i)).into_bytes()),
            _ => None,
        }
    }
}

/// `command_line`'s line split into arguments.
unsafe fn line_args(state: *mut ffi::lua_State, method: &str) -> Result<Vec<Vec<u8>>, String> {
    unsafe {
        let line = arg(state, 2).ok_or_else(|| {
            format!(
                "bad argument #1 to '{method}' (string expected, got {})",
                type_name(state, 2)
            )
        })?;
        let args = split_command_line(&line);
        if args.is_empty() {
            return Err("missing command name".into());
        }
        Ok(args)
    }
}

fn push_str(state: *mut ffi::lua_State, s: &str) {
    // SAFETY: a live state; the string is copied
    unsafe {
        ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len());
    }
}

/// Push `reply` converted as lua-hiredis does.
unsafe fn push_reply(state: *mut ffi::lua_State, reply: Reply, depth: usize) -> Result<(), String> {
    unsafe {
        if ffi::lua_checkstack(state, 4) == 0 || depth > MAX_DEPTH {
            return Err(format!(
                "lua-hiredis error: reply nested deeper than {MAX_DEPTH} arrays"
            ));
        }
        match reply {
            Reply::Integer(i) => ffi::lua_pushnumber(state, i as f64),
            Reply::Bulk(b) => {
                ffi::lua_pushlstring(state, b.as_ptr().cast(), b.len());
            }
            Reply::Nil => {
                ffi::lua_pushstring(state, c"NIL".as_ptr());
                ffi::lua_rawget(state, ffi::lua_upvalueindex(UV_MODULE));
            }
            Reply::Status(s) => {
                ffi::lua_pushstring(state, c"status".as_ptr());
                ffi::lua_rawget(state, ffi::lua_upvalueindex(UV_MODULE));
                ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len());
                drop(s);
                // the status table's __index makes the constant on first use
                ffi::lua_gettable(state, -2);
                ffi::lua_remove(state, -2);
            }
            Reply::Error(e) => {
                ffi::lua_pushvalue(state, ffi::lua_upvalueindex(UV_NEW_CONST));
                ffi::lua_pushlstring(state, e.as_ptr().cast(), e.len());
                drop(e);
                ffi::lua_pushnumber(state, 6.0);
                ffi::lua_call(state, 2, 1);
            }
            Reply::Array(items) => {
                ffi::lua_createtable(state, items.len().min(1 << 20) as c_int, 0);
                for (i, item) in items.into_iter().enumerate() {
                    if let Err(e) = push_reply(state, item, depth + 1) {
                        ffi::lua_settop(state, -2);
                        return Err(e);
                    }
                    ffi::lua_rawseti(state, -2, (i + 1) as _);
                }
            }
        }
        Ok(())
    }
}

/// Return `n` results, or raise `msg`.
unsafe fn finish(state: *mut ffi::lua_State, r: Result<c_int, String>) -> c_int {
    unsafe {
        match r {
            Ok(n) => n,
            Err(msg) => {
                push_str(state, &msg);
                drop(msg);
                ffi::lua_error(state)
            }
        }
    }
}

// the methods, by number (the const parameter of [`method`])
const COMMAND: u8 = 0;
const COMMAND_LINE: u8 = 1;
const APPEND_COMMAND: u8 = 2;
const GET_REPLY: u8 = 3;
const CLOSE: u8 = 4;
const SUBMIT: u8 = 5;
const SUBMIT_LINE: u8 = 6;
const AWAIT: u8 = 7;
const FLUSH: u8 = 8;

/// The methods as scripts call them, with the C function of each.
const METHODS: [(&str, ffi::lua_CFunction); 9] = [
    ("command", method::<COMMAND>),
    ("command_line", method::<COMMAND_LINE>),
    ("append_command", method::<APPEND_COMMAND>),
    ("get_reply", method::<GET_REPLY>),
    ("close", method::<CLOSE>),
    ("_submit", method::<SUBMIT>),
    ("_submit_line", method::<SUBMIT_LINE>),
    ("_await", method::<AWAIT>),
    ("_flush", method::<FLUSH>),
];

/// Method `M` of [`METHODS`]: its results, or its error raised.
unsafe extern "C-unwind" fn method<const M: u8>(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua as a method of a connection (module doc)
    unsafe {
        let name = METHODS[M as usize].0;
        let r = body(state, M, name);
        finish(state, r)
    }
}

/// What method `m` (called `name`) does: the number of results it pushed, or the error to
/// raise. `command`, `command_line`: the reply. `append_command`: queue a command
/// (pipelining). `get_reply`: the oldest queued command's reply, or nil, a message and 2.
/// `_submit`, `_submit_line`: queue a command for the overlap scheduler; its ticket, or nil
/// when the connection answers at once (the caller calls `command` instead). `_await(ticket)`:
/// the reply to a submitted command. `_flush`: send what is queued.
unsafe fn body(state: *mut ffi::lua_State, m: u8, name: &str) -> Result<c_int, String> {
    unsafe {
        let conn = this(state, name)?;
        match m {
            COMMAND | COMMAND_LINE => {
                let args = command_args(state, name, m == COMMAND_LINE)?;
                let reply = conn.io(|c| c.command(&args))?;
                drop(args);
                push_reply(state, reply, 0)?;
                Ok(1)
            }
            APPEND_COMMAND => {
                let args = args(state, name)?;
                conn.io(|c| c.append_command(args))?;
                Ok(0)
            }
            GET_REPLY => {
                match conn.io(|c| c.get_reply())? {
                    Some(r) => {
                        push_reply(state, r, 0)?;
                        ffi::lua_pushnil(state);
                        ffi::lua_pushnil(state);
                    }
                    None => {
                        ffi::lua_pushnil(state);
                        push_str(state, "no reply pending (get_reply without append_command)");
                        ffi::lua_pushnumber(state, 2.0);
                    }
                }
                Ok(3)
            }
            CLOSE => {
                conn.inner = None;
                Ok(0)
            }
            SUBMIT | SUBMIT_LINE => {
                let args = command_args(state, name, m == SUBMIT_LINE)?;
                push_ticket(state, conn.get()?.submit(&args));
                Ok(1)
            }
            AWAIT => {
                let t = ffi::lua_tonumber(state, 2);
                if ffi::lua_type(state, 2) != ffi::LUA_TNUMBER || t < 0.0 || t.fract() != 0.0 {
                    return Err(format!("bad argument #1 to '{name}' (a ticket expected)"));
                }
                let reply = conn.io(|c| c.await_reply(t as u64))?;
                push_reply(state, reply, 0)?;
                Ok(1)
            }
            _ => {
                conn.io(|c| c.flush())?;
                Ok(0)
            }
        }
    }
}

unsafe fn command_args(
    state: *mut ffi::lua_State,
    method: &str,
    line: bool,
) -> Result<Vec<Vec<u8>>, String> {
    unsafe {
        if line {
            line_args(state, method)
        } else {
            args(state, method)
        }
    }
}

fn push_ticket(state: *mut ffi::lua_State, t: Option<u64>) {
    // SAFETY: a live state
    unsafe {
        match t {
            Some(t) => ffi::lua_pushnumber(state, t as f64),
            None => ffi::lua_pushnil(state),
        }
    }
}

/// `__gc`: close the connection (the userdata stays a closed connection; module doc).
unsafe extern "C-unwind" fn gc(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua's collector with the userdata at index 1, which has this
    // metatable, so it holds a Conn
    unsafe {
        let c = &mut *ffi::lua_touserdata(state, 1).cast::<Conn>();
        drop(c.inner.take());
    }
    0
}

unsafe extern "C-unwind" fn tostring(state: *mut ffi::lua_State) -> c_int {
    push_str(state, "lua-hiredis.connection");
    1
}
