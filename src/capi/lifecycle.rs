//! Lifecycle control (extensions, not in Melon): child events, graceful stop, rolling
//! restart, restart policy, the worker's quit handler. Both builds.

use crate::abi::*;
use crate::capi::{fail, guard};
use crate::process;
use core::ffi::{c_int, c_void};

/// Extension (not in Melon): sets the master's child-event handler, called on the
/// master's loop as `h(ev, f, e, data)` for every event of its children, in order:
/// M_IPC_CHILD_STARTED (the fork handshake is done; for the workers started by `mln_fork`,
/// once the master's loop runs), M_IPC_CHILD_EXITED (the process is gone, after every
/// frame it sent reached the handlers; `f` is its record, readable during the call),
/// M_IPC_CHILD_GAVE_UP (the restart policy gave its slot up), M_IPC_ROLLING_DONE (`f`
/// NULL), M_IPC_CHILD_RESTART_FAILED (`f` NULL; the restart is tried again). `e` is valid during the call only. Never called from inside a send, a walk or a
/// fork; events that come while no handler is set are dropped. NULL removes it.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_child_event_handler_set(
    h: mln_ipc_child_event_handler,
    data: *mut c_void,
) {
    guard("mln_ipc_child_event_handler_set", || {
        process::set_event_handler(h, data)
    })
}

/// Extension (not in Melon): stops child `f` gracefully, or every child with `f` NULL.
/// From the call on, sends to it fail with ESRCH, `mln_fork_iterate` and
/// `mln_ipc_stats_get` no longer see it, and it is never restarted (with `f` NULL, pending
/// restarts are cancelled too). What was queued to it before is written; then the worker
/// runs its quit handler (`mln_ipc_worker_quit_handler_set`), after every frame sent
/// before the stop, and exits with status 0 once the handler returns 0 and its own queue
/// is written; what it sends meanwhile still reaches the master's handlers. At
/// `deadline_ms` it gets SIGTERM, a second later SIGKILL. A spawned program that does not
/// run this library's worker side ignores the quit and gets SIGTERM at the deadline. Its
/// end is an M_IPC_CHILD_EXITED event (how: STOPPED, TERMINATED or KILLED).
///
/// May be called from a signal handler (it allocates nothing and takes no lock); when
/// that handler interrupted the library, it returns 0 and the stop takes effect from the
/// loop. Returns 0, or -1 with errno EINVAL (`ev` NULL), ESRCH (`f` is not a live child,
/// or is already stopping), EAGAIN (from a signal handler that interrupted the library,
/// when the stops of 16 other children already wait for the loop; a stop of every child,
/// or of a child whose stop waits already, is never refused).
#[no_mangle]
pub unsafe extern "C" fn mln_fork_stop(
    ev: *mut mln_event_t,
    f: *mut mln_fork_t,
    deadline_ms: mln_u32_t,
) -> c_int {
    guard("mln_fork_stop", || {
        match process::stop(ev, f, deadline_ms) {
            Ok(()) => 0,
            Err(e) => fail(e),
        }
    })
}

/// Extension (not in Melon): sets the worker's quit handler, called on the worker's loop
/// as `h(ev, data)` when its master stops it gracefully (`mln_fork_stop`), after every
/// frame the master sent before the stop. Returns 0 (or no handler set): the worker exits
/// with status 0 once its queue to the master is written; 1: the program ends the worker
/// itself (the master's deadline still applies). Inherited by the workers forked
/// afterwards. NULL removes it. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_worker_quit_handler_set(
    h: mln_ipc_quit_handler,
    data: *mut c_void,
) {
    guard("mln_ipc_worker_quit_handler_set", || {
        process::set_quit_handler(h, data)
    })
}

/// Extension (not in Melon): replaces every plain worker (those of `mln_fork` and
/// `mln_fork_restart`; spawned programs are left alone), `batch` at a time: forks the
/// replacement from the master as it is now (from the loop, never inside the caller),
/// waits until its loop runs (its `worker_process` has returned) for at most
/// `ready_timeout_ms`, then stops the old one as `mln_fork_stop(ev, old, deadline_ms)`
/// does; the next batch starts once every replacement of the batch is ready. A
/// replacement keeps its predecessor's slot and restart count (it is not a restart) and
/// gets an M_IPC_CHILD_STARTED event. A replacement not ready in time (or that ends
/// first) aborts the run: the replacements not ready are killed, the old workers not yet
/// replaced keep running. Ends with one M_IPC_ROLLING_DONE event (status 0 done, -1
/// aborted), after the M_IPC_CHILD_EXITED of every old worker it stopped (or of the
/// replacements it killed). Returns 0, or -1 with errno EINVAL (`ev` NULL, `batch` or
/// `ready_timeout_ms` 0), EBUSY (one runs already), ENOMEM.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_rolling_restart(
    ev: *mut mln_event_t,
    batch: mln_u32_t,
    ready_timeout_ms: mln_u32_t,
    deadline_ms: mln_u32_t,
) -> c_int {
    guard(
        "mln_fork_rolling_restart",
        || match process::rolling_restart(ev, batch, ready_timeout_ms, deadline_ms) {
            Ok(()) => 0,
            Err(e) => fail(e),
        },
    )
}

/// Extension (not in Melon): the restart policy of supervised children. When a supervised
/// child dies and its slot already had `intensity` restarts within the last `period_ms`,
/// the slot is given up: its M_IPC_CHILD_EXITED event says `restart_in_ms` -1 and an
/// M_IPC_CHILD_GAVE_UP event follows; it is never restarted. `intensity` 0 never gives up
/// (the default). Restarts keep their backoff. Returns 0, or -1 with errno EINVAL
/// (`intensity` > 0 with `period_ms` 0). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_fork_restart_policy_set(
    intensity: mln_u32_t,
    period_ms: mln_u32_t,
) -> c_int {
    guard("mln_fork_restart_policy_set", || {
        if process::set_restart_policy(intensity, period_ms) {
            0
        } else {
            fail(libc::EINVAL)
        }
    })
}
