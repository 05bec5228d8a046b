//! What the docs say about the program, checked against the program (the man page and
//! `--help` are checked in suite/manual.rs, the schemes in dragonfly-io's
//! schemes_documented.rs).

use crate::common::*;

fn repo_file(rel: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The README's installed size (`~N MB` of the stripped engine) is the size `strip` makes of
/// this build, within a fifth.
#[test]
fn the_readme_states_the_installed_size() {
    let readme = repo_file("README.md");
    let at = readme
        .find("puts the stripped engine in `PREFIX/bin` (~")
        .expect("the install paragraph");
    let rest = &readme[at..];
    let n: f64 = rest[rest.find("(~").unwrap() + 2..rest.find(" MB").unwrap()]
        .parse()
        .unwrap();
    let out = std::env::temp_dir().join(format!("dfm-stripped-{}", std::process::id()));
    let stripped = std::process::Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(BIN)
        .status();
    if !stripped.is_ok_and(|s| s.success()) {
        dragonfly_testkit::skip("strip(1) is not installed");
        return;
    }
    let mb = std::fs::metadata(&out).unwrap().len() as f64 / 1e6;
    let _ = std::fs::remove_file(&out);
    assert!(
        (mb - n).abs() <= n / 5.0,
        "README says ~{n} MB, the stripped engine is {mb:.1} MB"
    );
}

/// Features that exist are not described as what comes next, and the examples' environment
/// variables are not presented as the engine's.
#[test]
fn the_docs_do_not_promise_what_is_there_nor_claim_what_is_not() {
    let arch = repo_file("docs/architecture.md");
    assert!(
        !arch.contains("ready for an HTTP exporter") && !arch.contains("Room for what comes next"),
        "docs/architecture.md lists hot reload or the HTTP listener as future work"
    );
    let readme = repo_file("README.md");
    for var in ["DRAGONFLY_HTTP", "DRAGONFLY_EVE"] {
        if readme.contains(var) {
            assert!(
                readme.contains("the engine itself reads no"),
                "README uses {var} without saying it is the example's config.lua that reads it"
            );
        }
    }
}

/// docs/operations.md names every family `/metrics` exports, as it is spelled, and no name
/// that is gone.
#[test]
fn the_operations_guide_lists_every_metric_family() {
    let doc = repo_file("docs/operations.md");
    let names = dragonfly_engine::metrics::family_names();
    for name in &names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/operations.md does not list {name}"
        );
    }
    for gone in [
        "dragonfly_rss_bytes",
        "dragonfly_input_lines`",
        "dragonfly_errors`",
        "queue=",
    ] {
        assert!(!doc.contains(gone), "docs/operations.md still says {gone}");
    }
}
