//! [`Global`]: a global that lends `&mut T` to one closure at a time (see `state`, which
//! holds the process state in one).

use core::cell::UnsafeCell;
use std::sync::atomic::{compiler_fence, AtomicBool, Ordering};

/// A global that lends `&mut T` to one closure at a time (see the module docs).
pub(crate) struct Global<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through `with`/`try_with`, which never hand out two
// `&mut T` at once. Cross-thread use is excluded by the module contract (loop thread
// only); the flag is for the same thread's signal handlers and for re-entrance.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub(crate) const fn new(value: T) -> Self {
        Global {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Lends the value to `f`, or returns `None` when it is lent already (a signal handler
    /// interrupted a borrow on this thread).
    #[inline]
    pub(crate) fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        // Relaxed loads and stores are plain moves: the flag only has to be seen by code
        // running on this thread (a signal handler interrupts between two instructions,
        // and observes everything program-ordered before the interruption); the compiler
        // fences keep the compiler from moving accesses to the value across the flag.
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        self.busy.store(true, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                compiler_fence(Ordering::SeqCst);
                self.0.store(false, Ordering::Relaxed);
            }
        }
        let _release = Release(&self.busy);
        // SAFETY: the flag was clear and is now set until `_release` drops, so this is the
        // only `&mut T` in existence (see the `Sync` contract).
        Some(f(unsafe { &mut *self.value.get() }))
    }

    /// Lends the value to `f`. A second borrow while one is live is a bug in the library
    /// (or a signal handler calling a function that is not allowed there): it panics, and
    /// the panic boundary of the face turns that into the function's error value.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        match self.try_with(f) {
            Some(r) => r,
            None => busy_panic(),
        }
    }
}

#[cold]
#[inline(never)]
fn busy_panic() -> ! {
    panic!("melon-ipc process state re-entered (a call that is not allowed in a signal handler?)")
}
