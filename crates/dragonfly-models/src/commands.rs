//! The `ML.*` commands: argument parsing and validation, RedisML's replies and error texts.

use crate::forest::{Forest, Node, Sample, Tree};
use crate::limits;
use crate::model::{Kmeans, Matrix, Model, Regression};

/// A reply, mapped onto RESP by the store or the module. Doubles are sent as bulk strings
/// formatted like Redis formats doubles (`%.17g`).
#[derive(Debug, Clone, PartialEq)]
pub enum MlReply {
    /// `+OK`.
    Ok,
    /// A double, sent as a bulk string (`%.17g`).
    Double(f64),
    /// An integer.
    Integer(i64),
    /// An array of replies.
    Array(Vec<MlReply>),
    /// An error (its text starts with the error code).
    Error(String),
}

/// What a key holds, as far as models go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No such key.
    Missing,
    /// A value that is not a model (a string, hash, ...).
    Other,
    /// A linear/logistic regression.
    Regression,
    /// A decision-tree ensemble.
    Forest,
    /// A matrix.
    Matrix,
    /// A k-means model.
    Kmeans,
}

impl Kind {
    /// The kind of a stored model.
    pub fn of(m: &Model) -> Kind {
        match m {
            Model::Regression(_) => Kind::Regression,
            Model::Forest(_) => Kind::Forest,
            Model::Matrix(_) => Kind::Matrix,
            Model::Kmeans(_) => Kind::Kmeans,
        }
    }
}

/// Where models live: the embedded store, or a Redis server's keyspace (the module).
pub trait Keyspace {
    /// What the key holds.
    fn kind(&mut self, key: &[u8]) -> Kind;
    /// Run `f` on the model at `key` (the caller checked its kind).
    fn read<R>(&mut self, key: &[u8], f: impl FnOnce(&Model) -> R) -> Option<R>;
    /// Store a model, replacing what is there.
    fn put(&mut self, key: &[u8], model: Model);
    /// Remove the key.
    fn delete(&mut self, key: &[u8]);
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn wrongtype() -> MlReply {
    MlReply::Error(WRONGTYPE.into())
}

fn arity(cmd: &str) -> MlReply {
    MlReply::Error(format!(
        "ERR wrong number of arguments for '{}' command",
        cmd.to_ascii_lowercase()
    ))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn num(b: &[u8]) -> Result<f64, MlReply> {
    let s = std::str::from_utf8(b).map_err(|_| bad_float())?;
    let v: f64 = match s.trim().to_ascii_lowercase().as_str() {
        "inf" | "+inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        t => t.parse().map_err(|_| bad_float())?,
    };
    if v.is_nan() {
        return Err(bad_float());
    }
    Ok(v)
}

fn bad_float() -> MlReply {
    MlReply::Error("ERR value is not a valid float".into())
}

fn int(b: &[u8]) -> Result<i64, MlReply> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| MlReply::Error("ERR value is not an integer or out of range".into()))
}

/// `n` numbers may be stored in one model.
fn values_limit(what: &str, n: u64) -> Result<(), MlReply> {
    let max = limits::get().max_values;
    if n > max {
        return Err(MlReply::Error(limits::exceeded(what, n, "MAX_VALUES", max)));
    }
    Ok(())
}

fn nums(args: &[Vec<u8>]) -> Result<Vec<f64>, MlReply> {
    args.iter().map(|a| num(a)).collect()
}

/// Whether `name` is one of ours.
pub fn is_ml_command(name: &[u8]) -> bool {
    let n = text(name).to_ascii_uppercase();
    matches!(
        n.as_str(),
        "ML.LINREG.SET"
            | "ML.LOGREG.SET"
            | "ML.LINREG.PREDICT"
            | "ML.LOGREG.PREDICT"
            | "ML.FOREST.ADD"
            | "ML.FOREST.RUN"
            | "ML.MATRIX.SET"
            | "ML.MATRIX.GET"
            | "ML.MATRIX.ADD"
            | "ML.MATRIX.MULTIPLY"
            | "ML.MATRIX.SCALE"
            | "ML.KMEANS.SET"
            | "ML.KMEANS.PREDICT"
    )
}

/// Run one `ML.*` command; `None` when `args[0]` is not one.
///
/// Never panics: a bug that would panic is answered with an error instead (the module runs
/// inside a shared redis-server, where a panic across the FFI boundary would abort it).
pub fn execute(ks: &mut impl Keyspace, args: &[Vec<u8>]) -> Option<MlReply> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute_inner(ks, args))) {
        Ok(r) => r,
        Err(e) => {
            let what = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Some(MlReply::Error(format!(
                "ERR internal error in the ML command (please report it): {what}"
            )))
        }
    }
}

fn execute_inner(ks: &mut impl Keyspace, args: &[Vec<u8>]) -> Option<MlReply> {
    let name = text(args.first()?).to_ascii_uppercase();
    let r = match name.as_str() {
        "ML.LINREG.SET" | "ML.LOGREG.SET" => regression_set(ks, &name, args),
        "ML.LINREG.PREDICT" | "ML.LOGREG.PREDICT" => regression_predict(ks, &name, args),
        "ML.FOREST.ADD" => forest_add(ks, &name, args),
        "ML.FOREST.RUN" => forest_run(ks, &name, args),
        "ML.MATRIX.SET" => matrix_set(ks, &name, args),
        "ML.MATRIX.GET" => matrix_get(ks, &name, args),
        "ML.MATRIX.ADD" | "ML.MATRIX.MULTIPLY" => matrix_binary(ks, &name, args),
        "ML.MATRIX.SCALE" => matrix_scale(ks, &name, args),
        "ML.KMEANS.SET" => kmeans_set(ks, &name, args),
        "ML.KMEANS.PREDICT" => kmeans_predict(ks, &name, args),
        _ => return None,
    };
    Some(r.unwrap_or_else(|e| e))
}

type R = Result<MlReply, MlReply>;

/// The destination of a SET must be missing or already hold this kind of model.
fn writable(ks: &mut impl Keyspace, key: &[u8], want: Kind) -> Result<(), MlReply> {
    match ks.kind(key) {
        Kind::Missing => Ok(()),
        k if k == want => Ok(()),
        _ => Err(wrongtype()),
    }
}

fn readable(ks: &mut impl Keyspace, key: &[u8], want: Kind) -> Result<(), MlReply> {
    if ks.kind(key) == want {
        Ok(())
    } else {
        Err(wrongtype())
    }
}

fn regression_set(ks: &mut impl Keyspace, name: &str, a: &[Vec<u8>]) -> R {
    if a.len() < 4 {
        return Err(arity(name));
    }
    writable(ks, &a[1], Kind::Regression)?;
    values_limit("a regression's coefficients", a.len() as u64 - 3)?;
    let v = nums(&a[2..])?;
    ks.put(
        &a[1],
        Model::Regression(Regression {
            intercept: v[0],
            coefficients: v[1..].to_vec(),
        }),
    );
    Ok(MlReply::Ok)
}

fn regression_predict(ks: &mut impl Keyspace, name: &str, a: &[Vec<u8>]) -> R {
    if a.len() < 3 {
        return Err(arity(name));
    }
    readable(ks, &a[1], Kind::Regression)?;
    let f = nums(&a[2..])?;
    let logistic = name.starts_with("ML.LOGREG");
    let res = ks
        .read(&a[1], |m| match m {
            Model::Regression(r) if logistic => r.logistic(&f),
            Model::Regression(r) => r.linear(&f),
            _ => Err(WRONGTYPE.into()),
        })
        .ok_or_else(wrongtype)?;
    res.map(MlReply::Double).map_err(MlReply::Error)
}

/// Nodes of one ML.FOREST.ADD, parsed and validated before anything changes.
fn parse_nodes(args: &[&[u8]]) -> Result<Vec<(String, Node)>, MlReply> {
    const WRONG_PATH: &str = "Tree node path containes wrong characters, should be 'r' or 'l'";
    const WRONG_TYPE: &str = "Wrong node type , should be 'NUMERIC', 'CATEGORIC' or 'LEAF'";
    let prefix_of = |arg: &[u8], word: &str| {
        !arg.is_empty()
            && arg.len() <= word.len()
            && word.as_bytes()[..arg.len()].eq_ignore_ascii_case(arg)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let path = text(args[i]).to_ascii_lowercase();
        if !path.starts_with('.') || !path[1..].bytes().all(|c| c == b'l' || c == b'r') {
            return Err(MlReply::Error(WRONG_PATH.into()));
        }
        let max_depth = limits::get().max_tree_depth;
        if path.len() as u64 > max_depth {
            return Err(MlReply::Error(limits::exceeded(
                "the depth of the node's path",
                path.len(),
                "MAX_TREE_DEPTH",
                max_depth,
            )));
        }
        let Some(kind) = args.get(i + 1) else {
            return Err(MlReply::Error(WRONG_TYPE.into()));
        };
        let need = |i: usize, n: usize| -> Result<(), MlReply> {
            if i + 2 + n > args.len() {
                Err(MlReply::Error(format!(
                    "ERR missing values for the node at path {path}"
                )))
            } else {
                Ok(())
            }
        };
        if prefix_of(kind, "NUMERIC") {
            need(i, 2)?;
            out.push((
                path.clone(),
                Node::Numeric {
                    attr: text(args[i + 2]),
                    threshold: num(args[i + 3])?,
                    left: None,
                    right: None,
                },
            ));
            i += 4;
        } else if prefix_of(kind, "CATEGORIC") {
            need(i, 2)?;
            out.push((
                path.clone(),
                Node::Categoric {
                    attr: text(args[i + 2]),
                    values: text(args[i + 3])
                        .split(':')
                        .map(crate::forest::atof)
                        .collect(),
                    left: None,
                    right: None,
                },
            ));
            i += 4;
        } else if prefix_of(kind, "LEAF") {
            need(i, 1)?;
            let value = num(args[i + 2])?;
            i += 3;
            let stats = if args.get(i).is_some_and(|s| prefix_of(s, "STATS")) {
                let s = args.get(i + 1).ok_or_else(|| {
                    MlReply::Error(format!("ERR missing STATS for the leaf at path {path}"))
                })?;
                i += 2;
                text(s)
                    .split(':')
                    .map(|c| crate::forest::atof(c).trunc())
                    .collect()
            } else {
                // no STATS: the leaf votes one-hot for class `value` (see forest.rs)
                Vec::new()
            };
            out.push((path.clone(), Node::Leaf { value, stats }));
        } else {
            return Err(MlReply::Error(WRONG_TYPE.into()));
        }
    }
    Ok(out)
}

fn forest_add(ks: &mut impl Keyspace, name: &str, a: &[Vec<u8>]) -> R {
    // Arguments that are only white space are ignored (see the crate documentation).
    let args: Vec<&[u8]> = a
        .iter()
        .map(Vec::as_slice)
        .filter(|x| x.is_empty() || !x.iter().all(|c| c.is_ascii_whitespace()))
        .collect();
    if args.len() < 6 {
        return Err(arity(name));
    }
    let key = args[1];
    writable(ks, key, Kind::Forest)?;
    let tid = num(args[2])?;
    let nodes = parse_nodes(&args[3..])?;
    let mut forest = ks
        .read(key, |m| match m {
            Model::Forest(f) => f.clone(),
            _ => Forest::default(),
        })
        .unwrap_or_default();
    if tid < 0.0 || tid.fract() != 0.0 || tid as usize > forest.trees.len() {
        return Err(MlReply::Error("ERR Generic".into()));
    }
    let tid = tid as usize;
    if tid == forest.trees.len() {
        forest.trees.push(Tree::default());
    }
    for (path, node) in nodes {
        forest.trees[tid].add(&path, node).map_err(MlReply::Error)?;
    }
    if !forest.trees[tid].complete() {
        ks.delete(key);
        return Err(MlReply::Error("Tree contains null nodes".into()));
    }
    ks.put(key, Model::Forest(forest));
    Ok(MlReply::Ok)
}

fn forest_run(ks: &mut impl Keyspace, name: &str, a: &[Vec<u8>]) -> R {
    if a.len() < 3 {
        return Err(arity(name));
    }
    readable(ks, &a[1], Kind::Forest)?;
    let classification = match a.get(3).map(|m| text(m).to_ascii_uppercase()) {
        None => true,
        Some(m) if m == "CLASSIFICATION" => true,
        Some(m) if m == "REGRESSION" => false,
        Some(m) => {
            return Err(MlReply::Error(format!(
                "ERR unknown mode '{m}', use CLASSIFICATION or REGRESSION"
            )))
        }
    };
    let sample = Sample::parse(&text(&a[2])).map_err(MlReply::Error)?;
    let v = ks
        .read(&a[1], |m| match m {
            Model::Forest(f) => Some(f.run(&sample, classification)),
            _ => None,
        })
        .flatten()
        .ok_or_else(wrongtype)?;
    Ok(MlReply::Double(v))
}

fn matrix_set(ks: &mut impl Keyspace, name: &str, a: &[Vec<u8>]) -> R {
    if a.len() < 4 {
        return Err(arity(name));
    }
    writable(ks, &a[1], Kind::Matrix)?;
    let (rows, cols) = (int(&a[2])?, int(&a[3])?);
    if rows <= 0 || cols <= 0 {
        return Err(MlReply::Error(
            "Matrix dimentions should be positive".into(),
        ));
    }
    let n = (rows as u64).saturating_mul(cols as u64);
    values_limit(&format!("a {rows}x{cols} matrix's size"), n)?;
    let values = nums(&a[4..])?;
    if values.len() as u64 != n {
        return Err(MlReply::Error(format!(
            "ERR wrong number of matrix values: {rows}x{cols} needs {n}, got {}",
            values.len()
        )));
    }
    ks.put(
        &a[1],
        Model::Matrix(Matrix {
            rows: rows as usize,
            cols: cols as usize,
            values,
        }),
    );
    Ok(MlReply::Ok)
}

fn get_matrix(ks: &mut impl Keyspace, key: &[u8]) -> Result<Matrix, MlReply> {
    readable(ks, key, Kind::Matrix)?;
    ks.read(key, |m| match m {
        Model::Matrix(m) => Some(m.clone()),
        _ => None,
    })
    .flatten()
    .ok_or_else(wrongtype)
}

fn matrix_get(ks: &mut impl Keyspace, name: &str, a: &[Vec<u8>]) -> R {
    if a.len() != 2 {
        return Err(arity(name));
    }
    let m = get_matrix(ks, &a[1])?;
    let mut out = vec![
        MlReply::Integer(m.rows as i64),
        MlReply::Integer(m.cols as i64),
    ];
    out.extend(m.values.iter().map(|v| MlReply::Double(*v)));
    Ok(MlReply::Array(out))
}

fn matrix_binary(ks: &mut impl Keyspace, name: &str, a: &[Vec<u8>]) -> R {
    if a.len() != 4 {
        return Err(arity(name));
    }
    let x = get_matrix(ks, &a[1])?;
    let y = get_matrix(ks, &a[2])?;
    let z = if name == "ML.MATRIX.ADD" {
        x.add(&y)
    } else {
        x.multiply(&y)
    }
    .map_err(MlReply::Error)?;
    writable(ks, &a[3], Kind::Matrix)?;
    ks.put(&a[3], Model::Matrix(z));
    Ok(MlReply::Ok)
}

fn matrix_scale(ks: &mut impl Keyspace, name: &str, a: &[Vec<u8>]) -> R {
    if a.len() != 3 {
        return Err(arity(name));
    }
    let mut m = get_matrix(ks, &a[1])?;
    m.scale(num(&a[2])?);
    ks.put(&a[1], Model::Matrix(m));
    Ok(MlReply::Ok)
}

fn kmeans_set(ks: &mut impl Keyspace, name: &str, a: &[Vec<u8>]) -> R {
    if a.len() < 4 {
        return Err(arity(name));
    }
    let (k, d) = (int(&a[2])?, int(&a[3])?);
    let n = (a.len() - 4) as u64;
    let want = (k.max(0) as u64).saturating_mul(d.max(0) as u64);
    if k <= 0 || d <= 0 {
        return Err(MlReply::Error(format!(
            "ERR wrong number of k-means centre values: k*dimensions = {want}, got {n}"
        )));
    }
    values_limit(&format!("a k-means model's {k}x{d} centre values"), want)?;
    if want != n {
        return Err(MlReply::Error(format!(
            "ERR wrong number of k-means centre values: k*dimensions = {want}, got {n}"
        )));
    }
    writable(ks, &a[1], Kind::Kmeans)?;
    let centers = nums(&a[4..])?;
    ks.put(
        &a[1],
        Model::Kmeans(Kmeans {
            k: k as usize,
            dimensions: d as usize,
            centers,
        }),
    );
    Ok(MlReply::Ok)
}

fn kmeans_predict(ks: &mut impl Keyspace, name: &str, a: &[Vec<u8>]) -> R {
    if a.len() < 3 {
        return Err(arity(name));
    }
    readable(ks, &a[1], Kind::Kmeans)?;
    let f = nums(&a[2..])?;
    let r = ks
        .read(&a[1], |m| match m {
            Model::Kmeans(k) => k.predict(&f),
            _ => Err(WRONGTYPE.into()),
        })
        .ok_or_else(wrongtype)?;
    r.map(|c| MlReply::Integer(c as i64))
        .map_err(MlReply::Error)
}

#[cfg(test)]
mod tests;
