//! `dragonfly-mle`: the command line of the Dragonfly Machine Learning Engine.

/// mimalloc serves Rust and (through mlua's allocator hook) LuaJIT: the engine allocates and
/// frees many small tables and strings per event, which glibc's malloc handles slowly.
#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;

mod alloc;
mod check;
mod client;
mod manual;
mod model_cmd;
#[cfg(feature = "parquet")]
mod parquet_cmd;
mod privileges;
mod progress;
mod sample;
mod tap_cmd;
mod test_cmd;
mod top_cmd;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Parser;
use dragonfly_engine::{exit, Control, EngineError, Options, Plan};

/// stderr through a writer thread with a bounded, lossy queue: a closed, full or stalled
/// stderr (a pipe nobody reads) never blocks or stops the engine; its log file in LOGDIR is
/// the record.
static STDERR: std::sync::OnceLock<tracing_appender::non_blocking::NonBlocking> =
    std::sync::OnceLock::new();

/// `--log-format json`: what [`say!`] prints is one JSON object per line too.
static JSON_LOG: AtomicBool = AtomicBool::new(false);

/// Print a line to stderr, best effort (see [`STDERR`]); with `--log-format json`, each line
/// as `{"timestamp":..,"level":"INFO","fields":{"message":..}}` like the log's own lines.
macro_rules! say {
    ($($arg:tt)*) => {{
        let text = format!($($arg)*);
        let text = if JSON_LOG.load(Ordering::Relaxed) {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            text.lines()
                .map(|l| {
                    serde_json::json!({"timestamp": now, "level": "INFO", "fields": {"message": l}})
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        match STDERR.get() {
            Some(w) => {
                let mut w = w.clone();
                let _ = writeln!(w, "{text}");
            }
            None => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }};
}

/// A panic happened somewhere (its hook logged it); the run ends with exit::INTERNAL.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// One line per panic (thread, message, place); the backtrace only with -v.
fn install_panic_hook(verbose: bool) {
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("?");
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!("internal error: thread '{name}' panicked{place}: {msg}; stopping");
        if verbose {
            say!(
                "stack backtrace:\n{}",
                std::backtrace::Backtrace::force_capture()
            );
        }
    }));
}

/// Scriptable streaming engine for Suricata EVE events: Lua filters and analyzers, state in
/// Redis or an embedded store, results to files and sockets.
#[derive(Parser, Debug)]
#[command(name = "dragonfly-mle", version, about)]
struct Cli {
    /// Root directory holding config/config.lua, filter/ and analyzer/ (the engine chdirs here).
    #[arg(
        short = 'r',
        long = "root",
        value_name = "ROOT",
        default_value = "/usr/local/dragonfly-mle"
    )]
    root: PathBuf,
    /// Directory for relative file:// outputs and the engine's own logs (created if missing).
    #[arg(
        short = 'l',
        long = "logdir",
        value_name = "LOGDIR",
        default_value = "/var/log/dragonfly-mle"
    )]
    logdir: PathBuf,
    /// Verbose logging on stderr (debug level: connections, reloads, a rate line every few seconds).
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// How stderr's log lines look: `text` (colours only on a terminal, never with NO_COLOR) or `json` (one object per line, for machines).
    #[arg(long = "log-format", value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Drop privileges to user `nobody` after start-up (files and sockets are opened first).
    #[arg(short = 'p', long = "drop-privileges")]
    drop_privileges: bool,
    /// chroot() into ROOT after start-up (files and sockets are opened first).
    #[arg(short = 'c', long = "chroot")]
    chroot: bool,
    /// Check everything a start would that changes nothing, as the user the engine runs as (with -p, after dropping to nobody): config.lua, inputs, outputs, state and log directories, the HTTP address, every script and setup(); report every problem at once; run nothing.
    #[arg(long)]
    check: bool,
    /// Treat warnings as errors: config.lua's (unknown keys, ...), and with --check an output directory outside LOGDIR the start would create.
    #[arg(long)]
    strict: bool,
    /// With --check: run the pipeline on the events in FILE (through the first input's filter), outputs captured, a fresh embedded store; print what each output got and every script error.
    #[arg(long, value_name = "FILE", requires = "check")]
    sample: Option<PathBuf>,
    /// With --sample: the input whose filter gets the sample (default: the first input).
    #[arg(long, value_name = "TAG", requires = "sample")]
    sample_input: Option<String>,
    /// With --sample: counts only (events per output, script errors, unknown tags), no event shown.
    #[arg(short = 'q', long, requires = "sample")]
    quiet: bool,
    /// When every input is finite (file://, zfile://): drain, flush and exit once all are read (0; 3 when a script failed, 5 when events were dropped: see EXIT STATUS).
    #[arg(long = "exit-on-eof")]
    exit_on_eof: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Trained models: load a scikit-learn export into the store config.lua names.
    Model {
        #[command(subcommand)]
        action: model_cmd::ModelAction,
    },
    /// Parquet outputs: `dragonfly-mle parquet compact DIR` merges small files.
    #[cfg(feature = "parquet")]
    Parquet {
        #[command(subcommand)]
        action: parquet_cmd::ParquetAction,
    },
    /// A retro-hunt: run ROOT's pipeline over an archive a parquet:// output wrote, in event time, then exit (as --exit-on-eof): its input reads parquet://ARCHIVE instead of what config.lua names, its filter, analyzers and outputs as they are.
    #[cfg(feature = "parquet")]
    Hunt(HuntArgs),
    /// Run the test cases under ROOT/tests/ (docs/testing.md): each a run of the pipeline on the events it gives, checked against what each output must (not) get; exit 0 when all pass, 1 otherwise.
    Test {
        /// Only the cases whose "FILE: NAME" contains this text.
        filter: Option<String>,
        /// text (a line per case, the failures under it), json (one report) or junit (JUnit XML).
        #[arg(long, value_enum, default_value = "text")]
        format: test_cmd::Format,
    },
    /// Watch sampled events pass a stage of the running engine (through its HTTP listener, engine.http): as they leave an input, enter an analyzer or reach an output; rate-limited, escaped.
    Tap(tap_cmd::TapArgs),
    /// The live page's numbers in a terminal (through the engine's HTTP listener, engine.http): each node's rate, total and errors, every edge events took, uptime, store and Lua memory; refreshed every --interval seconds.
    Top(top_cmd::TopArgs),
    /// Print the manual page dragonfly-mle(1) (roff): `dragonfly-mle man > dragonfly-mle.1`.
    Man,
    /// Print shell completions: `dragonfly-mle completions bash > /etc/bash_completion.d/dragonfly-mle`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// `dragonfly-mle hunt`'s arguments.
#[cfg(feature = "parquet")]
#[derive(clap::Args, Debug)]
struct HuntArgs {
    /// The archive: the directory a parquet:// output writes.
    archive: PathBuf,
    /// Earliest event time read: a timestamp (2025-03-10T09:00:00+0000, RFC 3339) or a date (its midnight, UTC).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Events read are before this time (same forms as --from).
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Comma-separated event types read (dns,flow); all if not given.
    #[arg(long, value_name = "TYPES")]
    event_types: Option<String>,
    /// The input whose filter gets the archive's events (needed when config.lua has several; the others are left out).
    #[arg(long, value_name = "TAG")]
    input: Option<String>,
}

/// `hunt`: config.lua's input `args.input` (or its only one) reads the archive with the
/// time range and types given; the other inputs are left out. A problem names the inputs.
#[cfg(feature = "parquet")]
fn hunt_inputs(config: &mut dragonfly_config::Config, args: &HuntArgs) -> Result<(), String> {
    let tags = || {
        config
            .inputs
            .iter()
            .map(|i| i.tag.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let i = match &args.input {
        Some(tag) => config
            .inputs
            .iter()
            .position(|i| &i.tag == tag)
            .ok_or_else(|| format!("hunt --input {tag}: config.lua has no such input (inputs: {})", tags()))?,
        None if config.inputs.len() == 1 => 0,
        None => {
            return Err(format!(
                "hunt: config.lua has {} inputs ({}): name the one whose filter gets the archive with --input TAG",
                config.inputs.len(),
                tags()
            ))
        }
    };
    let mut input = config.inputs.swap_remove(i);
    input.uri = format!("parquet://{}", args.archive.display());
    input.options = [
        ("event_types", &args.event_types),
        ("from", &args.from),
        ("to", &args.to),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
    .collect();
    config.inputs = vec![input];
    Ok(())
}

fn main() -> ExitCode {
    alloc::tame_huge_pages();
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Man) => {
            return match manual::man(<Cli as clap::CommandFactory>::command()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            };
        }
        Some(Command::Completions { shell }) => {
            manual::completions(<Cli as clap::CommandFactory>::command(), *shell);
            return ExitCode::SUCCESS;
        }
        #[cfg(feature = "parquet")]
        Some(Command::Parquet { action }) => return parquet_cmd::run(action),
        _ => {}
    }
    // the test command's runs log only what goes wrong (its report is on stdout)
    let quiet = matches!(cli.command, Some(Command::Test { .. }));
    let filter = match (cli.verbose, quiet) {
        (true, _) => "debug",
        (false, true) => "warn",
        (false, false) => "info",
    };
    let (stderr, _flush_at_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(16 * 1024)
        .thread_name("stderr")
        .finish(std::io::stderr());
    let _ = STDERR.set(stderr.clone());
    dragonfly_engine::set_echo(|line| say!("{line}"));
    dragonfly_io::set_release_memory(alloc::release);
    let env_filter = tracing_subscriber::EnvFilter::try_from_env("DRAGONFLY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    // colours only for a person at a terminal (https://no-color.org: any non-empty NO_COLOR)
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_writer(stderr)
        .with_env_filter(env_filter)
        .with_target(false)
        // a closed or full stderr must not stop the engine: tracing's own complaint about a
        // failed write would itself go to stderr (and panic)
        .log_internal_errors(false);
    if cli.log_format == "json" {
        JSON_LOG.store(true, Ordering::Relaxed);
        builder.json().with_ansi(false).init();
    } else {
        builder.with_ansi(colour).init();
    }
    install_panic_hook(cli.verbose);
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => report(&e),
    };
    if PANICKED.load(Ordering::SeqCst) {
        return ExitCode::from(exit::INTERNAL);
    }
    ExitCode::from(code)
}

/// Why a run could not go on: the engine's typed problems, config.lua's, or the CLI's own
/// (a root that does not exist, a failed chroot) as anyhow errors.
enum Failure {
    Engine(EngineError),
    Cli(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Cli(e)
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

/// The one place problems are printed: one line each, `dragonfly-mle: <kind>: <problem>`;
/// returns the exit code (README).
fn report(f: &Failure) -> u8 {
    match f {
        Failure::Engine(e) => {
            for p in e.problems() {
                say!("dragonfly-mle: {}: {p}", e.category());
            }
            e.exit_code()
        }
        Failure::Cli(e) => {
            say!("dragonfly-mle: error: {e:#}");
            exit::START_UP
        }
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let root = std::fs::canonicalize(&cli.root)
        .with_context(|| format!("root directory {}", cli.root.display()))?;
    if let Some(Command::Model { action }) = &cli.command {
        return Ok(model_cmd::run(&root, action).map(|c| {
            if c == ExitCode::SUCCESS {
                0
            } else {
                1
            }
        })?);
    }
    let logdir = absolute(&cli.logdir)?;
    let sample = cli.sample.as_deref().map(absolute).transpose()?;
    #[cfg(feature = "parquet")]
    let hunt = match &cli.command {
        Some(Command::Hunt(args)) => Some(HuntArgs {
            archive: absolute(&args.archive)?,
            from: args.from.clone(),
            to: args.to.clone(),
            event_types: args.event_types.clone(),
            input: args.input.clone(),
        }),
        _ => None,
    };
    std::env::set_current_dir(&root).with_context(|| format!("chdir {}", root.display()))?;

    #[cfg(feature = "parquet")]
    let exit_on_eof = cli.exit_on_eof || hunt.is_some();
    #[cfg(not(feature = "parquet"))]
    let exit_on_eof = cli.exit_on_eof;
    let options = Options {
        root: root.clone(),
        logdir: logdir.clone(),
        exit_on_eof,
        chroot: cli.chroot,
    };
    // every problem at once: config.lua's errors, its warnings (errors with --strict), and
    // what the engine finds in the parts that did parse (schemes, options, scripts)
    if let Some(Command::Tap(args)) = &cli.command {
        return Ok(tap_cmd::run(&root, args));
    }
    if let Some(Command::Top(args)) = &cli.command {
        return Ok(top_cmd::run(&root, args));
    }
    if let Some(Command::Test { filter, format }) = &cli.command {
        return Ok(test_cmd::run(&root, options, filter.as_deref(), *format));
    }
    let (mut config, errors) = dragonfly_config::load_all(&root);
    let mut problems: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    #[cfg(feature = "parquet")]
    if let (Some(args), Some(c)) = (&hunt, config.as_mut()) {
        if let Err(e) = hunt_inputs(c, args) {
            problems.push(e);
        }
    }
    for w in config.iter().flat_map(|c| &c.warnings) {
        if cli.strict {
            problems.push(format!("{w} (an error with --strict)"));
        } else {
            tracing::warn!("{w}");
        }
    }
    if cli.check && sample.is_none() {
        let summary = config.as_ref().map(|c| {
            format!(
                "{}: OK ({} inputs, {} analyzers, {} outputs",
                root.join(&c.file).display(),
                c.inputs.len(),
                c.analyzers.len(),
                c.outputs.len()
            )
        });
        let checked = check::run(config, problems, options, cli.drop_privileges, cli.strict)?;
        for w in &checked.warnings {
            say!("dragonfly-mle: warning: {w}");
        }
        for (kind, list) in [
            ("config error", &checked.config),
            ("start-up error", &checked.start),
            ("script error", &checked.scripts),
        ] {
            for p in list {
                say!("dragonfly-mle: {kind}: {p}");
            }
        }
        let code = checked.exit_code();
        if let (exit::OK, Some(summary)) = (code, summary) {
            let warned = match checked.warnings.len() {
                0 => String::new(),
                n => format!("; {n} warnings"),
            };
            let _ = writeln!(std::io::stdout(), "{summary}{warned})");
        }
        return Ok(code);
    }
    let plan = match config {
        Some(config) if problems.is_empty() => {
            if let Some(sample) = &sample {
                return Ok(sample::run(
                    config,
                    options,
                    sample,
                    cli.sample_input.as_deref(),
                    cli.quiet,
                )?);
            }
            Plan::new(config, options)?
        }
        Some(config) => {
            if let Err(e) = Plan::new(config, options) {
                problems.extend(e.problems());
            }
            return Err(Failure::Engine(EngineError::Config(problems)));
        }
        None => return Err(Failure::Engine(EngineError::Config(problems))),
    };

    let control = Control::default();
    control.drain_timeout_ms.store(
        (plan.config().engine.drain_timeout_s * 1000.0) as u64,
        Ordering::SeqCst,
    );
    privileges::handle_signals(&control)?;

    // a progress line for a run over files, at a terminal
    let progress_wanted = exit_on_eof && plan.all_inputs_finite() && cli.log_format == "text";
    let total_bytes = progress::total_bytes(
        &plan
            .config()
            .inputs
            .iter()
            .map(|i| i.uri.as_str())
            .collect::<Vec<_>>(),
    );
    let prepared = plan.prepare()?;
    let nobody = if cli.drop_privileges {
        Some(privileges::nobody()?)
    } else {
        None
    };
    if let Some(user) = &nobody {
        prepared.hand_over(user.uid.as_raw(), user.gid.as_raw())?;
    }
    let mut runtime_root = root.clone();
    if cli.chroot {
        privileges::chroot(&root)?;
        runtime_root = PathBuf::from("/");
    }
    if let Some(user) = &nobody {
        privileges::drop_to(user)?;
        // what --check -p checks as that user, the start refuses too
        prepared.check_as_runner()?;
    }

    let running = prepared.start(runtime_root, control.clone())?;
    tracing::info!(root = %root.display(), logdir = %logdir.display(), "dragonfly-mle running");
    let progress = progress_wanted
        .then(|| progress::Progress::start(running.stats().clone(), total_bytes))
        .flatten();
    let summary = running.wait();
    if let Some(p) = progress {
        p.finish();
    }
    let ops = summary.stats.operations;
    say!(
        "dragonfly-mle: done: {} input events, {} analyzer calls, {} output events, {} errors",
        ops.input,
        ops.analyzer,
        ops.output,
        summary.stats.errors
    );
    for (tag, dest) in &summary.outputs {
        say!("  output '{tag}': {dest}");
    }
    say!(
        "  engine log: {}\n  stats: {}",
        summary.logdir.join(dragonfly_engine::LOG_FILE).display(),
        summary.logdir.join(dragonfly_engine::STATS_FILE).display()
    );
    if summary.script_failures > 0 {
        say!(
            "  {} events failed in a script; {} dead letters written",
            summary.script_failures,
            summary.dead_letters
        );
    }
    if summary.unknown_tag_events > 0 {
        say!(
            "  {} events were sent to tags config.lua does not define, and dropped: {}",
            summary.unknown_tag_events,
            summary.stats.unknown_tags_text()
        );
    }
    if summary.output_drops > 0 {
        say!(
            "  {} events were dropped by outputs that could not write them (see each output's \"dropped\" in the stats and the engine log)",
            summary.output_drops
        );
    }
    if let Some(why) = &summary.abnormal {
        say!("dragonfly-mle: stopped abnormally: {why}");
    }
    Ok(summary.exit_code())
}
