//! The `extern "C"` surface: Melon's function names and prototypes, one file per Melon
//! header. Each exported body runs inside `guard`, checks its pointers, converts, and
//! delegates to the core; no logic lives here.

pub mod event;
pub mod fds;
pub mod fork;
pub mod framework;
pub mod ipc;
pub mod lifecycle;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// The value an exported function returns when its body panicked or was refused.
pub(crate) trait Fallback {
    fn fallback() -> Self;
    /// Whether this value is the function's error value (errno then tells why).
    fn failed(&self) -> bool;
}
impl Fallback for () {
    fn fallback() -> Self {}
    fn failed(&self) -> bool {
        // Nothing to report and nothing to keep: a void function's errno is unspecified.
        true
    }
}
impl Fallback for core::ffi::c_int {
    fn fallback() -> Self {
        -1
    }
    fn failed(&self) -> bool {
        *self == -1
    }
}
impl<T> Fallback for *mut T {
    fn fallback() -> Self {
        core::ptr::null_mut()
    }
    fn failed(&self) -> bool {
        self.is_null()
    }
}

/// The panic boundary of every exported body: a panic never crosses into C; it is
/// logged and the function returns its documented error value (-1, NULL or nothing).
/// A success (any other value) leaves errno as the caller had it: the work behind it may
/// meet harmless failures of its own (the /proc entry of a child that has already exited
/// and been reaped), which must not leak out.
pub(crate) fn guard<R: Fallback>(name: &str, body: impl FnOnce() -> R) -> R {
    let saved = errno();
    let r = guard_send(name, body);
    if !r.failed() {
        set_errno(saved);
    }
    r
}

/// `guard` without the errno save and restore, for the two send functions (run once per
/// message): their body leaves errno alone on success by itself (the channel layer puts
/// errno back around the system calls that fail, e.g. a write that meets a full socket).
#[inline(always)]
pub(crate) fn guard_send<R: Fallback>(name: &str, body: impl FnOnce() -> R) -> R {
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

/// The calling thread's errno.
pub(crate) fn errno() -> core::ffi::c_int {
    // SAFETY: `__errno_location` returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

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
