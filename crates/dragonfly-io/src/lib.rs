//! Sources and sinks of the Dragonfly pipeline.
//!
//! Each source kind lives in its own module under [`sources`], each sink kind under [`sinks`].
//! Sources turn bytes into [`Batch`]es of raw lines and hand them to an [`Emit`] supplied by the
//! engine (which decides which worker gets which line); sinks write batches of encoded messages.

pub mod framing;
pub mod kafka_uri;
pub mod nats_uri;
pub mod options;
pub mod preflight;
pub mod redis_uri;
pub mod sinks;
pub mod sources;
mod uri;

pub use dragonfly_event::{ack, batch, fsx, ratelimit};
pub use dragonfly_event::{Ack, Batch, Receipt, Watermark};
pub use framing::{Frame, LineFramer};
pub use sinks::{Destination, Sink};
pub use sources::{Emit, InputCounters, Source, SourceCtx};
pub use uri::UriError;

/// What gives the calling thread's cached free memory back to the system (set once by the
/// program, for its allocator; nothing otherwise).
static RELEASE_MEMORY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Set what [`release_memory`] does (the program's allocator's "collect" call).
pub fn set_release_memory(f: fn()) {
    let _ = RELEASE_MEMORY.set(f);
}

/// Give the calling thread's cached free memory back to the system. A stream connection's
/// thread calls it after it dropped a long partial line and when it ends: an allocator with
/// per-thread caches (mimalloc) otherwise keeps each connection's largest buffer resident
/// for as long as its thread lives, so many connections would hold many times the partial
/// budget while holding almost nothing.
pub(crate) fn release_memory() {
    if let Some(f) = RELEASE_MEMORY.get() {
        f();
    }
}
