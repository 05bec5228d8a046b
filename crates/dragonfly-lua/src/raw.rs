//! Small helpers on the raw Lua C API shared by the modules that work on it (decode.rs,
//! lazy.rs, encode.rs, fast.rs, outcome.rs): the bytes of a string on the stack, registry
//! entries keyed by the address of a static. The bottom of the crate's raw layer: it imports
//! nothing from the crate.

use std::ffi::c_int;

use mlua::ffi;

pub(crate) fn key(k: &'static u8) -> *mut std::ffi::c_void {
    k as *const u8 as *mut std::ffi::c_void
}

/// Push the registry entry keyed by the address of `k`.
///
/// # Safety
/// `state` is the running Lua state on its own thread; pushes one value.
pub(crate) unsafe fn registry_get(state: *mut ffi::lua_State, k: &'static u8) {
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
