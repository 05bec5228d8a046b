//! A compact binary encoding of models, for the embedded store's snapshot and the Redis
//! module's RDB persistence (both use the same bytes).

use crate::forest::{Forest, Node, Tree};
use crate::model::{Kmeans, Matrix, Model, Regression};

const VERSION: u8 = 1;

struct W(Vec<u8>);
impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend(v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend(v.to_le_bytes());
    }
    fn f64s(&mut self, v: &[f64]) {
        self.u64(v.len() as u64);
        for x in v {
            self.f64(*x);
        }
    }
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn node(&mut self, n: &Option<Box<Node>>) {
        match n.as_deref() {
            None => self.u8(0),
            Some(Node::Numeric {
                attr,
                threshold,
                left,
                right,
            }) => {
                self.u8(1);
                self.str(attr);
                self.f64(*threshold);
                self.node(left);
                self.node(right);
            }
            Some(Node::Categoric {
                attr,
                values,
                left,
                right,
            }) => {
                self.u8(2);
                self.str(attr);
                self.f64s(values);
                self.node(left);
                self.node(right);
            }
            Some(Node::Leaf { value, stats }) => {
                self.u8(3);
                self.f64(*value);
                self.f64s(stats);
            }
        }
    }
}

/// The bytes a model is saved as (RDB, the embedded store's snapshot).
pub fn encode(m: &Model) -> Vec<u8> {
    let mut w = W(vec![VERSION]);
    match m {
        Model::Regression(r) => {
            w.u8(1);
            w.f64(r.intercept);
            w.f64s(&r.coefficients);
        }
        Model::Forest(f) => {
            w.u8(2);
            w.u64(f.trees.len() as u64);
            for t in &f.trees {
                w.node(&t.root);
            }
        }
        Model::Matrix(m) => {
            w.u8(3);
            w.u64(m.rows as u64);
            w.u64(m.cols as u64);
            w.f64s(&m.values);
        }
        Model::Kmeans(k) => {
            w.u8(4);
            w.u64(k.k as u64);
            w.u64(k.dimensions as u64);
            w.f64s(&k.centers);
        }
    }
    w.0
}

struct Rd<'a>(&'a [u8]);
impl Rd<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("model encoding is truncated".into());
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn f64s(&mut self) -> Result<Vec<f64>, String> {
        let n = self.u64()? as usize;
        if n > self.0.len() / 8 {
            return Err("model encoding is truncated".into());
        }
        (0..n).map(|_| self.f64()).collect()
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.u64()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn node(&mut self, depth: usize) -> Result<Option<Box<Node>>, String> {
        if depth as u64 >= crate::limits::get().max_tree_depth {
            return Err("model encoding nests deeper than MAX_TREE_DEPTH".into());
        }
        Ok(match self.u8()? {
            0 => None,
            1 => Some(Box::new(Node::Numeric {
                attr: self.str()?,
                threshold: self.f64()?,
                left: self.node(depth + 1)?,
                right: self.node(depth + 1)?,
            })),
            2 => Some(Box::new(Node::Categoric {
                attr: self.str()?,
                values: self.f64s()?,
                left: self.node(depth + 1)?,
                right: self.node(depth + 1)?,
            })),
            3 => Some(Box::new(Node::Leaf {
                value: self.f64()?,
                stats: self.f64s()?,
            })),
            t => return Err(format!("unknown node tag {t}")),
        })
    }
}

/// A model from [`encode`]'s bytes, checked (shapes, depth) as if it came from outside.
pub fn decode(b: &[u8]) -> Result<Model, String> {
    let mut r = Rd(b);
    let v = r.u8()?;
    if v != VERSION {
        return Err(format!("unknown model encoding version {v}"));
    }
    Ok(match r.u8()? {
        1 => Model::Regression(Regression {
            intercept: r.f64()?,
            coefficients: r.f64s()?,
        }),
        2 => {
            let n = r.u64()? as usize;
            let mut trees = Vec::new();
            for _ in 0..n {
                trees.push(Tree { root: r.node(0)? });
            }
            Model::Forest(Forest { trees })
        }
        3 => {
            let (rows, cols, values) = (r.u64()?, r.u64()?, r.f64s()?);
            if rows.checked_mul(cols) != Some(values.len() as u64) {
                return Err(format!(
                    "a {rows}x{cols} matrix with {} values",
                    values.len()
                ));
            }
            Model::Matrix(Matrix {
                rows: rows as usize,
                cols: cols as usize,
                values,
            })
        }
        4 => {
            let (k, d, centers) = (r.u64()?, r.u64()?, r.f64s()?);
            if k == 0 || d == 0 || k.checked_mul(d) != Some(centers.len() as u64) {
                return Err(format!(
                    "a k-means model of {k}x{d} with {} values",
                    centers.len()
                ));
            }
            Model::Kmeans(Kmeans {
                k: k as usize,
                dimensions: d as usize,
                centers,
            })
        }
        t => return Err(format!("unknown model type {t}")),
    })
}
