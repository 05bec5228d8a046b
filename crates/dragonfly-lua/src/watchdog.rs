//! Time limits for script calls: a call (`loop()`, `setup()`, a timer callback, and everything
//! it calls) that runs longer than its budget is stopped with a Lua error.
//!
//! How: one watchdog thread per process wakes every `budget / 4` (at most 250 ms) and sends
//! `SIGURG` to each runtime thread that is inside Lua at that moment. The signal handler only
//! arms a LuaJIT count hook (`lua_sethook`, which LuaJIT documents as callable from a signal
//! handler, as its own `luajit` front end does for Ctrl-C). The hook then runs on the runtime's
//! own thread at the next VM instruction, reads the call counter that chain.lua bumps around
//! every script call, and disarms itself, or, when the same call has been running for longer
//! than the budget, raises `script timeout` in it. Once a call has timed out the hook stays
//! armed until the call ends, so a script that catches the error with its own `pcall` and goes
//! on is stopped again.
//!
//! Guarantees and limits:
//! - A call is stopped after between `budget` and `budget + 2 * tick` of wall time.
//! - Time spent in a store, DNS or HTTP call counts towards the budget but is not interrupted
//!   (no signal is sent while one is under way, so no system call sees `EINTR`); the check
//!   happens when it returns.
//! - LuaJIT never runs hooks inside compiled traces: a loop that LuaJIT compiled and that never
//!   leaves its trace (`while true do end`, a numeric `for` over a huge range) cannot be stopped
//!   by a hook. The watchdog notices (the runtime has been busy in Lua for `budget + 2 * tick`
//!   without the hook running) and *parks* the thread: the next signal finds it in compiled code
//!   (its program counter outside the engine's own text, so it holds no lock) and the handler
//!   sleeps in `pause()` for the rest of the process's life. The same happens to a call that
//!   keeps running for twice its budget after it timed out (a script that swallows the timeout
//!   in its own `pcall` loop). A parked runtime costs no CPU; its memory (at most the runtime's
//!   memory limit) stays. [`Watched::parked`] tells the engine, which replaces the runtime and
//!   takes what the parked one had produced with [`salvage`].
//!
//! Cost: three table stores per script call (the counter, the caller, the batch position), one
//! atomic store per batch, and one signal and hook call per busy runtime per tick.

use dragonfly_event::sync::Locked;
use std::cell::Cell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use mlua::ffi;

use crate::wire::{kind, probe};

/// Registry key (a light userdata with this static's address) of chain.lua's call counter.
pub(crate) static PROBE_KEY: u8 = 0;

/// Instructions between hook checks once a call has timed out.
const STICKY_COUNT: c_int = 10_000;

/// One runtime, as the watchdog thread sees it.
pub struct Watched {
    thread: libc::pthread_t,
    /// Inside Lua (a batch, a timer, setup()).
    busy: AtomicBool,
    /// Inside a native call (store, DNS, HTTP): not signalled.
    native: AtomicBool,
    /// Milliseconds since [`epoch`] of the last time the hook ran or the runtime became busy.
    seen: AtomicU64,
    /// The runtime is stuck where the hook cannot reach it: park at the next chance.
    park: AtomicBool,
    /// The runtime's thread is parked for good.
    parked: AtomicBool,
    /// The budget of the call under way, in milliseconds (0: none): the runtime's script
    /// budget, or its setup budget while scripts load and `setup()` runs.
    budget_ms: AtomicU64,
    /// A thread of the runtime's Lua state (anchored in its registry) and its channel
    /// (outcome.rs), for [`salvage`] once parked.
    lua_thread: usize,
    channel: usize,
}

impl Watched {
    /// The runtime's thread is parked for good: replace the runtime.
    pub fn parked(&self) -> bool {
        self.parked.load(SeqCst)
    }
}

/// What a parked runtime leaves behind.
pub struct Salvage {
    /// Output lines made since the last flush, per output.
    pub outputs: Vec<dragonfly_event::Batch>,
    /// Index in the input batch of the event being run when it was parked (none: a timer).
    pub input_index: Option<usize>,
    /// With the overlap scheduler: the index of the last event it had started (the run
    /// resumes after it, so no event runs twice), and the indices of the events in flight
    /// besides the culprit (their runs are lost with the runtime).
    pub overlap: Option<(usize, Vec<usize>)>,
    /// The script running: `Caller` of the call that never ended.
    pub caller: crate::Caller,
    /// Failures the runtime had recorded and the engine had not taken yet.
    pub failures: Vec<crate::Failure>,
}

/// Take the outputs and position of a parked runtime.
///
/// # Safety
/// `w.parked()` must be true: the runtime's thread never runs again, so nothing else touches
/// its output state or its Lua state. Only the anchored (idle) Lua thread's stack is used and
/// nothing is allocated in the Lua state. Call at most once per runtime.
pub unsafe fn salvage(w: &Watched) -> Salvage {
    assert!(w.parked(), "salvage of a runtime that is not parked");
    unsafe {
        let ch = &mut *(w.channel as *mut crate::outcome::Channel);
        let outputs = ch.outcome.outputs.iter_mut().map(std::mem::take).collect();
        let l = w.lua_thread as *mut ffi::lua_State;
        let top = ffi::lua_gettop(l);
        ffi::lua_pushlightuserdata(l, &PROBE_KEY as *const u8 as *mut std::ffi::c_void);
        ffi::lua_rawget(l, ffi::LUA_REGISTRYINDEX);
        ffi::lua_rawgeti(l, -1, probe::POS.into());
        let pos = ffi::lua_tonumber(l, -1) as i64;
        ffi::lua_rawgeti(l, -2, probe::WHO.into());
        let who = ffi::lua_tonumber(l, -1) as i64;
        ffi::lua_rawgeti(l, -3, probe::STARTED.into());
        let started = ffi::lua_tonumber(l, -1) as i64;
        // the set of indices in flight (1-based keys), walked without allocating in Lua
        let mut dropped = Vec::new();
        ffi::lua_rawgeti(l, -4, probe::LIVE.into());
        if ffi::lua_type(l, -1) == ffi::LUA_TTABLE {
            ffi::lua_pushnil(l);
            while ffi::lua_next(l, -2) != 0 {
                let k = ffi::lua_tonumber(l, -2) as i64;
                if k > 0 && k != pos {
                    dropped.push(k as usize - 1);
                }
                ffi::lua_settop(l, -2);
            }
        }
        dropped.sort_unstable();
        ffi::lua_settop(l, top);
        // failures recorded and not taken yet (by the C functions, on the runtime's thread,
        // which will not run again)
        let failures = std::mem::take(&mut ch.outcome.failures);
        let caller = crate::Caller::from_who(who);
        Salvage {
            outputs,
            input_index: (pos > 0).then(|| pos as usize - 1),
            overlap: (started > 0).then(|| (started as usize - 1, dropped)),
            caller,
            failures,
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// The per-thread state of the runtime currently running on this thread.
pub(crate) struct Active {
    state: *mut ffi::lua_State,
    watched: Arc<Watched>,
    last_seq: Cell<f64>,
    first_seen: Cell<Instant>,
    timed_out: Cell<bool>,
    /// Budgets of script calls and of the setup phase (zero: none).
    script_budget: Duration,
    setup_budget: Duration,
    /// In the setup phase (loading scripts, `setup()`): its budget and message apply.
    in_setup: Cell<bool>,
    message: std::ffi::CString,
    setup_message: std::ffi::CString,
}

thread_local! {
    static ACTIVE: Cell<*const Active> = const { Cell::new(std::ptr::null()) };
}

struct Registry {
    list: Mutex<Vec<Weak<Watched>>>,
    tick: Mutex<Duration>,
}

fn registry() -> &'static Registry {
    static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    R.get_or_init(|| Registry {
        list: Mutex::new(Vec::new()),
        tick: Mutex::new(Duration::from_millis(250)),
    })
}

fn signal() -> c_int {
    libc::SIGURG
}

extern "C" {
    // Bounds of the executable's own code, set by the linker.
    static __executable_start: u8;
    static etext: u8;
}

/// Whether the interrupted program counter is outside the executable's own code (so in
/// LuaJIT's machine code or a libc leaf, holding no lock of ours).
///
/// # Safety
/// `ctx` is the ucontext the kernel passed to a SA_SIGINFO handler.
unsafe fn in_foreign_code(ctx: *mut std::ffi::c_void) -> bool {
    unsafe {
        let uc = &*(ctx as *const libc::ucontext_t);
        #[cfg(target_arch = "x86_64")]
        let pc = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
        #[cfg(target_arch = "aarch64")]
        let pc = uc.uc_mcontext.pc as usize;
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let pc = {
            let _ = uc;
            0usize
        };
        let start = &__executable_start as *const u8 as usize;
        let end = &etext as *const u8 as usize;
        pc != 0 && !(start..end).contains(&pc)
    }
}

/// Sleep for the rest of the process's life (async-signal-safe).
fn park_forever(w: &Watched) -> ! {
    w.parked.store(true, SeqCst);
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

extern "C" fn on_signal(_: c_int, _info: *mut libc::siginfo_t, ctx: *mut std::ffi::c_void) {
    // Async-signal-safe: a thread-local read, atomics, lua_sethook (see the module doc), pause.
    let a = ACTIVE.with(|a| a.get());
    if a.is_null() {
        return;
    }
    // SAFETY: ACTIVE points to the Active of a runtime that is running on this very thread
    // (set on entry, cleared on exit, both on this thread); the handler runs on this thread.
    unsafe {
        let a = &*a;
        if a.watched.park.load(SeqCst) && in_foreign_code(ctx) {
            park_forever(&a.watched);
        }
        ffi::lua_sethook(a.state, Some(hook), ffi::LUA_MASKCOUNT, 1);
    }
}

fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction with a handler that only does async-signal-safe work; SA_RESTART
        // so that an interrupted system call elsewhere on the thread is restarted.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(signal(), &sa, std::ptr::null_mut());
        }
        std::thread::Builder::new()
            .name("script-watchdog".into())
            .spawn(watch_loop)
            .expect("spawning the script watchdog");
    });
}

fn watch_loop() {
    loop {
        let tick = *registry().tick.locked();
        std::thread::sleep(tick);
        let list: Vec<Arc<Watched>> = {
            let mut l = registry().list.locked();
            l.retain(|w| w.strong_count() > 0);
            l.iter().filter_map(Weak::upgrade).collect()
        };
        let now = now_ms();
        for w in list {
            let budget = w.budget_ms.load(SeqCst);
            if budget == 0 || !w.busy.load(SeqCst) || w.native.load(SeqCst) || w.parked.load(SeqCst)
            {
                continue;
            }
            let seen = w.seen.load(Relaxed);
            if now.saturating_sub(seen) > budget + 2 * tick.as_millis() as u64 {
                w.park.store(true, SeqCst);
            }
            // SAFETY: the thread is alive while its runtime is registered and busy (the
            // runtime deregisters by dropping its Arc before the thread can end).
            unsafe {
                libc::pthread_kill(w.thread, signal());
            }
        }
    }
}

/// Watch the runtime whose Lua state is `state`, owned by the calling thread: script calls
/// get `budget`, the setup phase ([`Active::setup_phase`]) `setup_budget` (zero: none).
pub(crate) fn watch(
    state: *mut ffi::lua_State,
    channel: *mut crate::outcome::Channel,
    budget: Duration,
    setup_budget: Duration,
) -> Box<Active> {
    install_handler();
    let watched = Arc::new(Watched {
        // SAFETY: pthread_self has no preconditions.
        thread: unsafe { libc::pthread_self() },
        busy: AtomicBool::new(false),
        native: AtomicBool::new(false),
        seen: AtomicU64::new(now_ms()),
        park: AtomicBool::new(false),
        parked: AtomicBool::new(false),
        budget_ms: AtomicU64::new(budget.as_millis() as u64),
        lua_thread: state as usize,
        channel: channel as usize,
    });
    for b in [budget, setup_budget] {
        if b.is_zero() {
            continue;
        }
        let tick = (b / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        let mut t = registry().tick.locked();
        if tick < *t {
            *t = tick;
        }
    }
    {
        registry().list.locked().push(Arc::downgrade(&watched));
    }
    Box::new(Active {
        state,
        watched,
        last_seq: Cell::new(-1.0),
        first_seen: Cell::new(Instant::now()),
        timed_out: Cell::new(false),
        script_budget: budget,
        setup_budget,
        in_setup: Cell::new(false),
        message: std::ffi::CString::new(format!("{TIMEOUT_TEXT} ({} ms)", budget.as_millis()))
            .expect("no NUL"),
        setup_message: std::ffi::CString::new(format!(
            "{SETUP_TIMEOUT_TEXT} ({} ms)",
            setup_budget.as_millis()
        ))
        .expect("no NUL"),
    })
}

impl Active {
    pub(crate) fn watched(&self) -> &Arc<Watched> {
        &self.watched
    }

    /// Enter (`true`) or leave the setup phase: its budget and message apply until left.
    /// Called on the runtime's thread, outside any call.
    pub(crate) fn setup_phase(&self, on: bool) {
        self.in_setup.set(on);
        let b = if on {
            self.setup_budget
        } else {
            self.script_budget
        };
        self.watched.budget_ms.store(b.as_millis() as u64, SeqCst);
    }
}

/// Marks a runtime busy in Lua on this thread for as long as it lives.
pub(crate) struct Busy {
    active: *const Active,
    prev: *const Active,
}

impl Busy {
    /// # Safety
    /// `active` must outlive the returned guard, which must be dropped on this thread.
    pub(crate) unsafe fn enter(active: &Active) -> Self {
        let prev = ACTIVE.with(|a| a.replace(active));
        active.watched.seen.store(now_ms(), Relaxed);
        active.watched.busy.store(true, SeqCst);
        Busy { active, prev }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // SAFETY: enter's contract: the Active is still alive and this is its thread.
        let active = unsafe { &*self.active };
        active.watched.busy.store(false, SeqCst);
        ACTIVE.with(|a| a.set(self.prev));
        // A hook armed by a late signal would otherwise fire in the next call.
        // SAFETY: the state belongs to this thread and no Lua code is running on it here.
        unsafe { ffi::lua_sethook(active.state, None, 0, 0) };
        active.timed_out.set(false);
    }
}

/// Run `f`, which waits on a socket (a Redis command, DNS, HTTP), with the process's
/// asynchronous signals held back until it returns (then delivered as usual). A socket read
/// or write with a timeout (SO_RCVTIMEO, SO_SNDTIMEO: the Redis reply timeout) is never
/// restarted after a signal handler ran, whatever SA_RESTART says (signal(7)): without this, a
/// watchdog tick or a SIGTERM landing in a Redis read failed the command with EINTR and
/// dropped the connection. Cost: two `pthread_sigmask` calls.
pub fn native_io<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data, initialised by sigfillset/sigdelset before use;
    // pthread_sigmask changes only this thread's mask, restored below on every path (f does
    // not unwind across this frame: callers' closures return results)
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut block);
        // synchronous signals stay deliverable (blocking them is undefined if they occur)
        for s in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGABRT,
            libc::SIGTRAP,
            libc::SIGSYS,
        ] {
            libc::sigdelset(&mut block, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        let r = native(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

/// Run `f` (a store, DNS or HTTP call) without being signalled.
pub fn native<T>(f: impl FnOnce() -> T) -> T {
    let a = ACTIVE.with(|a| a.get());
    if a.is_null() {
        return f();
    }
    // SAFETY: see on_signal; the Active outlives this call (it belongs to the running runtime).
    let w = unsafe { &(*a).watched };
    let was = w.native.swap(true, SeqCst);
    let r = f();
    w.native.store(was, SeqCst);
    r
}

/// The LuaJIT hook: see the module doc.
unsafe extern "C-unwind" fn hook(state: *mut ffi::lua_State, _ar: *mut ffi::lua_Debug) {
    let a = ACTIVE.with(|a| a.get());
    // SAFETY (whole body): runs on the runtime's own thread from inside the Lua VM; ACTIVE is
    // that runtime's; the stack is restored to its entry height before returning or raising.
    unsafe {
        if a.is_null() {
            ffi::lua_sethook(state, None, 0, 0);
            return;
        }
        let a = &*a;
        a.watched.seen.store(now_ms(), Relaxed);
        ffi::lua_pushlightuserdata(state, &PROBE_KEY as *const u8 as *mut std::ffi::c_void);
        ffi::lua_rawget(state, ffi::LUA_REGISTRYINDEX);
        let seq = if ffi::lua_type(state, -1) == ffi::LUA_TTABLE {
            ffi::lua_rawgeti(state, -1, probe::CALLS.into());
            let n = ffi::lua_tonumber(state, -1);
            ffi::lua_settop(state, -3);
            n
        } else {
            ffi::lua_settop(state, -2);
            return;
        };
        let budget = Duration::from_millis(a.watched.budget_ms.load(Relaxed));
        if budget.is_zero() {
            ffi::lua_sethook(state, None, 0, 0);
            return;
        }
        let now = Instant::now();
        if seq != a.last_seq.get() {
            a.last_seq.set(seq);
            a.first_seen.set(now);
            a.timed_out.set(false);
            ffi::lua_sethook(state, None, 0, 0);
            return;
        }
        if now.duration_since(a.first_seen.get()) < budget && !a.timed_out.get() {
            ffi::lua_sethook(state, None, 0, 0);
            return;
        }
        if a.timed_out.get() && now.duration_since(a.first_seen.get()) > 2 * budget {
            // the call went on after its timeout (its own pcall swallows the error): it
            // cannot be stopped from inside, so this thread stops for good (see the module doc)
            park_forever(&a.watched);
        }
        a.timed_out.set(true);
        ffi::lua_sethook(state, Some(hook), ffi::LUA_MASKCOUNT, STICKY_COUNT);
        let message = if a.in_setup.get() {
            &a.setup_message
        } else {
            &a.message
        };
        // the kind, for chain.lua to record with the error: the slot exists (wire::new_probe),
        // so the write allocates nothing
        ffi::lua_pushlightuserdata(state, &PROBE_KEY as *const u8 as *mut std::ffi::c_void);
        ffi::lua_rawget(state, ffi::LUA_REGISTRYINDEX);
        if ffi::lua_type(state, -1) == ffi::LUA_TTABLE {
            ffi::lua_pushnumber(state, kind::TIMEOUT as ffi::lua_Number);
            ffi::lua_rawseti(state, -2, probe::KIND.into());
        }
        ffi::lua_settop(state, -2);
        ffi::lua_pushstring(state, message.as_ptr());
        ffi::lua_error(state);
    }
}

/// The start of the error a stopped call raises.
pub const TIMEOUT_TEXT: &str = "script timeout: the call ran longer than engine.script_timeout_ms";
/// The start of the error a stopped setup phase raises.
pub const SETUP_TIMEOUT_TEXT: &str =
    "setup timeout: loading the scripts or running setup() took longer than engine.setup_timeout_ms";
