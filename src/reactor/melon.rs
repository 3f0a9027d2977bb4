//! Melon backend of the reactor seam: forwards to libmelon's own event loop (`mln_event.c`,
//! spec §6); the imports are in `crate::melon::sys`.
//!
//! Melon's loop has two traps that callers of this seam must keep out of:
//! * D10 (persistent RECV plus an appended one-shot SEND stalls the descriptor): add a
//!   level-triggered SEND with APPEND only, and remove it with a replace.
//! * D9 (a signal handler that calls into the loop deadlocks on `fd_lock`, held by the
//!   dispatcher inside `epoll_wait`; `timer_lock` likewise while timers run): nothing may
//!   call this file from signal context (a caller wakes a descriptor of its own instead,
//!   and acts from that descriptor's handler).

use crate::abi::{ev_fd_handler, ev_tm_handler, mln_event_t, mln_event_timer_t};
use crate::melon::sys;
use core::ffi::{c_int, c_void};

pub unsafe fn fd_set(
    ev: *mut mln_event_t,
    fd: c_int,
    flag: u32,
    timeout_ms: c_int,
    data: *mut c_void,
    h: ev_fd_handler,
) -> c_int {
    // SAFETY: `ev` is a live Melon loop (seam contract); same prototype as libmelon's.
    unsafe { sys::mln_event_fd_set(ev, fd, flag, timeout_ms, data, h) }
}

pub unsafe fn timer_set(
    ev: *mut mln_event_t,
    msec: u32,
    data: *mut c_void,
    h: ev_tm_handler,
) -> *mut mln_event_timer_t {
    // SAFETY: as above.
    unsafe { sys::mln_event_timer_set(ev, msec, data, h) }
}

pub unsafe fn timer_cancel(ev: *mut mln_event_t, t: *mut mln_event_timer_t) {
    // SAFETY: as above; `t` is a pending timer of `ev`.
    unsafe { sys::mln_event_timer_cancel(ev, t) }
}

/// Melon's loop does not expose its dispatch depth.
pub unsafe fn depth(_ev: *mut mln_event_t) -> Option<u32> {
    None
}

/// Melon's loop has no busy state of ours; the core never calls it in signal context.
pub unsafe fn is_busy(_ev: *mut mln_event_t) -> bool {
    false
}

/// As [`is_busy`], for every loop of this thread.
pub fn busy_here() -> bool {
    false
}

/// libmelon's `mln_event_free` calls no hook.
pub fn set_free_hook(_hook: fn(*mut mln_event_t)) -> bool {
    false
}

/// libmelon's loop has no hook before its wait.
pub fn set_wait_hook(_hook: fn(*mut mln_event_t)) -> bool {
    false
}
