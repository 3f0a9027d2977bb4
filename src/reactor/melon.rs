//! Melon backend of the reactor seam: forwards to libmelon's own event loop (`mln_event.c`).
//! Only declarations here; the symbols come from `-lmelon` at link time (the archive is
//! linked before `-lmelon`). Minimal so that the `melon` feature compiles; the D10-safe
//! send pattern (spec §8) is the core's business, not this file's.

use crate::abi::{ev_fd_handler, ev_tm_handler, mln_event_t, mln_event_timer_t, mln_u32_t};
use core::ffi::{c_int, c_void};

// libmelon's own functions: not part of our header (cbindgen would declare them).
#[allow(unused_doc_comments)]
/// cbindgen:ignore
extern "C" {
    #[link_name = "mln_event_fd_set"]
    fn melon_event_fd_set(
        event: *mut mln_event_t,
        fd: c_int,
        flag: mln_u32_t,
        timeout_ms: c_int,
        data: *mut c_void,
        fd_handler: ev_fd_handler,
    ) -> c_int;
    #[link_name = "mln_event_timer_set"]
    fn melon_event_timer_set(
        event: *mut mln_event_t,
        msec: mln_u32_t,
        data: *mut c_void,
        tm_handler: ev_tm_handler,
    ) -> *mut mln_event_timer_t;
    #[link_name = "mln_event_timer_cancel"]
    fn melon_event_timer_cancel(event: *mut mln_event_t, timer: *mut mln_event_timer_t);
}

pub unsafe fn fd_set(
    ev: *mut mln_event_t,
    fd: c_int,
    flag: u32,
    timeout_ms: c_int,
    data: *mut c_void,
    h: ev_fd_handler,
) -> c_int {
    // SAFETY: `ev` is a live Melon loop (seam contract); same prototype as libmelon's.
    unsafe { melon_event_fd_set(ev, fd, flag, timeout_ms, data, h) }
}

pub unsafe fn timer_set(
    ev: *mut mln_event_t,
    msec: u32,
    data: *mut c_void,
    h: ev_tm_handler,
) -> *mut mln_event_timer_t {
    // SAFETY: as above.
    unsafe { melon_event_timer_set(ev, msec, data, h) }
}

pub unsafe fn timer_cancel(ev: *mut mln_event_t, t: *mut mln_event_timer_t) {
    // SAFETY: as above; `t` is a pending timer of `ev`.
    unsafe { melon_event_timer_cancel(ev, t) }
}
