//! The melon build's glue to libmelon: what the core needs from Melon beyond the reactor
//! seam. [`sys`] holds every imported declaration (the only `extern` block of the build);
//! [`conn`] makes the connections
//! inside `mln_fork_t` and `master_conn` genuine Melon connections; [`globals`] are
//! Melon's exported data symbols of `mln_fork.c`. These are leaves: they import nothing of
//! the rest of the crate but the ABI (`mln_fork()` over Melon's configuration is in the
//! process layer, logging to Melon's log in the log module).
//! Compiled only in the melon build (`--no-default-features --features melon`).

pub(crate) mod conn;
pub(crate) mod globals;
pub(crate) mod sys;

/// In a spawned child just before `execv`: closes Melon's log file (Melon does the same),
/// and makes the epoll descriptors of Melon's loops `loops` close-on-exec (Melon's loop
/// creates them without; Melon's own spawn frees its loop before `execv` instead), so the
/// program inherits none of them.
pub(crate) fn before_exec(loops: &[*mut crate::abi::mln_event_t]) {
    for &ev in loops {
        if ev.is_null() {
            continue;
        }
        // Melon's `struct mln_event_s` (spec §1.10): `int epollfd` at byte 140 and
        // `int unusedfd` at byte 144.
        for off in [140usize, 144] {
            // SAFETY: `ev` is a Melon loop this process registered channels on (its
            // memory is still ours in the child); the offsets are Melon's layout.
            let fd = unsafe { ev.cast::<u8>().add(off).cast::<i32>().read_unaligned() };
            let is_epoll = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .is_ok_and(|p| p.as_os_str() == "anon_inode:[eventpoll]");
            if fd >= 0 && is_epoll {
                // SAFETY: setting FD_CLOEXEC on a descriptor of this process.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
    // SAFETY: libmelon's log teardown; only an `execv` failure logs afterwards, as in Melon's
    // own spawn path.
    unsafe { sys::mln_log_destroy() };
}
