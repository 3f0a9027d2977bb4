//! The seam between the IPC core and an event loop: "call me when this descriptor is
//! readable / writable, or at time T; break the loop". It speaks Melon's `mln_event` flag
//! vocabulary so that both backends implement it natively:
//!
//! * `standalone` (default): our epoll loop in [`standalone`], also exported to C as
//!   Melon's `mln_event_*` API by `capi::event`.
//! * `melon`: libmelon's loop (`reactor/melon.rs`).
//!
//! The core uses only these functions, and only in these patterns (which do not stall
//! Melon's loop, spec D10): a persistent `RECV` per descriptor; a level-triggered `SEND`
//! added with `APPEND` while a send queue is blocked by a full socket, removed again by a
//! replace with `RECV` alone; zero-delay timers to flush send queues after the current
//! handlers; and timers for restart backoff.

use crate::abi::{ev_fd_handler, ev_tm_handler, mln_event_t, mln_event_timer_t};
use core::ffi::{c_int, c_void};

#[cfg(feature = "standalone")]
pub mod standalone;
#[cfg(feature = "standalone")]
use standalone as backend;

#[cfg(all(feature = "melon", not(feature = "standalone")))]
mod melon;
#[cfg(all(feature = "melon", not(feature = "standalone")))]
use melon as backend;

/// Melon's `mln_event_fd_set`. `ev` must be a live loop.
#[inline]
pub unsafe fn fd_set(
    ev: *mut mln_event_t,
    fd: c_int,
    flag: u32,
    timeout_ms: c_int,
    data: *mut c_void,
    h: ev_fd_handler,
) -> c_int {
    // SAFETY: forwarded contract: `ev` is a live loop of this backend.
    unsafe { backend::fd_set(ev, fd, flag, timeout_ms, data, h) }
}

/// Melon's `mln_event_timer_set`: a one-shot timer; a 0 ms timer set from a handler runs
/// after the current handlers and before the loop next blocks. NULL on failure.
#[inline]
pub unsafe fn timer_set(
    ev: *mut mln_event_t,
    msec: u32,
    data: *mut c_void,
    h: ev_tm_handler,
) -> *mut mln_event_timer_t {
    // SAFETY: as above.
    unsafe { backend::timer_set(ev, msec, data, h) }
}

/// Melon's `mln_event_timer_cancel` for a timer that has not fired yet.
#[inline]
pub unsafe fn timer_cancel(ev: *mut mln_event_t, t: *mut mln_event_timer_t) {
    // SAFETY: as above; `t` is pending on `ev`.
    unsafe { backend::timer_cancel(ev, t) }
}

/// How many `dispatch` calls of `ev` are running (0 if not knowable: melon backend).
#[inline]
pub unsafe fn depth(ev: *mut mln_event_t) -> u32 {
    // SAFETY: as above.
    unsafe { backend::depth(ev) }
}

/// `mln_event_break_set`: sets bit 0 of `is_break`, keeping bits 1..31.
#[inline]
pub unsafe fn break_set(ev: *mut mln_event_t) {
    // SAFETY: `ev` points at a live `mln_event_t`; `is_break` is at Melon's offset in both
    // backends (asserted in abi.rs), so a read-modify-write of bit 0 is what the macro does.
    unsafe {
        let p = core::ptr::addr_of_mut!((*ev).is_break);
        p.write(p.read() | 1);
    }
}
