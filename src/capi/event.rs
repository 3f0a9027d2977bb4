//! `mln_event.h`: Melon's event-loop API over our standalone loop
//! (`reactor::standalone`). Standalone build only: the `melon` build takes these symbols
//! from libmelon.
//!
//! Thread rules for every function here: a loop belongs to one thread at a time. Call
//! these functions on a loop only from the thread that runs its `mln_event_dispatch`
//! (normally from inside handlers), or from a single thread while nobody dispatches it.
//!
//! Signal handlers running on that thread may call every function here on the loop
//! (`mln_event_timer_set`, `mln_event_fd_set`, ...): a call that interrupts the loop's own
//! bookkeeping is refused with the error value (-1, NULL, or nothing happens), and one
//! that interrupts a handler or the loop's wait goes through. The functions may allocate,
//! so the interrupted code must not be inside `malloc` (as for any non-async-signal-safe
//! call). `mln_event_break_set` is a plain store and always works.

#[cfg(feature = "standalone")]
use crate::abi::{dispatch_callback, ev_fd_handler, ev_tm_handler, mln_event_t, mln_event_timer_t};
#[cfg(feature = "standalone")]
use crate::capi::{errno, fail, guard, non_null, set_errno};
#[cfg(feature = "standalone")]
use crate::reactor::standalone;
#[cfg(feature = "standalone")]
use core::ffi::{c_int, c_void};

/// Creates an event loop, or returns NULL when the epoll descriptor or memory cannot be
/// had. The caller owns the loop and releases it with `mln_event_free`. `is_break` starts
/// at 0. The loop's epoll descriptor is close-on-exec.
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_event_new() -> *mut mln_event_t {
    guard("mln_event_new", standalone::new)
}

/// Releases an event loop: its records, timers and epoll descriptor. Never closes the
/// descriptors registered with it and never changes the epoll interest set, so a child
/// after `fork` may free its copy of the parent's loop. NULL is a no-op. Called from a
/// handler of the loop itself (Melon: use-after-free), no further handler runs, the
/// running `mln_event_dispatch` returns and the memory is released then. From a signal
/// handler that interrupts the loop's bookkeeping: the same while the loop is dispatched;
/// otherwise (the interrupted call still uses the loop) nothing happens. Handles and `ev`
/// are invalid afterwards.
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_event_free(ev: *mut mln_event_t) {
    guard("mln_event_free", || {
        non_null!(ev);
        // SAFETY: caller contract: `ev` came from `mln_event_new` and is not freed yet.
        unsafe { standalone::free(ev) }
    })
}

/// Runs the loop until `mln_event_break_set(ev)` has been done (by a handler, or by a
/// signal handler interrupting the wait); it does not reset `is_break`: call
/// `mln_event_break_reset(ev)` before dispatching again. Each iteration: the callback, due
/// timers (earliest first), the descriptors that became ready (RECV, then SEND, then ERROR
/// handler), due fd timeouts, due timers again (including 0 ms timers set by the handlers
/// just run), then it blocks until the next deadline or event. Handlers may call any
/// `mln_event_*` function on this loop, including on the descriptor being handled, and may
/// dispatch it again (nested). NULL is a no-op; so is a loop already freed, and a call
/// from a signal handler that interrupts the loop's bookkeeping returns at once.
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_event_dispatch(ev: *mut mln_event_t) {
    guard("mln_event_dispatch", || {
        non_null!(ev);
        // SAFETY: caller contract: `ev` is a live loop.
        unsafe { standalone::dispatch(ev) }
    })
}

/// Registers, changes or removes interest in descriptor `fd`; the loop never closes it.
///
/// `flag`: directions `M_EV_RECV`, `M_EV_SEND`, `M_EV_ERROR`, each calling
/// `fd_handler(ev, fd, data)`; `M_EV_ONESHOT` makes the given directions fire once;
/// `M_EV_APPEND` adds the given directions to the registered ones (without it the given
/// directions replace them); `M_EV_NONBLOCK` sets O_NONBLOCK, a replace without it clears
/// it, `M_EV_BLOCK` clears it on an append; `flag == M_EV_CLR` (alone) removes the
/// descriptor, also from inside its own handler, and also after it was closed.
///
/// `timeout_ms`: `M_EV_UNLIMITED` (-1) removes the fd timeout, `M_EV_UNMODIFIED` (-2) keeps
/// it, other values set it: unless the descriptor becomes ready within `timeout_ms` ms, the
/// handler set by `mln_event_fd_timeout_handler_set` runs once.
///
/// Returns 0, or -1 with errno: EINVAL (`ev` NULL or `fd` negative), EBADF (a new `fd` is
/// not an open descriptor), ENOMEM, or EAGAIN (the call comes from a signal handler that
/// interrupted the loop's bookkeeping: nothing changed; try again later). `data` is not
/// owned by the loop.
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_event_fd_set(
    ev: *mut mln_event_t,
    fd: c_int,
    flag: u32,
    timeout_ms: c_int,
    data: *mut c_void,
    fd_handler: ev_fd_handler,
) -> c_int {
    guard("mln_event_fd_set", || {
        non_null!(ev);
        if fd < 0 {
            return fail(libc::EINVAL);
        }
        set_errno(0);
        // SAFETY: caller contract: `ev` is a live loop.
        let r = unsafe { standalone::fd_set(ev, fd, flag, timeout_ms, data, fd_handler) };
        if r == -1 && errno() == 0 {
            // The loop refused it without a system call failing: it is busy.
            return fail(libc::EAGAIN);
        }
        r
    })
}

/// Starts a one-shot timer: `tm_handler(ev, data)` runs once, `msec` ms from now
/// (monotonic clock; any `mln_u32_t` value is fine). Returns a handle valid until the timer
/// fires or is cancelled, or NULL: the timer could not be set now (`ev` is NULL, memory ran
/// out, or the call comes from a signal handler that interrupted the loop's bookkeeping).
/// `data` is not owned by the loop.
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_event_timer_set(
    ev: *mut mln_event_t,
    msec: u32,
    data: *mut c_void,
    tm_handler: ev_tm_handler,
) -> *mut mln_event_timer_t {
    guard("mln_event_timer_set", || {
        non_null!(ev);
        // SAFETY: caller contract: `ev` is a live loop.
        unsafe { standalone::timer_set(ev, msec, data, tm_handler) }
    })
}

/// Cancels a pending timer of `ev`; its handler will not run. NULL `timer` is a no-op, and
/// so (unlike Melon) is a timer that already fired or was cancelled. From a signal handler
/// that interrupts the loop's bookkeeping, nothing happens (the timer stays pending).
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_event_timer_cancel(
    ev: *mut mln_event_t,
    timer: *mut mln_event_timer_t,
) {
    guard("mln_event_timer_cancel", || {
        non_null!(ev);
        non_null!(timer);
        // SAFETY: caller contract: `ev` is a live loop; `timer` is only decoded.
        unsafe { standalone::timer_cancel(ev, timer) }
    })
}

/// Sets the handler that runs as `timeout_handler(ev, fd, data)` when the timeout given to
/// `mln_event_fd_set` for `fd` expires. `fd` must be registered; otherwise nothing happens,
/// as from a signal handler that interrupts the loop's bookkeeping.
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_event_fd_timeout_handler_set(
    ev: *mut mln_event_t,
    fd: c_int,
    data: *mut c_void,
    timeout_handler: ev_fd_handler,
) {
    guard("mln_event_fd_timeout_handler_set", || {
        non_null!(ev);
        // SAFETY: caller contract: `ev` is a live loop.
        unsafe { standalone::fd_timeout_handler_set(ev, fd, data, timeout_handler) }
    })
}

/// Sets the callback run as `dc(ev, dc_data)` at the start of every dispatch iteration
/// (NULL removes it). The loop blocks while idle, so the callback runs when something
/// happened (an event, a timer, an interrupting signal), not periodically. From a signal
/// handler that interrupts the loop's bookkeeping, nothing happens.
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_event_callback_set(
    ev: *mut mln_event_t,
    dc: dispatch_callback,
    dc_data: *mut c_void,
) {
    guard("mln_event_callback_set", || {
        non_null!(ev);
        // SAFETY: caller contract: `ev` is a live loop.
        unsafe { standalone::callback_set(ev, dc, dc_data) }
    })
}
