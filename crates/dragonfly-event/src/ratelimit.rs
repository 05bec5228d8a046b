//! Rate limiting for repeated log lines about bad input.

use std::sync::atomic::{AtomicU64, Ordering};

/// Says whether the `n`-th occurrence (1-based) of a problem should be logged: the first ten,
/// then every power of ten, so a flood of bad lines costs a handful of log lines.
pub fn should_log(n: u64) -> bool {
    n <= 10 || (n.is_power_of_two() && n >= 1024) || is_power_of_ten(n)
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// Adds one to `counter` and says whether this occurrence should be logged.
pub fn bump(counter: &AtomicU64) -> (u64, bool) {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    (n, should_log(n))
}

#[cfg(test)]
mod tests {
    #[test]
    fn logs_first_ten_then_sparse() {
        let logged: Vec<u64> = (1..=100_000).filter(|&n| super::should_log(n)).collect();
        assert_eq!(&logged[..10], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert!(logged.contains(&100) && logged.contains(&1000) && logged.contains(&100_000));
        assert!(logged.len() < 30);
    }
}
