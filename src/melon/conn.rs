//! Genuine Melon connections (spec §7): the `conn` of every `mln_fork_t` and the worker's
//! `master_conn` are set up with libmelon's `mln_tcp_conn_init` (a Melon pool, empty
//! queues, the cached `nonblock` bit) so that programs may use Melon's connection API on
//! them. melon-ipc itself never queues on them; their chains stay empty.
//!
//! Each function returns whether Melon could set the connection up (`false`: no memory
//! for its pool); the caller logs.

use super::globals::master_conn_ptr;
use super::sys;
use crate::abi::mln_tcp_conn_t;
use core::ffi::c_int;

/// Makes `conn` (fd already stored) a Melon connection. The descriptor is made
/// non-blocking first, so the cached `nonblock` bit is true (Melon's blocking path turns
/// a full socket into an error, D1); melon-ipc's own I/O does not depend on it.
pub(crate) fn init(conn: &mut mln_tcp_conn_t) -> bool {
    let fd = conn.sockfd;
    set_nonblock(fd);
    // SAFETY: `conn` is a valid, exclusively borrowed connection record.
    unsafe { sys::mln_tcp_conn_init(conn, fd) >= 0 }
}

/// Releases the Melon pool of `conn` (does not close the descriptor).
pub(crate) fn destroy(conn: &mut mln_tcp_conn_t) {
    if !conn.pool.is_null() {
        // SAFETY: a connection set up by `init`; destroyed once (pool cleared below).
        unsafe { sys::mln_tcp_conn_destroy(conn) };
        conn.pool = core::ptr::null_mut();
    }
}

/// `mln_fork_prepare`: `master_conn` becomes a Melon connection if it is not one yet
/// (fd -1 in the master; a prepare in a worker keeps its descriptor).
pub(crate) fn master_prepare() -> bool {
    let c = master_conn_ptr();
    // SAFETY: `master_conn` is a static only the loop thread touches.
    unsafe { !(*c).pool.is_null() || sys::mln_tcp_conn_init(c, (*c).sockfd) >= 0 }
}

/// `master_conn` now names `fd` (in a new child; -1 in the master).
pub(crate) fn master_attach(fd: c_int) -> bool {
    let c = master_conn_ptr();
    set_nonblock(fd);
    // SAFETY: `master_conn` is a static only the loop thread touches.
    unsafe {
        if (*c).pool.is_null() {
            if sys::mln_tcp_conn_init(c, fd) < 0 {
                (*c).sockfd = fd;
                return false;
            }
        } else {
            sys::mln_tcp_conn_fd_set(c, fd);
        }
    }
    true
}

fn set_nonblock(fd: c_int) {
    if fd < 0 {
        return;
    }
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    // SAFETY: a descriptor of ours, open for the duration of the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if let Ok(fl) = fcntl(fd, FcntlArg::F_GETFL) {
        let fl = OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd, FcntlArg::F_SETFL(fl));
    }
}
