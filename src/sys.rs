//! Checked system calls: one helper turns the C convention (-1 and errno) into `io::Result`.

use std::io;

/// Calls a libc function and maps `-1` to the current `errno`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller upholds the preconditions of the named libc function.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

/// Retries `f` while it fails with EINTR.
pub(crate) fn retry_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Runs `f` and puts errno back as it was: for work that reports its failed system calls
/// in its result, so that a call of ours that succeeds leaves the caller's errno alone.
#[inline]
pub(crate) fn keeping_errno<R>(f: impl FnOnce() -> R) -> R {
    let saved = nix::errno::Errno::last_raw();
    let r = f();
    nix::errno::Errno::set_raw(saved);
    r
}
