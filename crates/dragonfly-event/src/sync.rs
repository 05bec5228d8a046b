//! Locks shared between the engine's threads, taken one way everywhere.
//!
//! A thread that panics while it holds a lock poisons it. The engine reports that panic once
//! as an internal error and stops (exit 4), draining what it can: the threads still running
//! must not panic in turn at the next `lock()` and bury the first message under a cascade.
//! So every lock is taken with [`Locked::locked`], which takes a poisoned lock anyway. What
//! the engine keeps behind locks (counters, states, lists of connections, receipts) stays
//! usable after a panic elsewhere: each update is a single assignment or push.

use std::sync::{Mutex, MutexGuard};

/// Taking a [`Mutex`] whether or not a panicking thread poisoned it.
pub trait Locked<T: ?Sized> {
    /// The lock's guard, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_is_taken_anyway() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let mut g = m2.locked();
            *g = 2;
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*m.locked(), 2);
    }
}
