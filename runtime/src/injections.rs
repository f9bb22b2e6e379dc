//! How many trace contexts a producer span wrote: every injection on a thread counts toward the innermost
//! producer span running there, so a span knows at its end whether any message carries its context.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

thread_local! {
    /// How many injections happened on this thread since the innermost producer scope was entered. Scopes save
    /// and restore it around each run or poll, so an inner producer's injections are not counted for the outer
    /// one and no lock or allocation is needed.
    static INJECTIONS_IN_SCOPE: Cell<u32> = const { Cell::new(0) };
}

/// Counts one injection for the producer span current on this thread, if any.
pub(crate) fn count_injection() {
    INJECTIONS_IN_SCOPE.with(|count| count.set(count.get().saturating_add(1)));
}

/// Counts the injections made while one producer scope is entered (one `run`, or one poll of an instrumented
/// future) into `total`; see [`INJECTIONS_IN_SCOPE`]. Restores the outer scope's count on drop, panics included.
pub(crate) struct InjectionScope<'a> {
    outer: u32,
    total: &'a AtomicU32,
}

impl<'a> InjectionScope<'a> {
    pub(crate) fn enter(total: &'a AtomicU32) -> Self {
        Self { outer: INJECTIONS_IN_SCOPE.with(|count| count.replace(0)), total }
    }
}

impl Drop for InjectionScope<'_> {
    fn drop(&mut self) {
        let inner = INJECTIONS_IN_SCOPE.with(|count| count.replace(self.outer));
        self.total.fetch_add(inner, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_scopes_count_their_own_injections_and_restore_the_outer_count() {
        let (outer_total, inner_total) = (AtomicU32::new(0), AtomicU32::new(0));
        {
            let _outer = InjectionScope::enter(&outer_total);
            count_injection();
            {
                let _inner = InjectionScope::enter(&inner_total);
                count_injection();
                count_injection();
            }
            count_injection();
        }
        assert_eq!(inner_total.load(Ordering::Relaxed), 2);
        assert_eq!(outer_total.load(Ordering::Relaxed), 2, "the inner scope's injections are not the outer's");
    }
}
