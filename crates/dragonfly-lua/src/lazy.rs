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
//! Encoding (for outputs, `cjson.encode`, logs and dead letters: `encode_lazy` in encode.rs,
//! which reads what this module keeps): a proxy with nothing decoded or added is its original
//! bytes, copied. Otherwise the original fields are
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

use crate::decode::push_json;
use crate::raw::bytes;

// metatable slots
const M_STATE: c_int = 1;
const M_RAW: c_int = 2;
const M_EXTRA: c_int = 3;
/// Added key i (1-based, in the order first added) is in slot `M_ADDED + i`: the metatable's
/// array part holds them, so a proxy that writes new keys needs no table for the list.
pub(crate) const M_ADDED: c_int = 3;

// context table slots (the upvalue of every lazy C function, argument of batch decoding)
const C_ARRAY_MT: c_int = 1;
const C_INDEX_KEY: c_int = 2;
const C_NEWINDEX_KEY: c_int = 3;
const C_INDEX: c_int = 4;
const C_NEWINDEX: c_int = 5;

/// Fields whose decoded mark is a bit of the mask; later ones use a table.
const MASK_BITS: usize = 64;

/// How many decoded fields a state remembers the position of.
pub(crate) const NEAR: usize = 4;

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
pub(crate) struct Core {
    /// Bit n: field n (in input order) was decoded (read, written or deleted).
    pub(crate) mask: u64,
    /// How many of the added keys (slots `M_ADDED + 1 ..`) this proxy has.
    pub(crate) added: u32,
    /// Every field was decoded (the table holds the whole object).
    pub(crate) full: bool,
    /// Which of the metatable's lists exist: [`HAS_EXTRA`], [`HAS_ADDED`].
    pub(crate) lists: u8,
    /// Where the first [`NEAR`] fields decoded start in the object (offsets), and their
    /// ordinals, in the order they were decoded: the encoder goes straight to them instead of
    /// walking every field before them.
    pub(crate) near_len: u8,
    pub(crate) near_ord: [u8; NEAR],
    pub(crate) near_at: [u32; NEAR],
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

/// How many fields (the first ones, in input order) a state keeps the place of once a lookup
/// has walked past them (see [`find`]).
pub(crate) const PLACES: usize = 16;

/// Where one field is in its object (offsets into the object's bytes). Small, because every
/// state carries [`PLACES`] of them and the collector paces itself by bytes allocated: only
/// objects of up to 64 KiB with keys of up to 255 bytes are placed (others are walked).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Place {
    key: u16,
    value: u16,
    value_end: u16,
    key_len: u8,
}

impl Place {
    const EMPTY: Place = Place {
        key: 0,
        value: 0,
        value_end: 0,
        key_len: 0,
    };

    fn field(&self) -> scan::Field {
        let (k, v, e) = (
            self.key as usize,
            self.value as usize,
            self.value_end as usize,
        );
        scan::Field {
            span: k - 1..e,
            key: k..k + self.key_len as usize,
            value: v..e,
        }
    }
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
    pub(crate) magic: u64,
    pub(crate) root: *const u8,
    pub(crate) root_len: usize,
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// The object's key bits (`dragonfly_event::json::Doc::keys`): a key whose bit is clear
    /// is not one of its fields, found without reading the bytes.
    pub(crate) keys: u64,
    /// How many fields the object has (0: not known).
    pub(crate) fields: u32,
    /// How many added-key slots are in use (each proxy has a prefix of them: its `added`).
    pub(crate) listed: u32,
    /// More than one proxy may use this metatable (a hand-off shares it).
    pub(crate) shared: bool,
    /// How many entries of `at` and `own` are in use.
    pub(crate) views: u8,
    /// The view of every proxy not listed in `at`.
    pub(crate) core: Core,
    /// The tables (by address) that have a view of their own, and those views.
    pub(crate) at: [usize; VIEWS],
    pub(crate) own: [Core; VIEWS],
    /// How many entries of `places` are known (the first fields, in order), and whether a
    /// walk reached the object's end with every field placed (a key not placed is then not a
    /// field). Places describe the bytes, so every proxy sharing the state shares them.
    pub(crate) placed: u8,
    pub(crate) all_placed: bool,
    pub(crate) places: [Place; PLACES],
}

/// The metatable holds the decoded marks of fields past the 64th.
pub(crate) const HAS_EXTRA: u8 = 1;
/// The metatable holds added keys.
const HAS_ADDED: u8 = 2;

/// A proxy's state and bytes, read from its metatable.
pub(crate) struct View<'a> {
    pub(crate) root: &'a [u8],
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) mask: u64,
    pub(crate) full: bool,
    pub(crate) lists: u8,
    pub(crate) keys: u64,
    pub(crate) fields: u32,
    pub(crate) state: *mut State,
    /// This proxy's view: `state.core` or its entry of `state.own`.
    pub(crate) core: *mut Core,
}

impl<'a> View<'a> {
    pub(crate) fn obj(&self) -> &'a [u8] {
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
pub(crate) unsafe fn view<'a>(state: *mut ffi::lua_State, t: c_int, mt: c_int) -> Option<View<'a>> {
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
pub(crate) unsafe fn view_of<'a>(
    state: *mut ffi::lua_State,
    p: *mut State,
    t: c_int,
) -> Option<View<'a>> {
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
pub(crate) unsafe fn decoded(state: *mut ffi::lua_State, mt: c_int, v: &View, ord: usize) -> bool {
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
                placed: 0,
                all_placed: false,
                places: [Place::EMPTY; PLACES],
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
pub(crate) fn number(b: &[u8]) -> f64 {
    match scan::small_integer(b) {
        Some(n) if n != 0.0 || b[0] != b'-' => n,
        _ => crate::decode::json_number(b),
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
/// Field `key` of the proxy's object: its ordinal and place.
///
/// Cost: the first [`PLACES`] fields are placed in the state as a walk passes them, so a
/// lookup compares keys already placed and walks on only from the last place: over every
/// lookup on an object (and on every proxy sharing its state) its bytes are walked once, not
/// once per field read.
fn find(v: &View, key: &[u8]) -> Option<(usize, scan::Field)> {
    if v.keys & (1 << scan::key_bucket(key)) == 0 {
        return None;
    }
    let obj = v.obj();
    // SAFETY: the view's state is a live State (view_of) that nothing else borrows during
    // this call; only the places are touched
    let st = unsafe { &mut *v.state };
    let placed = st.placed as usize;
    for (ord, p) in st.places[..placed].iter().enumerate() {
        let k = p.key as usize;
        if p.key_len as usize == key.len() && &obj[k..k + key.len()] == key {
            return Some((ord, p.field()));
        }
    }
    if st.all_placed {
        return None;
    }
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
    let walk = match placed {
        0 => Fields::new(obj),
        n => Fields::at(obj, st.places[n - 1].value_end as usize),
    };
    let mut ord = placed;
    for f in walk {
        if ord < PLACES
            && ord == st.placed as usize
            && obj.len() <= u16::MAX as usize
            && f.key.len() <= u8::MAX as usize
        {
            st.places[ord] = Place {
                key: f.key.start as u16,
                value: f.value.start as u16,
                value_end: f.value.end as u16,
                key_len: f.key.len() as u8,
            };
            st.placed += 1;
        }
        if &obj[f.key.clone()] == key {
            return Some((ord, f));
        }
        ord += 1;
    }
    st.all_placed = st.placed as usize == ord;
    None
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
