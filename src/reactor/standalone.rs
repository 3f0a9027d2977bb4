//! Standalone event loop (placeholder until the loop lands).
use crate::abi::*;
use core::ffi::{c_int, c_void};
pub unsafe fn fd_set(
    _: *mut mln_event_t,
    _: c_int,
    _: u32,
    _: c_int,
    _: *mut c_void,
    _: ev_fd_handler,
) -> c_int {
    -1
}
pub unsafe fn timer_set(
    _: *mut mln_event_t,
    _: u32,
    _: *mut c_void,
    _: ev_tm_handler,
) -> *mut mln_event_timer_t {
    core::ptr::null_mut()
}
pub unsafe fn timer_cancel(_: *mut mln_event_t, _: *mut mln_event_timer_t) {}
pub fn new() -> *mut mln_event_t {
    core::ptr::null_mut()
}
pub unsafe fn dispatch(_: *mut mln_event_t) {}
pub unsafe fn free(_: *mut mln_event_t) {}
