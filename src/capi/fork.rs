//! `mln_fork.h`: process lifecycle, per-process handler tables and sending (spec §3.2).
//!
//! Thread rules: `mln_fork_master_ipc_handler_set` / `mln_fork_worker_ipc_handler_set` are
//! thread-safe; every other function here belongs to the thread that runs the process's
//! event loop (or a signal handler on that thread; see `mln_ipc_master_send_prepare`).

use crate::abi::*;
use crate::capi::{guard, non_null};
use crate::process::{self, SendError};
use crate::registry::Side;
use crate::wire;
use core::ffi::{c_char, c_int, c_void, CStr};
use std::ffi::CString;

/// Prepares this process for forking: ignores SIGCHLD (children are reaped automatically)
/// and SIGPIPE, creates the master connection record, and installs the registry into the
/// handler tables (handlers set explicitly are kept). Idempotent. Returns 0, or -1 if a
/// signal disposition cannot be set.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_prepare() -> c_int {
    guard("mln_fork_prepare", process::prepare)
}

/// Installs `handler` for frames of `type` in this process's master table (frames from
/// workers), replacing any previous one; `data` is the initial `*udata_ptr`. Works before
/// or after `mln_fork_prepare` and takes precedence over registry entries of the same
/// type. Returns 0, or -1 if `handler` is NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_master_ipc_handler_set(
    r#type: mln_u32_t,
    handler: ipc_handler,
    data: *mut c_void,
) -> c_int {
    guard("mln_fork_master_ipc_handler_set", || {
        handler_set(Side::Master, r#type, handler, data)
    })
}

/// As `mln_fork_master_ipc_handler_set`, for the worker table (frames from the master). A
/// master's worker table is inherited by the workers it forks afterwards. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_worker_ipc_handler_set(
    r#type: mln_u32_t,
    handler: ipc_handler,
    data: *mut c_void,
) -> c_int {
    guard("mln_fork_worker_ipc_handler_set", || {
        handler_set(Side::Worker, r#type, handler, data)
    })
}

fn handler_set(side: Side, ty: u32, handler: ipc_handler, data: *mut c_void) -> c_int {
    if handler.is_none() {
        return -1;
    }
    process::handler_set(side, ty, handler, data);
    0
}

/// Calls `handler(ev, f, data)` for every live child, oldest first; the handler may close
/// the child it is given. Returns 0, or -1 when a handler returned a negative value (the
/// walk stops there) or `ev` is NULL. A NULL handler walks nothing.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_iterate(
    ev: *mut mln_event_t,
    handler: fork_iterate_handler,
    data: *mut c_void,
) -> c_int {
    guard("mln_fork_iterate", || {
        non_null!(ev);
        process::iterate(ev, handler, data)
    })
}

/// The worker's connection to its master (the `f_ptr` of worker handlers);
/// `mln_tcp_conn_fd_get` on it gives the socketpair descriptor, -1 in a process that has
/// no master. Never NULL; owned by the library.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_master_connection_get() -> *mut mln_tcp_conn_t {
    guard("mln_fork_master_connection_get", process::master_connection)
}

/// Starts the workers, each supervised (restarted when it dies). Call `mln_fork_prepare`
/// first.
///
/// Standalone build: as many workers as `mln_fork_worker_num_set` says (default 1).
/// Returns 1 in the master, 0 in a worker, -1 if a fork failed (workers started before
/// the failure keep running and stay in the list).
///
/// Melon build: reads Melon's configuration as Melon does: `worker_proc` workers, then
/// every program of the `proc_exec` domain (`keepalive` supervised, `default` not; the
/// argument strings are copied). A malformed `worker_proc` or `proc_exec` exits with
/// status 1 (nothing of `proc_exec` is started then); no configuration aborts. Returns
/// 1 in the master, 0 in a worker, -1 when memory runs out.
#[no_mangle]
pub unsafe extern "C" fn mln_fork() -> c_int {
    #[cfg(feature = "standalone")]
    let body = process::fork_workers;
    #[cfg(not(feature = "standalone"))]
    let body = crate::melon::conf::fork_from_conf;
    guard("mln_fork", body)
}

/// Extension (not in Melon, standalone build only): the number of workers `mln_fork`
/// starts. Melon reads it from `worker_proc` in its configuration.
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_fork_worker_num_set(n: mln_u32_t) {
    guard("mln_fork_worker_num_set", || process::set_worker_num(n))
}

/// Forks and executes `args[0]` with `args[0..n_args]` plus one more argument: the decimal
/// number of the program's socketpair descriptor (the only descriptor of ours it
/// inherits; it starts with default SIGPIPE and SIGCHLD dispositions). `stype` M_PST_SUP
/// restarts the program when it dies (with backoff), M_PST_DFL does not. The strings are
/// copied: the caller keeps ownership of `args` (a static array is fine). `master_ev`, if
/// not NULL, gets the child's descriptor registered for receiving.
///
/// Returns 0 in the master, -1 on bad arguments (NULL `args`, `n_args` 0, a NULL string,
/// `stype` out of range) or when fork or the handshake fails. Never returns in the child.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_spawn(
    stype: proc_state_type,
    args: *mut mln_s8ptr_t,
    n_args: mln_u32_t,
    master_ev: *mut mln_event_t,
) -> c_int {
    guard("mln_fork_spawn", || {
        non_null!(args);
        if n_args == 0 || (stype != M_PST_DFL && stype != M_PST_SUP) {
            return -1;
        }
        let mut v = Vec::with_capacity(n_args as usize);
        for i in 0..n_args as usize {
            // SAFETY: the caller provides `n_args` readable pointers.
            let s: *const c_char = unsafe { *args.add(i) };
            non_null!(s);
            // SAFETY: non-NULL, NUL-terminated per the caller's contract.
            v.push(CString::from(unsafe { CStr::from_ptr(s) }));
        }
        process::spawn(stype, v, master_ev)
    })
}

/// Forks one supervised worker. Returns 1 in the parent, 0 in the new child, -1 when
/// socketpair/fork fails or the child dies before the handshake. With `master_ev` (may be
/// NULL) the child's descriptor is registered for receiving; a child forked inside that
/// loop must leave it (`mln_event_break_set`), as the framework does.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_restart(master_ev: *mut mln_event_t) -> c_int {
    guard("mln_fork_restart", || process::restart(master_ev))
}

/// Registers every child's descriptor on `ev` for receiving (a replace registration, as in
/// Melon). Frames queued before are flushed once the loop runs. NULL: no-op.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_master_events_set(ev: *mut mln_event_t) {
    guard("mln_fork_master_events_set", || {
        non_null!(ev);
        process::master_events_set(ev)
    })
}

/// Registers the master connection on `ev` for receiving. NULL, or a process without a
/// master: no-op.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_worker_events_set(ev: *mut mln_event_t) {
    guard("mln_fork_worker_events_set", || {
        non_null!(ev);
        process::worker_events_set(ev)
    })
}

/// Sets the callback run in every newly forked child (before it answers the fork
/// handshake) with `data`. NULL disables it.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_resource_clear_handler_set(
    handler: clr_handler,
    data: *mut c_void,
) {
    guard("mln_fork_resource_clear_handler_set", || {
        process::set_clear_handler(handler, data)
    })
}

/// The master's receive handler, registered by `mln_fork_master_events_set` with
/// `data` = the child's `mln_fork_t *`: reads what arrived and calls the master handlers.
/// A `data` that is not a live child is ignored.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_fd_handler_master(
    ev: *mut mln_event_t,
    fd: c_int,
    data: *mut c_void,
) {
    let _ = fd;
    guard("mln_ipc_fd_handler_master", || {
        non_null!(ev);
        if let Some(c) = process::find_child(data.cast()) {
            process::child_readable(ev, c);
        }
    })
}

/// The worker's receive handler, registered by `mln_fork_worker_events_set`: reads what
/// arrived from the master and calls the worker handlers. At end of stream (the master is
/// gone) the worker exits with status 127.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_fd_handler_worker(
    ev: *mut mln_event_t,
    fd: c_int,
    data: *mut c_void,
) {
    let _ = (fd, data);
    guard("mln_ipc_fd_handler_worker", || {
        non_null!(ev);
        process::master_readable(ev)
    })
}

/// Handles the death of child `f` as the library does when its socket closes: removes its
/// registration from the loop, closes its descriptor, drops what was queued to it (logged
/// at warn), frees `f`, and restarts it if supervised. Called from one of `f`'s own
/// handlers, it takes effect when that handler returns. Not a live child, or NULL: no-op.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_socketpair_close_handler(
    ev: *mut mln_event_t,
    f: *mut mln_fork_t,
    fd: c_int,
) {
    let _ = fd;
    guard("mln_fork_socketpair_close_handler", || {
        non_null!(ev);
        if let Some(c) = process::find_child(f) {
            process::close_child(ev, c, "closed by request");
        }
    })
}

/// Queues one message of `type` with `len` bytes from `buf` (copied; NULL with `len` 0 is
/// an empty payload) for child `f_child`. It is written after the current handlers return
/// (everything queued meanwhile goes out in one write) and arrives in order, exactly once,
/// at the child's worker handler for `type`; a full socket only delays it.
///
/// Returns 0, or -1 when `ev` or `f_child` is NULL or not a live child, `buf` is NULL with
/// `len` > 0, or the message exceeds the maximum message size (and so always when
/// `4 + len` does not fit 32 bits).
///
/// May be called from a signal handler running on the loop's thread (Melon's conf reload
/// does): no lock is taken, so it cannot deadlock. If the signal interrupted melon-ipc
/// itself, the frame (at most 4096 bytes; at most 32 waiting) is parked without allocating
/// and queued by the loop right after; whether `f_child` is live is then checked at that
/// point (a dead child's frame is dropped with a warning). Otherwise the ordinary path runs,
/// which allocates: the interrupted code must not be inside `malloc`.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_master_send_prepare(
    ev: *mut mln_event_t,
    r#type: mln_u32_t,
    buf: *mut c_void,
    len: mln_size_t,
    f_child: *mut mln_fork_t,
) -> c_int {
    if crate::sigsafe::interrupted_library() {
        if f_child.is_null() {
            return -1;
        }
        // SAFETY: as below; `park` copies without allocating.
        return unsafe { park(ev, f_child.cast(), r#type, buf, len) };
    }
    guard("mln_ipc_master_send_prepare", || {
        non_null!(ev);
        non_null!(f_child);
        // SAFETY: checked by `payload`, per the caller's contract for `buf`/`len`.
        let Some(p) = (unsafe { payload(buf, len) }) else {
            return -1;
        };
        result(process::send_to_child(ev, f_child, r#type, p))
    })
}

/// Queues one message of `type` for the master; as `mln_ipc_master_send_prepare`. Returns
/// -1 also in a process that is not a worker.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_worker_send_prepare(
    ev: *mut mln_event_t,
    r#type: mln_u32_t,
    msg: *mut c_void,
    len: mln_size_t,
) -> c_int {
    if crate::sigsafe::interrupted_library() {
        if !process::is_worker() {
            return -1;
        }
        // SAFETY: as below.
        return unsafe { park(ev, core::ptr::null_mut(), r#type, msg, len) };
    }
    guard("mln_ipc_worker_send_prepare", || {
        non_null!(ev);
        // SAFETY: as above.
        let Some(p) = (unsafe { payload(msg, len) }) else {
            return -1;
        };
        result(process::send_to_master(ev, r#type, p))
    })
}

/// The signal-handler path of the two sends (see `sigsafe`): checks the arguments and
/// copies the frame into a preallocated slot, without allocating or taking a lock.
unsafe fn park(
    ev: *mut mln_event_t,
    to: *mut c_void,
    ty: mln_u32_t,
    buf: *mut c_void,
    len: usize,
) -> c_int {
    if ev.is_null() {
        return -1;
    }
    // SAFETY: caller contract for `buf`/`len`.
    match unsafe { payload(buf, len) } {
        Some(p) if crate::sigsafe::park(ev.cast(), to, ty, p) => 0,
        _ => -1,
    }
}

/// The payload as a slice, or `None` for a NULL buffer with a length, or a length that
/// cannot be framed (checked before the buffer is touched, D4).
unsafe fn payload<'a>(buf: *mut c_void, len: usize) -> Option<&'a [u8]> {
    if len > process::max_message().saturating_sub(wire::TYPE_LEN) {
        return None;
    }
    if len == 0 {
        return Some(&[]);
    }
    if buf.is_null() {
        return None;
    }
    // SAFETY: non-NULL; the caller guarantees `len` readable bytes.
    Some(unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) })
}

fn result(r: Result<(), SendError>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            crate::log::debug(format_args!("send refused: {e:?}"));
            -1
        }
    }
}
