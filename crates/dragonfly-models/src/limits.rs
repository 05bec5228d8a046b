//! Limits on what one model may hold and what one command may cost, so that no `ML.*` argument
//! can make the process that runs it (the engine, or a shared redis-server with the module)
//! allocate without bound, overflow an index, recurse off its stack or stall for minutes.
//!
//! Process-wide, read on every command (relaxed atomics: a few loads per command). The Redis
//! module sets them from its load-time arguments
//! (`--loadmodule libdragonfly_redisml.so MAX_VALUES 1000000 MAX_TREE_DEPTH 200`); the engine
//! uses the defaults. A command past a limit is answered with an error naming it; nothing is
//! changed.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Numbers one matrix, k-means model or regression may hold (default 2^24: 128 MiB).
    pub max_values: u64,
    /// Depth of a decision tree, root = 1 (default 1000).
    pub max_tree_depth: u64,
    /// Multiply-adds one `ML.MATRIX.MULTIPLY` may do (default 2^30, about a second).
    pub max_multiply_ops: u64,
}

/// The limits a process starts with.
pub const DEFAULT: Limits = Limits {
    max_values: 1 << 24,
    max_tree_depth: 1000,
    max_multiply_ops: 1 << 30,
};

static MAX_VALUES: AtomicU64 = AtomicU64::new(DEFAULT.max_values);
static MAX_TREE_DEPTH: AtomicU64 = AtomicU64::new(DEFAULT.max_tree_depth);
static MAX_MULTIPLY_OPS: AtomicU64 = AtomicU64::new(DEFAULT.max_multiply_ops);

/// The limits in force.
pub fn get() -> Limits {
    Limits {
        max_values: MAX_VALUES.load(Relaxed),
        max_tree_depth: MAX_TREE_DEPTH.load(Relaxed),
        max_multiply_ops: MAX_MULTIPLY_OPS.load(Relaxed),
    }
}

/// Set the limits (the module at load time).
pub fn set(l: Limits) {
    MAX_VALUES.store(l.max_values, Relaxed);
    MAX_TREE_DEPTH.store(l.max_tree_depth, Relaxed);
    MAX_MULTIPLY_OPS.store(l.max_multiply_ops, Relaxed);
}

/// Parse `NAME VALUE` pairs (the module's load-time arguments), starting from `base`.
pub fn parse_args(args: &[String], base: Limits) -> Result<Limits, String> {
    let mut l = base;
    let mut it = args.iter();
    while let Some(name) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{name}: missing value"))?
            .parse::<u64>()
            .map_err(|_| format!("{name}: expected a whole number > 0"))?;
        if value == 0 {
            return Err(format!("{name}: expected a whole number > 0"));
        }
        match name.to_ascii_uppercase().as_str() {
            "MAX_VALUES" => l.max_values = value,
            "MAX_TREE_DEPTH" => l.max_tree_depth = value,
            "MAX_MULTIPLY_OPS" => l.max_multiply_ops = value,
            _ => {
                return Err(format!(
                    "unknown argument {name} (known: MAX_VALUES, MAX_TREE_DEPTH, MAX_MULTIPLY_OPS)"
                ))
            }
        }
    }
    Ok(l)
}

/// The error for a model or command past a limit.
pub fn exceeded(what: &str, n: impl std::fmt::Display, limit: &str, max: u64) -> String {
    format!("ERR {what} ({n}) is over the limit {limit} = {max}")
}
