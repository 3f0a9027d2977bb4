//! Descriptors that came with the frame a handler is handling (extension, issue 23):
//! `mln_ipc_fds_count`, `mln_ipc_fd_take`, `mln_ipc_fds_truncated`, and the Rust API's
//! `take_fds`. A stack, one entry per running handler whose frame came with descriptors
//! (a handler may run the loop, and the nested handlers have frames of their own); what a
//! handler did not take is closed when it returns.

use crate::channel::FrameFds;
use std::cell::{Cell, RefCell};
use std::os::fd::{IntoRawFd, OwnedFd};

struct Handled {
    /// `None` once taken.
    fds: Vec<Option<OwnedFd>>,
    count: u32,
    truncated: bool,
    /// The handler depth (`DEPTH`) of the handler whose frame these are.
    depth: u32,
}

thread_local! {
    // The loop thread's: handlers run there. Only frames that came with descriptors get an
    // entry (most frames have none, and this runs for every frame handled); `DEPTH` counts
    // the handlers running, so a nested handler of a frame without descriptors sees none,
    // not its outer handler's.
    static STACK: RefCell<Vec<Handled>> = const { RefCell::new(Vec::new()) };
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    // Entries in `STACK` (checked without touching it).
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// A handler is about to run for a frame that came with `fds` (or none).
#[inline]
pub(crate) fn enter(fds: Option<Box<FrameFds>>) {
    let Ok(depth) = DEPTH.try_with(|d| {
        let n = d.get().saturating_add(1);
        d.set(n);
        n
    }) else {
        return;
    };
    if let Some(f) = fds {
        enter_with(*f, depth);
    }
}

#[cold]
fn enter_with(f: FrameFds, depth: u32) {
    let h = Handled {
        count: f.fds.len() as u32,
        fds: f.fds.into_iter().map(Some).collect(),
        truncated: f.truncated,
        depth,
    };
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.push(h);
            let _ = HELD.try_with(|n| n.set(s.len() as u32));
        }
    });
}

/// The handler returned: what it did not take is closed.
#[inline]
pub(crate) fn leave() {
    let Ok(depth) = DEPTH.try_with(|d| {
        let n = d.get();
        d.set(n.saturating_sub(1));
        n
    }) else {
        return;
    };
    if HELD.try_with(Cell::get).is_ok_and(|n| n > 0) {
        leave_with(depth);
    }
}

#[cold]
fn leave_with(depth: u32) {
    let left = STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            // Entries of deeper handlers are gone already (each handler's leave pops its
            // own); `>=` also drops any left by a handler that never returned here.
            let h = if s.last().is_some_and(|h| h.depth >= depth) {
                s.pop()
            } else {
                None
            };
            let _ = HELD.try_with(|n| n.set(s.len() as u32));
            h
        })
        .ok()
        .flatten();
    drop(left);
}

fn with_top<R>(f: impl FnOnce(&mut Handled) -> R) -> Option<R> {
    let depth = DEPTH.try_with(Cell::get).ok()?;
    STACK
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            s.last_mut().filter(|h| h.depth == depth).map(f)
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
