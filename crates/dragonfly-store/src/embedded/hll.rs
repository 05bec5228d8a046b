//! HyperLogLog with Redis's parameters (16384 six-bit registers, MurmurHash64A with Redis's
//! seed), so counts are within Redis's standard error (0.81%) of the true cardinality.

pub const REGISTERS: usize = 1 << 14;
const P: u32 = 14;

#[derive(Debug, Clone, PartialEq, Eq)]
/// A HyperLogLog (Redis's dense layout, 16384 registers).
pub struct Hll {
    /// The registers.
    pub regs: Vec<u8>,
}

impl Default for Hll {
    fn default() -> Self {
        Self {
            regs: vec![0; REGISTERS],
        }
    }
}

fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4a7935bd1e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let chunks = key.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= (b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

impl Hll {
    /// Add one element; true if a register changed.
    pub fn add(&mut self, elem: &[u8]) -> bool {
        let hash = murmur64a(elem, 0xadc83b19);
        let index = (hash & (REGISTERS as u64 - 1)) as usize;
        let rest = (hash >> P) | (1u64 << (64 - P));
        let count = rest.trailing_zeros() as u8 + 1;
        if count > self.regs[index] {
            self.regs[index] = count;
            true
        } else {
            false
        }
    }

    /// Take the maximum of each register (PFMERGE).
    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.regs.iter_mut().zip(&other.regs) {
            *a = (*a).max(*b);
        }
    }

    /// The cardinality estimate (PFCOUNT).
    pub fn count(&self) -> u64 {
        let m = REGISTERS as f64;
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for &r in &self.regs {
            sum += 2f64.powi(-(r as i32));
            zeros += (r == 0) as usize;
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let est = alpha * m * m / sum;
        let est = if est <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            est
        };
        est.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_two_percent() {
        for n in [1usize, 10, 1000, 50_000] {
            let mut h = Hll::default();
            for i in 0..n {
                h.add(format!("10.0.{}.{}", i / 256, i % 256).as_bytes());
            }
            let c = h.count() as f64;
            assert!(
                (c - n as f64).abs() <= (n as f64 * 0.02).max(1.0),
                "{n} -> {c}"
            );
        }
    }
}

mod commands {
    use super::Hll;
    use crate::embedded::{Db, Value};
    use crate::Reply;

    fn not_hll() -> Reply {
        Reply::err("WRONGTYPE Key is not a valid HyperLogLog string value.")
    }

    impl Db {
        /// The HLL at `key`; a plain string that is not one is Redis's HLL type error.
        fn hll(&mut self, key: &[u8], create: bool) -> Result<Option<&mut Hll>, Reply> {
            let make: Option<fn() -> Value> = if create {
                Some(|| Value::Hll(Box::default()))
            } else {
                None
            };
            if let Some(Value::Str(_)) = self.value(key) {
                return Err(not_hll());
            }
            self.typed(key, make, |v| match v {
                Value::Hll(h) => Some(&mut **h),
                _ => None,
            })
        }

        pub(crate) fn pfadd(&mut self, a: &[Vec<u8>]) -> Reply {
            let existed = self.value(&a[1]).is_some();
            match self.hll(&a[1], true) {
                Ok(h) => {
                    let h = h.expect("created");
                    let mut changed = !existed;
                    for e in &a[2..] {
                        changed |= h.add(e);
                    }
                    Reply::Integer(changed as i64)
                }
                Err(r) => r,
            }
        }

        pub(crate) fn pfcount(&mut self, a: &[Vec<u8>]) -> Reply {
            let mut union = Hll::default();
            for k in &a[1..] {
                match self.hll(k, false) {
                    Ok(Some(h)) => union.merge(h),
                    Ok(None) => {}
                    Err(r) => return r,
                }
            }
            Reply::Integer(union.count() as i64)
        }

        pub(crate) fn pfmerge(&mut self, a: &[Vec<u8>]) -> Reply {
            let mut union = Hll::default();
            for k in &a[1..] {
                match self.hll(k, false) {
                    Ok(Some(h)) => union.merge(h),
                    Ok(None) => {}
                    Err(r) => return r,
                }
            }
            match self.hll(&a[1], true) {
                Ok(h) => {
                    *h.expect("created") = union;
                    Reply::ok()
                }
                Err(r) => r,
            }
        }
    }
}
