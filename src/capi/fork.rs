//! `mln_fork.h`: process lifecycle, per-process handler tables and sending.
//!
//! Thread rules: `mln_fork_master_ipc_handler_set` / `mln_fork_worker_ipc_handler_set` are
//! thread-safe; every other function here belongs to the thread that runs the process's
//! event loop (or a signal handler on that thread, for the two sends and
//! `mln_fork_iterate`).
//!
//! errno: every -1 / NULL return sets errno: EINVAL (bad argument), ESRCH (no such live
//! peer), EMSGSIZE (above the maximum message size), EAGAIN (queue full, or no parking slot
//! in a signal handler), ENOMEM, or the system call's own errno (fork, socketpair);
//! success leaves errno alone.

use crate::abi::*;
use crate::capi::{fail, guard, guard_send, non_null, set_errno};
use crate::process::{self, SendError};
use crate::registry::Side;
use crate::wire;
use core::ffi::{c_char, c_int, c_void, CStr};
use std::ffi::CString;

/// Prepares this process for forking: ignores SIGCHLD (children are reaped automatically;
/// the library's plain workers are forked so that it still learns how they ended) and
/// SIGPIPE, creates the master connection record, and installs the registry into the
/// handler tables (handlers set explicitly are kept; an unchanged registration keeps its
/// data slot). Idempotent. Returns 0, or -1 if a signal disposition cannot be set.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_prepare() -> c_int {
    guard("mln_fork_prepare", process::prepare)
}

/// Installs `handler` for frames of `type` in this process's master table (frames from
/// workers), replacing any previous one; `data` is the initial `*udata_ptr`. Works before
/// or after `mln_fork_prepare` and takes precedence over registry entries of the same
/// type. Returns 0, or -1 (EINVAL) if `handler` is NULL. Thread-safe.
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
        return fail(libc::EINVAL);
    }
    process::handler_set(side, ty, handler, data);
    0
}

/// Calls `handler(ev, f, data)` for every child that was live when the walk started and
/// still is when its turn comes, oldest first, each at most once (children started during
/// the walk are not visited). The handler may close any child, including the one it is
/// given; a restart that causes happens from the loop once the handler has returned.
/// Returns 0, or -1 when a handler returned a negative value (the walk stops there) or
/// `ev` is NULL (EINVAL). A NULL handler walks nothing. May be called from a signal
/// handler on the loop's thread.
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
/// Returns 1 in the master, 0 in a worker, -1 if a start failed (errno from fork or
/// socketpair, or EIO for a child that ended before its fork handshake; workers started
/// before the failure keep running and stay in the list).
///
/// Melon build: reads Melon's configuration as Melon does: `worker_proc` workers, then
/// every program of the `proc_exec` domain (`keepalive` supervised, `default` not; the
/// argument strings are copied). A malformed `worker_proc` or `proc_exec` exits with
/// status 1 (nothing of `proc_exec` is started then); no configuration aborts. Returns
/// 1 in the master, 0 in a worker, -1 when memory runs out.
#[no_mangle]
pub unsafe extern "C" fn mln_fork() -> c_int {
    #[cfg(feature = "standalone")]
    let body = || forked(process::fork_workers());
    #[cfg(not(feature = "standalone"))]
    let body = process::melon_conf::fork_from_conf;
    guard("mln_fork", body)
}

/// Extension (not in Melon, standalone build only): the number of workers `mln_fork`
/// starts. Melon reads it from `worker_proc` in its configuration.
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_fork_worker_num_set(n: mln_u32_t) {
    guard("mln_fork_worker_num_set", || process::set_worker_num(n))
}

/// Extension (not in Melon, standalone build only): with `on` non-zero, `mln_fork` (and
/// `mln_framework_init`) ends by starting a fork server, and every later fork of the
/// master (restarts, `mln_fork_restart`, rolling restarts, `mln_fork_spawn`) is made by
/// it, so the master may run threads (a thread's lock is never copied into a child). Call
/// it before `mln_fork`, while the process has one thread (otherwise `mln_fork` returns
/// -1 with EDEADLK and forks nothing).
///
/// The server is a single-threaded copy of the process as it is at the end of `mln_fork`;
/// it makes each new child as a child of the master (exit status, events and supervision
/// unchanged) and is none of the master's children itself (never listed, no events, not
/// restarted; ps shows it as `mln-forkserver`). What changes for the program:
/// - a new plain worker is a copy of the process as it was when `mln_fork` returned, not
///   of the master at the fork: it returns 0 from that `mln_fork` (in the framework: runs
///   `worker_process`), not from `mln_fork_restart` or from inside the master's loop,
///   and what the master changed since (globals, handlers, the resource-clear handler) is
///   not in it;
/// - a fork fails with ECHILD once the server is gone (killed, or not answering within 5
///   s: it is then killed), with the usual retries and M_IPC_CHILD_RESTART_FAILED event;
/// - the server ends when the master does (the end of `mln_framework_init`, or the
///   master's exit).
///
/// Default off; the setting is read by `mln_fork`.
#[cfg(feature = "standalone")]
#[no_mangle]
pub unsafe extern "C" fn mln_fork_server_set(on: c_int) {
    guard("mln_fork_server_set", || process::set_fork_server(on != 0))
}

/// Forks and executes `args[0]` with `args[0..n_args]` plus one more argument: the decimal
/// number of the program's socketpair descriptor (the only descriptor of ours it
/// inherits; it starts with default SIGPIPE and SIGCHLD dispositions). `stype` M_PST_SUP
/// restarts the program when it dies (with backoff), M_PST_DFL does not. The strings are
/// copied: the caller keeps ownership of `args` (a static array is fine). `master_ev`, if
/// not NULL, gets the child's descriptor registered for receiving.
///
/// Returns 0 in the master, -1 on bad arguments (EINVAL: NULL `args`, `n_args` 0, a NULL
/// string, `stype` out of range) or when fork or the handshake fails. Never returns in
/// the child.
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
            return fail(libc::EINVAL);
        }
        let mut v = Vec::with_capacity(n_args as usize);
        for i in 0..n_args as usize {
            // SAFETY: the caller provides `n_args` readable pointers.
            let s: *const c_char = unsafe { *args.add(i) };
            non_null!(s);
            // SAFETY: non-NULL, NUL-terminated per the caller's contract.
            v.push(CString::from(unsafe { CStr::from_ptr(s) }));
        }
        match process::spawn(stype, v, master_ev) {
            Ok(()) => 0,
            Err(e) => io_fail(&e),
        }
    })
}

/// Forks one supervised worker. Returns 1 in the parent, 0 in the new child, -1 with the
/// errno of socketpair/fork, or of the registration on `master_ev`. With `master_ev` NULL
/// the call waits for the child's fork handshake (its post-fork clean-up, the
/// resource-clear handler included): a child that ends before it makes the call return -1
/// with EIO (the child is reaped). With `master_ev` (a loop) the call returns at once: the
/// child is listed and registered for receiving, frames sent to it are queued, and the
/// loop completes its handshake (a child that ends before it, or does not complete it
/// within 10 s, is closed and restarted as a quick death). A child forked inside that loop
/// must leave it (`mln_event_break_set`), as the framework does.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_restart(master_ev: *mut mln_event_t) -> c_int {
    guard("mln_fork_restart", || forked(process::restart(master_ev)))
}

/// Registers every child's descriptor on `ev` for receiving (a replace registration, as in
/// Melon), and makes `ev` the loop their sends are flushed on. Frames queued before are
/// written once the loop runs. NULL: no-op.
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
        process::on_child_readable(ev, data)
    })
}

/// The worker's receive handler, registered by `mln_fork_worker_events_set`: reads what
/// arrived from the master and calls the worker handlers. At end of stream (the master is
/// gone) the worker exits with status 127, after the frames that arrived before.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_fd_handler_worker(
    ev: *mut mln_event_t,
    fd: c_int,
    data: *mut c_void,
) {
    let _ = (fd, data);
    guard("mln_ipc_fd_handler_worker", || {
        non_null!(ev);
        process::on_master_readable(ev)
    })
}

/// Handles the death of child `f` as the library does when its socket closes: removes it
/// from the list (the pointer is stale from now on: sends to it return -1), unregisters and
/// closes its descriptor, drops what was queued to it (logged at warn), and, if
/// supervised, restarts it from the loop (`ev`, or the loop the child was registered on)
/// once its process is gone and the current callback has returned. Called from one of
/// `f`'s own handlers, the pointer is stale at once as well (sends -1 with ESRCH,
/// `mln_ipc_stats_get` -1, `mln_fork_iterate` skips it); the descriptor is closed when that
/// handler returns, and no later frame from `f` is dispatched. Not a live child, or NULL:
/// no-op.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_socketpair_close_handler(
    ev: *mut mln_event_t,
    f: *mut mln_fork_t,
    fd: c_int,
) {
    let _ = fd;
    guard("mln_fork_socketpair_close_handler", || {
        non_null!(ev);
        process::close_by_request(ev, f)
    })
}

/// Queues one message of `type` with `len` bytes from `buf` (copied; NULL with `len` 0 is
/// an empty payload) for child `f_child`. It is written after the current handlers return
/// (everything queued meanwhile goes out together; a large burst starts going out while it
/// is being queued) and arrives in order, exactly once, at the child's worker handler for
/// `type`; a full socket only delays it. `ev` must not be NULL but is otherwise not used
/// (never dereferenced: it may even be a loop freed since): the frame goes out through the
/// loop the child is registered on.
///
/// Returns 0, or -1 with errno: EINVAL (`ev` or `f_child` NULL, `buf` NULL with `len` >
/// 0, `type` 1021..=1023: the library's own frames, in the range Melon reserves), ESRCH (`f_child` is not a live child: a stale pointer of a dead one, or a child
/// whose socket already failed on a write, i.e. it died and its end is not handled yet),
/// EMSGSIZE (above the maximum message size; always when `4 + len` does not fit 32 bits),
/// EAGAIN (the child's queue is at its limit, see `mln_ipc_queue_limit_set`; nothing is
/// queued and nothing else changes), ENOMEM.
///
/// May be called from a signal handler running on the loop's thread (Melon's conf reload
/// does): no lock is taken, so it cannot deadlock. If the signal interrupted melon-ipc
/// itself (or the bookkeeping of an event loop of this thread), the frame (at most 4096
/// bytes; at most 32 waiting, else EAGAIN) is parked without allocating and queued before
/// any later send; whether `f_child` is live is then checked at that point (a dead child's frame is
/// dropped with a warning). A parked frame is never dropped for lack of room: it may take
/// a queue over its limit, and while one is over its limit that way, parking is refused
/// (EAGAIN) until it drains back under it. Otherwise the ordinary path runs, which
/// allocates: the interrupted code must not be inside `malloc`.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_master_send_prepare(
    ev: *mut mln_event_t,
    r#type: mln_u32_t,
    buf: *mut c_void,
    len: mln_size_t,
    f_child: *mut mln_fork_t,
) -> c_int {
    guard_send("mln_ipc_master_send_prepare", || {
        non_null!(ev);
        non_null!(f_child);
        // SAFETY: per the caller's contract for `buf`/`len`.
        let p = match unsafe { payload(buf, len) } {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        result(process::send_to_child(ev, f_child, r#type, p))
    })
}

/// Queues one message of `type` for the master; as `mln_ipc_master_send_prepare`. Returns
/// -1 with EINVAL for a NULL `ev` (checked first, in any process) or for a NULL `msg` with
/// a nonzero `len`, ESRCH in a process that is not a worker or once a write to the master
/// has failed (the master is gone; the worker exits at the end of stream that follows), and
/// otherwise the errno values of `mln_ipc_master_send_prepare`.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_worker_send_prepare(
    ev: *mut mln_event_t,
    r#type: mln_u32_t,
    msg: *mut c_void,
    len: mln_size_t,
) -> c_int {
    guard_send("mln_ipc_worker_send_prepare", || {
        non_null!(ev);
        // SAFETY: as above.
        let p = match unsafe { payload(msg, len) } {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        result(process::send_to_master(ev, r#type, p))
    })
}

/// Melon's fork results: 1 in the parent, 0 in the child, -1 with errno.
fn forked(r: std::io::Result<process::Forked>) -> c_int {
    match r {
        Ok(process::Forked::Parent) => 1,
        Ok(process::Forked::Child) => 0,
        Err(e) => io_fail(&e),
    }
}

/// -1 with the system call's errno (EIO when it has none, e.g. a child that died before
/// the fork handshake).
fn io_fail(e: &std::io::Error) -> c_int {
    fail(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The payload as a slice, or the errno for a NULL buffer with a length (EINVAL) or a
/// length that cannot be sent (EMSGSIZE, checked before the buffer is touched, D4).
pub(crate) unsafe fn payload<'a>(buf: *mut c_void, len: usize) -> Result<&'a [u8], c_int> {
    if len > process::max_message().saturating_sub(wire::TYPE_LEN) {
        return Err(libc::EMSGSIZE);
    }
    if len == 0 {
        return Ok(&[]);
    }
    if buf.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-NULL; the caller guarantees `len` readable bytes.
    Ok(unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) })
}

pub(crate) fn result(r: Result<(), SendError>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            let errno = match e {
                SendError::TooLarge => libc::EMSGSIZE,
                SendError::NoPeer => libc::ESRCH,
                SendError::QueueFull | SendError::Busy => libc::EAGAIN,
                SendError::NoMemory => libc::ENOMEM,
                SendError::BadFd => libc::EBADF,
                SendError::Os(e) => e,
                SendError::Reserved => libc::EINVAL,
            };
            set_errno(errno);
            -1
        }
    }
}
