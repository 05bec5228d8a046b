//! What crosses the stages of the Dragonfly pipeline, shared by the sources and sinks
//! (`dragonfly-io`), the Lua runtime (`dragonfly-lua`) and the engine, with no I/O client in
//! its dependencies, so that building or testing the Lua runtime pulls no broker library:
//!
//! - [`Batch`]: many messages in one allocation, the unit of every hand-off;
//! - [`Ack`], [`Receipt`], [`Watermark`]: delivery receipts for at-least-once inputs;
//! - [`ratelimit`]: which occurrence of a repeated problem is worth a log line;
//! - [`text`]: cutting text for log lines;
//! - [`json`]: validating JSON lines and walking their fields without building values;
//! - [`fsx`]: files the engine writes and reads back itself, never through a planted link;
//! - [`sync`]: locks taken one way, whether or not a panicking thread poisoned them.

pub mod ack;
pub mod batch;
pub mod fsx;
pub mod json;
pub mod ratelimit;
pub mod sync;
pub mod text;

pub use ack::{Ack, Receipt, Watermark};
pub use batch::Batch;
