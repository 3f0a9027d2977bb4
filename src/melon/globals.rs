//! Melon's exported data symbols of `mln_fork.c` (spec §1.13), melon build only. Melon
//! declares them in no header, but they are exported from libmelon, so a program may
//! declare and use them. Defining every one of them also keeps a static link from pulling
//! Melon's `mln_fork.o` out of `libmelon_static.a` for a data reference (which would clash
//! with our functions).
//!
//! * `master_conn` is the real thing: the worker's connection to its master, a genuine
//!   Melon connection (`mln_tcp_conn_init`), returned by `mln_fork_master_connection_get`
//!   and passed as `f_ptr` to worker handlers. Its Melon queues stay empty: melon-ipc keeps
//!   its own queues.
//! * `worker_list_head` / `worker_list_tail` and `rs_clr_handler` / `rs_clr_data` are
//!   read-only mirrors of melon-ipc's state, updated on every change (the list links
//!   through `mln_fork_t::prev`/`next` as in Melon). Writing them changes nothing.
//! * `child_state`, `cur_msg_len`, `cur_msg_type`, `child_error_bytes`,
//!   `child_msg_content`, `child_msg_buf_size`: Melon's worker receive state. melon-ipc
//!   parses elsewhere; they stay zero.
//!
//! None of them is in our header (Melon's headers do not declare them either).
#![cfg(not(feature = "standalone"))]
#![allow(non_upper_case_globals)]

use crate::abi::{clr_handler, mln_fork_t, mln_size_t, mln_tcp_conn_t, mln_u32_t, mln_u8ptr_t};
use core::ffi::c_void;
use core::ptr::{addr_of_mut, null_mut};

/// cbindgen:ignore
#[no_mangle]
pub static mut master_conn: mln_tcp_conn_t = mln_tcp_conn_t::unset(-1);
/// cbindgen:ignore
#[no_mangle]
pub static mut worker_list_head: *mut mln_fork_t = null_mut();
/// cbindgen:ignore
#[no_mangle]
pub static mut worker_list_tail: *mut mln_fork_t = null_mut();
/// cbindgen:ignore
#[no_mangle]
pub static mut rs_clr_handler: clr_handler = None;
/// cbindgen:ignore
#[no_mangle]
pub static mut rs_clr_data: *mut c_void = null_mut();
/// cbindgen:ignore
#[no_mangle]
pub static mut child_state: mln_u32_t = 0;
/// cbindgen:ignore
#[no_mangle]
pub static mut cur_msg_len: mln_u32_t = 0;
/// cbindgen:ignore
#[no_mangle]
pub static mut cur_msg_type: mln_u32_t = 0;
/// cbindgen:ignore
#[no_mangle]
pub static mut child_error_bytes: mln_size_t = 0;
/// cbindgen:ignore
#[no_mangle]
pub static mut child_msg_content: mln_u8ptr_t = null_mut();
/// cbindgen:ignore
#[no_mangle]
pub static mut child_msg_buf_size: mln_size_t = 0;

/// `&master_conn`.
pub(crate) fn master_conn_ptr() -> *mut mln_tcp_conn_t {
    addr_of_mut!(master_conn)
}

/// Mirrors the worker list and the resource-clear handler into Melon's symbols. Called by
/// the process layer (loop thread) after every change.
pub(crate) fn publish(
    head: *mut mln_fork_t,
    tail: *mut mln_fork_t,
    clr: clr_handler,
    clr_data: *mut c_void,
) {
    // SAFETY: plain stores to our statics from the loop thread, which owns the process
    // state (see process/mod.rs); no references are created.
    unsafe {
        addr_of_mut!(worker_list_head).write(head);
        addr_of_mut!(worker_list_tail).write(tail);
        addr_of_mut!(rs_clr_handler).write(clr);
        addr_of_mut!(rs_clr_data).write(clr_data);
    }
}
