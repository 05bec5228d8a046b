//! `dragonfly-mle test [FILTER]`: the test cases under ROOT/tests/, each a run of the
//! pipeline on events it gives, checked against what it expects (docs/testing.md).
//!
//! A case file is JSON: `{ "cases": [ { "name", "input"?, "events" | "events_file",
//! "expect": { "outputs": { TAG: { "count"?, "at_least"?, "contains"?, "absent"? } },
//! "script_errors"?, "unknown_tags"? } } ] }`. Each case runs as `--check --sample` does
//! (sample.rs: outputs captured, a fresh embedded store, no listener, one worker, nothing left
//! behind), so cases are independent and never touch a real Redis or an output's real file.
//! An expected event matches an output line when every field it names matches: objects field
//! by field (fields it does not name are free), numbers by value, a string written between
//! slashes (`"/^10\\.1\\./"`) as a regular expression over the field's text, anything else
//! exactly. Script errors are expected to be none unless a case says otherwise.
//!
//! Exit status: 0 when every case passed, 1 otherwise (a case that cannot run, such as a
//! missing events file, fails with the reason). `--format json` prints one JSON report.

use std::io::Write;
use std::path::{Path, PathBuf};

use dragonfly_engine::Options;
use serde_json::{json, Value};

/// Output lines shown next to a failed `contains`.
const SHOWN: usize = 3;

/// How `dragonfly-mle test` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per case, the failures under it, a summary line.
    Text,
    /// One JSON object: {"passed", "failed", "cases": [{"file", "name", "ok", "failures"}]}.
    Json,
    /// JUnit XML (a testsuite per case file), for CI systems that read it.
    Junit,
}

/// One case's result.
struct Outcome {
    file: String,
    name: String,
    failures: Vec<String>,
}

/// Run the cases of `root`/tests whose "file: name" contains `filter`; the exit code.
///
/// The report goes to standard output and nothing else does: what scripts print (Lua's
/// `print` writes to the process's stdout) goes to standard error while the cases run, so a CI
/// job can parse `--format json`.
pub fn run(root: &Path, options: Options, filter: Option<&str>, format: Format) -> u8 {
    let mut out = report_to_stdout_only();
    let code = run_cases(root, options, filter, format, &mut out);
    let _ = out.flush();
    code
}

/// A writer to the real standard output, after which file descriptor 1 is standard error.
fn report_to_stdout_only() -> Box<dyn Write> {
    use std::os::fd::FromRawFd;
    let _ = std::io::stdout().flush();
    // SAFETY: dup and dup2 on the process's own descriptors 1 and 2; the duplicate is owned by
    // the File made from it and by nothing else
    unsafe {
        let saved = libc::dup(1);
        if saved < 0 || libc::dup2(2, 1) < 0 {
            return Box::new(std::io::stdout());
        }
        Box::new(std::io::LineWriter::new(std::fs::File::from_raw_fd(saved)))
    }
}

fn run_cases(
    root: &Path,
    options: Options,
    filter: Option<&str>,
    format: Format,
    out: &mut dyn Write,
) -> u8 {
    let dir = root.join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut outcomes = Vec::new();
    let mut n = 0;
    for file in &files {
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        let cases = match read_cases(file) {
            Ok(c) => c,
            Err(e) => {
                outcomes.push(Outcome {
                    file: shown,
                    name: String::new(),
                    failures: vec![e],
                });
                continue;
            }
        };
        for (i, case) in cases.iter().enumerate() {
            let name = case["name"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("case {}", i + 1));
            if filter.is_some_and(|f| !format!("{shown}: {name}").contains(f)) {
                continue;
            }
            n += 1;
            let failures = run_case(root, &options, &dir, case, n);
            if format == Format::Text {
                print_case(out, &shown, &name, &failures);
            }
            outcomes.push(Outcome {
                file: shown.clone(),
                name,
                failures,
            });
        }
    }
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    let passed = outcomes.len() - failed;
    match format {
        Format::Text => {
            if files.is_empty() {
                let _ = writeln!(out, "no test files in {}", dir.display());
            }
            for o in outcomes.iter().filter(|o| o.name.is_empty()) {
                print_case(out, &o.file, "(the file)", &o.failures);
            }
            let _ = writeln!(out, "{passed} passed, {failed} failed");
        }
        Format::Junit => {
            let _ = write!(out, "{}", junit(&outcomes, passed, failed));
        }
        Format::Json => {
            let cases: Vec<Value> = outcomes
                .iter()
                .map(|o| {
                    json!({"file": o.file, "name": o.name, "ok": o.failures.is_empty(),
                           "failures": o.failures})
                })
                .collect();
            let _ = writeln!(
                out,
                "{}",
                json!({"passed": passed, "failed": failed, "cases": cases})
            );
        }
    }
    u8::from(failed > 0 || outcomes.is_empty())
}

/// The outcomes as JUnit XML: a testsuite per file, a testcase per case, its failures in one
/// `<failure>` (text escaped; characters XML cannot carry at all dropped).
fn junit(outcomes: &[Outcome], passed: usize, failed: usize) -> String {
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"dragonfly-mle test\" tests=\"{}\" failures=\"{failed}\">\n",
        passed + failed
    );
    let mut files: Vec<&str> = outcomes.iter().map(|o| o.file.as_str()).collect();
    files.dedup();
    for file in files {
        let cases: Vec<&Outcome> = outcomes.iter().filter(|o| o.file == file).collect();
        let failures = cases.iter().filter(|o| !o.failures.is_empty()).count();
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
            xml(file),
            cases.len()
        ));
        for o in cases {
            let name = if o.name.is_empty() {
                "(the file)"
            } else {
                &o.name
            };
            x.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml(file),
                xml(name)
            ));
            match o.failures.first() {
                None => x.push_str("/>\n"),
                Some(first) => x.push_str(&format!(
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(first.lines().next().unwrap_or("")),
                    xml(&o.failures.join("\n"))
                )),
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// Text for XML: markup characters escaped, characters XML 1.0 cannot carry dropped.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn print_case(out: &mut dyn Write, file: &str, name: &str, failures: &[String]) {
    if failures.is_empty() {
        let _ = writeln!(out, "ok     {file}: {name}");
    } else {
        let _ = writeln!(out, "FAILED {file}: {name}");
        for f in failures {
            for (i, line) in f.lines().enumerate() {
                let _ = writeln!(out, "{}{line}", if i == 0 { "  - " } else { "    " });
            }
        }
    }
}

fn read_cases(file: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
    match v.get("cases").and_then(Value::as_array) {
        Some(c) => Ok(c.clone()),
        None => Err(format!(
            "{}: no \"cases\" list (docs/testing.md)",
            file.display()
        )),
    }
}

/// Run one case; what failed (empty when it passed).
fn run_case(root: &Path, options: &Options, dir: &Path, case: &Value, n: usize) -> Vec<String> {
    let pid = std::process::id();
    let input = std::env::temp_dir().join(format!("dragonfly-mle-test-{pid}-{n}.json"));
    let scratch = std::env::temp_dir().join(format!("dragonfly-mle-test-{pid}-{n}"));
    let r = (|| -> Result<Vec<String>, String> {
        let (events_path, zipped) = events(case, dir, &input)?;
        let (config, errors) = dragonfly_config::load_all(root);
        let mut config = match config {
            Some(c) if errors.is_empty() => c,
            _ => {
                return Err(errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
        };
        // timers go by the events' time: a case gives the same result however fast it runs
        config.engine.clock = "event".into();
        let feed = crate::sample::Feed {
            path: &events_path,
            zipped,
            input: case["input"].as_str(),
            analyzer: case["analyzer"].as_str(),
        };
        let captured = crate::sample::capture(config, options.clone(), feed, &scratch)
            .map_err(|e| e.problems().join("\n"))?;
        Ok(check(case, &captured))
    })();
    let _ = std::fs::remove_file(&input);
    r.unwrap_or_else(|e| vec![format!("cannot run: {e}")])
}

/// The case's events as a file: `events` (a list: objects written as JSON lines, strings as
/// they are) into `scratch_file`, or `events_file` (relative to the tests directory; `.gz`
/// read compressed). Returns the path and whether it is gzip.
fn events(case: &Value, dir: &Path, scratch_file: &Path) -> Result<(PathBuf, bool), String> {
    if let Some(f) = case["events_file"].as_str() {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(format!("events_file {}: no such file", p.display()));
        }
        return Ok((p.clone(), f.ends_with(".gz")));
    }
    let Some(list) = case["events"].as_array() else {
        return Err("neither \"events\" (a list) nor \"events_file\"".into());
    };
    let mut text = String::new();
    for e in list {
        match e {
            Value::String(s) => text.push_str(s),
            other => text.push_str(&other.to_string()),
        }
        text.push('\n');
    }
    std::fs::write(scratch_file, text).map_err(|e| format!("{}: {e}", scratch_file.display()))?;
    Ok((scratch_file.to_path_buf(), false))
}

/// What `captured` does not do of what `case` expects.
fn check(case: &Value, captured: &crate::sample::Captured) -> Vec<String> {
    let mut failures = Vec::new();
    let expect = &case["expect"];
    if let Some(outputs) = expect["outputs"].as_object() {
        for (tag, want) in outputs {
            let Some((_, lines)) = captured.outputs.iter().find(|(t, _)| t == tag) else {
                failures.push(format!("output '{tag}': config.lua has no such output"));
                continue;
            };
            let got: Vec<Value> = lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.clone())))
                .collect();
            check_output(tag, want, &got, &mut failures);
        }
    }
    let errors = captured.dead.len() as u64;
    let want_errors = expect["script_errors"].as_u64().unwrap_or(0);
    if errors != want_errors {
        let mut f = format!("script errors: expected {want_errors}, got {errors}");
        for d in captured.dead.iter().take(SHOWN) {
            f.push_str(&format!(
                "\n{}: {}\n  event: {}",
                d["script"].as_str().unwrap_or("?"),
                d["error"].as_str().unwrap_or(""),
                d["event"]
            ));
        }
        failures.push(f);
    }
    for (i, want) in expect["store"].as_array().into_iter().flatten().enumerate() {
        check_store(i, want, &captured.store, &mut failures);
    }
    if let Some(want) = expect["unknown_tags"].as_u64() {
        let got = captured.summary.unknown_tag_events;
        if got != want {
            failures.push(format!(
                "events sent to unknown tags: expected {want}, got {got} ({})",
                captured.summary.stats.unknown_tags_text()
            ));
        }
    }
    failures
}

/// One store expectation: `{"command": ["PFCOUNT", "peers:10.1.1.1"], "reply": 3}`, run on
/// the store as the case left it.
fn check_store(
    i: usize,
    want: &Value,
    store: &dragonfly_store::embedded::EmbeddedStore,
    failures: &mut Vec<String>,
) {
    let args: Option<Vec<Vec<u8>>> = want["command"].as_array().map(|a| {
        a.iter()
            .map(|v| match v {
                Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            })
            .collect()
    });
    let Some(args) = args.filter(|a| !a.is_empty()) else {
        failures.push(format!(
            "store expectation {}: \"command\" must be a list such as [\"GET\", \"key\"]",
            i + 1
        ));
        return;
    };
    let got = reply_json(store.execute(&args));
    let shown = want["command"].to_string();
    match matches(&want["reply"], &got) {
        Ok(true) => {}
        Ok(false) => failures.push(format!(
            "store: {shown} replied {got}, expected {}",
            want["reply"]
        )),
        Err(e) => failures.push(format!("store: {shown}: {e}")),
    }
}

/// A store reply as JSON: integers as numbers, strings (bulk or status) as strings, nil as
/// null, arrays as lists, an error as {"error": text}.
fn reply_json(r: dragonfly_store::Reply) -> Value {
    use dragonfly_store::Reply;
    match r {
        Reply::Integer(i) => json!(i),
        Reply::Bulk(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        Reply::Status(s) => Value::String(s),
        Reply::Nil => Value::Null,
        Reply::Error(e) => json!({ "error": e }),
        Reply::Array(a) => Value::Array(a.into_iter().map(reply_json).collect()),
    }
}

fn check_output(tag: &str, want: &Value, got: &[Value], failures: &mut Vec<String>) {
    if let Some(n) = want["count"].as_u64() {
        if got.len() as u64 != n {
            failures.push(format!(
                "output '{tag}': expected {n} events, got {}",
                got.len()
            ));
        }
    }
    if let Some(n) = want["at_least"].as_u64() {
        if (got.len() as u64) < n {
            failures.push(format!(
                "output '{tag}': expected at least {n} events, got {}",
                got.len()
            ));
        }
    }
    for w in want["contains"].as_array().into_iter().flatten() {
        match got
            .iter()
            .map(|g| matches(w, g))
            .collect::<Result<Vec<_>, _>>()
        {
            Err(e) => failures.push(format!("output '{tag}': {e}")),
            Ok(m) if !m.contains(&true) => {
                let mut f = format!("output '{tag}': no event matches {w}");
                for g in got.iter().take(SHOWN) {
                    f.push_str(&format!("\n  got: {g}"));
                }
                if got.len() > SHOWN {
                    f.push_str(&format!("\n  ... {} more", got.len() - SHOWN));
                }
                failures.push(f);
            }
            Ok(_) => {}
        }
    }
    for w in want["absent"].as_array().into_iter().flatten() {
        for g in got {
            match matches(w, g) {
                Err(e) => {
                    failures.push(format!("output '{tag}': {e}"));
                    break;
                }
                Ok(true) => {
                    failures.push(format!(
                        "output '{tag}': an event matches {w}, which should be absent\n  got: {g}"
                    ));
                    break;
                }
                Ok(false) => {}
            }
        }
    }
}

/// Whether `got` matches the expected `want` (module doc), or why the pattern is bad.
fn matches(want: &Value, got: &Value) -> Result<bool, String> {
    Ok(match want {
        Value::Object(w) => {
            let Some(g) = got.as_object() else {
                return Ok(false);
            };
            for (k, v) in w {
                match g.get(k) {
                    Some(gv) if matches(v, gv)? => {}
                    _ => return Ok(false),
                }
            }
            true
        }
        Value::String(s) if s.len() >= 2 && s.starts_with('/') && s.ends_with('/') => {
            let re = regex::Regex::new(&s[1..s.len() - 1])
                .map_err(|e| format!("the pattern {s} is not a regular expression: {e}"))?;
            match got {
                Value::String(g) => re.is_match(g),
                Value::Number(n) => re.is_match(&n.to_string()),
                Value::Bool(b) => re.is_match(&b.to_string()),
                _ => false,
            }
        }
        Value::Number(w) => got.as_f64().is_some_and(|g| w.as_f64() == Some(g)),
        _ => want == got,
    })
}

#[cfg(test)]
mod tests {
    use super::matches;
    use serde_json::json;

    #[test]
    fn expected_events_match_by_the_fields_they_name() {
        let got = json!({"finding": "dns.dga", "host": "10.1.3.77", "severity": 80,
                         "detail": {"names": 5, "example": "xkq.com"}});
        for (want, ok) in [
            (json!({"finding": "dns.dga"}), true),
            (json!({"finding": "dns.dga", "host": "10.1.3.78"}), false),
            (json!({"host": "/^10\\.1\\./"}), true),
            (json!({"host": "/^192\\./"}), false),
            (json!({"severity": 80.0}), true),
            (json!({"severity": "/^8/"}), true),
            (json!({"detail": {"names": 5}}), true),
            (json!({"detail": {"nope": 5}}), false),
            (json!({"missing": null}), false),
            (json!({}), true),
        ] {
            assert_eq!(matches(&want, &got).unwrap(), ok, "{want}");
        }
        assert!(matches(&json!({"host": "/(/"}), &got).is_err());
        assert_eq!(
            super::xml("a<b>&\"c'\u{1}\u{7}\ttab"),
            "a&lt;b&gt;&amp;&quot;c&apos;\ttab"
        );
        assert!(!matches(&json!({"a": 1}), &json!("a line that is not JSON")).unwrap());
    }
}
