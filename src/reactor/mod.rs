//! The seam between the IPC core and an event loop: "call me when this descriptor is
//! readable / writable, or at time T; break the loop". It speaks Melon's `mln_event` flag
//! vocabulary so that both backends implement it natively:
//!
//! * `standalone` (default): our epoll loop in [`standalone`], also exported to C as
//!   Melon's `mln_event_*` API by `capi::event`.
//! * `melon`: libmelon's loop (`reactor/melon.rs`).
//!
//! The core uses only these functions, and only in these patterns (which do not stall
//! Melon's loop): a persistent `RECV` per descriptor; a level-triggered `SEND`
//! added with `APPEND` while a send queue is blocked by a full socket, removed again by a
//! replace with `RECV` alone; zero-delay timers to flush send queues after the current
//! handlers; and timers for restart backoff.
//!
//! Neither the seam nor a backend knows anything of IPC. What the core may also ask:
//! [`depth`] (is this loop being dispatched, how deeply), [`is_busy`] (would a call on this
//! loop be refused now, because a signal handler interrupted its bookkeeping) and
//! [`set_free_hook`] (be told before a loop's memory goes). The standalone backend answers
//! all three; Melon's loop has no equivalent, and the melon backend says so (`None`,
//! `false`, `false`).
//!
//! Signal handlers (standalone backend): every function here may be called from a signal
//! handler on the loop's thread. A call that interrupts the loop's own bookkeeping is
//! refused with its error value (`fd_set` -1, `timer_set` NULL, `timer_cancel` nothing);
//! one that interrupts a handler or the wait goes through. See `standalone`.

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

/// Stops watching `fd` on `ev` (Melon's `mln_event_fd_set` with `M_EV_CLR`): the one way
/// the core takes a descriptor off a loop. A CLR inside that descriptor's own handler is
/// allowed. `ev` must be a live loop.
#[inline]
pub unsafe fn fd_clear(ev: *mut mln_event_t, fd: c_int) -> c_int {
    // SAFETY: forwarded contract: `ev` is a live loop of this backend.
    unsafe {
        backend::fd_set(
            ev,
            fd,
            crate::abi::M_EV_CLR,
            crate::abi::M_EV_UNLIMITED,
            core::ptr::null_mut(),
            None,
        )
    }
}

/// Melon's `mln_event_timer_set`: a one-shot timer; a 0 ms timer set from a handler runs
/// after the current handlers and before the loop next blocks. NULL on failure: "could not
/// set now" (no memory, or the loop is busy, see [`is_busy`]).
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

/// Melon's `mln_event_timer_cancel` for a timer that has not fired yet. On a busy loop
/// (standalone) nothing happens and the timer stays pending.
#[inline]
pub unsafe fn timer_cancel(ev: *mut mln_event_t, t: *mut mln_event_timer_t) {
    // SAFETY: as above; `t` is pending on `ev`.
    unsafe { backend::timer_cancel(ev, t) }
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

/// How many `dispatch` calls of `ev` are running (its nesting depth): `Some(0)` when none.
/// `None` in the melon backend, which cannot know. `ev` must be a live loop.
#[inline]
pub unsafe fn depth(ev: *mut mln_event_t) -> Option<u32> {
    // SAFETY: forwarded contract.
    #[cfg(feature = "standalone")]
    let d = Some(unsafe { backend::depth(ev) });
    // SAFETY: as above.
    #[cfg(not(feature = "standalone"))]
    let d = unsafe { backend::depth(ev) };
    d
}

/// Whether a signal handler running now interrupted the bookkeeping of any loop of this
/// thread (standalone). Always `false` in the melon backend, which has no such state.
#[inline]
pub fn busy_here() -> bool {
    backend::busy_here()
}

/// How many `dispatch` calls are running in this process over every loop: more than one
/// means a loop runs inside a callback of another (or of itself). `None` in the melon
/// backend, which cannot know.
#[inline]
pub fn dispatching() -> Option<u32> {
    #[cfg(feature = "standalone")]
    let d = Some(backend::dispatching());
    #[cfg(not(feature = "standalone"))]
    let d = None;
    d
}

/// Whether every call on `ev` would be refused now: true only in a signal handler that
/// interrupted the loop's own bookkeeping (standalone). Always `false` in the melon
/// backend, which has no such state (and must not be called from signal context at all:
/// Melon's loop deadlocks there). `ev` must be a live loop.
#[inline]
pub unsafe fn is_busy(ev: *mut mln_event_t) -> bool {
    // SAFETY: forwarded contract.
    unsafe { backend::is_busy(ev) }
}

/// Sets the process-wide hook called with a loop just before its memory goes (by
/// `mln_event_free`, also a free deferred until `dispatch` returns), once per loop, so that
/// the core can forget every reference to it. Set once: `false` if a hook was already set,
/// or (melon backend) if the backend cannot call one: libmelon's `mln_event_free` has no
/// hook.
pub fn set_free_hook(hook: fn(*mut mln_event_t)) -> bool {
    backend::set_free_hook(hook)
}

/// Sets the process-wide hook every loop calls once per iteration just before it waits
/// (after its handlers), with the loop. Set once: `false` if a hook was already set, or
/// (melon backend) if the backend cannot call one.
pub fn set_wait_hook(hook: fn(*mut mln_event_t)) -> bool {
    backend::set_wait_hook(hook)
}
