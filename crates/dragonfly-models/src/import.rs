//! Models exported from scikit-learn as JSON (by `tools/export_sklearn.py`), turned into the
//! `ML.*` commands that load them, so they load the same way into the embedded store and into
//! Redis with the module.
//!
//! ```json
//! {"type": "logistic_regression", "intercept": -1.2, "coefficients": [0.5, 2.0]}
//! {"type": "linear_regression",   "intercept": 3.0,  "coefficients": [1.0]}
//! {"type": "kmeans", "centers": [[1, 1, 2], [2, 5, 4]]}
//! {"type": "random_forest", "mode": "classification", "feature_names": ["len", "entropy"],
//!  "trees": [{"children_left": [1, -1, -1], "children_right": [2, -1, -1],
//!             "feature": [0, -2, -2], "threshold": [10.5, -2, -2],
//!             "value": [[5, 5], [5, 0], [0, 5]]}]}
//! ```
//! A `decision_tree` is a forest of one tree. Tree arrays are scikit-learn's `tree_` arrays;
//! `value` holds class counts (classification) or `[mean]` (regression). Samples for
//! ML.FOREST.RUN name features by `feature_names` (or their index when absent).

use serde::Deserialize;

use crate::numfmt::fmt_g;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Export {
    LogisticRegression {
        intercept: f64,
        coefficients: Vec<f64>,
    },
    LinearRegression {
        intercept: f64,
        coefficients: Vec<f64>,
    },
    Kmeans {
        centers: Vec<Vec<f64>>,
    },
    DecisionTree(TreeSet),
    RandomForest(TreeSet),
}

#[derive(Debug, Deserialize)]
struct TreeSet {
    #[serde(default = "classification")]
    mode: String,
    #[serde(default)]
    feature_names: Vec<String>,
    trees: Vec<SkTree>,
}

fn classification() -> String {
    "classification".into()
}

#[derive(Debug, Deserialize)]
struct SkTree {
    children_left: Vec<i64>,
    children_right: Vec<i64>,
    feature: Vec<i64>,
    threshold: Vec<f64>,
    value: Vec<Vec<f64>>,
}

fn num(v: f64) -> Vec<u8> {
    fmt_g(v, 17).into_bytes()
}

/// The commands that store the exported model under `key` (the first deletes what was there).
pub fn commands(json: &str, key: &str) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let e: Export = serde_json::from_str(json).map_err(|e| format!("not a model export: {e}"))?;
    let k = key.as_bytes().to_vec();
    let mut cmds = vec![vec![b"DEL".to_vec(), k.clone()]];
    match e {
        Export::LogisticRegression {
            intercept,
            coefficients,
        }
        | Export::LinearRegression {
            intercept,
            coefficients,
        } => {
            let name = if json.contains("logistic_regression") {
                "ML.LOGREG.SET"
            } else {
                "ML.LINREG.SET"
            };
            let mut c = vec![name.as_bytes().to_vec(), k, num(intercept)];
            c.extend(coefficients.into_iter().map(num));
            if c.len() < 4 {
                return Err("a regression needs at least one coefficient".into());
            }
            cmds.push(c);
        }
        Export::Kmeans { centers } => {
            let d = centers.first().map_or(0, Vec::len);
            if d == 0 || centers.iter().any(|c| c.len() != d) {
                return Err("k-means centres must be non-empty and of one dimension".into());
            }
            let mut c = vec![
                b"ML.KMEANS.SET".to_vec(),
                k,
                centers.len().to_string().into_bytes(),
                d.to_string().into_bytes(),
            ];
            c.extend(centers.into_iter().flatten().map(num));
            cmds.push(c);
        }
        Export::DecisionTree(set) | Export::RandomForest(set) => {
            let regression = match set.mode.as_str() {
                "classification" => false,
                "regression" => true,
                m => return Err(format!("unknown mode '{m}' (classification or regression)")),
            };
            for (tid, t) in set.trees.iter().enumerate() {
                let mut c = vec![
                    b"ML.FOREST.ADD".to_vec(),
                    k.clone(),
                    tid.to_string().into_bytes(),
                ];
                tree_nodes(
                    t,
                    0,
                    ".".to_string(),
                    &set.feature_names,
                    regression,
                    &mut c,
                    0,
                )?;
                cmds.push(c);
            }
        }
    }
    Ok(cmds)
}

fn tree_nodes(
    t: &SkTree,
    node: usize,
    path: String,
    names: &[String],
    regression: bool,
    out: &mut Vec<Vec<u8>>,
    depth: usize,
) -> Result<(), String> {
    let get = |v: &[i64], i: usize| {
        v.get(i)
            .copied()
            .ok_or_else(|| format!("tree arrays too short at node {i}"))
    };
    if depth > 512 {
        return Err("tree deeper than 512".into());
    }
    let (l, r) = (get(&t.children_left, node)?, get(&t.children_right, node)?);
    let value = t
        .value
        .get(node)
        .ok_or_else(|| format!("no value for node {node}"))?;
    out.push(path.clone().into_bytes());
    if l < 0 || r < 0 {
        out.push(b"LEAF".to_vec());
        if regression {
            out.push(num(*value.first().ok_or("empty leaf value")?));
        } else {
            let best = value
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
                );
            out.push(num(best.0 as f64));
            out.push(b"STATS".to_vec());
            let stats: Vec<String> = value
                .iter()
                .map(|v| format!("{}", v.round() as i64))
                .collect();
            out.push(stats.join(":").into_bytes());
        }
        return Ok(());
    }
    let f = get(&t.feature, node)?;
    let attr = names
        .get(f as usize)
        .cloned()
        .unwrap_or_else(|| f.to_string());
    let threshold = *t.threshold.get(node).ok_or("threshold array too short")?;
    out.push(b"NUMERIC".to_vec());
    out.push(attr.into_bytes());
    out.push(num(threshold));
    tree_nodes(
        t,
        l as usize,
        format!("{path}l"),
        names,
        regression,
        out,
        depth + 1,
    )?;
    tree_nodes(
        t,
        r as usize,
        format!("{path}r"),
        names,
        regression,
        out,
        depth + 1,
    )
}
