//! Descriptors that came with the frame a handler is handling (extension, issue 23):
//! `mln_ipc_fds_count`, `mln_ipc_fd_take`, `mln_ipc_fds_truncated`, and the Rust API's
//! `take_fds`. A stack, one entry per handler running (a handler may run the loop, and the
//! nested handlers have frames of their own); what a handler did not take is closed when
//! it returns.

use crate::channel::FrameFds;
use std::cell::RefCell;
use std::os::fd::{IntoRawFd, OwnedFd};

struct Handled {
    /// `None` once taken.
    fds: Vec<Option<OwnedFd>>,
    count: u32,
    truncated: bool,
}

thread_local! {
    // The loop thread's: handlers run there.
    static STACK: RefCell<Vec<Handled>> = const { RefCell::new(Vec::new()) };
}

/// A handler is about to run for a frame that came with `fds` (or none).
pub(crate) fn enter(fds: Option<FrameFds>) {
    let h = match fds {
        Some(f) => Handled {
            count: f.fds.len() as u32,
            fds: f.fds.into_iter().map(Some).collect(),
            truncated: f.truncated,
        },
        None => Handled {
            fds: Vec::new(),
            count: 0,
            truncated: false,
        },
    };
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.push(h)
        }
    });
}

/// The handler returned: what it did not take is closed.
pub(crate) fn leave() {
    let left = STACK
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten();
    drop(left);
}

fn with_top<R>(f: impl FnOnce(&mut Handled) -> R) -> Option<R> {
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            s.last_mut().map(f)
        })
        .ok()
        .flatten()
}

/// `mln_ipc_fds_count`: descriptors that came with the frame being handled (0 outside a
/// handler).
pub(crate) fn count() -> u32 {
    with_top(|h| h.count).unwrap_or(0)
}

/// `mln_ipc_fds_truncated`.
pub(crate) fn truncated() -> bool {
    with_top(|h| h.truncated).unwrap_or(false)
}

/// `mln_ipc_fd_take`: descriptor `i` of the frame being handled, now the caller's.
pub(crate) fn take(i: u32) -> Option<OwnedFd> {
    with_top(|h| h.fds.get_mut(i as usize).and_then(Option::take)).flatten()
}

/// Every descriptor of the frame being handled not taken yet, in order (the Rust API).
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn take_all() -> Vec<OwnedFd> {
    with_top(|h| h.fds.iter_mut().filter_map(Option::take).collect()).unwrap_or_default()
}

/// For `mln_ipc_fd_take`: the raw descriptor handed over.
pub(crate) fn take_raw(i: u32) -> Option<i32> {
    take(i).map(IntoRawFd::into_raw_fd)
}
