//! Genuine Melon connections (spec §7): the `conn` of every `mln_fork_t` and the worker's
//! `master_conn` are set up with libmelon's `mln_tcp_conn_init` (a Melon pool, empty
//! queues, the cached `nonblock` bit) so that programs may use Melon's connection API on
//! them. melon-ipc itself never queues on them; their chains stay empty.

use super::globals::master_conn_ptr;
use super::sys;
use crate::abi::mln_tcp_conn_t;
use crate::log;
use core::ffi::c_int;

/// Makes `conn` (fd already stored) a Melon connection. The descriptor is made
/// non-blocking first, so the cached `nonblock` bit is true (Melon's blocking path turns
/// a full socket into an error, D1); melon-ipc's own I/O does not depend on it.
pub(crate) fn init(conn: &mut mln_tcp_conn_t) {
    let fd = conn.sockfd;
    set_nonblock(fd);
    // SAFETY: `conn` is a valid, exclusively borrowed connection record.
    if unsafe { sys::mln_tcp_conn_init(conn, fd) } < 0 {
        log::error(format_args!("mln_tcp_conn_init: no memory"));
    }
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
pub(crate) fn master_prepare() {
    let c = master_conn_ptr();
    // SAFETY: as in `master_attach`.
    unsafe {
        if (*c).pool.is_null() && sys::mln_tcp_conn_init(c, (*c).sockfd) < 0 {
            log::error(format_args!("mln_tcp_conn_init: no memory"));
        }
    }
}

/// `master_conn` now names `fd` (in a new child; -1 in the master).
pub(crate) fn master_attach(fd: c_int) {
    let c = master_conn_ptr();
    set_nonblock(fd);
    // SAFETY: `master_conn` is a static only the loop thread touches.
    unsafe {
        if (*c).pool.is_null() {
            if sys::mln_tcp_conn_init(c, fd) < 0 {
                log::error(format_args!("mln_tcp_conn_init: no memory"));
                (*c).sockfd = fd;
            }
        } else {
            sys::mln_tcp_conn_fd_set(c, fd);
        }
    }
}

fn set_nonblock(fd: c_int) {
    if fd < 0 {
        return;
    }
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}
