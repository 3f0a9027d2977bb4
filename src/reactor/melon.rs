//! Melon backend of the reactor seam: forwards to libmelon's own event loop (`mln_event.c`,
//! spec §6); the imports are in `crate::melon::sys`.
//!
//! Melon's loop has two traps, and the core keeps out of both:
//! * D10 (persistent RECV plus an appended one-shot SEND stalls the descriptor): the core
//!   only ever adds a level-triggered SEND with APPEND and removes it with a replace.
//! * D9 (a signal handler that calls into the loop deadlocks on `fd_lock`, held by the
//!   dispatcher inside `epoll_wait`; `timer_lock` likewise while timers run): in the melon
//!   build nothing on the send path calls this file. Sends only queue, write, and wake
//!   the loop through an eventfd of the IPC core's; the loop flushes from that
//!   descriptor's handler.

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

/// Melon's loop does not say how deeply it is dispatching.
pub unsafe fn depth(_ev: *mut mln_event_t) -> u32 {
    0
}
