//! The plan: config.lua read, scripts loaded, URIs understood ([`Plan::new`]); then every
//! file opened and socket bound, before privileges are dropped or the process is chrooted
//! ([`Plan::prepare`] gives a [`Prepared`]), with what `-c` and `-p` need checked and handed
//! over ([`Prepared::hand_over`]).

use std::path::{Path, PathBuf};

use dragonfly_config::{Config, Store};
use dragonfly_io::sinks::file::FileSink;
use dragonfly_io::sources::Prepared as PreparedSource;
use dragonfly_io::{Destination, Sink, Source, UriError};
use dragonfly_lua::{Backend, Limits, Runtime, RuntimeSpec, ScriptKind, ScriptSpec};
use dragonfly_store::embedded::EmbeddedStore;
use dragonfly_store::redis_backend::{RedisAddr, RedisTarget};
use std::time::Duration;

use crate::{store, EngineError, Options, LOG_FILE, STATS_FILE};

/// With `-c`: a path the engine opens again after the chroot (an output or log reopened for
/// rotation, a followed file, a checkpoint) must lie under ROOT; it is rewritten relative to
/// ROOT, which names the same file before the chroot (the engine runs in ROOT) and after it.
/// Anything else is refused, naming the path.
fn confine(root: &Path, what: &str, p: &Path) -> Result<PathBuf, String> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    // compare real locations: resolve the deepest directory that exists
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut real = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    for name in rest.iter().rev() {
        real.push(name);
    }
    let root_real = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    match real.strip_prefix(&root_real) {
        Ok(rel) if rel.as_os_str().is_empty() => Ok(PathBuf::from(".")),
        Ok(rel) => Ok(rel.to_path_buf()),
        Err(_) => Err(format!(
            "{what} {}: with -c it must be under ROOT ({}): after the chroot the engine could not reopen it \
             (rotation, SIGHUP); move it under ROOT or run without -c",
            p.display(),
            root.display()
        )),
    }
}

/// A configuration with its scripts read and its URIs understood.
pub struct Plan {
    pub(crate) config: Config,
    pub(crate) options: Options,
    pub(crate) runtime: RuntimeSpec,
    pub(crate) sources: Vec<Box<dyn Source>>,
    pub(crate) sinks: Vec<Box<dyn Destination>>,
    /// Where failed events go (`engine.dead_letter`).
    pub(crate) dead_letter: Option<Box<dyn Destination>>,
    /// Snapshot file of the embedded store, if any.
    pub(crate) snapshot: Option<PathBuf>,
}

fn display_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

impl Plan {
    /// Read the scripts and understand every URI of `config`; every problem is reported at once.
    pub fn new(config: Config, options: Options) -> Result<Plan, EngineError> {
        let mut problems = Vec::new();
        let file = config.file.clone();
        let mut read = |tag: &str, kind: ScriptKind, path: &Path, da: &str, dout: &str| {
            match std::fs::read_to_string(path) {
                Ok(src) => Some(ScriptSpec {
                    tag: tag.to_string(),
                    kind,
                    display: display_path(&options.root, path),
                    source: src.into(),
                    default_analyzer: da.to_string(),
                    default_output: dout.to_string(),
                }),
                Err(e) => {
                    problems.push(format!("{}: cannot read script: {e}", path.display()));
                    None
                }
            }
        };
        let filters: Vec<_> = config
            .inputs
            .iter()
            .filter_map(|i| {
                read(
                    &i.tag,
                    ScriptKind::Filter,
                    &i.script_path,
                    &i.default_analyzer,
                    "",
                )
            })
            .collect();
        let analyzers: Vec<_> = config
            .analyzers
            .iter()
            .filter_map(|a| {
                read(
                    &a.tag,
                    ScriptKind::Analyzer,
                    &a.script_path,
                    &a.default_analyzer,
                    &a.default_output,
                )
            })
            .collect();
        let mut sources = Vec::new();
        for (i, inp) in config.inputs.iter().enumerate() {
            let entry = format!("{file}: inputs[{}] (tag \"{}\")", i + 1, inp.tag);
            match dragonfly_io::sources::parse(&inp.uri, &inp.options) {
                Ok(s) => sources.push(s),
                Err(e @ UriError::BadOption(_)) => {
                    problems.push(format!("{entry}: field 'options': {e}"))
                }
                Err(e) => problems.push(format!("{entry}: field 'uri': {e}")),
            }
        }
        let mut sinks = Vec::new();
        for (i, out) in config.outputs.iter().enumerate() {
            let entry = format!("{file}: outputs[{}] (tag \"{}\")", i + 1, out.tag);
            match dragonfly_io::sinks::parse(&out.uri, &options.logdir, &out.options) {
                Ok(s) => sinks.push(s),
                Err(e @ UriError::BadOption(_)) => {
                    problems.push(format!("{entry}: field 'options': {e}"))
                }
                Err(e) => problems.push(format!("{entry}: field 'uri': {e}")),
            }
        }
        if options.chroot {
            for (i, s) in sources.iter_mut().enumerate() {
                let what = format!(
                    "{file}: inputs[{}] (tag \"{}\"):",
                    i + 1,
                    config.inputs[i].tag
                );
                if let Err(e) =
                    s.confine(&mut |kind, p| confine(&options.root, &format!("{what} {kind}"), p))
                {
                    problems.push(e);
                }
            }
            for (i, s) in sinks.iter_mut().enumerate() {
                let what = format!(
                    "{file}: outputs[{}] (tag \"{}\"): file",
                    i + 1,
                    config.outputs[i].tag
                );
                if let Some(p) = s.reopened_path() {
                    match confine(&options.root, &what, p) {
                        Ok(rel) => *p = rel,
                        Err(e) => problems.push(e),
                    }
                }
            }
        }
        let dead_letter = if config.engine.dead_letter.is_empty() {
            None
        } else {
            match dragonfly_io::sinks::parse(&config.engine.dead_letter, &options.logdir, &[]) {
                Ok(mut s) => {
                    let what = format!("{file}: engine.dead_letter");
                    match s.reopened_path().filter(|_| options.chroot) {
                        Some(p) => match confine(&options.root, &what, p) {
                            Ok(rel) => {
                                *p = rel;
                                Some(s)
                            }
                            Err(e) => {
                                problems.push(e);
                                None
                            }
                        },
                        None => Some(s),
                    }
                }
                Err(e) => {
                    problems.push(format!("{file}: engine: field 'dead_letter': {e}"));
                    None
                }
            }
        };
        let redis_timeout = (config.engine.redis_timeout_ms > 0)
            .then(|| Duration::from_millis(config.engine.redis_timeout_ms));
        let reply_limits = dragonfly_store::resp::ReplyLimits {
            max_bytes: config.engine.redis_max_reply_mb << 20,
        };
        let spin = dragonfly_store::resp::spin_for(
            Duration::from_micros(config.engine.redis_spin_us),
            config.engine.workers,
        );
        let backend = match &config.store {
            Store::Embedded => {
                use dragonfly_store::embedded::memory::{Limit, Policy};
                Backend::Embedded(EmbeddedStore::with_limit(Limit {
                    max_bytes: (config.engine.store_maxmemory_mb as usize) << 20,
                    policy: Policy::parse(&config.engine.store_maxmemory_policy)
                        .unwrap_or_default(),
                }))
            }
            Store::Tcp { host, port } => Backend::Redis(
                RedisTarget::new(RedisAddr::Tcp {
                    host: host.clone(),
                    port: *port,
                })
                .with_timeout(redis_timeout)
                .with_spin(spin)
                .with_reply_limits(reply_limits),
            ),
            Store::Unix { path } => Backend::Redis(
                RedisTarget::new(RedisAddr::Unix { path: path.clone() })
                    .with_timeout(redis_timeout)
                    .with_spin(spin)
                    .with_reply_limits(reply_limits),
            ),
            Store::Cluster { nodes } => Backend::Redis(
                RedisTarget::new(RedisAddr::Cluster {
                    nodes: nodes.clone(),
                })
                .with_timeout(redis_timeout)
                .with_reply_limits(reply_limits),
            ),
        };
        let snapshot = (!config.engine.store_snapshot.is_empty())
            .then(|| options.root.join(&config.engine.store_snapshot));
        if snapshot.is_some() && !matches!(backend, Backend::Embedded(_)) {
            tracing::warn!("engine.store_snapshot applies to the embedded store only; it is ignored with redis_host set");
        }
        if !problems.is_empty() {
            return Err(EngineError::Config(problems));
        }
        let runtime = RuntimeSpec {
            root: options.root.clone(),
            filters,
            analyzers,
            outputs: config.outputs.iter().map(|o| o.tag.clone()).collect(),
            backend,
            limits: Limits {
                memory: config.engine.lua_memory_mb << 20,
                script_timeout: Duration::from_millis(config.engine.script_timeout_ms),
                setup_timeout: Duration::from_millis(config.engine.setup_timeout_ms),
            },
            lazy_events: config.engine.lazy_events,
            overlap: dragonfly_lua::runtime::Overlap {
                concurrency: config.analyzers.iter().map(|a| a.concurrency).collect(),
                partition_key: config.engine.partition_key.clone(),
            },
        };
        Ok(Plan {
            config,
            options,
            runtime,
            sources,
            sinks,
            dead_letter,
            snapshot,
        })
    }

    /// The store scripts reach through `hiredis.connect()`.
    pub fn backend(&self) -> &Backend {
        &self.runtime.backend
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `--check`: build a runtime and run every `setup()`, without any input or output, and
    /// check that every file a finite input reads (file://, zfile://) can be opened and that
    /// the directory of every other input file (tail://, a socket) exists. Every problem
    /// found, at once: an `Open` error when an input is among them, else `Setup`.
    pub fn check(&self) -> Result<(), EngineError> {
        let mut problems: Vec<String> = Vec::new();
        for (src, inp) in self.sources.iter().zip(&self.config.inputs) {
            let Some(path) = src.path() else { continue };
            let path = self.options.root.join(path);
            let entry = format!("input '{}' ({})", inp.tag, inp.uri);
            if src.scheme().finite {
                if let Err(e) = std::fs::File::open(&path) {
                    problems.push(format!("{entry}: {}: {e}", path.display()));
                }
            } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.is_dir() {
                    problems.push(format!(
                        "{entry}: directory {} does not exist",
                        dir.display()
                    ));
                }
            }
            // a followed file must be a regular file, not a link or a FIFO (as at start)
            if src.scheme().name == "tail" {
                if let Ok(m) = std::fs::symlink_metadata(&path) {
                    if !m.is_file() {
                        problems.push(format!(
                            "{entry}: {} is {}: tail:// follows regular files only, never through a link",
                            path.display(),
                            if m.file_type().is_symlink() {
                                "a symbolic link"
                            } else {
                                "not a regular file (a FIFO, a socket, a device or a directory)"
                            }
                        ));
                    }
                }
            }
        }
        let inputs = problems.len();
        problems.extend(check_scripts(&self.runtime));
        match (problems.is_empty(), inputs > 0) {
            (true, _) => Ok(()),
            (false, true) => Err(EngineError::Open(problems)),
            (false, false) => Err(EngineError::Setup(problems)),
        }
    }

    /// Whether every input ends by itself.
    pub fn all_inputs_finite(&self) -> bool {
        self.sources.iter().all(|s| s.scheme().finite)
    }

    /// Open every file and bind every socket (before privileges are dropped).
    pub fn prepare(self) -> Result<Prepared, EngineError> {
        let logdir_existed = self.options.logdir.is_dir();
        std::fs::create_dir_all(&self.options.logdir).map_err(|e| {
            EngineError::Open(vec![format!(
                "cannot create log directory {}: {e}",
                self.options.logdir.display()
            )])
        })?;
        let mut problems = store::check_modules(&self.config, &self.runtime.backend);
        // The directories of state files (checkpoints, the store snapshot) must exist: the
        // files are written later, by then perhaps as `nobody` or inside a chroot.
        let mut state_dirs = Vec::new();
        let state_files = self
            .sources
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
            );
        for (what, file) in state_files {
            let file = self.options.root.join(file);
            let Some(dir) = file.parent().map(Path::to_path_buf) else {
                continue;
            };
            let existed = dir.is_dir();
            match std::fs::create_dir_all(&dir) {
                Ok(()) => state_dirs.push(StateDir {
                    what,
                    dir,
                    created: !existed,
                }),
                Err(e) => problems.push(format!(
                    "{what} {}: cannot create its directory {}: {e}",
                    file.display(),
                    dir.display()
                )),
            }
        }
        if let (Some(path), Backend::Embedded(db)) = (&self.snapshot, &self.runtime.backend) {
            match db.load(path) {
                Ok(n) => tracing::info!(path = %path.display(), keys = n, "embedded store loaded"),
                Err(e) => problems.push(format!(
                    "engine.store_snapshot: cannot load {}: {e}",
                    path.display()
                )),
            }
        }
        let mut sources = Vec::new();
        for (spec, inp) in self.sources.iter().zip(&self.config.inputs) {
            match spec.prepare(self.config.engine.max_line_bytes) {
                Ok(p) => sources.push(p),
                Err(e) => problems.push(format!("input '{}' ({}): {e}", inp.tag, inp.uri)),
            }
        }
        let mut sinks = Vec::new();
        for (spec, out) in self.sinks.iter().zip(&self.config.outputs) {
            match spec.open() {
                Ok(s) => sinks.push(s),
                Err(e) => problems.push(format!("output '{}' ({}): {e}", out.tag, out.uri)),
            }
        }
        let dead = match &self.dead_letter {
            None => None,
            Some(spec) => match spec.open() {
                Ok(s) => Some(s),
                Err(e) => {
                    problems.push(format!(
                        "engine.dead_letter ({}): {e}",
                        self.config.engine.dead_letter
                    ));
                    None
                }
            },
        };
        let mut open_own = |f: &str| -> Option<Box<dyn Sink>> {
            let mut p = self.options.logdir.join(f);
            if self.options.chroot {
                match confine(&self.options.root, "engine log", &p) {
                    Ok(rel) => p = rel,
                    Err(e) => {
                        problems.push(
                            e.replace("move it under ROOT", "give -l a directory under ROOT"),
                        );
                        return None;
                    }
                }
            }
            match FileSink::open(&p, dragonfly_io::sinks::file::OUTPUT_MODE) {
                Ok(s) => Some(Box::new(s)),
                Err(e) => {
                    problems.push(format!("engine log {}: {e}", p.display()));
                    None
                }
            }
        };
        let (own_log, own_stats) = (open_own(LOG_FILE), open_own(STATS_FILE));
        let http = match self.config.engine.http.as_str() {
            "" => None,
            addr => match crate::http::bind(
                addr,
                crate::http::analyzers_json(&self.config, &self.options.root),
                crate::http::pipeline_json(&self.config),
            ) {
                Ok(l) => Some(l),
                Err(e) => {
                    problems.push(format!("engine.http: {e}"));
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(EngineError::Open(problems));
        }
        let logdir = StateDir {
            what: "log directory (-l)".into(),
            dir: self.options.logdir.clone(),
            created: !logdir_existed,
        };
        Ok(Prepared {
            plan: self,
            sources,
            sinks,
            own: OwnLogs {
                log: own_log.expect("no problem: opened"),
                stats: own_stats.expect("no problem: opened"),
            },
            dead,
            state_dirs,
            logdir,
            http,
        })
    }
}

/// Files open, sockets bound; nothing runs yet.
pub struct Prepared {
    pub(crate) plan: Plan,
    pub(crate) sources: Vec<Box<dyn PreparedSource>>,
    pub(crate) sinks: Vec<Box<dyn Sink>>,
    pub(crate) own: OwnLogs,
    pub(crate) dead: Option<Box<dyn Sink>>,
    /// Directories the engine writes state files into.
    pub(crate) state_dirs: Vec<StateDir>,
    /// LOGDIR, and whether this start made it.
    pub(crate) logdir: StateDir,
    /// The HTTP listener (`engine.http`), bound.
    pub(crate) http: Option<crate::http::HttpListener>,
}

/// The engine's own log files, opened.
pub(crate) struct OwnLogs {
    /// LOGDIR/dragonfly-mle.log.
    pub(crate) log: Box<dyn Sink>,
    /// LOGDIR/dragonfly-mle-stats.log.
    pub(crate) stats: Box<dyn Sink>,
}

/// A directory holding a state file (checkpoint, snapshot).
pub(crate) struct StateDir {
    /// What writes there, for messages.
    pub(crate) what: String,
    pub(crate) dir: PathBuf,
    /// Made by this start (so it is ours to hand over).
    pub(crate) created: bool,
}

/// Whether `uid`/`gid` may create files in the directory `m` describes.
fn dir_writable_by(m: &std::fs::Metadata, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = m.mode();
    (m.uid() == uid && mode & 0o300 == 0o300)
        || (m.gid() == gid && mode & 0o030 == 0o030)
        || mode & 0o003 == 0o003
}

/// `fchown` a directory opened without following a final symbolic link.
fn chown_dir(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_directory_nofollow())
        .open(dir)?;
    std::os::unix::fs::fchown(&d, Some(uid), Some(gid))
}

fn libc_o_directory_nofollow() -> i32 {
    nix::fcntl::OFlag::O_DIRECTORY.bits() | nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

impl Prepared {
    /// Before dropping privileges to `uid`/`gid` (`-p`): give every file the engine opened for
    /// writing (outputs, its logs, the dead letters) and LOGDIR to that user, by descriptor,
    /// so they keep working and can be reopened after rotation; and make sure every directory
    /// a state file is written into will be writable: one this start created is handed over,
    /// one that exists already and is not writable by the user is a problem named here.
    /// Nothing is changed through a path a symbolic link could redirect.
    pub fn hand_over(&self, uid: u32, gid: u32) -> Result<(), EngineError> {
        let mut problems = Vec::new();
        let own = [&self.own.log, &self.own.stats];
        for s in self.sinks.iter().chain(own).chain(&self.dead) {
            if let Err(e) = s.hand_over(uid, gid) {
                problems.push(format!("cannot hand {e} to the unprivileged user"));
            }
        }
        // LOGDIR goes to the user only if this start made it (never a shared /var/log); one
        // that exists and is not the user's only means rotated files cannot be re-created
        let d = &self.logdir;
        if d.created {
            if let Err(e) = chown_dir(&d.dir, uid, gid) {
                problems.push(format!("{}: {}: {e}", d.what, d.dir.display()));
            }
        } else if !std::fs::metadata(&d.dir).is_ok_and(|m| dir_writable_by(&m, uid, gid)) {
            tracing::warn!(
                "{} {} is not writable by the unprivileged user (-p): after log rotation the \
                 engine cannot create new files there (rotate with copytruncate, or give the \
                 user the directory)",
                d.what,
                d.dir.display()
            );
        }
        for d in &self.state_dirs {
            if d.created {
                if let Err(e) = chown_dir(&d.dir, uid, gid) {
                    problems.push(format!("{}: directory {}: {e}", d.what, d.dir.display()));
                }
                continue;
            }
            match std::fs::metadata(&d.dir) {
                Ok(m) if dir_writable_by(&m, uid, gid) => {}
                Ok(_) => problems.push(format!(
                    "{}: directory {} is not writable by the unprivileged user (uid {uid}) that -p drops to: \
                     the file could never be saved. Give that user the directory, or use a new one (it is created for you)",
                    d.what,
                    d.dir.display()
                )),
                Err(e) => problems.push(format!("{}: directory {}: {e}", d.what, d.dir.display())),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Open(problems))
        }
    }
}

/// Load every script and run every `setup()` of `spec` on a thread of its own, as a worker
/// would: every problem, one line each. A setup phase that runs past its budget and cannot be
/// stopped (a loop LuaJIT compiled) is reported too, not waited for: the thread is left
/// behind, parked by the watchdog.
fn check_scripts(spec: &RuntimeSpec) -> Vec<String> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let spec_for = spec.clone();
    let spawned = std::thread::Builder::new()
        .name("check".into())
        .spawn(move || {
            let problems: Vec<String> = match Runtime::new(&spec_for) {
                Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
                Ok(mut rt) => rt
                    .setup()
                    .iter()
                    .map(|e| format!("{e} (in setup)"))
                    .collect(),
            };
            let _ = tx.send(problems);
        });
    if let Err(e) = spawned {
        return vec![format!("cannot start a thread to run the scripts: {e}")];
    }
    let limit = 2 * spec.limits.setup_timeout + crate::worker::READY_MARGIN;
    match rx.recv_timeout(limit) {
        Ok(problems) => problems,
        Err(_) => vec![format!(
            "the scripts did not finish loading and setup() within engine.setup_timeout_ms ({} ms, twice) and could not be stopped (a loop LuaJIT compiled?)",
            spec.limits.setup_timeout.as_millis()
        )],
    }
}
