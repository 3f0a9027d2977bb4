//! The melon build's glue to libmelon: what the core needs from Melon beyond the reactor
//! seam. [`sys`] holds every imported declaration (the only `extern` block of the build);
//! [`conf`] is `mln_fork()` over Melon's configuration; [`conn`] makes the connections
//! inside `mln_fork_t` and `master_conn` genuine Melon connections. (How a send, also from
//! Melon's SIGUSR2 handler, reaches the socket without calling into Melon's loop: the
//! eventfd of `crate::sigsafe`.)
//! Compiled only in the melon build (`--no-default-features --features melon`).

pub(crate) mod conf;
pub(crate) mod conn;
pub(crate) mod sys;

use crate::log::Level;
use std::ffi::CString;

/// Writes one line to Melon's log (`_mln_sys_log`) at the matching level: error, warn,
/// report (our info), debug. Melon filters by its configured `log_level`.
pub(crate) fn log(l: Level, text: &str) {
    let level = match l {
        Level::None => return,
        Level::Error => sys::LOG_ERROR,
        Level::Warn => sys::LOG_WARN,
        Level::Info => sys::LOG_REPORT,
        Level::Debug => sys::LOG_DEBUG,
    };
    let mut line = text.replace('\0', " ");
    line.push('\n');
    let Ok(line) = CString::new(line) else { return };
    // SAFETY: Melon's variadic logger with a "%s" format and one C string argument.
    unsafe {
        sys::_mln_sys_log(
            level,
            c"melon-ipc".as_ptr(),
            c"mln_ipc".as_ptr(),
            0,
            c"%s".as_ptr(),
            line.as_ptr(),
        )
    };
}

/// In a spawned child just before `execv` (Melon does the same): closes Melon's log file.
pub(crate) fn before_exec() {
    // SAFETY: libmelon's log teardown; only an `execv` failure logs afterwards, as in Melon's
    // own spawn path.
    unsafe { sys::mln_log_destroy() };
}
