//! The hot entry points on the raw Lua C API: a batch of JSON lines into a Lua array of events
//! (lazy events, lazy.rs, or eagerly decoded ones, decode.rs), and `output_event`, which
//! encodes a value (encode.rs) straight into its output's batch in the runtime's outcome
//! (outcome.rs) — no intermediate tree and no per-value registry references. Above decode.rs,
//! lazy.rs and encode.rs; below the runtime.
//!
//! Soundness: every function here runs on the thread that owns the Lua state (a runtime is
//! never shared between threads), only inside `Lua::exec_raw` or as a C function called by Lua,
//! and keeps the stack balanced on every path (callers reset the top after an error). Nothing
//! here raises a Lua error on purpose; the only Lua calls that can raise are allocations
//! (`lua_createtable`, `lua_pushlstring`), which fail only when the process is out of memory —
//! then the longjmp skips frames that own nothing but heap buffers, which leak.

use std::ffi::c_int;

use dragonfly_event::Batch;
use mlua::ffi;

use crate::decode::push_json_checked;
use crate::encode::{encode_value, push_array_mt, EncodeError};
use crate::outcome::TagKind;
use crate::raw::bytes;

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
        push_array_mt(state);
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
