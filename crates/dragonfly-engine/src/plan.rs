//! The plan: config.lua read, scripts loaded, URIs understood ([`Plan::new`]); then every
//! file opened and socket bound, before privileges are dropped or the process is chrooted
//! ([`Plan::prepare`] gives a [`Prepared`]), with what `-c` and `-p` need checked and handed
//! over ([`Prepared::hand_over`]).

use std::path::{Path, PathBuf};

use dragonfly_config::{Config, Store};
use dragonfly_io::sinks::file::FileSink;
use dragonfly_io::sources::Prepared as PreparedSource;
use dragonfly_io::{Destination, Sink, Source, UriError};
use dragonfly_lua::{Backend, Limits, RuntimeSpec, ScriptKind, ScriptSpec};
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

/// An entry's URI or its options, named by the field that is wrong.
fn uri_problem(entry: &str, e: &UriError) -> String {
    match e {
        UriError::BadOption(_) => format!("{entry}: field 'options': {e}"),
        _ => format!("{entry}: field 'uri': {e}"),
    }
}

/// Every input's source; an input whose URI or options are wrong is left out of `config`.
fn parse_sources(config: &mut Config, problems: &mut Vec<String>) -> Vec<Box<dyn Source>> {
    let file = config.file.clone();
    let mut sources = Vec::new();
    config.inputs.retain(
        |inp| match dragonfly_io::sources::parse(&inp.uri, &inp.options) {
            Ok(s) => {
                sources.push(s);
                true
            }
            Err(e) => {
                problems.push(uri_problem(&format!("{file}: {}", inp.entry), &e));
                false
            }
        },
    );
    sources
}

/// Every output's destination; an output whose URI or options are wrong is left out.
fn parse_sinks(
    config: &mut Config,
    logdir: &Path,
    problems: &mut Vec<String>,
) -> Vec<Box<dyn Destination>> {
    let file = config.file.clone();
    let mut sinks = Vec::new();
    config.outputs.retain(
        |out| match dragonfly_io::sinks::parse(&out.uri, logdir, &out.options) {
            Ok(s) => {
                sinks.push(s);
                true
            }
            Err(e) => {
                problems.push(uri_problem(&format!("{file}: {}", out.entry), &e));
                false
            }
        },
    );
    sinks
}

/// The filters' and the analyzers' scripts, read; one that cannot be read is a problem.
fn read_scripts(
    config: &Config,
    root: &Path,
    problems: &mut Vec<String>,
) -> (Vec<ScriptSpec>, Vec<ScriptSpec>) {
    let mut read = |tag: &str, kind: ScriptKind, path: &Path, da: &str, dout: &str| {
        match std::fs::read_to_string(path) {
            Ok(src) => Some(ScriptSpec {
                tag: tag.to_string(),
                kind,
                display: display_path(root, path),
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
    let filters = config
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
    let analyzers = config
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
    (filters, analyzers)
}

/// `-c`: the paths inputs and outputs open again later, made relative to ROOT (one outside
/// it is a problem).
fn confine_all(
    config: &Config,
    root: &Path,
    sources: &mut [Box<dyn Source>],
    sinks: &mut [Box<dyn Destination>],
    problems: &mut Vec<String>,
) {
    let file = &config.file;
    for (i, s) in sources.iter_mut().enumerate() {
        let what = format!("{file}: {}:", config.inputs[i].entry);
        if let Err(e) = s.confine(&mut |kind, p| confine(root, &format!("{what} {kind}"), p)) {
            problems.push(e);
        }
    }
    for (i, s) in sinks.iter_mut().enumerate() {
        let what = format!("{file}: {}: file", config.outputs[i].entry);
        if let Some(p) = s.reopened_path() {
            match confine(root, &what, p) {
                Ok(rel) => *p = rel,
                Err(e) => problems.push(e),
            }
        }
    }
}

/// The dead-letter output (`engine.dead_letter`), if any; a wrong URI is a problem.
fn dead_letter(
    config: &Config,
    options: &Options,
    problems: &mut Vec<String>,
) -> Option<Box<dyn Destination>> {
    let file = &config.file;
    if config.engine.dead_letter.is_empty() {
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
    }
}

/// The store scripts reach: the embedded store with its limit, or a Redis server or cluster
/// with the engine's timeouts and reply limits.
fn backend(config: &Config) -> Backend {
    let redis_timeout = (config.engine.redis_timeout_ms > 0)
        .then(|| Duration::from_millis(config.engine.redis_timeout_ms));
    let reply_limits = dragonfly_store::resp::ReplyLimits {
        max_bytes: config.engine.redis_max_reply_mb << 20,
    };
    let spin = dragonfly_store::resp::spin_for(
        Duration::from_micros(config.engine.redis_spin_us),
        config.engine.workers,
    );
    match &config.store {
        Store::Embedded => {
            use dragonfly_store::embedded::memory::{Limit, Policy};
            Backend::Embedded(EmbeddedStore::with_limit(Limit {
                max_bytes: (config.engine.store_maxmemory_mb as usize) << 20,
                policy: Policy::parse(&config.engine.store_maxmemory_policy).unwrap_or_default(),
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
    }
}

impl Plan {
    /// Read the scripts and understand every URI of `config`; every problem is reported at once.
    pub fn new(config: Config, options: Options) -> Result<Plan, EngineError> {
        let (plan, problems) = Self::build(config, options);
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(EngineError::Config(problems))
        }
    }

    /// What [`Plan::new`] makes of `config`, and every problem it found: an input or output
    /// whose URI is wrong, or a script that cannot be read, is left out (of the plan and its
    /// config), so that `--check` can go on and check everything else in the same run.
    pub fn build(mut config: Config, options: Options) -> (Plan, Vec<String>) {
        let mut problems = Vec::new();
        let mut sources = parse_sources(&mut config, &mut problems);
        let (filters, analyzers) = read_scripts(&config, &options.root, &mut problems);
        let mut sinks = parse_sinks(&mut config, &options.logdir, &mut problems);
        if options.chroot {
            confine_all(
                &config,
                &options.root,
                &mut sources,
                &mut sinks,
                &mut problems,
            );
        }
        let dead_letter = dead_letter(&config, &options, &mut problems);
        let backend = backend(&config);
        let snapshot = (!config.engine.store_snapshot.is_empty())
            .then(|| options.root.join(&config.engine.store_snapshot));
        if snapshot.is_some() && !matches!(backend, Backend::Embedded(_)) {
            tracing::warn!("engine.store_snapshot applies to the embedded store only; it is ignored with redis_host set");
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
            event_clock: (config.engine.clock == "event").then_some(config.engine.clock_lateness_s),
            overlap: dragonfly_lua::runtime::Overlap {
                concurrency: config.analyzers.iter().map(|a| a.concurrency).collect(),
                partition_key: config.engine.partition_key.clone(),
            },
        };
        let plan = Plan {
            config,
            options,
            runtime,
            sources,
            sinks,
            dead_letter,
            snapshot,
        };
        (plan, problems)
    }

    /// Read input `tag` from `source` instead of what its URI names (its filter, options and
    /// place stay): for a program that embeds the engine with a source of its own, and for
    /// the engine's in-process tests. False when no input has that tag.
    pub fn replace_source(&mut self, tag: &str, source: Box<dyn Source>) -> bool {
        match self.config.inputs.iter().position(|i| i.tag == tag) {
            Some(i) => {
                self.sources[i] = source;
                true
            }
            None => false,
        }
    }

    /// Write output `tag` to `sink` instead of what its URI names (see
    /// [`Plan::replace_source`]). False when no output has that tag.
    pub fn replace_sink(&mut self, tag: &str, sink: Box<dyn Destination>) -> bool {
        match self.config.outputs.iter().position(|o| o.tag == tag) {
            Some(i) => {
                self.sinks[i] = sink;
                true
            }
            None => false,
        }
    }

    /// Write dead letters to `sink` instead of `engine.dead_letter`'s URI.
    pub fn replace_dead_letter(&mut self, sink: Box<dyn Destination>) {
        self.dead_letter = Some(sink);
    }

    /// The store scripts reach through `hiredis.connect()`.
    pub fn backend(&self) -> &Backend {
        &self.runtime.backend
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether every input ends by itself.
    pub fn all_inputs_finite(&self) -> bool {
        self.sources.iter().all(|s| s.scheme().finite)
    }

    /// The directories of state files (checkpoints, the store snapshot), made if missing:
    /// the files are written later, by then perhaps as `nobody` or inside a chroot. One that
    /// was there must take files from this user (with -p: root here; `hand_over` checks the
    /// unprivileged user).
    fn make_state_dirs(&self, problems: &mut Vec<String>) -> Vec<StateDir> {
        let mut state_dirs = Vec::new();
        for (what, file) in self.state_files() {
            let file = self.options.root.join(file);
            let Some(dir) = file.parent().map(Path::to_path_buf) else {
                continue;
            };
            let existed = dir.is_dir();
            match std::fs::create_dir_all(&dir) {
                Ok(()) if existed => match dragonfly_io::preflight::dir_usable(&dir) {
                    Ok(_) => state_dirs.push(StateDir {
                        what,
                        dir,
                        created: false,
                    }),
                    Err(e) => problems.push(format!(
                        "{what} {}: {e}: the file could never be saved",
                        file.display()
                    )),
                },
                Ok(()) => state_dirs.push(StateDir {
                    what,
                    dir,
                    created: true,
                }),
                Err(e) => problems.push(format!(
                    "{what} {}: cannot create its directory {}: {e}",
                    file.display(),
                    dir.display()
                )),
            }
        }
        state_dirs
    }

    /// One of the engine's own log files in LOGDIR, opened (confined to ROOT with `-c`).
    fn open_own(&self, f: &str, problems: &mut Vec<String>) -> Option<Box<dyn Sink>> {
        let mut p = self.options.logdir.join(f);
        if self.options.chroot {
            match confine(&self.options.root, "engine log", &p) {
                Ok(rel) => p = rel,
                Err(e) => {
                    problems
                        .push(e.replace("move it under ROOT", "give -l a directory under ROOT"));
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
    }

    /// The HTTP listener (`engine.http`), bound now (before privileges are dropped).
    fn bind_http(&self, problems: &mut Vec<String>) -> Option<crate::http::HttpListener> {
        match self.config.engine.http.as_str() {
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
        }
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
        let state_dirs = self.make_state_dirs(&mut problems);
        if let (Some(path), Backend::Embedded(db)) = (&self.snapshot, &self.runtime.backend) {
            match db.load(path) {
                Ok(n) => tracing::info!(path = %path.display(), keys = n, "embedded store loaded"),
                Err(e) => problems.push(format!(
                    "engine.store_snapshot: cannot load {}: {e}",
                    path.display()
                )),
            }
        }
        // the HTTP listener first: once an input's socket exists (what clients and tests
        // wait for), /health and /metrics accept connections too (queued until served)
        let http = self.bind_http(&mut problems);
        let mut sources = Vec::new();
        for (spec, inp) in self.sources.iter().zip(&self.config.inputs) {
            match spec.prepare(self.config.engine.max_line_bytes) {
                Ok(p) => sources.push(p),
                Err(e) => problems.push(format!("input '{}' ({}): {e}", inp.tag, inp.uri)),
            }
        }
        // a directory the outputs need is made for them, and said when it is outside LOGDIR
        // (--check warns about it, and refuses it with --strict)
        for w in self.preflight_outputs().warnings {
            tracing::warn!("{w}");
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
        let (own_log, own_stats) = (
            self.open_own(LOG_FILE, &mut problems),
            self.open_own(STATS_FILE, &mut problems),
        );
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
    /// What the running engine needs as the user it now runs as (called after `-p` dropped
    /// privileges): problems that would leave it blind or unable to save its state (see
    /// [`Plan::check_as_runner`]).
    pub fn check_as_runner(&self) -> Result<(), EngineError> {
        let found = self.plan.check_as_runner();
        if found.problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Open(found.problems))
        }
    }

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
