//! Everything a runtime's calls did, in one place: the [`Outcome`], moved out whole by the
//! engine after each call ([`crate::Runtime::take_results`], [`crate::Runtime::take_lines`]).
//!
//! Who writes what, during a call (on the runtime's thread, one writer at a time):
//! - `dragonfly.output_event` (`fast::output_event`, a C function): an encoded line for its
//!   output, or an unknown output tag;
//! - `dragonfly.analyze_event` to a tag that names no analyzer (chain.lua calls
//!   `note_unknown`);
//! - `dragonfly.timer_event` (libs/dragonfly.rs): a timer request, or an unknown analyzer tag;
//! - `dragonfly.log_event` and `dragonfly.stats_event`: the engine log's and stats log's lines;
//! - a failed call: chain.lua's `record` calls `record_failure` with the failure's kind
//!   decided where it happened (the watchdog marked its timeout in the probe; LuaJIT's
//!   out-of-memory error; a routing loop cut, which also counts in `loops_cut`); an error that
//!   escaped chain.lua itself is recorded by the runtime (`Runtime::escaped`).
//!
//! The one count kept in Lua is the events each analyzer received: chain.lua bumps
//! `counts[a]`, a Lua array, so that a hand-off stays compiled; it is read when taken.
//!
//! Soundness: the `Channel` lives in a box the runtime owns for as long as its Lua state
//! (registered under `CHANNEL_KEY` and in the state's app data as a raw pointer). It is
//! reached by the C functions and library callbacks during a call and by the runtime between
//! calls, all on the runtime's own thread; none of them calls back into Lua code while it
//! holds the reference, so two references are never live at once.

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::time::Duration;

use dragonfly_event::Batch;
use mlua::{ffi, Lua, Value};

use crate::encode::EncodeError;

/// A script failed: which one, and the Lua message (with file and line).
#[derive(Debug, Clone, thiserror::Error)]
pub struct ScriptError {
    /// The script, as shown in messages (`analyzer/a.lua`).
    pub script: String,
    /// The Lua message (with file and line when Lua gives them).
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    /// `script: message`, or the message alone when it names the script already
    /// (`analyzer/a.lua:3: ...`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.starts_with(&format!("{}:", self.script)) {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.script, self.message)
        }
    }
}

/// A Lua error text without mlua's prefix and Rust-side traceback, cut to
/// [`MAX_ERROR_BYTES`].
pub(crate) fn clean_message(text: &str) -> String {
    let text = text.split("\nstack traceback:").next().unwrap_or(text);
    capped(
        text.trim_start_matches("runtime error: ")
            .trim_start_matches("memory error: ")
            .trim_end(),
    )
}

/// `text` cut to [`MAX_ERROR_BYTES`] on a character boundary, the cut marked with how much
/// went (without copying more than is kept).
pub(crate) fn capped(text: &str) -> String {
    let mut end = text.len().min(MAX_ERROR_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = text[..end].to_string();
    if end < text.len() {
        s.push_str(&format!(" ... [{} bytes cut]", text.len() - end));
    }
    s
}

/// Longest error message a failure keeps (logs, the live page, dead letters): a script's
/// `error()` may raise anything; the rest is cut, and the cut says how much.
pub const MAX_ERROR_BYTES: usize = 2048;
/// A `dragonfly.timer_event` request.
pub struct TimerRequest {
    /// The analyzer the value goes to.
    pub analyzer: usize,
    /// Delay from now.
    pub after: Duration,
    /// A copy of the value to deliver.
    pub value: Value,
    /// The batch position (1-based) of the input event whose call set it; 0 when no input
    /// event's call did (setup(), a timer callback). The event-time clock counts the delay
    /// from that event's time.
    pub event: usize,
}

/// Which table a tag was looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagKind {
    /// Routed with `analyze_event`.
    Analyzer,
    /// Routed with `output_event`.
    Output,
    /// Asked for with `timer_event`.
    Timer,
}

impl TagKind {
    /// Its name in counters and messages.
    pub fn name(self) -> &'static str {
        match self {
            TagKind::Analyzer => "analyzer",
            TagKind::Output => "output",
            TagKind::Timer => "timer",
        }
    }
}

/// Who a failed call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// The filter of input `n`.
    Filter(usize),
    /// Analyzer `n`.
    Analyzer(usize),
}

impl Caller {
    /// The caller chain.lua names `who` (filters negative from -1, analyzers from 1).
    pub fn from_who(who: i64) -> Caller {
        if who < 0 {
            Caller::Filter((-who - 1) as usize)
        } else {
            Caller::Analyzer((who - 1).max(0) as usize)
        }
    }
}

/// Why a script call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A Lua error raised by the script (or a library it called).
    Error,
    /// The call ran past [`crate::Limits::script_timeout`].
    Timeout,
    /// The runtime reached [`crate::Limits::memory`].
    Memory,
    /// A routing loop was cut.
    RoutingLoop,
}

impl FailureKind {
    /// Its name in dead letters and on the live page.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::RoutingLoop => "routing_loop",
        }
    }
}

/// Bytes of an event quoted in a failure.
const EXCERPT: usize = 512;
/// Longest traceback line a failure keeps.
pub const MAX_TRACEBACK_BYTES: usize = 512;
/// Most of the failing value a failure keeps, as JSON, for its dead letter.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A script call that failed (a Lua error in `loop()`), or a routing loop that was cut.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Whose call it was.
    pub caller: Caller,
    /// Why it failed.
    pub kind: FailureKind,
    /// The script and message.
    pub error: ScriptError,
    /// The first traceback line inside a script (`analyzer/a.lua:12: in function 'loop'`).
    pub traceback: Option<String>,
    /// The event, as JSON, cut to a few hundred bytes.
    pub event: String,
    /// The event as JSON, as the failing script left it: whole, or cut to
    /// [`MAX_VALUE_BYTES`] (then `value_cut` says how many bytes went).
    pub event_full: Option<String>,
    /// Bytes cut from the end of `event_full` (0: it is whole).
    pub value_cut: usize,
    /// Index in the input batch of the event whose chain failed (none for timer calls).
    pub input_index: Option<usize>,
}

impl Failure {
    /// A failure with no event to quote.
    pub fn bare(
        caller: Caller,
        kind: FailureKind,
        error: ScriptError,
        input_index: Option<usize>,
    ) -> Failure {
        Failure {
            caller,
            kind,
            error,
            traceback: None,
            event: String::new(),
            event_full: None,
            value_cut: 0,
            input_index,
        }
    }

    /// A failure quoting its value: `value` is the value encoded as JSON (or why it could
    /// not be, then the excerpt names its Lua type `type_name`).
    fn quoting(
        mut self,
        value: Result<Vec<u8>, EncodeError>,
        type_name: &str,
        traceback: Option<String>,
    ) -> Failure {
        self.traceback = traceback.map(|mut t| {
            dragonfly_event::text::cut_marked(&mut t, MAX_TRACEBACK_BYTES);
            t
        });
        self.event_full = value.ok().map(|b| {
            let mut s =
                String::from_utf8_lossy(&b[..b.len().min(MAX_VALUE_BYTES + 4)]).into_owned();
            self.value_cut = b.len().saturating_sub(MAX_VALUE_BYTES);
            if self.value_cut > 0 {
                let mut at = MAX_VALUE_BYTES.min(s.len());
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.truncate(at);
            }
            s
        });
        let mut event = self
            .event_full
            .clone()
            .unwrap_or_else(|| format!("<{type_name}>"));
        dragonfly_event::text::truncate(&mut event, EXCERPT);
        self.event = event;
        self
    }
}

/// What a runtime's calls did since the last take.
#[derive(Default)]
pub struct Outcome {
    /// Encoded lines per output (index = output).
    pub outputs: Vec<Batch>,
    /// `dragonfly.log_event` records (JSON lines).
    pub log: Batch,
    /// `dragonfly.stats_event` records (JSON lines).
    pub stats: Batch,
    /// `dragonfly.timer_event` requests.
    pub timers: Vec<TimerRequest>,
    /// Events routed to tags that name nothing (tag, kind), in order.
    pub unknown: Vec<(String, TagKind)>,
    /// Calls that failed, in order.
    pub failures: Vec<Failure>,
    /// Routing loops cut (each is also a failure of kind [`FailureKind::RoutingLoop`]).
    pub loops_cut: u64,
    /// Values taken for taps (tap id, analyzer index, the value encoded as JSON), in order.
    pub tapped: Vec<(u64, usize, Vec<u8>)>,
}

impl Outcome {
    /// Record a failure (and a routing loop cut, if it is one).
    pub(crate) fn fail(&mut self, f: Failure) {
        if f.kind == FailureKind::RoutingLoop {
            self.loops_cut += 1;
        }
        self.failures.push(f);
    }
}

/// What the C functions and library callbacks of one runtime reach: its routing tables and
/// its [`Outcome`].
pub(crate) struct Channel {
    /// Output tag -> index (`output_event`).
    pub outputs: HashMap<Vec<u8>, usize>,
    /// Analyzer tag -> index (`timer_event`).
    pub analyzers: HashMap<String, usize>,
    /// Scripts as shown in messages: filters, analyzers (config order).
    pub filter_names: Vec<String>,
    pub analyzer_names: Vec<String>,
    /// What the calls did since the last take.
    pub outcome: Outcome,
    /// Under the event-time clock, the current event time (seconds since the epoch: the
    /// worker's watermark); None under the wall clock (`dragonfly.now()`).
    pub event_now: Option<f64>,
    /// Under the event-time clock, the clock at each line of the batch being run (what
    /// `dragonfly.now()` gives during that line's calls).
    pub event_times: Vec<Option<f64>>,
}

impl Channel {
    /// Under the event-time clock (the worker has handed it times).
    pub fn event_clock(&self) -> bool {
        self.event_now.is_some() || !self.event_times.is_empty()
    }
}

impl Channel {
    /// The script `caller` names, as shown in messages ("" for none).
    pub fn script(&self, caller: Caller) -> String {
        match caller {
            Caller::Filter(i) => self.filter_names.get(i),
            Caller::Analyzer(i) => self.analyzer_names.get(i),
        }
        .cloned()
        .unwrap_or_default()
    }
}

/// The box a runtime keeps its [`Channel`] in: its address stays put for the life of the Lua
/// state, and it is reached through a raw pointer (see the module doc).
pub(crate) type ChannelBox = Box<UnsafeCell<Channel>>;

/// Registry key (a light userdata with this static's address) of the runtime's [`Channel`].
pub(crate) static CHANNEL_KEY: u8 = 0;

/// The channel pointer, in the Lua state's app data, for the `mlua` callbacks.
struct ChannelPtr(*mut Channel);

/// Make `channel` reachable from the C functions (registry) and callbacks (app data) of `lua`.
///
/// # Safety
/// `channel` outlives `lua`'s state, and is only used as the module doc says.
pub(crate) unsafe fn install(lua: &Lua, channel: &ChannelBox) -> mlua::Result<()> {
    let p = channel.get();
    lua.set_app_data(ChannelPtr(p));
    // SAFETY: pushes two light userdata and sets a registry entry: no Lua code runs.
    unsafe {
        lua.exec_raw::<()>((), |state| {
            ffi::lua_pushlightuserdata(state, key());
            ffi::lua_pushlightuserdata(state, p.cast());
            ffi::lua_rawset(state, ffi::LUA_REGISTRYINDEX);
        })
    }
}

fn key() -> *mut std::ffi::c_void {
    crate::raw::key(&CHANNEL_KEY)
}

/// Run `f` on the channel of `lua`'s runtime (from an `mlua` callback).
pub(crate) fn with_channel<R>(lua: &Lua, f: impl FnOnce(&mut Channel) -> R) -> R {
    let p = lua
        .app_data_ref::<ChannelPtr>()
        .expect("channel installed")
        .0;
    // SAFETY: installed by the runtime that owns this state, which keeps the channel alive
    // as long as the state; the callback runs on the runtime's thread and `f` calls no Lua
    // code, so no other reference to the channel is live (module doc).
    f(unsafe { &mut *p })
}

/// The channel of the runtime whose state is running (from a C function).
///
/// # Safety
/// `state` is a runtime's state (see [`install`]), running on its thread; the reference is
/// dropped before any Lua code runs again.
pub(crate) unsafe fn channel<'a>(state: *mut ffi::lua_State) -> &'a mut Channel {
    unsafe {
        ffi::lua_pushlightuserdata(state, key());
        ffi::lua_rawget(state, ffi::LUA_REGISTRYINDEX);
        let p = ffi::lua_touserdata(state, -1).cast::<Channel>();
        ffi::lua_pop(state, 1);
        &mut *p
    }
}

/// The string at `idx`, if it is one (numbers are not converted).
///
/// # Safety
/// A valid index of the running state.
unsafe fn string_at(state: *mut ffi::lua_State, idx: c_int) -> Option<String> {
    unsafe {
        (ffi::lua_type(state, idx) == ffi::LUA_TSTRING)
            .then(|| String::from_utf8_lossy(crate::raw::bytes(state, idx)).into_owned())
    }
}

/// `fail_raw(who, message, value, pos, where, kind)`, from chain.lua's `record`: a failed call
/// of `who` (chain.lua's numbering), its message, the value it had (encoded now), the batch
/// index (1-based, 0: none), the first traceback line inside a script (or nil), and its kind
/// (`wire::kind`). Returns nothing.
///
/// # Safety
/// Called by Lua as a C function on a runtime's state (see [`install`]).
pub(crate) unsafe extern "C-unwind" fn record_failure(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        ffi::lua_settop(state, 6);
        let caller = Caller::from_who(ffi::lua_tonumber(state, 1) as i64);
        let message = string_at(state, 2).unwrap_or_default();
        let pos = ffi::lua_tonumber(state, 4) as i64;
        let traceback = string_at(state, 5);
        let kind = FailureKind::from_code(ffi::lua_tonumber(state, 6) as i64);
        let type_name = std::ffi::CStr::from_ptr(ffi::lua_typename(state, ffi::lua_type(state, 3)))
            .to_string_lossy()
            .into_owned();
        // encoded before the channel is reached: encoding may allocate in Lua
        let value = crate::encode::encode_at(state, 3);
        let ch = channel(state);
        let error = ScriptError {
            script: ch.script(caller),
            message: clean_message(&message),
        };
        let input_index = (pos > 0).then(|| pos as usize - 1);
        let f =
            Failure::bare(caller, kind, error, input_index).quoting(value, &type_name, traceback);
        ch.outcome.fail(f);
        ffi::lua_settop(state, 0);
        if kind == FailureKind::Memory {
            // the memory the call held is garbage now: free it before the next event needs
            // the room (Limits::memory)
            ffi::lua_gc(state, ffi::LUA_GCCOLLECT, 0);
        }
        0
    }
}

/// `unknown_raw(tag)`, from chain.lua's `analyze_event`: `tag` names no analyzer.
///
/// # Safety
/// Called by Lua as a C function on a runtime's state (see [`install`]).
pub(crate) unsafe extern "C-unwind" fn note_unknown(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        let tag = string_at(state, 1).unwrap_or_default();
        channel(state)
            .outcome
            .unknown
            .push((tag, TagKind::Analyzer));
        0
    }
}
