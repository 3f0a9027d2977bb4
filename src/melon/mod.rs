//! The melon build's glue to libmelon: what the core needs from Melon beyond the reactor
//! seam. [`sys`] holds every imported declaration (the only `extern` block of the build);
//! [`conf`] is `mln_fork()` over Melon's configuration; [`conn`] makes the connections
//! inside `mln_fork_t` and `master_conn` genuine Melon connections; [`globals`] are
//! Melon's exported data symbols of `mln_fork.c`. (Logging to Melon's log is in
//! `crate::log`. How a send, also from Melon's SIGUSR2 handler, reaches the socket without
//! calling into Melon's loop: `process::flush` and the eventfd of `crate::sigsafe`.)
//! Compiled only in the melon build (`--no-default-features --features melon`).

pub(crate) mod conf;
pub(crate) mod conn;
pub(crate) mod globals;
pub(crate) mod sys;

/// In a spawned child just before `execv` (Melon does the same): closes Melon's log file.
pub(crate) fn before_exec() {
    // SAFETY: libmelon's log teardown; only an `execv` failure logs afterwards, as in Melon's
    // own spawn path.
    unsafe { sys::mln_log_destroy() };
}
