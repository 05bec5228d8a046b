//! `--check`: every start-time check that changes nothing, every problem in one run.
//!
//! Behaviour: [`Plan::preflight`] finds what [`Plan::prepare`] would, as the calling user and
//! without creating, opening for writing or binding anything: the log directory, each state
//! directory (checkpoints, the store snapshot), each input ([`Source::check`]: a file to read,
//! a socket to bind, an address to listen on), each output that writes to disk, the dead
//! letters, the store's modules and the HTTP address. A missing directory the start would
//! create outside LOGDIR is a warning naming it (the CLI makes it an error with `--strict`).
//! [`Plan::check_as_runner`] then finds what the running engine needs as the user it runs
//! as — the CLI calls it after dropping privileges (`-p`), so the kernel answers as that
//! user: existing state directories writable, followed files readable. [`Plan::check_scripts`]
//! loads every script and runs every `setup()`; a script that does not load is left out and
//! the others are set up all the same, so one syntax error does not hide another script's
//! failing `setup()`. Cost: a few `stat`/`access` calls per path, one Redis round trip per
//! module, one runtime built (two when a script does not load).
//!
//! [`Source::check`]: dragonfly_io::Source::check

use std::path::{Path, PathBuf};

use dragonfly_io::preflight::{self, Findings};
use dragonfly_io::sinks::OnDisk;
use dragonfly_lua::{Backend, Runtime, RuntimeSpec};

use crate::{store, Plan, LOG_FILE, STATS_FILE};

impl Plan {
    /// The state files (checkpoints, the store snapshot): what writes each, and the file as
    /// configured (relative to ROOT, the working directory before and after `-c`).
    pub(crate) fn state_files(&self) -> Vec<(String, PathBuf)> {
        self.sources
            .iter()
            .zip(&self.config.inputs)
            .filter_map(|(s, i)| {
                s.checkpoint()
                    .map(|c| (format!("input '{}': checkpoint", i.tag), c.to_path_buf()))
            })
            .chain(
                self.snapshot
                    .iter()
                    .map(|p| ("engine.store_snapshot".to_string(), p.clone())),
            )
            .collect()
    }

    /// What starting would find, as the calling user, changing nothing (see the module doc).
    pub fn preflight(&self) -> Findings {
        let mut found = Findings::default();
        let logdir = &self.options.logdir;
        match preflight::dir_usable(logdir) {
            Ok(true) => {
                for f in [LOG_FILE, STATS_FILE] {
                    if let Err(e) = preflight::file_writable(&logdir.join(f)) {
                        found.problem(format!("engine log: {e}"));
                    }
                }
            }
            Ok(false) => {}
            Err(e) => found.problem(format!("log directory (-l): {e}")),
        }
        for (what, file) in self.state_files() {
            let file = self.options.root.join(file);
            if let Err(e) = preflight::dir_usable(&preflight::parent(&file)) {
                found.problem(format!("{what} {}: {e}", file.display()));
            }
        }
        if let (Some(path), Backend::Embedded(db)) = (&self.snapshot, &self.runtime.backend) {
            if let Err(e) = db.load(path) {
                found.problem(format!(
                    "engine.store_snapshot: cannot load {}: {e}",
                    path.display()
                ));
            }
        }
        for (src, inp) in self.sources.iter().zip(&self.config.inputs) {
            src.check(&mut found, &format!("input '{}' ({})", inp.tag, inp.uri));
        }
        found.extend(self.preflight_outputs());
        found
            .problems
            .extend(store::check_modules(&self.config, &self.runtime.backend));
        if !self.config.engine.http.is_empty() {
            preflight::listen_address(&self.config.engine.http, false, &mut found, "engine.http");
        }
        found
    }

    /// The outputs and dead letters that write to disk: a file writable or creatable, a
    /// directory usable; a directory the start would create outside LOGDIR is a warning.
    pub(crate) fn preflight_outputs(&self) -> Findings {
        let mut found = Findings::default();
        let logdir = &self.options.logdir;
        let outputs = self
            .sinks
            .iter()
            .zip(&self.config.outputs)
            .map(|(s, o)| (format!("output '{}' ({})", o.tag, o.uri), s));
        let dead = self.dead_letter.iter().map(|s| {
            (
                format!("engine.dead_letter ({})", self.config.engine.dead_letter),
                s,
            )
        });
        for (what, sink) in outputs.chain(dead) {
            let (dir, made) = match sink.on_disk() {
                None => continue,
                Some(OnDisk::File(p)) => {
                    let p = self.options.root.join(p);
                    (
                        preflight::parent(&p),
                        preflight::file_writable(&p).map(|d| d.is_some()),
                    )
                }
                Some(OnDisk::Dir(p)) => {
                    let p = self.options.root.join(p);
                    let made = preflight::dir_usable(&p).map(|existed| !existed);
                    (p, made)
                }
            };
            match made {
                Ok(true) if !under(&dir, logdir) => found.warning(format!(
                    "{what}: directory {} does not exist: the start creates it (outside LOGDIR {})",
                    dir.display(),
                    logdir.display()
                )),
                Ok(_) => {}
                Err(e) => found.problem(format!("{what}: {e}")),
            }
        }
        found
    }

    /// What the running engine needs as the user it runs as (the CLI calls it after `-p`
    /// dropped privileges): each existing state directory writable, each followed file
    /// readable, LOGDIR writable for rotation (a warning).
    pub fn check_as_runner(&self) -> Findings {
        let mut found = Findings::default();
        for (what, file) in self.state_files() {
            let dir = preflight::parent(&file);
            // one the start creates is handed over to this user
            if dir.is_dir() {
                if let Err(e) = preflight::dir_usable(&dir) {
                    found.problem(format!(
                        "{what} {}: {e} — as the user the engine runs as: the file could never be saved. \
                         Give that user the directory, or use a new one (it is created for you)",
                        self.options.root.join(&file).display()
                    ));
                }
            }
        }
        for (src, inp) in self.sources.iter().zip(&self.config.inputs) {
            src.check_as_runner(&mut found, &format!("input '{}' ({})", inp.tag, inp.uri));
        }
        // (after -c LOGDIR's path is not what it was)
        if !self.options.chroot && self.options.logdir.is_dir() {
            if let Err(e) = preflight::dir_usable(&self.options.logdir) {
                found.warning(format!(
                    "log directory (-l): {e} — as the user the engine runs as: after log rotation \
                     it cannot create new files there (rotate with copytruncate, or give the user the directory)"
                ));
            }
        }
        found
    }

    /// Load every script and run every `setup()`, as a worker would (with `root` as the
    /// directory `require` resolves against: ROOT, or `/` after `-c`): every problem, one
    /// line each. A script that does not load is left out and the others are set up anyway.
    pub fn check_scripts(&self, root: &Path) -> Vec<String> {
        let mut spec = self.runtime.clone();
        spec.root = root.to_path_buf();
        let (mut problems, failed) = run_scripts(&spec);
        if !failed.is_empty() {
            spec.filters.retain(|s| !failed.contains(&s.display));
            spec.analyzers.retain(|s| !failed.contains(&s.display));
            let left = spec.filters.len() + spec.analyzers.len();
            if left > 0 {
                let (more, _) = run_scripts(&spec);
                problems.extend(more);
            }
        }
        problems
    }
}

/// Whether `dir` is `logdir` or under it.
fn under(dir: &Path, logdir: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    dir.starts_with(logdir) || canon(dir).starts_with(canon(logdir))
}

/// Build a runtime of `spec` and run every `setup()` on a thread of its own, as a worker
/// would: every problem, and the scripts that did not load. A setup phase that runs past its
/// budget and cannot be stopped (a loop LuaJIT compiled) is reported, not waited for: the
/// thread is left behind, parked by the watchdog.
fn run_scripts(spec: &RuntimeSpec) -> (Vec<String>, Vec<String>) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let spec_for = spec.clone();
    let spawned = std::thread::Builder::new()
        .name("check".into())
        .spawn(move || {
            let out = match Runtime::new(&spec_for) {
                Err(errs) => (
                    errs.iter().map(|e| e.to_string()).collect(),
                    errs.iter().map(|e| e.script.clone()).collect(),
                ),
                Ok(mut rt) => (
                    rt.setup()
                        .iter()
                        .map(|e| format!("{e} (in setup)"))
                        .collect(),
                    Vec::new(),
                ),
            };
            let _ = tx.send(out);
        });
    if let Err(e) = spawned {
        return (
            vec![format!("cannot start a thread to run the scripts: {e}")],
            Vec::new(),
        );
    }
    let limit = 2 * spec.limits.setup_timeout + crate::worker::READY_MARGIN;
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(_) => (
            vec![format!(
                "the scripts did not finish loading and setup() within engine.setup_timeout_ms ({} ms, twice) and could not be stopped (a loop LuaJIT compiled?)",
                spec.limits.setup_timeout.as_millis()
            )],
            Vec::new(),
        ),
    }
}
