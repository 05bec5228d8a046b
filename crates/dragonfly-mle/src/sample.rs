//! `--check --sample FILE`: the whole pipeline on the events in FILE, as a way to test
//! scripts. FILE's lines go through the first input's filter and on through the analyzers as
//! configured; every output is captured in a scratch directory instead of going where
//! config.lua says, the store is a fresh embedded one (a real Redis is never touched), and the
//! HTTP listener, snapshots and extra workers are off. What each output received, every
//! script error (with its event) and the counts per script are printed on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

use dragonfly_config::{Config, Store};
use dragonfly_engine::{Control, EngineError, Options, Plan};

/// Lines of each output shown (the rest stay in its capture file).
const SHOWN: usize = 20;

/// What a captured run left: its summary and, per output tag, the lines it received; the
/// dead letters (script failures with their events).
pub struct Captured {
    pub summary: dragonfly_engine::Summary,
    pub outputs: Vec<(String, Vec<String>)>,
    pub dead: Vec<serde_json::Value>,
    /// The embedded store as the run left it (its exit snapshot, loaded back).
    pub store: dragonfly_store::embedded::EmbeddedStore,
}

/// The events a captured run gets, and where they go in.
pub struct Feed<'a> {
    /// A file of lines.
    pub path: &'a Path,
    /// It is gzip.
    pub zipped: bool,
    /// The input whose filter gets them (None: the first).
    pub input: Option<&'a str>,
    /// Straight to this analyzer instead (the input's filter replaced by one that hands every
    /// event to it).
    pub analyzer: Option<&'a str>,
}

/// Run `config` with `input`'s lines (gzip when `zipped`) going through input `input_tag` (the first input when
/// None) and every output captured in `scratch` (made fresh, removed after): a fresh embedded
/// store, no HTTP listener, no snapshots, one worker.
pub fn capture(
    mut config: Config,
    options: Options,
    feed: Feed,
    scratch: &Path,
) -> Result<Captured, EngineError> {
    let (input, zipped, input_tag) = (feed.path, feed.zipped, feed.input);
    let _ = std::fs::remove_dir_all(scratch);
    let chosen = match input_tag {
        None => config.inputs.first().cloned(),
        Some(t) => config.inputs.iter().find(|i| i.tag == t).cloned(),
    };
    let Some(first) = chosen else {
        return Err(EngineError::Config(vec![match input_tag {
            None => format!(
                "{}: needs an input (its filter gets the events)",
                config.file
            ),
            Some(t) => format!("{}: no input '{t}'", config.file),
        }]));
    };
    let mut first = dragonfly_config::Input {
        uri: format!(
            "{}://{}",
            if zipped { "zfile" } else { "file" },
            input.display()
        ),
        options: Vec::new(),
        ..first
    };
    if let Some(tag) = feed.analyzer {
        first = straight_to(&config, first, tag, scratch)?;
    }
    config.inputs = vec![first];
    for o in &mut config.outputs {
        o.uri = format!("file://{}.json", o.tag);
        o.options.clear();
    }
    config.store = Store::Embedded;
    config.modules.clear();
    config.engine.dead_letter = "file://dead-letters.json".into();
    config.engine.http = String::new();
    config.engine.workers = 1;
    // the store's exit snapshot, read back for the caller (and removed with the scratch)
    let snapshot = scratch.join("store.snapshot");
    config.engine.store_snapshot = snapshot.display().to_string();
    config.engine.store_snapshot_interval = 1e9;
    config.engine.stats_interval = 3600.0;
    let options = Options {
        logdir: scratch.to_path_buf(),
        exit_on_eof: true,
        chroot: false,
        ..options
    };
    let root = options.root.clone();
    let tags: Vec<String> = config.outputs.iter().map(|o| o.tag.clone()).collect();
    let run = || -> Result<Captured, EngineError> {
        let plan = Plan::new(config, options)?;
        let running = plan.prepare()?.start(root, Control::default())?;
        let summary = running.wait();
        let outputs = tags
            .iter()
            .map(|tag| {
                let text = std::fs::read_to_string(scratch.join(format!("{tag}.json")))
                    .unwrap_or_default();
                (tag.clone(), text.lines().map(str::to_string).collect())
            })
            .collect();
        let dead = std::fs::read_to_string(scratch.join("dead-letters.json"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let store = dragonfly_store::embedded::EmbeddedStore::new();
        store.load(&snapshot).map_err(|e| {
            EngineError::Open(vec![format!(
                "reading back the store's snapshot {}: {e}",
                snapshot.display()
            )])
        })?;
        Ok(Captured {
            summary,
            outputs,
            dead,
            store,
        })
    };
    let r = run();
    let _ = std::fs::remove_dir_all(scratch);
    r
}

/// `input` with its filter replaced by one (written in `scratch`) that hands every event to
/// analyzer `tag`.
fn straight_to(
    config: &Config,
    input: dragonfly_config::Input,
    tag: &str,
    scratch: &Path,
) -> Result<dragonfly_config::Input, EngineError> {
    if !config.analyzers.iter().any(|a| a.tag == tag) || tag.contains("]==]") {
        return Err(EngineError::Config(vec![format!(
            "{}: no analyzer '{tag}'",
            config.file
        )]));
    }
    let path = scratch.join("straight-to-analyzer.lua");
    let src = format!(
        "function setup() end\nfunction loop(e) dragonfly.analyze_event([==[{tag}]==], e) end\n"
    );
    std::fs::create_dir_all(scratch)
        .and_then(|()| std::fs::write(&path, src))
        .map_err(|e| EngineError::Open(vec![format!("{}: {e}", path.display())]))?;
    Ok(dragonfly_config::Input {
        script: format!("(straight to analyzer '{tag}')"),
        script_path: path,
        default_analyzer: tag.to_string(),
        ..input
    })
}

/// Run `config` on `sample`; the exit code of the run (3 when a script failed).
///
/// `input`: the input whose filter gets the lines (None: the first). `quiet`: counts only
/// (events per output, errors, unknown tags), no event shown.
pub fn run(
    config: Config,
    options: Options,
    sample: &Path,
    input: Option<&str>,
    quiet: bool,
) -> Result<u8, EngineError> {
    let sample = std::fs::canonicalize(sample)
        .map_err(|e| EngineError::Open(vec![format!("--sample {}: {e}", sample.display())]))?;
    let chosen = config
        .inputs
        .iter()
        .find(|i| input.is_none_or(|t| i.tag == t));
    let input_tag = chosen.map(|i| i.tag.clone());
    let filter = chosen.map(|i| i.script.clone());
    let captured = capture(
        config,
        options,
        Feed {
            path: &sample,
            zipped: false,
            input,
            analyzer: None,
        },
        &scratch_dir(),
    )
    .map_err(|e| match e {
        EngineError::Config(p) => EngineError::Config(
            p.into_iter()
                .map(|p| {
                    p.replace("needs an input", "--sample needs an input")
                        .replace("no input", "--sample-input: no input")
                })
                .collect(),
        ),
        e => e,
    })?;
    let (input_tag, filter) = (input_tag.unwrap_or_default(), filter.unwrap_or_default());
    let summary = captured.summary;
    let mut out = std::io::stdout().lock();
    let s = &summary.stats;
    let _ = writeln!(
        out,
        "sample: {} lines from {} through input '{input_tag}' (filter {filter})",
        s.operations.input,
        sample.display()
    );
    let shown = if quiet { 0 } else { SHOWN };
    for (tag, lines) in &captured.outputs {
        let _ = writeln!(out, "== output '{tag}': {} events", lines.len());
        if quiet {
            continue;
        }
        for l in lines.iter().take(SHOWN) {
            let _ = writeln!(out, "{l}");
        }
        if lines.len() > SHOWN {
            let _ = writeln!(out, "... {} more not shown", lines.len() - SHOWN);
        }
    }
    let dead = captured.dead;
    let _ = writeln!(out, "== script errors: {}", dead.len());
    for d in dead.iter().take(shown) {
        let _ = writeln!(
            out,
            "{}: {}: {}\n  event: {}",
            d["script"].as_str().unwrap_or("?"),
            d["kind"].as_str().unwrap_or("error"),
            d["error"].as_str().unwrap_or(""),
            d["event"]
        );
    }
    if dead.len() > shown {
        let _ = writeln!(out, "... {} more errors not shown", dead.len() - shown);
    }
    let unknown = s.unknown_tags.len();
    let _ = writeln!(out, "== unknown tags: {unknown}");
    if unknown > 0 {
        let _ = writeln!(
            out,
            "events sent to tags config.lua does not define (dropped): {}",
            s.unknown_tags_text()
        );
    }
    if quiet {
        return Ok(summary.exit_code());
    }
    let _ = writeln!(out, "== per script");
    for (tag, v) in &s.inputs {
        let _ = writeln!(
            out,
            "filter of '{tag}': {} events, {} errors, {} not JSON",
            v.events, v.lua_errors, v.malformed
        );
    }
    for (tag, v) in &s.analyzers {
        let _ = writeln!(
            out,
            "analyzer '{tag}': {} events, {} errors",
            v.events, v.lua_errors
        );
    }
    Ok(summary.exit_code())
}

/// Where `--sample` captures while it runs (a fresh directory, removed at the end).
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("dragonfly-mle-sample-{}", std::process::id()))
}
