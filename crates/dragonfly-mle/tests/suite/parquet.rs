//! `parquet://DIR` end to end: the real binary writes, pyarrow and DuckDB (from PyPI, see
//! scripts/test) read (tests/parquet/check.py).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(300);

fn check(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parquet/check.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "check.py {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A pass-through root reading `input` into `parquet://pq` with `options`.
fn root(input: &str, options: &str) -> Root {
    let r = Root::passthrough(input);
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        r#"uri="file://out.json""#,
        &format!(r#"uri="parquet://pq", options = {{ {options} }}"#),
    ));
    r
}

fn pq(r: &Root) -> PathBuf {
    r.logdir.join("pq")
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet")
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            {
                v.push(p);
            }
        }
    }
    v
}

/// The whole corpus: every row equals its event (strings, nested fields, flow_id, floats,
/// nulls, empty arrays), DuckDB's counts per event_type equal the input's, the manifest
/// agrees with the files and a time range through it finds every event in the range.
#[test]
fn the_corpus_reads_back_exactly_in_pyarrow_and_duckdb() {
    let corpus = corpus();
    let r = root(&format!("zfile://{}", corpus.display()), "");
    let out = r.run_to_eof(LIMIT);
    assert_ok(&out);
    let stats = r.final_stats();
    assert_eq!(stats["outputs"]["out"]["events"], 63_935);
    assert_eq!(stats["outputs"]["out"]["dropped"], 0);
    let got = check(&["full", pq(&r).to_str().unwrap(), corpus.to_str().unwrap()]);
    eprintln!("corpus as parquet: {got}");
    assert_eq!(got["rows"], 63_935);
    let json_bytes = 39_659_283f64;
    eprintln!(
        "size: {} bytes of Parquet, {:.3} of the JSON lines",
        got["bytes"],
        got["bytes"].as_f64().unwrap() / json_bytes
    );
    // one partition per event type and date: 11 event types on one day
    assert_eq!(got["files"], 11);
    // again in small row groups: each group's buffers are taken back and filled again
    // (schemas still growing between groups), every value still exact
    let r = root(
        &format!("zfile://{}", corpus.display()),
        "row_group_rows = 1500",
    );
    assert_ok(&r.run_to_eof(LIMIT));
    let got = check(&["full", pq(&r).to_str().unwrap(), corpus.to_str().unwrap()]);
    assert_eq!(got["rows"], 63_935);
    // (more files than 11: a field first seen in a later group starts a file with the
    // merged schema)
    assert!(got["files"].as_u64().unwrap() > 11, "{got}");
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The offset a `tail://` checkpoint file records (0 before there is one).
fn checkpoint_offset(pos: &Path) -> u64 {
    std::fs::read_to_string(pos)
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(2)
                .map(|x| x.parse::<u64>().unwrap())
        })
        .unwrap_or(0)
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Write `lines` to ROOT/in.json, run to its end (successfully), return the output directory.
fn run_lines(r: &Root, lines: &[String]) -> PathBuf {
    write_lines(&r.path().join("in.json"), lines);
    let out = r.run_to_eof(LIMIT);
    assert_ok(&out);
    pq(r)
}

/// check.py full on the output directory against ROOT/in.json.
fn check_full(r: &Root) -> serde_json::Value {
    let input = r.path().join("in.json");
    check(&["full", pq(r).to_str().unwrap(), input.to_str().unwrap()])
}

/// Schema drift: a new field and a widening type start new files with the merged schema; a
/// type that cannot widen makes that column JSON text; every value reads back exactly.
#[test]
fn schema_drift_starts_new_files_and_values_stay_exact() {
    let ev = |i: usize, extra: &str| {
        format!(
            r#"{{"timestamp":"2025-03-10T09:00:00.{i:06}+0000","event_type":"dns","seq":{i}{extra}}}"#
        )
    };
    let mut lines = Vec::new();
    for i in 0..10 {
        lines.push(ev(i, r#","x":1,"o":{"a":"s"},"l":[]"#));
    }
    for i in 10..20 {
        lines.push(ev(i, r#","x":1.5,"new":true,"l":[1]"#)); // widens, new field
    }
    for i in 20..30 {
        lines.push(ev(i, r#","x":"text","o":{"a":{"deep":[null,{}]}}"#)); // conflicts
    }
    for i in 30..40 {
        lines.push(ev(i, r#","x":2,"o":{"a":"back"},"e":{}"#));
    }
    let r = root("file://in.json", r#"row_group_rows = 5"#);
    write_lines(&r.path().join("in.json"), &lines);
    let out = r.run_to_eof(LIMIT);
    assert_ok(&out);
    let got = check_full(&r);
    assert_eq!(got["rows"], 40);
    // the first file had x Int64; a new field and x Float64 -> a second; x and o.a as text
    assert!(got["files"].as_u64().unwrap() >= 3, "{got}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("JSON text"), "{log}");
}

/// An at-least-once input commits only what is in closed files: a tail checkpoint does not
/// move while rows sit in an open file, a SIGKILL then loses nothing (the open file's rows are
/// read again), and every Parquet file left behind is readable.
#[test]
fn receipts_wait_for_closed_files_and_sigkill_leaves_only_readable_files() {
    let r = Root::passthrough("tail://eve.json<");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    let cfg_for = |opts: &str| {
        cfg.replace(
            r#"uri="tail://eve.json<""#,
            r#"uri="tail://eve.json<", options = { checkpoint = "eve.pos" }"#,
        )
        .replace(
            r#"uri="file://out.json""#,
            &format!(r#"uri="parquet://pq", options = {{ {opts} }}"#),
        )
    };
    // 1000 events: 300-row files close, the last 100 rows stay in an open file
    r.config(&cfg_for(
        "file_rows = 300, row_group_rows = 100, max_age_s = 3600",
    ));
    let lines = events(1000);
    let eve = r.path().join("eve.json");
    write_lines(&eve, &lines);
    let size = std::fs::metadata(&eve).unwrap().len();
    let mut e = spawn_logged(&r);
    let dir = pq(&r);
    wait_for(LIMIT, "three closed files", || {
        parquet_files(&dir).len() >= 3
    });
    wait_for(LIMIT, "the manifest lists them", || {
        std::fs::read_dir(dir.join("_manifest"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .map(|m| m.matches("\"path\"").count())
                    .sum::<usize>()
                    >= 3
            })
            .unwrap_or(false)
    });
    let pos = r.path().join("eve.pos");
    let offset = || checkpoint_offset(&pos);
    // lines before an offset
    let lines_before = |off: u64| {
        let text = std::fs::read(&eve).unwrap();
        text[..off as usize].iter().filter(|&&b| b == b'\n').count() as u64
    };
    // the checkpoint is written every 250 ms once receipts come back: for six of those
    // intervals it never reaches the end (an output that settled on flush moves it there at
    // once), and whatever it passed is in closed files
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        assert!(
            offset() < size,
            "the checkpoint passed rows still in an open file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill9(&mut e);
    let committed = lines_before(offset());
    let after_kill = check(&["readable", dir.to_str().unwrap()]);
    assert_eq!(after_kill["rows"], 900, "{after_kill}");
    let closed: std::collections::HashSet<u64> = after_kill["seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        (0..committed).all(|s| closed.contains(&s)),
        "the checkpoint passed line {committed}, not every one of those is in a closed file"
    );
    assert!(
        after_kill["hidden"].as_u64().unwrap() >= 1,
        "the open file's temporary: {after_kill}"
    );

    // restarted with files that close by age: everything after the checkpoint again, nothing
    // lost; the temporary file is gone
    r.config(&cfg_for("max_age_s = 0.5"));
    let e = spawn_logged(&r);
    wait_for(LIMIT, "the checkpoint reaches the end", || offset() == size);
    let (s, err) = stop(e, Duration::from_secs(60));
    assert!(s.success(), "{err}");
    let got = check(&["readable", dir.to_str().unwrap()]);
    assert_eq!(got["distinct_seqs"], 1000, "{got}");
    assert_eq!(
        got["rows"],
        900 + 1000 - committed,
        "900 kept + what followed the checkpoint: {got}"
    );
    assert!(
        stderr_log(&r).contains("left unfinished"),
        "{}",
        stderr_log(&r)
    );
}

/// `dragonfly-mle parquet compact`: small files of a closed partition become one, rows
/// unchanged, manifest in line; a compaction cut short (old files still there) is finished
/// by the next run.
#[test]
fn compaction_merges_small_files_and_finishes_after_a_crash() {
    let r = root("file://in.json", "file_rows = 50, row_group_rows = 25");
    let dir = run_lines(&r, &events(1000));
    let before = parquet_files(&dir);
    assert_eq!(before.len(), 20);
    let keep = tempfile::tempdir().unwrap();
    let saved = keep.path().join("one.parquet");
    std::fs::copy(&before[0], &saved).unwrap();

    let compact = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["parquet", "compact"])
            .arg(&dir)
            .args(["--min-age-s", "0"])
            .args(extra)
            .output()
            .unwrap();
        assert_ok(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = compact(&["--dry-run"]);
    assert!(said.contains("would merge 20 files into 1"), "{said}");
    assert_eq!(parquet_files(&dir).len(), 20);
    let said = compact(&[]);
    assert!(
        said.contains("merged 20 files into 1 (1000 rows)"),
        "{said}"
    );
    assert_eq!(parquet_files(&dir).len(), 1);
    let got = check_full(&r);
    assert_eq!(got["rows"], 1000);

    // as if the compaction had died before removing an old file: the next run removes it
    std::fs::copy(&saved, &before[0]).unwrap();
    compact(&[]);
    assert!(!before[0].exists(), "the merged-away file is back");
    let got = check_full(&r);
    assert_eq!(got["rows"], 1000);
}

/// Hostile partition values stay inside DIR; a planted symbolic link is refused with a
/// message naming it (its rows counted as dropped) while other partitions are written; a
/// second engine on the same directory is refused.
#[test]
fn hostile_partitions_symlinks_and_a_second_writer_are_refused() {
    let r = root("file://in.json", r#"max_age_s = 0.2"#);
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = pq(&r);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.join("event_type=flow")).unwrap();
    let lines = vec![
        r#"{"timestamp":"2025-03-10T09:00:00.000000+0000","event_type":"../../../escape","seq":1}"#
            .to_string(),
        r#"{"timestamp":"../../x","event_type":"dns","seq":2}"#.to_string(),
        r#"{"timestamp":"2025-03-10T09:00:00.000000+0000","event_type":"flow","seq":3}"#
            .to_string(),
        r#"{"timestamp":"2025-03-10T09:00:00.000000+0000","seq":4}"#.to_string(),
    ];
    write_lines(&r.path().join("in.json"), &lines);

    // a second engine holding the directory first
    let r2 = root("tail://never.json", "");
    let cfg2 = std::fs::read_to_string(r2.path().join("config/config.lua")).unwrap();
    r2.config(&cfg2.replace("parquet://pq", &format!("parquet://{}", dir.display())));
    let holder = spawn_logged(&r2);
    // the manifest is written (first time) once the lock is taken
    wait_for(LIMIT, "the first engine holds the directory", || {
        dir.join("_manifest").is_dir()
    });
    let out = r.run_to_eof(LIMIT);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another engine is writing Parquet files here"),
        "{err}"
    );
    let (_s, _) = stop(holder, Duration::from_secs(30));

    let out = r.run_to_eof(LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    // a row dropped is never a clean exit
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("event_type=flow: is not a directory"), "{err}");
    assert_eq!(r.final_stats()["outputs"]["out"]["dropped"], 1);
    assert!(std::fs::read_dir(elsewhere.path())
        .unwrap()
        .next()
        .is_none());
    let mut names: Vec<String> = parquet_files(&dir)
        .iter()
        .map(|p| {
            p.strip_prefix(&dir)
                .unwrap()
                .parent()
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "event_type=%2E.%2F..%2F..%2Fescape/date=2025-03-10",
            "event_type=__HIVE_DEFAULT_PARTITION__/date=2025-03-10",
            "event_type=dns/date=__HIVE_DEFAULT_PARTITION__",
        ]
    );
    let got = check(&["readable", dir.to_str().unwrap()]);
    assert_eq!(got["rows"], 3);
}

/// examples/triage keeps its findings and ranked alerts in `parquet://archive` too: the
/// archive holds exactly what findings.json and alerts.json hold, and the README's DuckDB
/// recipe runs as written (paths moved to this run's log directory).
#[test]
fn the_triage_archive_holds_findings_and_alerts_and_the_readme_recipe_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/triage");
    let logs = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("-r")
        .arg(&root)
        .arg("-l")
        .arg(logs.path())
        .arg("--exit-on-eof")
        .env_remove("DRAGONFLY_EVE")
        .output()
        .unwrap();
    assert_ok(&out);
    let mut both = std::fs::read_to_string(logs.path().join("findings.json")).unwrap();
    both += &std::fs::read_to_string(logs.path().join("alerts.json")).unwrap();
    let n = both.lines().count();
    assert!(n > 100, "{n} findings and alerts");
    let all = logs.path().join("both.json");
    std::fs::write(&all, both).unwrap();
    let archive = logs.path().join("archive");
    let got = check(&["full", archive.to_str().unwrap(), all.to_str().unwrap()]);
    assert_eq!(got["rows"], n as u64);

    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let section = &readme[readme.find("### Hunting in Parquet").expect("the recipe")..];
    let start = section.find("```sh\n").unwrap() + 6;
    let end = start + section[start..].find("\n```").unwrap();
    let recipe = section[start..end].replace("/tmp/triage", logs.path().to_str().unwrap());
    let out = Command::new("sh").arg("-c").arg(&recipe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{recipe}\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the DGA host planted in the sample leads the findings; alerts carry priorities per day
    assert!(text.contains("10.1.3.77"), "{text}");
    assert!(text.contains("2025-03-10"), "{text}");
}

/// SIGTERM closes every open file: what the output accepted is in closed, readable files,
/// listed in the manifest; no temporary file is left.
#[test]
fn sigterm_closes_every_open_file() {
    let r = root("tail://in.json<", "max_age_s = 3600, row_group_rows = 100");
    write_lines(&r.path().join("in.json"), &events(1000));
    let e = spawn_logged(&r);
    let dir = pq(&r);
    let temp_exists = || {
        let d = dir.join("event_type=dns/date=2025-03-10");
        std::fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| f.file_name().to_string_lossy().starts_with(".part-"))
    };
    wait_for(LIMIT, "an open file", temp_exists);
    assert!(
        parquet_files(&dir).is_empty(),
        "nothing closes before an hour"
    );
    let (s, err) = stop(e, Duration::from_secs(60));
    assert!(s.success(), "{err}");
    let got = check(&["readable", dir.to_str().unwrap()]);
    assert_eq!(got["hidden"], 0, "{got}");
    assert_eq!(
        got["rows"],
        r.final_stats()["outputs"]["out"]["events"],
        "{got}"
    );
    assert!(got["rows"].as_u64().unwrap() >= 100, "{got}");
}

/// A full disk: the files that cannot be written are given up with a message naming them,
/// their rows counted as dropped (rows in files + dropped = every event), the engine goes
/// on; with space back the same events are all written. On a small tmpfs (root only).
#[test]
fn a_full_disk_gives_up_files_counted_and_writing_resumes() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let dir = fs.dir.path().join("pq");
    let filler = fs.dir.path().join("filler");
    std::fs::write(&filler, vec![b'f'; 1024 * 1024 - 96 * 1024]).unwrap();
    let r = root("file://in.json", "row_group_rows = 200, file_rows = 1000");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace("parquet://pq", &format!("parquet://{}", dir.display())));
    // rows that do not compress: 3000 x 200 random hex digits (~600 KB)
    let mut x = 0x9e3779b97f4a7c15u64;
    let lines: Vec<String> = (0..3000)
        .map(|i| {
            let pad: String = (0..25)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{x:016x}")
                })
                .collect::<String>()[..200]
                .to_string();
            format!(r#"{{"timestamp":"2025-03-10T09:00:00.000000+0000","event_type":"dns","seq":{i},"pad":"{pad}"}}"#)
        })
        .collect();
    write_lines(&r.path().join("in.json"), &lines);
    let out = r.run_to_eof(LIMIT);
    // rows given up are never a clean exit
    assert_eq!(out.status.code(), Some(5));
    let log = r.read_log("dragonfly-mle.log") + &String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("No space left on device"), "{log}");
    assert!(log.contains(".part-"), "the message names the file: {log}");
    let dropped = r.final_stats()["outputs"]["out"]["dropped"]
        .as_u64()
        .unwrap();
    let first = check(&["readable", dir.to_str().unwrap()]);
    assert!(dropped > 0, "{first}");
    assert_eq!(first["rows"].as_u64().unwrap() + dropped, 3000, "{first}");
    assert_eq!(
        first["hidden"], 0,
        "a given-up file was left behind: {first}"
    );

    // space returns: the same input again, every row written
    std::fs::remove_file(&filler).unwrap();
    let out = r.run_to_eof(LIMIT);
    assert_ok(&out);
    assert_eq!(r.final_stats()["outputs"]["out"]["dropped"], 0);
    let second = check(&["readable", dir.to_str().unwrap()]);
    assert_eq!(
        second["rows"].as_u64().unwrap(),
        first["rows"].as_u64().unwrap() + 3000
    );
}

/// A row that can never be written (here an analyzer outputs a string, not an object) is
/// dropped, counted and logged, but does not hold back the input's receipts: delivering it
/// again would not help. The checkpoint reaches the end; the other rows are written.
#[test]
fn a_row_that_can_never_be_written_is_counted_without_holding_receipts() {
    let r = Root::passthrough("tail://in.json<");
    r.write(
        "analyzer/pass.lua",
        r#"
function setup() end
function loop(msg)
  if msg.seq == 3 then dragonfly.output_event(default_output, "not an object")
  else dragonfly.output_event(default_output, msg) end
end
"#,
    );
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(
        &cfg.replace(
            r#"uri="tail://in.json<""#,
            r#"uri="tail://in.json<", options = { checkpoint = "in.pos" }"#,
        )
        .replace(
            r#"uri="file://out.json""#,
            r#"uri="parquet://pq", options = { max_age_s = 0.3 }"#,
        ),
    );
    write_lines(&r.path().join("in.json"), &events(10));
    let size = std::fs::metadata(r.path().join("in.json")).unwrap().len();
    let e = spawn_logged(&r);
    let offset = || checkpoint_offset(&r.path().join("in.pos"));
    wait_for(
        Duration::from_secs(60),
        "the checkpoint reaches the end",
        || offset() == size,
    );
    let (s, err) = stop(e, Duration::from_secs(60));
    // a row dropped is never a clean exit
    assert_eq!(s.code(), Some(5), "{err}");
    assert_eq!(r.final_stats()["outputs"]["out"]["dropped"], 1);
    let got = check(&["readable", pq(&r).to_str().unwrap()]);
    assert_eq!(got["rows"], 9, "{got}");
    assert!(
        stderr_log(&r).contains("a message is not a JSON object"),
        "{}",
        stderr_log(&r)
    );
}

/// Run the root to its input's end under an 8 GiB address-space limit (so a regression
/// cannot take the machine's memory); the run must succeed.
fn run_capped(r: &Root) -> std::process::Output {
    let engine = r.command(&["--exit-on-eof"]);
    let mut capped = Command::new("sh");
    capped
        .arg("-c")
        .arg(r#"ulimit -v 8388608 && exec "$@""#)
        .arg("sh")
        .arg(engine.get_program())
        .args(engine.get_args());
    for (k, v) in engine.get_envs() {
        if let Some(v) = v {
            capped.env(k, v);
        }
    }
    let child = capped
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, LIMIT);
    assert_ok(&out);
    out
}

/// The engine's peak resident memory, from its last stats record, is under 1 GiB.
fn assert_peak_under_1_gib(r: &Root) {
    let stats = r.final_stats();
    let peak = stats["rss_peak_bytes"].as_u64().unwrap();
    assert!(peak < 1 << 30, "peak RSS {peak} bytes");
}

/// A hostile schema: a line of 64 objects of 512 fields each (32k columns, 2 MB), then many
/// narrow rows in its partition. Before the bound, every narrow row carried a null for each
/// of those columns: 5 GB and a drain that never finished. Now the schema stops at 2048
/// columns (an object that would cross it is JSON text; top-level fields that find no room
/// go to the dragonfly_overflow column), row groups shrink as the schema widens, and the run
/// ends with every row written exactly, in bounded memory.
#[test]
fn a_hostile_wide_schema_is_bounded_in_columns_and_memory() {
    let object = |prefix: &str, n: usize| -> String {
        (0..n)
            .map(|k| {
                let fields: Vec<String> = (0..512).map(|f| format!(r#""f{f}":{f}"#)).collect();
                format!(r#""{prefix}{k}":{{{}}}"#, fields.join(","))
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let ev = |i: usize, extra: &str| {
        format!(
            r#"{{"timestamp":"2025-03-10T09:00:00.{i:06}+0000","event_type":"wide","seq":{i}{extra}}}"#
        )
    };
    // 4 x 512 crosses 2048 in its last object: kept, that object as JSON text
    let kept = ev(0, &format!(r#","w":{{{}}}"#, object("o", 4)));
    // 64 x 512 at the top: what finds no room goes to the overflow column, as text
    let folded = ev(1, &format!(",{}", object("t", 64)));
    let mut lines = vec![kept, folded];
    lines.extend((2..20_002).map(|i| ev(i, "")));
    let r = root("file://in.json", "");
    write_lines(&r.path().join("in.json"), &lines);
    let out = run_capped(&r);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("event_type=wide") && log.contains("no room as typed columns"),
        "the partition is named: {log}"
    );
    assert_eq!(r.final_stats()["outputs"]["out"]["dropped"], 0);
    assert_peak_under_1_gib(&r);
    let got = check(&["readable", pq(&r).to_str().unwrap()]);
    assert_eq!(got["rows"], 20_002, "{got}");
    assert!(got["columns"].as_u64().unwrap() <= 2049, "{got}");
    // every row exactly: objects past the bound as JSON text, folded fields put back
    let full = check(&[
        "full",
        pq(&r).to_str().unwrap(),
        r.path().join("in.json").to_str().unwrap(),
    ]);
    assert_eq!(full["rows"], 20_002, "{full}");
}

/// Schema poisoning: 600 events that each bring a new top-level key push their partition past
/// its 512 top-level fields; the rows after them (and they) are all kept, the keys with no
/// room in the dragonfly_overflow column, and the run exits 0 with nothing dropped.
#[test]
fn schema_poisoning_drops_no_row() {
    let ev = |i: usize, extra: String| {
        format!(
            r#"{{"timestamp":"2025-03-10T09:00:02.{i:06}+0000","event_type":"poison","seq":{i}{extra}}}"#
        )
    };
    let mut lines: Vec<String> = (0..600).map(|i| ev(i, format!(r#","k{i}":{i}"#))).collect();
    lines.extend((600..610).map(|i| ev(i, String::new())));
    let r = root("file://in.json", "");
    write_lines(&r.path().join("in.json"), &lines);
    let out = run_capped(&r);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(r.final_stats()["outputs"]["out"]["dropped"], 0);
    let full = check_full(&r);
    assert_eq!(full["rows"], 610, "{full}");
}

/// The same for a list: one element of 500 fields, then rows of 20,000 one-field elements,
/// each element holding a value in all 500 columns (4 GB before they were counted): row
/// groups end by the values held, memory stays bounded, every row is written.
#[test]
fn a_hostile_wide_list_item_is_bounded_in_memory() {
    let item: Vec<String> = (0..500).map(|f| format!(r#""k{f}":{f}"#)).collect();
    let list = |i: usize, elements: &str| {
        format!(
            r#"{{"timestamp":"2025-03-10T09:00:01.{i:06}+0000","event_type":"wide-list","seq":{i},"l":[{elements}]}}"#
        )
    };
    let mut lines = vec![list(0, &format!("{{{}}}", item.join(",")))];
    let small = vec![r#"{"k0":1}"#; 20_000].join(",");
    lines.extend((1..31).map(|i| list(i, &small)));
    let r = root("file://in.json", "");
    write_lines(&r.path().join("in.json"), &lines);
    run_capped(&r);
    assert_peak_under_1_gib(&r);
    let got = check(&["readable", pq(&r).to_str().unwrap()]);
    assert_eq!(got["rows"], 31, "{got}");
    assert_eq!(got["distinct_seqs"], 31, "{got}");
    assert!(got["files"].as_u64().unwrap() >= 1, "{got}");
}

/// A retro-hunt: the corpus archived by a pass-through root, then replayed from the archive
/// (`parquet://`, in event time) through examples/triage, finds what the live run over the
/// JSON lines found: the same findings and reports, the same alerts (ranked alike but where
/// a flow event shares an alert's microsecond: see the helper), every row read once.
#[test]
fn replaying_the_archive_through_triage_finds_what_the_live_run_found() {
    let r = root(&format!("zfile://{}", corpus().display()), "");
    assert_ok(&r.run_to_eof(LIMIT));
    let triage = examples().join("triage");
    let live =
        crate::examples::run_example(&triage, Some(&format!("zfile://{}", corpus().display())));
    let archive = format!("parquet://{}", pq(&r).display());
    let logs = crate::examples::run_example(&triage, Some(&archive));
    let stats: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(logs.path().join("dragonfly-mle-stats.log"))
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stats["inputs"]["eve"]["lines"], 63_935, "{stats}");
    assert_eq!(stats["inputs"]["eve"]["io_errors"], 0, "{stats}");
    crate::examples::assert_triage_replay_found_what_160cff1_found(
        logs.path(),
        &live.path().join("alerts.json"),
    );
}

/// The `n` of each event in ROOT's out.json, in order.
fn out_ns(r: &Root) -> Vec<i64> {
    r.lines("out.json")
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

/// A replay of a damaged archive through the real binary: a file cut short and a stray
/// file that is not Parquet are each named in the log and counted as the input's I/O
/// errors (stats, the `done:` line); every row of the other files arrives, exactly, with
/// `from`/`to`/`event_types` applied; a directory that is not there fails `--check`.
#[test]
fn a_damaged_archive_is_replayed_but_for_the_files_named() {
    let w = root("file://in.json", "");
    let lines: Vec<String> = (0..300)
        .map(|i| {
            format!(
                r#"{{"timestamp":"2025-03-10T09:{:02}:{:02}.000000+0000","event_type":"{}","flow_id":{},"n":{i},"o":{{"l":[{i},{{"k":"v{i}"}}]}}}}"#,
                i / 60,
                i % 60,
                ["dns", "flow", "alert"][i % 3],
                9_007_199_254_740_993i64 + i as i64
            )
        })
        .collect();
    let dir = run_lines(&w, &lines);
    let flow = dir.join("event_type=flow/date=2025-03-10");
    let f = std::fs::read_dir(&flow)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(flow.join("stray.parquet"), b"{\"not\":\"parquet\"}\n").unwrap();

    let r = Root::passthrough(&format!("parquet://{}", dir.display()));
    let out = r.run_to_eof(LIMIT);
    assert_ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stray.parquet") && err.contains(&*f.file_name().unwrap().to_string_lossy()),
        "{err}"
    );
    assert!(
        err.contains("2 errors"),
        "the done: line counts them: {err}"
    );
    let stats = r.final_stats();
    assert_eq!(stats["inputs"]["in"]["io_errors"], 2, "{stats}");
    let got: Vec<serde_json::Value> = r
        .lines("out.json")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event_type"] != "flow")
        .collect();
    assert_eq!(
        got, want,
        "the other partitions' rows, exact and in event time"
    );

    // a time range and a type, through config.lua's options
    let r = Root::passthrough(&format!("parquet://{}", dir.display()));
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        r#"script="filter.lua","#,
        r#"script="filter.lua", options = { from = "2025-03-10T09:01:00+0000", to = "2025-03-10T10:02:00+0100", event_types = "alert" },"#,
    ));
    assert_ok(&r.run_to_eof(LIMIT));
    let ns = out_ns(&r);
    assert_eq!(ns, (60..120).filter(|i| i % 3 == 2).collect::<Vec<_>>());

    let r = Root::passthrough("parquet:///nonexistent/archive");
    let out = r.command(&["--check"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/archive"));
}

/// `dragonfly-mle hunt`: a root's pipeline over an archive — its input reads the archive
/// instead of what config.lua names, with the time range and event types of the command
/// line — exiting once the archive is read; a root with several inputs must name one.
#[test]
fn hunt_runs_a_root_over_an_archive() {
    let w = root("file://in.json", "");
    let lines: Vec<String> = (0..120)
        .map(|i| {
            format!(
                r#"{{"timestamp":"2025-03-10T09:{:02}:{:02}.000000+0000","event_type":"{}","n":{i}}}"#,
                i / 60,
                i % 60,
                ["dns", "flow", "alert"][i % 3],
            )
        })
        .collect();
    let dir = run_lines(&w, &lines);
    let dir = dir.to_str().unwrap();
    // config.lua's input is never read: the hunt replaces it
    let r = Root::passthrough("file:///nonexistent/eve.json");
    let hunt = |r: &Root, extra: &[&str]| {
        let mut args = vec!["hunt", dir];
        args.extend_from_slice(extra);
        let child = r
            .command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, LIMIT)
    };
    let out = hunt(
        &r,
        &[
            "--from",
            "2025-03-10T09:01:00+0000",
            "--to",
            "2025-03-10T10:01:30+0100",
            "--event-types",
            "dns,alert",
        ],
    );
    assert_ok(&out);
    let ns = out_ns(&r);
    assert_eq!(ns, (60..90).filter(|i| i % 3 != 1).collect::<Vec<_>>());

    // two inputs: the hunt must be told which filter gets the archive
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&cfg.replace(
        "inputs = {",
        r#"inputs = { { tag="syslog", uri="file:///nonexistent/syslog.json", script="filter.lua", default_analyzer="pass" },"#,
    ));
    let out = hunt(&r, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--input") && err.contains("syslog") && err.contains("in"),
        "{err}"
    );
    std::fs::remove_file(r.logdir.join("out.json")).unwrap();
    assert_ok(&hunt(&r, &["--input", "in"]));
    assert_eq!(r.lines("out.json").len(), 120);
}
