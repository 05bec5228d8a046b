//! The model types.

use crate::forest::Forest;

/// Linear and logistic regression share one type, as in RedisML.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// The constant term.
    pub intercept: f64,
    /// One coefficient per feature.
    pub coefficients: Vec<f64>,
}

impl Regression {
    fn dot(&self, features: &[f64]) -> Result<f64, String> {
        if features.len() != self.coefficients.len() {
            return Err(format!(
                "ERR wrong number of features: the model has {} coefficients, got {}",
                self.coefficients.len(),
                features.len()
            ));
        }
        Ok(self.intercept
            + features
                .iter()
                .zip(&self.coefficients)
                .map(|(f, c)| f * c)
                .sum::<f64>())
    }

    /// intercept + sum(f_i * coef_i).
    pub fn linear(&self, features: &[f64]) -> Result<f64, String> {
        self.dot(features)
    }

    /// 1 / (1 + exp(-linear)).
    pub fn logistic(&self, features: &[f64]) -> Result<f64, String> {
        Ok(1.0 / (1.0 + (-self.dot(features)?).exp()))
    }
}

/// A matrix; `rows * cols == values.len()` always holds (checked where one is made).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row-major.
    pub values: Vec<f64>,
}

impl Matrix {
    /// The product (limits checked).
    pub fn multiply(&self, b: &Matrix) -> Result<Matrix, String> {
        if b.rows != self.cols {
            return Err("Wrong matrix dimentions b:rows should equal a:cols".into());
        }
        let l = crate::limits::get();
        let n = (self.rows as u64).saturating_mul(b.cols as u64);
        if n > l.max_values {
            return Err(crate::limits::exceeded(
                &format!("the {}x{} product's size", self.rows, b.cols),
                n,
                "MAX_VALUES",
                l.max_values,
            ));
        }
        let ops = n.saturating_mul(self.cols as u64);
        if ops > l.max_multiply_ops {
            return Err(crate::limits::exceeded(
                "the product's multiply-adds",
                ops,
                "MAX_MULTIPLY_OPS",
                l.max_multiply_ops,
            ));
        }
        let mut values = vec![0.0; n as usize];
        for i in 0..self.rows {
            for j in 0..b.cols {
                values[i * b.cols + j] = (0..self.cols)
                    .map(|k| self.values[i * self.cols + k] * b.values[k * b.cols + j])
                    .sum();
            }
        }
        Ok(Matrix {
            rows: self.rows,
            cols: b.cols,
            values,
        })
    }

    /// The element-wise sum (equal shapes).
    pub fn add(&self, b: &Matrix) -> Result<Matrix, String> {
        if b.rows != self.rows || b.cols != self.cols {
            return Err("Added matrices dimentions should be equal".into());
        }
        Ok(Matrix {
            rows: self.rows,
            cols: self.cols,
            values: self
                .values
                .iter()
                .zip(&b.values)
                .map(|(x, y)| x + y)
                .collect(),
        })
    }

    /// Multiply every entry by `s`.
    pub fn scale(&mut self, s: f64) {
        for v in &mut self.values {
            *v *= s;
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
/// A k-means model: k centres of `dimensions` values.
pub struct Kmeans {
    /// Number of centres.
    pub k: usize,
    /// Values per centre.
    pub dimensions: usize,
    /// k centres of `dimensions` values each.
    pub centers: Vec<f64>,
}

impl Kmeans {
    /// Index of the nearest centre (squared Euclidean distance; the first wins ties).
    pub fn predict(&self, features: &[f64]) -> Result<usize, String> {
        if features.len() != self.dimensions {
            return Err(format!(
                "ERR wrong number of features: the model has {} dimensions, got {}",
                self.dimensions,
                features.len()
            ));
        }
        let mut best = (0, f64::INFINITY);
        for c in 0..self.k {
            let centre = &self.centers[c * self.dimensions..(c + 1) * self.dimensions];
            let d: f64 = centre
                .iter()
                .zip(features)
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            if d < best.1 {
                best = (c, d);
            }
        }
        Ok(best.0)
    }
}

/// A model stored under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// `ML.LINREG`/`ML.LOGREG`.
    Regression(Regression),
    /// `ML.FOREST`.
    Forest(Forest),
    /// `ML.MATRIX`.
    Matrix(Matrix),
    /// `ML.KMEANS`.
    Kmeans(Kmeans),
}

impl Model {
    /// The type name `TYPE` reports: the Redis module's data type, one for every model.
    pub fn type_name(&self) -> &'static str {
        "DFML-MODL"
    }
}
