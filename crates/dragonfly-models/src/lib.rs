//! The RedisML command set: model types, their evaluation, and the `ML.*` commands with
//! RedisML's replies and error texts. No I/O: the embedded store and the Redis module both run
//! commands through [`execute`] over their own [`Keyspace`].
//!
//! Differences from RedisML (documented in docs/models.md): arguments that are only white space
//! are ignored by ML.FOREST.ADD (the public DGA model files end in `" \n"`); wrong feature
//! counts, bad numbers and incomplete k-means/matrix value lists are errors instead of reads of
//! uninitialised memory; a classification tie goes to the lowest class index; sizes, depths and
//! the work of one command are limited ([`limits`]).

mod commands;
pub mod encode;
pub mod forest;
pub mod import;
pub mod limits;
pub mod model;
pub mod numfmt;

pub use commands::{execute, is_ml_command, Keyspace, Kind, MlReply};
pub use forest::{Forest, Node, Tree};
pub use model::{Kmeans, Matrix, Model, Regression};
