//! Sources and sinks of the Dragonfly pipeline.
//!
//! Each source kind lives in its own module under [`sources`], each sink kind under [`sinks`].
//! Sources turn bytes into [`Batch`]es of raw lines and hand them to an [`Emit`] supplied by the
//! engine (which decides which worker gets which line); sinks write batches of encoded messages.

pub mod fieldkey;
pub mod framing;
pub mod kafka_uri;
pub mod nats_uri;
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
