//! Models trained in scikit-learn, exported by tools/export_sklearn.py, loaded with
//! `dragonfly-mle model load`, and scored by a Lua analyzer through ML.* commands — on the
//! embedded store and on a real redis-server with the dragonfly-redisml module. The engine's
//! predictions must match scikit-learn's own.

use crate::common::*;
use dragonfly_testkit::RedisServer;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

const SCORER: &str = r#"
function setup() conn = assert(hiredis.connect()) end
function loop(msg)
  local f = msg.features
  local sample = "len:" .. f[1] .. ",entropy:" .. f[2]
  local forest = conn:command("ML.FOREST.RUN", "dga", sample)
  local proba = conn:command("ML.LOGREG.PREDICT", "lr", f[1], f[2])
  local cluster = conn:command("ML.KMEANS.PREDICT", "km", f[1], f[2])
  if type(forest) == "table" then error(forest.name) end
  dragonfly.output_event("out", {id = msg.id, forest = tonumber(forest), proba = tonumber(proba), cluster = cluster})
end
"#;

fn export(dir: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/export_sklearn.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--demo")
        .arg(dir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "export failed (scripts/test installs scikit-learn): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(dir.join("samples.json")).unwrap()).unwrap()
}

fn scoring_root(store_lines: &str, samples: &serde_json::Value) -> Root {
    let r = Root::new();
    r.write("filter/filter.lua", FILTER);
    r.write("analyzer/score.lua", SCORER);
    let lines: Vec<String> = samples["samples"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, s)| serde_json::json!({"id": i, "features": s["features"]}).to_string())
        .collect();
    r.write("in.json", &(lines.join("\n") + "\n"));
    r.config(&format!(
        r#"{store_lines}
inputs = {{ {{ tag="in", uri="file://in.json", script="filter.lua", default_analyzer="score" }} }}
analyzers = {{ {{ tag="score", script="score.lua" }} }}
outputs = {{ {{ tag="out", uri="file://out.json" }} }}
"#
    ));
    r
}

fn model_load(r: &Root, file: &Path, key: &str) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("-r")
        .arg(r.path())
        .args(["model", "load"])
        .arg(file)
        .arg(key)
        .output()
        .unwrap()
}

fn load(r: &Root, file: &Path, key: &str) {
    let out = model_load(r, file, key);
    assert!(
        out.status.success(),
        "model load: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_predictions(r: &Root, samples: &serde_json::Value) {
    run_ok(r, LIMIT);
    let s = samples["samples"].as_array().unwrap();
    let out = r.lines("out.json");
    assert_eq!(out.len(), s.len());
    let mut disagree = 0;
    for l in &out {
        let j: serde_json::Value = serde_json::from_str(l).unwrap();
        let want = &s[j["id"].as_u64().unwrap() as usize];
        if j["forest"].as_f64() != want["forest"].as_f64() {
            disagree += 1;
        }
        let (p, q) = (
            j["proba"].as_f64().unwrap(),
            want["logreg_proba"].as_f64().unwrap(),
        );
        assert!(
            (p - q).abs() < 1e-9,
            "logistic regression: {p} vs scikit-learn {q}"
        );
        assert_eq!(j["cluster"], want["kmeans"], "k-means cluster");
    }
    assert_eq!(
        disagree, 0,
        "forest predictions that differ from scikit-learn's"
    );
}

#[test]
fn sklearn_models_score_the_same_in_the_embedded_store() {
    train_load_and_score("engine = { store_snapshot = \"state/models.snap\" }");
}

/// Train and export the demo models, load them into the store `store_lines` names, score
/// the held-out samples through the engine and compare with scikit-learn.
fn train_load_and_score(store_lines: &str) {
    let dir = tempfile::tempdir().unwrap();
    let samples = export(dir.path());
    let r = scoring_root(store_lines, &samples);
    load(&r, &dir.path().join("forest.json"), "dga");
    load(&r, &dir.path().join("logreg.json"), "lr");
    load(&r, &dir.path().join("kmeans.json"), "km");
    check_predictions(&r, &samples);
}

#[test]
fn sklearn_models_score_the_same_in_redis_with_the_module() {
    let module = redisml_module();
    let server = RedisServer::start_with(&["--loadmodule", module]);
    train_load_and_score(&format!(
        "redis_host = \"127.0.0.1\"\nredis_port = {}\nmodules = {{ {{ tag=\"redisml\", module=\"{module}\" }} }}",
        server.port
    ));
}

#[test]
fn loading_into_an_embedded_store_without_a_snapshot_is_refused() {
    let r = Root::passthrough("file://in.json");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.json"),
        r#"{"type":"linear_regression","intercept":1,"coefficients":[2]}"#,
    )
    .unwrap();
    let out = model_load(&r, &dir.path().join("m.json"), "k");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("engine.store_snapshot"));
}

#[test]
fn a_model_over_the_modules_limits_is_refused_with_the_servers_words() {
    let module = redisml_module();
    // a server that takes models of at most 2 numbers
    let server = RedisServer::start_with(&["--loadmodule", module, "MAX_VALUES", "2"]);
    let r = Root::passthrough("file://in.json");
    let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
    r.config(&format!(
        "redis_host = \"127.0.0.1\"\nredis_port = {}\n{cfg}",
        server.port
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.json"),
        r#"{"type":"linear_regression","intercept":1,"coefficients":[2,3,4]}"#,
    )
    .unwrap();
    let out = model_load(&r, &dir.path().join("m.json"), "k");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "the server said: ERR a regression's coefficients (3) is over the limit MAX_VALUES = 2"
        ),
        "{err}"
    );
    assert!(!err.contains("is the module loaded"), "{err}");
    // the server is fine
    assert!(server.ping());
}
