//! The `extern "C"` surface: Melon's function names and prototypes, one file per Melon
//! header. Each exported body runs inside `guard`, checks its pointers, converts, and
//! delegates to the core; no logic lives here.

pub mod event;
pub mod fork;
pub mod framework;
pub mod globals;
pub mod ipc;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// The value an exported function returns when its body panicked or was refused.
pub(crate) trait Fallback {
    fn fallback() -> Self;
}
impl Fallback for () {
    fn fallback() -> Self {}
}
impl Fallback for core::ffi::c_int {
    fn fallback() -> Self {
        -1
    }
}
impl<T> Fallback for *mut T {
    fn fallback() -> Self {
        core::ptr::null_mut()
    }
}

/// The one panic boundary for every exported body: a panic never crosses into C; it is
/// logged and the function returns its documented error value (-1, NULL or nothing).
///
/// It also marks the thread of control as inside the library (see `sigsafe`), so that a
/// signal handler interrupting it does not touch the state being updated.
pub(crate) fn guard<R: Fallback>(name: &str, body: impl FnOnce() -> R) -> R {
    let _inside = crate::sigsafe::Inside::enter();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(_) => {
            crate::log::error(format_args!("{name}: internal error (panic caught)"));
            R::fallback()
        }
    }
}

/// `guard` without marking the thread as inside the library, for `mln_event_dispatch`:
/// the loop's own bookkeeping is protected by the loop itself (a call from a signal handler
/// that interrupts it is refused), and everything else a dispatch runs is user code. The
/// body runs as user code does (`sigsafe::outside`), so the loop's handlers run there too,
/// whoever called the dispatch.
#[cfg(feature = "standalone")]
pub(crate) fn guard_unmarked<R: Fallback>(name: &str, body: impl FnOnce() -> R) -> R {
    crate::sigsafe::outside(|| match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(_) => {
            crate::log::error(format_args!("{name}: internal error (panic caught)"));
            R::fallback()
        }
    })
}

/// Returns the documented error value from the enclosing exported function when `$p` is
/// NULL.
macro_rules! non_null {
    ($p:expr) => {
        if $p.is_null() {
            return $crate::capi::Fallback::fallback();
        }
    };
}
pub(crate) use non_null;
