//! HyperLogLog with Redis's parameters (16384 six-bit registers, MurmurHash64A with Redis's
//! seed), so counts are within Redis's standard error (0.81%) of the true cardinality.

pub const REGISTERS: usize = 1 << 14;
const P: u32 = 14;

/// A HyperLogLog with Redis's parameters, with its cardinality estimate cached until a
/// register changes (as Redis caches it in the HLL's header): a PFCOUNT of an unchanged key
/// costs a lookup, not a pass over the registers. Like Redis's sparse encoding, a small HLL
/// keeps only its non-zero registers (a sorted list, 4 bytes each) and becomes the dense
/// 16 KiB array once it holds more than [`SPARSE_MAX`] of them: most keys (a host's peers in a
/// window) never do, and a new key costs no 16 KiB zeroed allocation.
#[derive(Debug, Clone)]
pub struct Hll {
    regs: Regs,
    /// The estimate of the registers, while they are unchanged.
    card: Option<u64>,
}

#[derive(Debug, Clone)]
enum Regs {
    /// The non-zero registers, sorted by index.
    Sparse(Vec<(u16, u8)>),
    /// Every register.
    Dense(Vec<u8>),
}

/// Non-zero registers a sparse HLL holds before it becomes dense (4 KiB of them).
pub const SPARSE_MAX: usize = 1024;

impl PartialEq for Hll {
    fn eq(&self, other: &Self) -> bool {
        self.registers() == other.registers()
    }
}

impl Eq for Hll {}

impl Default for Hll {
    fn default() -> Self {
        Self {
            regs: Regs::Sparse(Vec::new()),
            card: None,
        }
    }
}

/// 2^-r for every register value r (a register holds at most 64 - 14 + 1): exact powers of
/// two, as `2f64.powi(-r)` computes them, without the call.
const POW2_NEG: [f64; 64] = {
    let mut t = [0.0; 64];
    let mut r = 0;
    while r < 64 {
        t[r] = f64::from_bits((1023 - r as u64) << 52);
        r += 1;
    }
    t
};

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
        let changed = match &mut self.regs {
            Regs::Dense(regs) => {
                let grew = count > regs[index];
                if grew {
                    regs[index] = count;
                }
                grew
            }
            Regs::Sparse(list) => match list.binary_search_by_key(&(index as u16), |e| e.0) {
                Ok(at) => {
                    let grew = count > list[at].1;
                    if grew {
                        list[at].1 = count;
                    }
                    grew
                }
                Err(at) => {
                    list.insert(at, (index as u16, count));
                    if list.len() > SPARSE_MAX {
                        self.regs = Regs::Dense(self.registers());
                    }
                    true
                }
            },
        };
        if changed {
            self.card = None;
        }
        changed
    }

    /// An HLL of these registers (a snapshot's; [`REGISTERS`] of them).
    pub fn from_registers(regs: Vec<u8>) -> Hll {
        Hll {
            regs: Regs::Dense(regs),
            card: None,
        }
    }

    /// Every register, in index order.
    pub fn registers(&self) -> Vec<u8> {
        match &self.regs {
            Regs::Dense(regs) => regs.clone(),
            Regs::Sparse(list) => {
                let mut regs = vec![0; REGISTERS];
                for &(i, r) in list {
                    regs[i as usize] = r;
                }
                regs
            }
        }
    }

    /// Bytes its registers take.
    pub fn memory(&self) -> usize {
        match &self.regs {
            Regs::Dense(regs) => regs.len(),
            Regs::Sparse(list) => list.capacity() * std::mem::size_of::<(u16, u8)>(),
        }
    }

    /// Take the maximum of each register (PFMERGE); the result is dense.
    pub fn merge(&mut self, other: &Hll) {
        let mut regs = match std::mem::replace(&mut self.regs, Regs::Sparse(Vec::new())) {
            Regs::Dense(regs) => regs,
            sparse => Hll {
                regs: sparse,
                card: None,
            }
            .registers(),
        };
        match &other.regs {
            Regs::Dense(o) => {
                for (a, b) in regs.iter_mut().zip(o) {
                    *a = (*a).max(*b);
                }
            }
            Regs::Sparse(list) => {
                for &(i, r) in list {
                    let a = &mut regs[i as usize];
                    *a = (*a).max(r);
                }
            }
        }
        self.regs = Regs::Dense(regs);
        self.card = None;
    }

    /// The cardinality estimate (PFCOUNT), cached until a register changes.
    pub fn count(&mut self) -> u64 {
        if let Some(c) = self.card {
            return c;
        }
        let c = match &self.regs {
            Regs::Dense(regs) => estimate(regs.iter().copied()),
            // A sparse HLL has at least REGISTERS - SPARSE_MAX zero registers, each adding 1 to
            // the sum, so the raw estimate is at most 0.7213 m^2 / (m - 1024) < 2.5 m: always
            // the linear-counting branch of `estimate`, which reads only the number of zeros.
            // The same formula on the same count gives the same bits, without the pass over
            // every register (`sparse_count_is_the_dense_estimate` checks it).
            Regs::Sparse(list) => linear_counting(REGISTERS - list.len()),
        };
        self.card = Some(c);
        c
    }
}

/// The cardinality estimate of the registers `regs` yields, in index order.
fn estimate(regs: impl Iterator<Item = u8>) -> u64 {
    let m = REGISTERS as f64;
    let mut sum = 0.0;
    let mut zeros = 0usize;
    for r in regs {
        sum += POW2_NEG[r as usize & 63];
        zeros += (r == 0) as usize;
    }
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let est = alpha * m * m / sum;
    if est <= 2.5 * m && zeros > 0 {
        return linear_counting(zeros);
    }
    est.round() as u64
}

/// The small-range estimate: `zeros` of the registers are 0 (at least one).
fn linear_counting(zeros: usize) -> u64 {
    let m = REGISTERS as f64;
    (m * (m / zeros as f64).ln()).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_what_powi_computes() {
        for (r, p) in POW2_NEG.iter().enumerate() {
            assert_eq!(p.to_bits(), 2f64.powi(-(r as i32)).to_bits(), "{r}");
        }
    }

    /// The cached estimate is always the estimate of the registers as they are: after adds
    /// that change a register, adds that do not, and merges.
    #[test]
    fn the_cached_count_follows_every_change() {
        let mut h = Hll::default();
        let mut other = Hll::default();
        for i in 0..20_000u32 {
            h.add(format!("host-{}", i % 7_000).as_bytes());
            if i % 3 == 0 {
                other.add(format!("peer-{i}").as_bytes());
            }
            if i % 997 == 0 {
                h.merge(&other);
            }
            if i % 101 == 0 {
                let dense = estimate(h.registers().into_iter());
                assert_eq!(h.count(), dense, "after {i} adds");
                // counted twice without a change: the cached value
                assert_eq!(h.count(), dense);
            }
        }
        let copy = Hll::from_registers(h.registers());
        assert_eq!(copy, h);
    }

    /// A sparse HLL and a dense one of the same elements agree on every register and on
    /// the estimate, exactly, at every size across the switch to dense.
    #[test]
    fn sparse_and_dense_agree_exactly() {
        let mut sparse = Hll::default();
        let mut dense = Hll::from_registers(vec![0; REGISTERS]);
        for i in 0..5_000u32 {
            let e = format!("10.{}.{}.{}", i % 7, i / 256, i % 256);
            assert_eq!(sparse.add(e.as_bytes()), dense.add(e.as_bytes()), "{i}");
            if i % 37 == 0 || (1000..1100).contains(&i) {
                assert_eq!(sparse.count(), dense.count(), "after {i}");
                assert_eq!(sparse.registers(), dense.registers());
            }
        }
        assert!(
            matches!(sparse.regs, Regs::Dense(_)),
            "past SPARSE_MAX it is dense"
        );
        let mut small = Hll::default();
        small.add(b"a");
        assert!(matches!(small.regs, Regs::Sparse(_)));
        assert!(small.memory() < 64);
        let mut m = Hll::default();
        m.merge(&small);
        assert_eq!(m, small);
        assert_eq!(m.count(), 1);
    }

    /// The sparse form's count (zeros only) is what the pass over every register gives, for
    /// every size a sparse HLL can have.
    #[test]
    fn sparse_count_is_the_dense_estimate() {
        let mut h = Hll::default();
        let mut i = 0u32;
        loop {
            let sparse = matches!(h.regs, Regs::Sparse(_));
            if !sparse {
                break;
            }
            let by_pass = estimate(h.registers().into_iter());
            assert_eq!(
                h.count(),
                by_pass,
                "{} registers set",
                h.registers().iter().filter(|&&r| r > 0).count()
            );
            h.add(format!("element {i}").as_bytes());
            i += 1;
        }
        assert!(i > SPARSE_MAX as u32);
    }

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
            if a.len() == 2 {
                // one key: its cached estimate (no union to build)
                return match self.hll(&a[1], false) {
                    Ok(Some(h)) => Reply::Integer(h.count() as i64),
                    Ok(None) => Reply::Integer(0),
                    Err(r) => r,
                };
            }
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
