//! Decision-tree ensembles (RedisML's ML.FOREST.*).

/// A tree node. Splits send a sample left when it matches, right otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Left when `value <= threshold`.
    Numeric {
        /// The sample attribute compared.
        attr: String,
        /// Left when the value is at most this.
        threshold: f64,
        /// Where matching samples go.
        left: Option<Box<Node>>,
        /// Where the others go.
        right: Option<Box<Node>>,
    },
    /// Left when the value equals one of `values`.
    Categoric {
        /// The sample attribute compared.
        attr: String,
        /// Left when the value is one of these.
        values: Vec<f64>,
        /// Where matching samples go.
        left: Option<Box<Node>>,
        /// Where the others go.
        right: Option<Box<Node>>,
    },
    /// A prediction, with per-class counts (`STATS a:b:c`; without them, `stats` is empty and
    /// the leaf votes one-hot for class `value` when it is a whole number >= 0).
    Leaf {
        /// The prediction (a class number, or a regression value).
        value: f64,
        /// Per-class counts (`STATS a:b:c`), empty without.
        stats: Vec<f64>,
    },
}

/// A child slot of a split.
type Child = Option<Box<Node>>;

#[derive(Debug, Clone, PartialEq, Default)]
/// One decision tree.
pub struct Tree {
    /// The root (None until the first node is added).
    pub root: Option<Box<Node>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
/// A decision-tree ensemble (`ML.FOREST.*`).
pub struct Forest {
    /// Its trees, by tree id.
    pub trees: Vec<Tree>,
}

/// A sample: `attr:val,attr:val,...`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pairs: Vec<(String, f64)>,
}

/// The error for a malformed sample (RedisML's text).
pub const BAD_SAMPLE: &str =
    "Feature vector parsing failed. Format should be : 'key:val,key:val'...";

/// C's atof: the longest numeric prefix, 0 when there is none.
pub fn atof(s: &str) -> f64 {
    let s = s.trim_start();
    let mut end = 0;
    let b = s.as_bytes();
    let mut seen_digit = false;
    let mut seen_dot = false;
    let mut seen_exp = false;
    while end < b.len() {
        let c = b[end];
        let ok = match c {
            b'0'..=b'9' => {
                seen_digit = true;
                true
            }
            b'+' | b'-' => end == 0 || matches!(b[end - 1], b'e' | b'E'),
            b'.' if !seen_dot && !seen_exp => {
                seen_dot = true;
                true
            }
            b'e' | b'E' if seen_digit && !seen_exp => {
                seen_exp = true;
                true
            }
            _ => false,
        };
        if !ok {
            break;
        }
        end += 1;
    }
    let mut t = &s[..end];
    while !t.is_empty() && t.parse::<f64>().is_err() {
        t = &t[..t.len() - 1];
    }
    t.parse().unwrap_or(0.0)
}

impl Sample {
    /// Parse `attr:val,attr:val,...`.
    pub fn parse(s: &str) -> Result<Sample, String> {
        let mut pairs = Vec::new();
        // strtok semantics: empty tokens between commas are skipped
        let tokens: Vec<&str> = s.split(',').filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() {
            return Err(BAD_SAMPLE.into());
        }
        for t in tokens {
            let mut parts = t.split(':').filter(|p| !p.is_empty());
            match (parts.next(), parts.next()) {
                (Some(k), Some(v)) => pairs.push((k.to_string(), atof(v))),
                _ => return Err(BAD_SAMPLE.into()),
            }
        }
        Ok(Sample { pairs })
    }

    /// The value of `attr`; a missing attribute counts as 0. Numeric attribute names compare
    /// as numbers (`1` and `01` are the same attribute), as in RedisML.
    pub fn get(&self, attr: &str) -> f64 {
        let num = |s: &str| {
            let n = atof(s) as i64;
            (n > 0 && n < 2048).then_some(n)
        };
        let want = num(attr);
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| match (want, num(k)) {
                (Some(a), Some(b)) => a == b,
                (None, None) => k == attr,
                _ => false,
            })
            .map_or(0.0, |(_, v)| *v)
    }
}

impl Node {
    fn children(&mut self) -> Option<(&mut Child, &mut Child)> {
        match self {
            Node::Numeric { left, right, .. } | Node::Categoric { left, right, .. } => {
                Some((left, right))
            }
            Node::Leaf { .. } => None,
        }
    }

    fn complete(&self) -> bool {
        match self {
            Node::Numeric { left, right, .. } | Node::Categoric { left, right, .. } => {
                left.as_ref().is_some_and(|n| n.complete())
                    && right.as_ref().is_some_and(|n| n.complete())
            }
            Node::Leaf { .. } => true,
        }
    }

    fn leaf(&self, s: &Sample) -> (f64, &[f64]) {
        match self {
            Node::Leaf { value, stats } => (*value, stats),
            Node::Numeric {
                attr,
                threshold,
                left,
                right,
            } => {
                let next = if s.get(attr) <= *threshold {
                    left
                } else {
                    right
                };
                next.as_ref().expect("complete tree").leaf(s)
            }
            Node::Categoric {
                attr,
                values,
                left,
                right,
            } => {
                let v = s.get(attr);
                let next = if values.contains(&v) { left } else { right };
                next.as_ref().expect("complete tree").leaf(s)
            }
        }
    }
}

impl Tree {
    /// Put `node` at `path` (`.` then `l`/`r` steps, already validated, no deeper than
    /// [`crate::limits::Limits::max_tree_depth`]).
    pub fn add(&mut self, path: &str, node: Node) -> Result<(), String> {
        let steps = &path.as_bytes()[1..];
        let Some((last, walk)) = steps.split_last() else {
            self.root = Some(Box::new(node));
            return Ok(());
        };
        let mut cur = self
            .root
            .as_mut()
            .ok_or_else(|| format!("ERR no node at the parent of path {path}"))?;
        for s in walk {
            let (l, r) = cur
                .children()
                .ok_or_else(|| format!("ERR path {path} goes through a leaf"))?;
            cur = if *s == b'l' { l } else { r }
                .as_mut()
                .ok_or_else(|| format!("ERR no node at the parent of path {path}"))?;
        }
        let (l, r) = cur
            .children()
            .ok_or_else(|| format!("ERR path {path} goes through a leaf"))?;
        *(if *last == b'l' { l } else { r }) = Some(Box::new(node));
        Ok(())
    }

    /// Every split has both children.
    pub fn complete(&self) -> bool {
        self.root.as_ref().is_some_and(|n| n.complete())
    }
}

impl Forest {
    /// REGRESSION: mean of the leaf values reached. CLASSIFICATION: per class, the sum over
    /// trees of the reached leaf's normalised class counts; the winning class index.
    pub fn run(&self, s: &Sample, classification: bool) -> f64 {
        if self.trees.is_empty() {
            return 0.0;
        }
        if !classification {
            let sum: f64 = self
                .trees
                .iter()
                .map(|t| t.root.as_ref().expect("complete tree").leaf(s).0)
                .sum();
            return sum / self.trees.len() as f64;
        }
        // votes per class, keyed by the class number's bits (non-negative doubles order like
        // their bits), so a leaf for class 1e15 costs one entry, not a vector that long
        let mut votes: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
        for t in &self.trees {
            let (value, stats) = t.root.as_ref().expect("complete tree").leaf(s);
            if stats.is_empty() {
                // no STATS: a one-hot vote for class `value`, when it is a class number
                if value >= 0.0 && value.is_finite() && value.fract() == 0.0 {
                    *votes.entry((value + 0.0).to_bits()).or_default() += 1.0;
                }
                continue;
            }
            let total: f64 = stats.iter().sum();
            for (i, c) in stats.iter().enumerate() {
                let v = votes.entry((i as f64).to_bits()).or_default();
                if total > 0.0 {
                    *v += c / total;
                }
            }
        }
        let mut best = (0.0f64, f64::NEG_INFINITY);
        for (class, v) in &votes {
            if *v > best.1 {
                best = (f64::from_bits(*class), *v);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atof_is_like_c() {
        assert_eq!(atof("1.5"), 1.5);
        assert_eq!(atof("2abc"), 2.0);
        assert_eq!(atof("abc"), 0.0);
        assert_eq!(atof("-3e2x"), -300.0);
        assert_eq!(atof("1e"), 1.0);
    }

    #[test]
    fn samples_parse_like_redisml() {
        let s = Sample::parse("1:0.5,name:3,,x:y").unwrap();
        assert_eq!(s.get("1"), 0.5);
        assert_eq!(s.get("01"), 0.5);
        assert_eq!(s.get("name"), 3.0);
        assert_eq!(s.get("x"), 0.0);
        assert_eq!(s.get("missing"), 0.0);
        assert!(Sample::parse("").is_err());
        assert!(Sample::parse("novalue").is_err());
    }
}
