//! The `extern "C"` surface: Melon's function names and prototypes, one file per Melon
//! header. Each exported body runs inside `guard`, checks its pointers, converts, and
//! delegates to the core; no logic lives here.

pub mod event;
pub mod fork;
pub mod framework;
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
pub(crate) fn guard<R: Fallback>(name: &str, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(_) => {
            crate::log::error(format_args!("{name}: internal error (panic caught)"));
            R::fallback()
        }
    }
}

/// Returns the documented error value from the enclosing exported function, with errno
/// EINVAL, when `$p` is NULL.
macro_rules! non_null {
    ($p:expr) => {
        if $p.is_null() {
            $crate::capi::set_errno(libc::EINVAL);
            return $crate::capi::Fallback::fallback();
        }
    };
}
pub(crate) use non_null;

/// Sets the calling thread's errno.
pub(crate) fn set_errno(e: core::ffi::c_int) {
    // SAFETY: `__errno_location` returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// Sets errno to `e` and returns the error value of an `int` function (-1).
pub(crate) fn fail(e: core::ffi::c_int) -> core::ffi::c_int {
    set_errno(e);
    -1
}
