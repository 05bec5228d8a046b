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

/// Run `config` on `sample`; the exit code of the run (3 when a script failed).
pub fn run(mut config: Config, options: Options, sample: &Path) -> Result<u8, EngineError> {
    let sample = std::fs::canonicalize(sample)
        .map_err(|e| EngineError::Open(vec![format!("--sample {}: {e}", sample.display())]))?;
    let scratch = scratch_dir();
    let _ = std::fs::remove_dir_all(&scratch);
    let Some(first) = config.inputs.first().cloned() else {
        return Err(EngineError::Config(vec![format!(
            "{}: --sample needs an input (its filter gets the sample)",
            config.file
        )]));
    };
    config.inputs = vec![dragonfly_config::Input {
        uri: format!("file://{}", sample.display()),
        options: Vec::new(),
        ..first
    }];
    for o in &mut config.outputs {
        o.uri = format!("file://{}.json", o.tag);
        o.options.clear();
    }
    config.store = Store::Embedded;
    config.modules.clear();
    config.engine.dead_letter = "file://dead-letters.json".into();
    config.engine.http = String::new();
    config.engine.workers = 1;
    config.engine.store_snapshot = String::new();
    config.engine.stats_interval = 3600.0;
    let input_tag = config.inputs[0].tag.clone();
    let filter = config.inputs[0].script.clone();
    let options = Options {
        logdir: scratch.clone(),
        exit_on_eof: true,
        chroot: false,
        ..options
    };
    let root = options.root.clone();
    let outputs: Vec<String> = config.outputs.iter().map(|o| o.tag.clone()).collect();
    let plan = Plan::new(config, options)?;
    let control = Control::default();
    let running = plan.prepare()?.start(root, control)?;
    let summary = running.wait();

    let mut out = std::io::stdout().lock();
    let s = &summary.stats;
    let _ = writeln!(
        out,
        "sample: {} lines from {} through input '{input_tag}' (filter {filter})",
        s.operations.input,
        sample.display()
    );
    for tag in &outputs {
        let path = scratch.join(format!("{tag}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let _ = writeln!(out, "== output '{tag}': {} events", lines.len());
        for l in lines.iter().take(SHOWN) {
            let _ = writeln!(out, "{l}");
        }
        if lines.len() > SHOWN {
            let _ = writeln!(
                out,
                "... {} more in {}",
                lines.len() - SHOWN,
                path.display()
            );
        }
    }
    let dead = std::fs::read_to_string(scratch.join("dead-letters.json")).unwrap_or_default();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let _ = writeln!(out, "== script errors: {}", dead.len());
    for d in dead.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "{}: {}: {}\n  event: {}",
            d["script"].as_str().unwrap_or("?"),
            d["kind"].as_str().unwrap_or("error"),
            d["error"].as_str().unwrap_or(""),
            d["event"]
        );
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
    let _ = writeln!(out, "(captured in {})", scratch.display());
    Ok(summary.exit_code())
}

/// Where `--sample` captures (a fresh directory per run).
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("dragonfly-mle-sample-{}", std::process::id()))
}
