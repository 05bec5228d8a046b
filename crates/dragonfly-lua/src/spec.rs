//! What a runtime is built from: its scripts, outputs, store, limits and event form
//! ([`RuntimeSpec`]), and a builder for the specs tests and tools write by hand
//! ([`SpecBuilder`]: `RuntimeSpec::builder().filter("in", src).output("out").ready()`; its
//! `build` and `ready` are in runtime.rs).
//! The engine builds its specs from the configuration (dragonfly-engine's plan.rs).

use std::path::PathBuf;
use std::sync::Arc;

use dragonfly_store::embedded::EmbeddedStore;

use crate::libs::hiredis::Backend;

/// Resource limits of a runtime.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes the Lua state may hold (0: no limit).
    pub memory: usize,
    /// Longest a script call (`loop()`, a timer callback) may run (zero: no limit).
    pub script_timeout: std::time::Duration,
    /// Longest loading every script (their top level) may take, and again running every
    /// `setup()` (zero: no limit; the engine never sets zero).
    pub setup_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 1024 << 20,
            script_timeout: std::time::Duration::from_millis(1000),
            setup_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Filter (input) script or analyzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// An input filter (one per input).
    Filter,
    /// An analyzer, reached by tag.
    Analyzer,
}

/// A script to load, with its source already read (so loading works after a chroot).
#[derive(Debug, Clone)]
pub struct ScriptSpec {
    /// The tag in config.lua.
    pub tag: String,
    /// Filter or analyzer.
    pub kind: ScriptKind,
    /// The path as shown in messages (e.g. `analyzer/hello-world.lua`).
    pub display: String,
    /// The source text.
    pub source: Arc<str>,
    /// The `default_analyzer` global it gets.
    pub default_analyzer: String,
    /// The `default_output` global it gets (analyzers only).
    pub default_output: String,
}

/// Everything a runtime is built from.
#[derive(Clone)]
pub struct RuntimeSpec {
    /// Directory `require` resolves against.
    pub root: PathBuf,
    /// One filter per input, in config order.
    pub filters: Vec<ScriptSpec>,
    /// Every analyzer, in config order (tags route to them).
    pub analyzers: Vec<ScriptSpec>,
    /// Output tags, in config order.
    pub outputs: Vec<String>,
    /// The store `hiredis.connect()` reaches.
    pub backend: Backend,
    /// Memory and time limits.
    pub limits: Limits,
    /// Input objects reach scripts as lazy events (decoded field by field as scripts read
    /// them, written back as their original bytes where unchanged: see lazy.rs); false decodes
    /// every event whole first.
    pub lazy_events: bool,
    /// How events overlap their Redis round trips (used with a Redis store only).
    pub overlap: Overlap,
    /// `engine.clock = "event"`: timers and `dragonfly.now()` go by the events' timestamps,
    /// this many seconds behind the largest seen (the worker keeps that clock); None: the
    /// wall clock.
    pub event_clock: Option<f64>,
}

/// With a Redis store, events run as coroutines that yield while their replies are on the
/// way (chain.lua): each analyzer takes up to `concurrency[i]` events at once (default 1, as
/// in the original: one at a time, in order), never two with the same `partition_key` value.
#[derive(Debug, Clone, Default)]
pub struct Overlap {
    /// Per analyzer, in `analyzers` order (missing: 1).
    pub concurrency: Vec<u32>,
    /// The top-level event field whose value names a flow ("": every event its own).
    pub partition_key: String,
}

impl ScriptSpec {
    /// A filter (input script) tagged `tag`, shown in messages as `filter/<tag>.lua`.
    pub fn filter(tag: &str, source: impl Into<Arc<str>>) -> Self {
        Self::new(ScriptKind::Filter, tag, source)
    }

    /// An analyzer tagged `tag`, shown in messages as `analyzer/<tag>.lua`.
    pub fn analyzer(tag: &str, source: impl Into<Arc<str>>) -> Self {
        Self::new(ScriptKind::Analyzer, tag, source)
    }

    fn new(kind: ScriptKind, tag: &str, source: impl Into<Arc<str>>) -> Self {
        let dir = match kind {
            ScriptKind::Filter => "filter",
            ScriptKind::Analyzer => "analyzer",
        };
        Self {
            tag: tag.into(),
            kind,
            display: format!("{dir}/{tag}.lua"),
            source: source.into(),
            default_analyzer: String::new(),
            default_output: String::new(),
        }
    }

    /// Shown in messages as `display` instead.
    pub fn display(mut self, display: &str) -> Self {
        self.display = display.into();
        self
    }

    /// With this `default_analyzer` global.
    pub fn default_analyzer(mut self, tag: &str) -> Self {
        self.default_analyzer = tag.into();
        self
    }

    /// With this `default_output` global.
    pub fn default_output(mut self, tag: &str) -> Self {
        self.default_output = tag.into();
        self
    }
}

impl RuntimeSpec {
    /// A spec with no script and no output on a fresh embedded store, lazy events, default
    /// limits, `require` resolving against the temporary directory; add to it.
    pub fn builder() -> SpecBuilder {
        SpecBuilder {
            spec: RuntimeSpec {
                root: std::env::temp_dir(),
                filters: Vec::new(),
                analyzers: Vec::new(),
                outputs: Vec::new(),
                backend: Backend::Embedded(EmbeddedStore::new()),
                limits: Limits::default(),
                lazy_events: true,
                event_clock: None,
                overlap: Overlap::default(),
            },
        }
    }
}

/// Builds a [`RuntimeSpec`] a piece at a time (from [`RuntimeSpec::builder`]).
#[must_use]
pub struct SpecBuilder {
    spec: RuntimeSpec,
}

impl SpecBuilder {
    /// `require` resolves against `root`.
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.spec.root = root.into();
        self
    }

    /// Add a filter tagged `tag` (after those added before).
    pub fn filter(self, tag: &str, source: impl Into<Arc<str>>) -> Self {
        self.script(ScriptSpec::filter(tag, source))
    }

    /// Add an analyzer tagged `tag` (after those added before).
    pub fn analyzer(self, tag: &str, source: impl Into<Arc<str>>) -> Self {
        self.script(ScriptSpec::analyzer(tag, source))
    }

    /// Add a script made with [`ScriptSpec::filter`] or [`ScriptSpec::analyzer`].
    pub fn script(mut self, script: ScriptSpec) -> Self {
        match script.kind {
            ScriptKind::Filter => self.spec.filters.push(script),
            ScriptKind::Analyzer => self.spec.analyzers.push(script),
        }
        self
    }

    /// Add an output tagged `tag`.
    pub fn output(mut self, tag: &str) -> Self {
        self.spec.outputs.push(tag.into());
        self
    }

    /// `hiredis.connect()` reaches `backend` instead of a fresh embedded store.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.spec.backend = backend;
        self
    }

    /// With these limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.spec.limits = limits;
        self
    }

    /// Input objects as lazy events (true, the default) or decoded whole first.
    pub fn lazy_events(mut self, lazy: bool) -> Self {
        self.spec.lazy_events = lazy;
        self
    }

    /// With this overlap of Redis round trips.
    pub fn overlap(mut self, overlap: Overlap) -> Self {
        self.spec.overlap = overlap;
        self
    }

    /// The spec.
    pub fn spec(self) -> RuntimeSpec {
        self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_makes_the_spec_it_says() {
        let spec = RuntimeSpec::builder()
            .filter("in", "function loop(m) end")
            .analyzer("a", "function loop(m) end")
            .script(
                ScriptSpec::filter("in2", "")
                    .display("f.lua")
                    .default_analyzer("a"),
            )
            .output("out")
            .lazy_events(false)
            .spec();
        let tags: Vec<_> = spec
            .filters
            .iter()
            .map(|s| (&*s.tag, &*s.display))
            .collect();
        assert_eq!(tags, [("in", "filter/in.lua"), ("in2", "f.lua")]);
        assert_eq!(spec.filters[1].default_analyzer, "a");
        assert_eq!(spec.analyzers[0].display, "analyzer/a.lua");
        assert_eq!(spec.outputs, ["out"]);
        assert!(!spec.lazy_events);
    }

    #[test]
    fn ready_reports_a_failing_setup() {
        let errors = RuntimeSpec::builder()
            .filter(
                "in",
                "function setup() error('no') end function loop(m) end",
            )
            .ready()
            .err()
            .expect("setup fails");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].script, "filter/in.lua");
    }
}
