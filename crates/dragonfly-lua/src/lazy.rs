//! Lazy events: an input line stays bytes until a script reads a field.
//!
//! Behaviour. A line that is a JSON object with simple keys (none escaped, none twice: see
//! `dragonfly_event::json`) reaches the filter as a *proxy*: an ordinary Lua table, empty at
//! first, whose metatable holds the line (a Lua string), the object's byte range and what has
//! happened to it. Reading a field the table does not hold (`__index`) finds it in the bytes,
//! decodes it, stores it in the table (later reads are plain table hits) and marks the field
//! *decoded*. A nested object becomes a proxy over its own byte range; an array becomes an
//! ordinary table (with cjson's array metatable, as the eager decoder makes them) whose objects
//! are proxies. Writing a key the table does not hold (`__newindex`) marks an original field
//! decoded or appends a new key to the *added* list. Anything that needs every field (`pairs`,
//! `next`, `setmetatable`, `table.foreach`: sandbox.lua wraps them) first *materializes* the
//! proxy: every field not yet decoded is decoded into the table, after which the table holds
//! the whole object and behaves exactly as an eagerly decoded one.
//!
//! Encoding ([`encode`], for outputs, `cjson.encode`, logs and dead letters): a proxy with
//! nothing decoded or added is its original bytes, copied. Otherwise the original fields are
//! written in their original order: a field never decoded as its original bytes, a decoded one
//! as its original bytes if its value still equals them (so number text is kept), as the
//! encoding of its current value if not, and not at all if it was deleted; then the added keys
//! in the order they were first added; then any other key (set with `rawset` on a materialized
//! table), sorted.
//!
//! Hand-offs (`analyze_event`, chain.lua): [`clone`] makes a new table sharing the sender's
//! metatable (its state, marked shared), and chain.lua copies the entries the table holds
//! (deeply). A proxy that then changes the shared state (reads a field not decoded yet,
//! writes a key the table does not hold, is materialized) does so in a *view* of its own: an
//! entry of the state, listed by the table's address, holding a copy of what it had seen
//! (decoded marks, its number of added keys: every proxy has a prefix of the shared added
//! list). When the state has no room for another view ([`VIEWS`]), or the change is to a list
//! other proxies see (an added key after another proxy added one, a mark past the 64th
//! field), the proxy gets a metatable and state of its own instead ([`split`]). A hand-off
//! costs one table plus what the sender decoded or wrote, never the whole event, and a
//! receiver that writes costs no allocation. What the receiver changes is not seen by the
//! sender, and the other way round. A view listed for a table that was collected is dropped
//! when a new proxy of the same state takes its address ([`forget`]).
//!
//! Guarantees: what scripts see is what the eager decoder gives (`tests/lazy_events.rs` drives
//! random events through random edits both ways and compares the outputs). Lines that are not
//! JSON are refused before any script runs, as before. Lines that are objects with escaped or
//! repeated keys, arrays and scalars are decoded eagerly.
//!
//! Cost: an input event is the line as a Lua string, a table, its metatable and a userdata
//! (the state, ~200 bytes); a hand-off is one table; a field read scans the object's top
//! level up to the field (a key that is not a field is usually ruled out by the key bits,
//! without reading the bytes).
//!
//! Soundness: every function runs on the thread that owns the Lua state, inside `exec_raw` or
//! as a C function called by Lua, and keeps the stack balanced. The byte range read from a
//! metatable is checked against the string it refers to before use; scripts never reach a
//! proxy's metatable (the sandbox's `getmetatable` hides it), and a range that does not hold
//! an object only yields no fields. The only calls that can raise are allocations, which fail
//! only at the memory limit; the frames they unwind own no heap memory except scratch vectors,
//! which leak.

use std::ffi::c_int;

use dragonfly_event::json::{self as scan, Elements, Fields, Kind, Scanner};
use mlua::ffi;

use crate::fast::{bytes, push_json, write_key};
use crate::json::EncodeError;

// metatable slots
const M_STATE: c_int = 1;
const M_RAW: c_int = 2;
const M_EXTRA: c_int = 3;
/// Added key i (1-based, in the order first added) is in slot `M_ADDED + i`: the metatable's
/// array part holds them, so a proxy that writes new keys needs no table for the list.
const M_ADDED: c_int = 3;

// context table slots (the upvalue of every lazy C function, argument of batch decoding)
const C_ARRAY_MT: c_int = 1;
const C_INDEX_KEY: c_int = 2;
const C_NEWINDEX_KEY: c_int = 3;
const C_INDEX: c_int = 4;
const C_NEWINDEX: c_int = 5;

/// Fields whose decoded mark is a bit of the mask; later ones use a table.
const MASK_BITS: usize = 64;

/// How many decoded fields a state remembers the position of.
const NEAR: usize = 4;

/// Marks a [`State`] (scripts can make userdata only with `newproxy`, of size 0, and cannot
/// write into any).
const MAGIC: u64 = 0x6466_6c61_7a79_6576;

fn ctx_index() -> c_int {
    ffi::lua_upvalueindex(1)
}

/// What one proxy has done to its object: the part of a [`State`] that each proxy sharing
/// it may have a copy of its own of.
#[repr(C)]
#[derive(Clone, Copy)]
struct Core {
    /// Bit n: field n (in input order) was decoded (read, written or deleted).
    mask: u64,
    /// How many of the added keys (slots `M_ADDED + 1 ..`) this proxy has.
    added: u32,
    /// Every field was decoded (the table holds the whole object).
    full: bool,
    /// Which of the metatable's lists exist: [`HAS_EXTRA`], [`HAS_ADDED`].
    lists: u8,
    /// Where the first [`NEAR`] fields decoded start in the object (offsets), and their
    /// ordinals, in the order they were decoded: the encoder goes straight to them instead of
    /// walking every field before them.
    near_len: u8,
    near_ord: [u8; NEAR],
    near_at: [u32; NEAR],
}

impl Core {
    const EMPTY: Core = Core {
        mask: 0,
        added: 0,
        full: false,
        lists: 0,
        near_len: 0,
        near_ord: [0; NEAR],
        near_at: [0; NEAR],
    };
}

/// How many proxies sharing a metatable can have a view of their own in it (see [`own`]).
const VIEWS: usize = 2;

/// A proxy's state: a full userdata in its metatable's slot 1, next to the string it points
/// into (slot 2, which keeps the bytes alive: LuaJIT never moves a string).
///
/// A hand-off shares the metatable (and so this state) between sender and receiver. Every
/// proxy using it sees `core`, except the (up to [`VIEWS`]) proxies listed in `at`, which see
/// their entry of `own`: a proxy that changes a shared state is given an entry (a copy of
/// `core`) and changes that, so the others never see it; when there is no room, it gets a
/// metatable and state of its own instead.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct State {
    magic: u64,
    root: *const u8,
    root_len: usize,
    start: usize,
    end: usize,
    /// The object's key bits (`dragonfly_event::json::Doc::keys`): a key whose bit is clear
    /// is not one of its fields, found without reading the bytes.
    keys: u64,
    /// How many fields the object has (0: not known).
    fields: u32,
    /// How many added-key slots are in use (each proxy has a prefix of them: its `added`).
    listed: u32,
    /// More than one proxy may use this metatable (a hand-off shares it).
    shared: bool,
    /// How many entries of `at` and `own` are in use.
    views: u8,
    /// The view of every proxy not listed in `at`.
    core: Core,
    /// The tables (by address) that have a view of their own, and those views.
    at: [usize; VIEWS],
    own: [Core; VIEWS],
}

/// The metatable holds the decoded marks of fields past the 64th.
const HAS_EXTRA: u8 = 1;
/// The metatable holds added keys.
const HAS_ADDED: u8 = 2;

/// A proxy's state and bytes, read from its metatable.
struct View<'a> {
    root: &'a [u8],
    start: usize,
    end: usize,
    mask: u64,
    full: bool,
    lists: u8,
    keys: u64,
    fields: u32,
    state: *mut State,
    /// This proxy's view: `state.core` or its entry of `state.own`.
    core: *mut Core,
}

impl<'a> View<'a> {
    fn obj(&self) -> &'a [u8] {
        &self.root[self.start..self.end]
    }
}

/// The state in the metatable at `mt`, if it is a proxy's.
///
/// # Safety
/// `state` is the running Lua state on its own thread (module doc, Soundness); `mt` is a valid
/// stack index. Uses one stack slot and leaves the stack as it was.
unsafe fn state_of(state: *mut ffi::lua_State, mt: c_int) -> Option<*mut State> {
    unsafe {
        ffi::lua_rawgeti(state, mt, M_STATE as _);
        // touserdata is null but for userdata; objlen is 0 for a light one, the size of the
        // block for a full one
        let p = ffi::lua_touserdata(state, -1).cast::<State>();
        let ok = !p.is_null()
            && ffi::lua_objlen(state, -1) == std::mem::size_of::<State>()
            // SAFETY: a full userdata of State's size; any bytes are a valid u64
            && std::ptr::read_unaligned(p.cast::<u64>()) == MAGIC;
        ffi::lua_pop(state, 1);
        ok.then_some(p)
    }
}

/// The state of the proxy whose metatable is at `mt`, if it is one (for the encoder).
///
/// # Safety
/// `mt` is a valid index of a live state.
pub(crate) unsafe fn lazy_state(state: *mut ffi::lua_State, mt: c_int) -> Option<*mut State> {
    unsafe { state_of(state, mt) }
}

/// The view of proxy `t` whose metatable is at `mt` (None if it is not one, or corrupt).
/// The bytes stay valid while the metatable is reachable (it anchors the string).
///
/// # Safety
/// As [`state_of`]; `t` is the stack index of the table whose metatable is at `mt`.
unsafe fn view<'a>(state: *mut ffi::lua_State, t: c_int, mt: c_int) -> Option<View<'a>> {
    unsafe { view_of(state, state_of(state, mt)?, t) }
}

/// Which view of the state at `p` proxy `t` has.
///
/// # Safety
/// `p` is a [`State`] checked by [`state_of`] (or made by [`push_meta`]) and anchored on the
/// stack; `t` is a valid stack index. The pointer returned is valid as long as `p` is.
unsafe fn core_of(state: *mut ffi::lua_State, p: *mut State, t: c_int) -> *mut Core {
    unsafe {
        // SAFETY: a State checked by state_of (aligned: Lua aligns userdata for any C type)
        let st = &*p;
        let n = (st.views as usize).min(VIEWS);
        if n > 0 {
            let a = ffi::lua_topointer(state, t) as usize;
            if let Some(i) = st.at[..n].iter().position(|&x| x == a) {
                return std::ptr::addr_of_mut!((*p).own[i]);
            }
        }
        std::ptr::addr_of_mut!((*p).core)
    }
}

/// Proxy `t`'s view of the state at `p` (checked by [`state_of`]), None if its range is
/// corrupt.
///
/// # Safety
/// As [`core_of`]; the `View` borrows the string anchored by the same metatable, so it must not
/// outlive the stack frame that keeps that metatable reachable.
unsafe fn view_of<'a>(state: *mut ffi::lua_State, p: *mut State, t: c_int) -> Option<View<'a>> {
    unsafe {
        // SAFETY: checked by state_of; the userdata is anchored by the metatable, and Lua
        // aligns userdata for any C type
        let st = &*p;
        if st.root.is_null() || st.start > st.end || st.end > st.root_len {
            return None;
        }
        // SAFETY: root/root_len describe the string in slot M_RAW, set together with it
        let root = std::slice::from_raw_parts(st.root, st.root_len);
        let core = core_of(state, p, t);
        let c = &*core;
        Some(View {
            root,
            start: st.start,
            end: st.end,
            mask: c.mask,
            full: c.full,
            lists: c.lists,
            keys: st.keys,
            fields: st.fields,
            state: p,
            core,
        })
    }
}

/// Whether field `ord` of `v`'s object was decoded (read, written or deleted).
///
/// # Safety
/// `mt` is the stack index of `v`'s metatable, on the running state; the stack is left as it
/// was.
unsafe fn decoded(state: *mut ffi::lua_State, mt: c_int, v: &View, ord: usize) -> bool {
    if v.full {
        return true;
    }
    if ord < MASK_BITS {
        return v.mask & (1 << ord) != 0;
    }
    unsafe {
        ffi::lua_rawgeti(state, mt, M_EXTRA as _);
        let r = if ffi::lua_type(state, -1) == ffi::LUA_TTABLE {
            ffi::lua_rawgeti(state, -1, ord as _);
            let b = ffi::lua_toboolean(state, -1) != 0;
            ffi::lua_pop(state, 1);
            b
        } else {
            false
        };
        ffi::lua_pop(state, 1);
        r
    }
}

/// Mark field `ord` of `v`'s object decoded.
///
/// # Safety
/// `mt` is the stack index of `v`'s metatable and `v` a view made from it, on the running
/// state (it writes through `v.core`); the stack is left as it was.
unsafe fn mark(state: *mut ffi::lua_State, mt: c_int, v: &mut View, ord: usize) {
    unsafe {
        if ord < MASK_BITS {
            v.mask |= 1 << ord;
            (*v.core).mask = v.mask;
            return;
        }
        slot_table(state, mt, M_EXTRA);
        v.lists |= HAS_EXTRA;
        (*v.core).lists = v.lists;
        ffi::lua_pushboolean(state, 1);
        ffi::lua_rawseti(state, -2, ord as _);
        ffi::lua_pop(state, 1);
    }
}

/// Note where decoded field `ord` (just marked) starts, while there is room.
///
/// # Safety
/// `v.core` points into a live [`State`] (a view made by [`view_of`] whose metatable is still
/// reachable), and no other reference to that core is live.
unsafe fn remember(v: &View, ord: usize, at: usize) {
    unsafe {
        let st = &mut *v.core;
        let n = st.near_len as usize;
        if n < NEAR && ord < MASK_BITS {
            if let Ok(at) = u32::try_from(at) {
                st.near_at[n] = at;
                st.near_ord[n] = ord as u8;
                st.near_len += 1;
            }
        }
    }
}

/// Push the table in metatable slot `slot`, made (empty) if there is none yet.
///
/// # Safety
/// `mt` is the stack index of a proxy's metatable on the running state; pushes one value.
unsafe fn slot_table(state: *mut ffi::lua_State, mt: c_int, slot: c_int) {
    unsafe {
        ffi::lua_rawgeti(state, mt, slot as _);
        if ffi::lua_type(state, -1) != ffi::LUA_TTABLE {
            ffi::lua_pop(state, 1);
            ffi::lua_createtable(state, 4, 0);
            ffi::lua_pushvalue(state, -1);
            ffi::lua_rawseti(state, mt, slot as _);
        }
    }
}

/// Push a new proxy over `root[start..end]`, an object with `fields` fields and key bits
/// `keys` (see `dragonfly_event::json::Doc`); the root string is at `root_idx`, the context
/// table at `ctx`. Returns its state.
///
/// # Safety
/// Valid indices of a live state; 4 free stack slots.
pub unsafe fn push_proxy(
    state: *mut ffi::lua_State,
    ctx: c_int,
    root_idx: c_int,
    start: usize,
    end: usize,
    keys: u64,
    fields: usize,
) -> *mut State {
    unsafe {
        ffi::lua_createtable(state, 0, 0);
        let p = push_meta(state, ctx, root_idx, start, end, 0);
        (*p).keys = keys;
        (*p).fields = u32::try_from(fields).unwrap_or(0);
        ffi::lua_setmetatable(state, -2);
        p
    }
}

/// Push a new proxy metatable with a fresh state over `root[start..end]` (see [`push_proxy`]).
///
/// # Safety
/// `ctx` is the lazy context table's index and `root_idx` the index of the string that
/// `start..end` lies in, both on the running state; pushes the metatable. The `State` returned
/// lives while that metatable is reachable.
unsafe fn push_meta(
    state: *mut ffi::lua_State,
    ctx: c_int,
    root_idx: c_int,
    start: usize,
    end: usize,
    added: u32,
) -> *mut State {
    unsafe {
        let mut len = 0usize;
        let root = ffi::lua_tolstring(state, root_idx, &mut len).cast::<u8>();
        // room for the added keys it inherits and two more
        ffi::lua_createtable(state, M_ADDED + added as c_int + 2, 2);
        let mt = ffi::lua_gettop(state);
        ffi::lua_rawgeti(state, ctx, C_INDEX_KEY as _);
        ffi::lua_rawgeti(state, ctx, C_INDEX as _);
        ffi::lua_rawset(state, mt);
        ffi::lua_rawgeti(state, ctx, C_NEWINDEX_KEY as _);
        ffi::lua_rawgeti(state, ctx, C_NEWINDEX as _);
        ffi::lua_rawset(state, mt);
        let p = ffi::lua_newuserdata(state, std::mem::size_of::<State>()).cast::<State>();
        // SAFETY: a fresh userdata of State's size (Lua aligns userdata for any C type)
        std::ptr::write(
            p,
            State {
                magic: MAGIC,
                root,
                root_len: len,
                start,
                end,
                keys: u64::MAX,
                fields: 0,
                listed: 0,
                shared: false,
                views: 0,
                core: Core::EMPTY,
                at: [0; VIEWS],
                own: [Core::EMPTY; VIEWS],
            },
        );
        ffi::lua_rawseti(state, mt, M_STATE as _);
        ffi::lua_pushvalue(state, root_idx);
        ffi::lua_rawseti(state, mt, M_RAW as _);
        p
    }
}

/// Push `b` (validated JSON) decoded whole, as the eager path does.
///
/// # Safety
/// `ctx` is the lazy context table's stack index on the running state and `b` was validated;
/// pushes one value.
unsafe fn push_eager(state: *mut ffi::lua_State, ctx: c_int, b: &[u8]) {
    unsafe {
        ffi::lua_rawgeti(state, ctx, C_ARRAY_MT as _);
        let mt = ffi::lua_gettop(state);
        push_json(state, mt, b);
        ffi::lua_remove(state, mt);
    }
}

thread_local! {
    static SCANNER: std::cell::RefCell<Scanner> = std::cell::RefCell::new(Scanner::new());
}

/// Push the value at `root[range]` (validated JSON): objects with simple keys as proxies,
/// arrays as tables with the array metatable, scalars as Lua values.
///
/// # Safety
/// Valid indices; `root` is the string at `root_idx`.
pub unsafe fn push_value(
    state: *mut ffi::lua_State,
    ctx: c_int,
    root_idx: c_int,
    root: &[u8],
    range: std::ops::Range<usize>,
    depth: usize,
) {
    unsafe {
        let b = &root[range.clone()];
        if ffi::lua_checkstack(state, 6) == 0 || depth > scan::MAX_DEPTH {
            ffi::lua_pushnil(state);
            return;
        }
        match scan::kind(b) {
            Some(Kind::Object) => {
                if let Some((keys, n)) = SCANNER.with(|s| s.borrow_mut().simple_keys(b)) {
                    let _ = push_proxy(state, ctx, root_idx, range.start, range.end, keys, n);
                } else {
                    push_eager(state, ctx, b);
                }
            }
            Some(Kind::Array) => {
                ffi::lua_createtable(state, 4, 0);
                let t = ffi::lua_gettop(state);
                let mut i = 0;
                for r in Elements::new(b) {
                    i += 1;
                    push_value(
                        state,
                        ctx,
                        root_idx,
                        root,
                        range.start + r.start..range.start + r.end,
                        depth + 1,
                    );
                    ffi::lua_rawseti(state, t, i);
                }
                ffi::lua_rawgeti(state, ctx, C_ARRAY_MT as _);
                ffi::lua_setmetatable(state, t);
            }
            Some(Kind::String) if memchr::memchr(b'\\', b).is_none() && b.len() >= 2 => {
                let s = &b[1..b.len() - 1];
                ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len());
            }
            Some(Kind::Number) => ffi::lua_pushnumber(state, number(b)),
            Some(Kind::Bool) => ffi::lua_pushboolean(state, (b[0] == b't') as c_int),
            Some(Kind::Null) => ffi::lua_pushlightuserdata(state, std::ptr::null_mut()),
            Some(Kind::String) => {
                push_eager(state, ctx, b);
            }
            None => ffi::lua_pushnil(state),
        }
    }
}

/// A number's value as the eager decoder gives it (a short integer directly; `-0` and
/// anything else through the decoder itself).
fn number(b: &[u8]) -> f64 {
    match scan::small_integer(b) {
        Some(n) if n != 0.0 || b[0] != b'-' => n,
        _ => crate::fast::json_number(b),
    }
}

/// Push the value of field `f` of `v`'s object (the root string at `root_idx`); only from the
/// lazy C closures (the context is their upvalue).
///
/// # Safety
/// Called from a lazy C closure (its upvalue is the context); `root_idx` is the stack index of
/// the string `v` borrows, and `f` a field of `v`'s object. Pushes one value.
unsafe fn push_field(state: *mut ffi::lua_State, root_idx: c_int, v: &View, f: &scan::Field) {
    unsafe {
        let at = v.start + f.value.start..v.start + f.value.end;
        push_value(state, ctx_index(), root_idx, v.root, at, 0);
    }
}

/// The field of `v`'s object whose key is `key`: (ordinal, field).
fn find(v: &View, key: &[u8]) -> Option<(usize, scan::Field)> {
    if v.keys & (1 << scan::key_bucket(key)) == 0 {
        return None;
    }
    let obj = v.obj();
    // a key of a simple object is written without escapes: if `"key"` appears nowhere in the
    // bytes, it is not a field. Worth its setup only where the key bits rule out little (an
    // object with many keys, where the walk below is long)
    if key.len() <= 62 && v.keys.count_ones() > 40 {
        let mut quoted = [0u8; 64];
        quoted[0] = b'"';
        quoted[1..=key.len()].copy_from_slice(key);
        quoted[key.len() + 1] = b'"';
        memchr::memmem::find(obj, &quoted[..key.len() + 2])?;
    }
    Fields::new(obj)
        .enumerate()
        .find(|(_, f)| &obj[f.key.clone()] == key)
}

/// `__index(t, k)`: decode field `k` from the bytes, store it in `t`, return it.
///
/// # Safety
/// Called by Lua as a C closure whose upvalue is the context table.
pub unsafe extern "C-unwind" fn index(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        if ffi::lua_type(state, 2) != ffi::LUA_TSTRING || ffi::lua_getmetatable(state, 1) == 0 {
            return 0;
        }
        let mt = ffi::lua_gettop(state);
        let Some(mut v) = view(state, 1, mt) else {
            return 0;
        };
        if v.full {
            return 0;
        }
        let Some((ord, f)) = find(&v, bytes(state, 2)) else {
            return 0;
        };
        if decoded(state, mt, &v, ord) {
            return 0; // decoded, then deleted
        }
        let mut mt = mt;
        own(state, 1, &mut mt, &mut v, ord >= MASK_BITS);
        ffi::lua_rawgeti(state, mt, M_RAW as _);
        push_field(state, ffi::lua_gettop(state), &v, &f);
        let val = ffi::lua_gettop(state);
        ffi::lua_pushvalue(state, 2);
        ffi::lua_pushvalue(state, val);
        ffi::lua_rawset(state, 1);
        mark(state, mt, &mut v, ord);
        remember(&v, ord, f.span.start);
        ffi::lua_settop(state, val);
        1
    }
}

/// `__newindex(t, k, v)`: record the write (an original field becomes decoded, a new key is
/// appended to the added list), then store it.
///
/// # Safety
/// Called by Lua as a C closure whose upvalue is the context table.
pub unsafe extern "C-unwind" fn newindex(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        ffi::lua_settop(state, 3);
        ffi::lua_pushvalue(state, 2);
        ffi::lua_pushvalue(state, 3);
        ffi::lua_rawset(state, 1); // raises on a nil or NaN key, as a plain table does
        if ffi::lua_getmetatable(state, 1) == 0 {
            return 0;
        }
        let mut mt = ffi::lua_gettop(state);
        let Some(mut v) = view(state, 1, mt) else {
            return 0;
        };
        let original = if ffi::lua_type(state, 2) == ffi::LUA_TSTRING {
            find(&v, bytes(state, 2))
        } else {
            None
        };
        match original {
            Some((ord, f)) if !decoded(state, mt, &v, ord) => {
                own(state, 1, &mut mt, &mut v, ord >= MASK_BITS);
                mark(state, mt, &mut v, ord);
                remember(&v, ord, f.span.start);
            }
            Some(_) => {}
            None if ffi::lua_type(state, 3) != ffi::LUA_TNIL => {
                own(state, 1, &mut mt, &mut v, false);
                if (*v.core).added != (*v.state).listed {
                    // another proxy sharing the list added keys after ours: ours goes on a
                    // list of its own
                    own(state, 1, &mut mt, &mut v, true);
                }
                v.lists |= HAS_ADDED;
                let n = (*v.core).added + 1;
                (*v.core).lists = v.lists;
                (*v.core).added = n;
                (*v.state).listed = n;
                ffi::lua_pushvalue(state, 2);
                ffi::lua_rawseti(state, mt, (M_ADDED + n as c_int) as _);
            }
            None => {}
        }
        0
    }
}

/// `materialize(t)`: decode every field of a proxy not decoded yet into `t`; from then on `t`
/// holds the whole object. Does nothing to other values.
///
/// # Safety
/// Called by Lua as a C closure whose upvalue is the context table.
pub unsafe extern "C-unwind" fn materialize(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        ffi::lua_settop(state, 1);
        if ffi::lua_type(state, 1) != ffi::LUA_TTABLE || ffi::lua_getmetatable(state, 1) == 0 {
            return 0;
        }
        let mut mt = 2;
        let Some(mut v) = view(state, 1, mt) else {
            return 0;
        };
        if v.full {
            return 0;
        }
        own(state, 1, &mut mt, &mut v, false);
        ffi::lua_rawgeti(state, mt, M_RAW as _);
        let root_idx = 3;
        let obj = v.obj();
        for (ord, f) in Fields::new(obj).enumerate() {
            if decoded(state, mt, &v, ord) {
                continue;
            }
            let key = &obj[f.key.clone()];
            ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
            push_field(state, root_idx, &v, &f);
            ffi::lua_rawset(state, 1);
        }
        (*v.core).full = true;
        0
    }
}

/// Copy the table in metatable slot `slot` of `from` (if any) into the same slot of `to`.
///
/// # Safety
/// `from` and `to` are absolute stack indices of proxy metatables on the running state, with
/// room for five more values (a C function's guaranteed 20 are enough); the stack is left as
/// it was.
unsafe fn copy_list(state: *mut ffi::lua_State, from: c_int, to: c_int, slot: c_int) {
    unsafe {
        ffi::lua_rawgeti(state, from, slot as _);
        if ffi::lua_type(state, -1) == ffi::LUA_TTABLE {
            let src = ffi::lua_gettop(state);
            ffi::lua_createtable(state, ffi::lua_objlen(state, src) as c_int, 0);
            ffi::lua_pushnil(state);
            while ffi::lua_next(state, src) != 0 {
                ffi::lua_pushvalue(state, -2);
                ffi::lua_insert(state, -2);
                ffi::lua_rawset(state, src + 1);
            }
            ffi::lua_rawseti(state, to, slot as _);
        }
        ffi::lua_pop(state, 1);
    }
}

/// `clone(t)`: a new proxy over the same bytes with `t`'s view, and none of its entries
/// (chain.lua copies those). The two share `t`'s metatable, marked shared; the new one gets
/// an entry of its own if `t` has one (see [`State`]), or a metatable of its own when there is
/// no room. Whichever of them later changes the state does so in a view of its own ([`own`]):
/// a hand-off allocates one table, and a receiver that writes changes no other proxy.
///
/// # Safety
/// Called by Lua as a C closure whose upvalue is the context table.
pub unsafe extern "C-unwind" fn clone(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        ffi::lua_settop(state, 1);
        if ffi::lua_getmetatable(state, 1) == 0 {
            return 0;
        }
        let mut mt = 2;
        let Some(p) = state_of(state, mt) else {
            return 0;
        };
        (*p).shared = true;
        // sized for the entries chain.lua copies next (what the sender decoded and added: a
        // guess when it was materialized, as rawset may add more) and two keys the receiver
        // may add
        let held = {
            let c = &*core_of(state, p, 1);
            if c.full {
                (*p).fields
            } else {
                c.mask.count_ones().saturating_add(c.added)
            }
        };
        ffi::lua_createtable(
            state,
            0,
            c_int::try_from(held).unwrap_or(0).saturating_add(2),
        );
        // a view listed for this address belonged to a proxy that was collected
        forget(p, ffi::lua_topointer(state, 3) as usize);
        ffi::lua_pushvalue(state, mt);
        ffi::lua_setmetatable(state, 3);
        let Some(mut sender) = view_of(state, p, 1) else {
            return 1;
        };
        if sender.core != std::ptr::addr_of_mut!((*p).core) {
            // the sender has a view of its own: the receiver starts from a copy of it
            let n = (*p).views as usize;
            if n < VIEWS {
                (*p).at[n] = ffi::lua_topointer(state, 3) as usize;
                (*p).own[n] = *sender.core;
                (*p).views += 1;
            } else {
                split(state, 3, &mut mt, &mut sender);
            }
        }
        ffi::lua_settop(state, 3);
        1
    }
}

/// Drop the view listed for table address `a`, if any.
///
/// # Safety
/// `p` is a live [`State`] (checked by [`state_of`]) and no reference into it is live.
unsafe fn forget(p: *mut State, a: usize) {
    unsafe {
        let st = &mut *p;
        let n = (st.views as usize).min(VIEWS);
        if let Some(i) = st.at[..n].iter().position(|&x| x == a) {
            st.at[i] = st.at[n - 1];
            st.own[i] = st.own[n - 1];
            st.views = (n - 1) as u8;
        }
    }
}

/// Before proxy `t` (metatable at `mt`) changes its state: if other proxies may share it,
/// point `v` at a view of `t`'s own — its entry, or a new one (a copy of the common view) —
/// or, when there is no room or `private` asks for it (a change to the lists the metatable
/// holds), give `t` a metatable and state of its own ([`split`]).
///
/// # Safety
/// `t` is the proxy's stack index and `*mt` its metatable's, `v` a view made from them, on the
/// running state inside a lazy C function; after the call, `*mt` and `v` are what the proxy
/// must use (the old ones may no longer be its own).
unsafe fn own(state: *mut ffi::lua_State, t: c_int, mt: &mut c_int, v: &mut View, private: bool) {
    unsafe {
        let p = v.state;
        if !(*p).shared {
            return;
        }
        let common = std::ptr::addr_of_mut!((*p).core);
        if !private {
            if v.core != common {
                return;
            }
            let n = (*p).views as usize;
            if n < VIEWS {
                (*p).at[n] = ffi::lua_topointer(state, t) as usize;
                (*p).own[n] = (*p).core;
                (*p).views += 1;
                v.core = std::ptr::addr_of_mut!((*p).own[n]);
                return;
            }
        }
        split(state, t, mt, v);
    }
}

/// Give proxy `t` (metatable at `mt`, view `v`) a metatable and state of its own, with its
/// view as the only one, and point `mt` and `v` at them.
///
/// # Safety
/// As [`own`]: `t`, `*mt` and `v` belong together; `*mt` is replaced by the index of the new
/// metatable, which stays on the stack (the caller's frame pops it).
unsafe fn split(state: *mut ffi::lua_State, t: c_int, mt: &mut c_int, v: &mut View) {
    unsafe {
        ffi::lua_rawgeti(state, *mt, M_RAW as _);
        let root = ffi::lua_gettop(state);
        let core = *v.core;
        let p = push_meta(state, ctx_index(), root, v.start, v.end, core.added);
        let new_mt = ffi::lua_gettop(state);
        // SAFETY: both are States (checked by state_of / made by push_meta) over the same root
        std::ptr::write(
            p,
            State {
                shared: false,
                views: 0,
                listed: core.added,
                core,
                at: [0; VIEWS],
                own: [Core::EMPTY; VIEWS],
                ..std::ptr::read(v.state)
            },
        );
        copy_list(state, *mt, new_mt, M_EXTRA);
        for i in 1..=core.added as c_int {
            ffi::lua_rawgeti(state, *mt, (M_ADDED + i) as _);
            ffi::lua_rawseti(state, new_mt, (M_ADDED + i) as _);
        }
        ffi::lua_pushvalue(state, new_mt);
        ffi::lua_setmetatable(state, t);
        // leave the new metatable where the old one was read from, so indices above stay put
        ffi::lua_replace(state, *mt);
        ffi::lua_settop(state, root - 1);
        v.state = p;
        v.core = std::ptr::addr_of_mut!((*p).core);
    }
}

/// Build the context table on top of the stack: the array metatable is at `array_mt`; the
/// lazy C closures are created here and returned in the table too (slots 4..).
///
/// # Safety
/// A live state with 8 free slots.
pub unsafe fn push_context(state: *mut ffi::lua_State, array_mt: c_int) {
    unsafe {
        ffi::lua_createtable(state, 8, 0);
        let ctx = ffi::lua_gettop(state);
        ffi::lua_pushvalue(state, array_mt);
        ffi::lua_rawseti(state, ctx, C_ARRAY_MT as _);
        for (slot, s) in [(C_INDEX_KEY, "__index"), (C_NEWINDEX_KEY, "__newindex")] {
            ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len());
            ffi::lua_rawseti(state, ctx, slot as _);
        }
        let funcs: [(c_int, ffi::lua_CFunction); 4] = [
            (C_INDEX, index),
            (C_NEWINDEX, newindex),
            (6, materialize),
            (7, clone),
        ];
        for (slot, f) in funcs {
            ffi::lua_pushvalue(state, ctx);
            ffi::lua_pushcclosure(state, f, 1);
            ffi::lua_rawseti(state, ctx, slot as _);
        }
    }
}

/// Decode `line` into a value on top of the stack: a proxy when it is an object with simple
/// keys, an eagerly decoded value otherwise. On error nothing is pushed.
///
/// # Safety
/// Valid indices of a live state (context table at `ctx`).
pub unsafe fn push_line(
    state: *mut ffi::lua_State,
    ctx: c_int,
    scanner: &mut Scanner,
    line: &[u8],
) -> Result<(), String> {
    unsafe {
        let doc = scanner.validate(line).map_err(|e| e.to_string())?;
        if doc.kind == Kind::Object && doc.simple {
            ffi::lua_pushlstring(state, line.as_ptr().cast(), line.len());
            let root = ffi::lua_gettop(state);
            let _ = push_proxy(
                state,
                ctx,
                root,
                doc.value.start,
                doc.value.end,
                doc.keys,
                doc.fields,
            );
            ffi::lua_remove(state, root);
        } else {
            push_eager(state, ctx, line);
        }
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
pub unsafe fn encode(
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
            crate::fast::encode_value(state, val, array_mt, out, depth)?;
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
            return crate::fast::encode_plain(state, t, array_mt, false, out, depth);
        }
        let mut first = true;
        let mut present = 0usize;
        // the keys written so far (interned strings: same pointer, same key)
        let mut written = Seen::default();
        let gap = |out: &mut Vec<u8>, first: &mut bool, start: usize, prev: Option<usize>| {
            if !*first {
                match prev {
                    Some(p) if p < start => out.extend_from_slice(&obj[p..start]),
                    _ => out.push(b','),
                }
            }
            *first = false;
        };
        let mut prev_end = None;
        let near_done = encode_near(state, t, array_mt, v, out, depth, &mut written)?;
        if let Some(end) = near_done {
            first = false;
            present = (*v.core).near_len as usize;
            prev_end = Some(end);
        } else {
            // the original whitespace is kept: before the first field, between fields (with the
            // comma) and before the closing brace
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
                    gap(out, &mut first, f.span.start, prev_end);
                    out.extend_from_slice(&obj[f.span.start..body_end.max(f.span.start)]);
                    prev_end = Some(body_end);
                    break;
                }
                let prev = prev_end.replace(f.span.end);
                if !decoded(state, mt, v, ord) {
                    gap(out, &mut first, f.span.start, prev);
                    out.extend_from_slice(&obj[f.span.clone()]);
                    continue;
                }
                let key = &obj[f.key.clone()];
                ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
                written.push(ffi::lua_tolstring(state, -1, std::ptr::null_mut()).cast());
                ffi::lua_rawget(state, t);
                let val = ffi::lua_gettop(state);
                if ffi::lua_type(state, val) != ffi::LUA_TNIL {
                    present += 1;
                    gap(out, &mut first, f.span.start, prev);
                    write_field(state, val, array_mt, v, &f, out, depth)?;
                }
                ffi::lua_pop(state, 1);
            }
        }
        // added keys, in the order they were first added
        let mut added_nums: Vec<f64> = Vec::new();
        for i in 1..=(*v.core).added as c_int {
            ffi::lua_rawgeti(state, mt, (M_ADDED + i) as _);
            let k = ffi::lua_gettop(state);
            let dup = match ffi::lua_type(state, k) {
                ffi::LUA_TSTRING => {
                    let p: *const u8 = ffi::lua_tolstring(state, k, std::ptr::null_mut()).cast();
                    let d = written.contains(p);
                    written.push(p);
                    d
                }
                ffi::LUA_TNUMBER => {
                    let x = ffi::lua_tonumber(state, k);
                    let d = added_nums.contains(&x);
                    added_nums.push(x);
                    d
                }
                _ => true,
            };
            if !dup {
                ffi::lua_pushvalue(state, k);
                ffi::lua_rawget(state, t);
                if ffi::lua_type(state, -1) != ffi::LUA_TNIL {
                    present += 1;
                    gap(out, &mut first, 0, None);
                    write_key(state, k, out)?;
                    let val = ffi::lua_gettop(state);
                    crate::fast::encode_value(state, val, array_mt, out, depth)?;
                }
                ffi::lua_pop(state, 1);
            }
            ffi::lua_pop(state, 1);
        }
        // anything else the table holds (rawset on new keys), sorted
        let mut total = 0usize;
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, t) != 0 {
            total += 1;
            ffi::lua_pop(state, 1);
        }
        if total > present {
            crate::fast::encode_other_pairs(
                state,
                t,
                array_mt,
                out,
                depth,
                &mut first,
                &|state, k| match ffi::lua_type(state, k) {
                    ffi::LUA_TSTRING => {
                        let p: *const u8 =
                            ffi::lua_tolstring(state, k, std::ptr::null_mut()).cast();
                        written.contains(p)
                    }
                    ffi::LUA_TNUMBER => added_nums.contains(&ffi::lua_tonumber(state, k)),
                    _ => false,
                },
            )?;
        }
        let tail = prev_end.map_or(obj.len() - 1, |e| e.min(obj.len() - 1));
        out.extend_from_slice(&obj[tail..]);
        Ok(())
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
