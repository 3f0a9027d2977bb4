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

/// In a spawned child just before `execv` (Melon does the same): closes Melon's log file.
pub(crate) fn before_exec() {
    // SAFETY: libmelon's log teardown; only an `execv` failure logs afterwards, as in Melon's
    // own spawn path.
    unsafe { sys::mln_log_destroy() };
}
