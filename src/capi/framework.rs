//! `mln_framework.h` for the standalone build: the multiprocess lifecycle of Melon's
//! `mln_framework_init`, without configuration file, daemon or trace.
#![cfg(feature = "standalone")]

use crate::abi::{mln_event_t, mln_framework_attr, mln_framework_process_t};
use crate::capi::{fail, guard, non_null};
use crate::log;
use crate::process;
use crate::reactor::standalone as ev_loop;
use core::ffi::c_int;
use std::time::{Duration, Instant};

/// Runs the multiprocess lifecycle:
/// 1. `attr->global_init()` if set (register IPC handlers here); negative: return -1;
/// 2. `mln_fork_prepare()`, then `mln_fork()` (`mln_fork_worker_num_set` workers);
/// 3. master: a new event loop, `mln_fork_master_events_set`, `attr->master_process(ev)`,
///    dispatch until the loop is broken (or freed by one of its handlers), free the loop
///    (unless a handler did; the loop must not be freed outside its handlers, e.g. in
///    `master_process` itself); then the workers end too: what is
///    still queued to them is written (for at most 5 s), their channels close (they exit
///    with status 127), and those still running 5 s after the stop (and at least 2 s
///    after their channel closed) are killed;
/// 4. worker (including a worker restarted inside the master's loop, which leaves that
///    loop and falls through here): a new loop, `mln_fork_worker_events_set`,
///    `attr->worker_process(ev)`, dispatch, free the loop; a worker that ended its own loop
///    then writes what it still has queued (frames its signal handlers parked included,
///    for at most 5 s) and closes its connection before it returns.
///
/// Returns 0 when the process's loop ends, -1 on failure with errno: EINVAL (NULL
/// `attr`), ECANCELED (`global_init` returned a negative value), fork's errno or EIO (a
/// worker that ended before its fork handshake) (the workers
/// started before the failure are ended first, as at the end of a run), or the errno of
/// creating the event loop. A worker returns only
/// if it breaks its own loop: when its connection to the master closes it exits with
/// status 127 inside this call, so code after it in `main` runs in the master (and in a
/// worker that ended its own loop) only. Differences from Melon: when the master's loop is
/// broken by the program itself, the master ends its workers and returns 0 (Melon runs the
/// worker routine in the master, with no master connection, and its workers live on until
/// the master process exits). `argc`/`argv` and `main_thread` are not used.
#[no_mangle]
pub unsafe extern "C" fn mln_framework_init(attr: *mut mln_framework_attr) -> c_int {
    guard("mln_framework_init", || {
        non_null!(attr);
        // SAFETY: non-NULL; the caller provides a valid attribute block.
        let attr = unsafe { &*attr };
        if let Some(init) = attr.global_init {
            // SAFETY: user callback.
            if unsafe { init() } < 0 {
                log::error(format_args!("mln_framework_init: global_init failed"));
                return fail(libc::ECANCELED);
            }
        }
        if process::prepare() < 0 {
            return -1;
        }
        match process::fork_workers() {
            Err(e) => {
                // The workers started before the failure are ended first (a program that
                // gets -1 here has nothing to run them with).
                end_workers();
                return fail(e.raw_os_error().unwrap_or(libc::EIO));
            }
            Ok(process::Forked::Parent) => {
                if run_loop(attr.master_process, process::master_events_set) < 0 {
                    return -1;
                }
                if !process::is_worker() {
                    end_workers();
                    return 0;
                }
            }
            Ok(process::Forked::Child) => {}
        }
        loop {
            // This worker loop is the one a restart (if any) was for.
            process::take_restarted();
            let r = run_loop(attr.worker_process, process::worker_events_set);
            if process::take_restarted() {
                // A supervised child of this worker, restarted from the worker's loop,
                // left that loop: it is a worker of its own (of this worker).
                continue;
            }
            // A worker that ended its own loop: what it sent (signal handlers included) is
            // written before it returns, as in the master.
            end_workers();
            return r;
        }
    })
}

/// The master's loop ended: the workers end too (see `mln_framework_init`).
fn end_workers() {
    let who = if process::is_worker() {
        "worker"
    } else {
        "master"
    };
    let s = process::shutdown(Instant::now() + DRAIN_LIMIT, EXIT_GRACE);
    let lost: usize = s.undelivered.iter().map(|(_, n)| n).sum();
    if lost > 0 {
        log::warn(format_args!(
            "{who} stopped: {lost} queued frame(s) not delivered within {} s",
            DRAIN_LIMIT.as_secs()
        ));
    }
    if !s.killed.is_empty() {
        log::warn(format_args!(
            "{who} stopped: children {:?} were still running and were killed",
            s.killed
        ));
    }
}

/// How long the end of the master writes what is still queued.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// How long the children have at least, after their channel closed, to exit by themselves.
const EXIT_GRACE: Duration = Duration::from_secs(2);

fn run_loop(body: mln_framework_process_t, events_set: fn(*mut mln_event_t)) -> c_int {
    let ev = ev_loop::new();
    if ev.is_null() {
        log::error(format_args!(
            "mln_framework_init: cannot create an event loop"
        ));
        return -1;
    }
    events_set(ev);
    // SAFETY: `ev` is the live loop we just created; the callback and dispatch get it.
    unsafe {
        if let Some(b) = body {
            b(ev);
        }
        // A handler may have freed the loop (`mln_event_free` from inside it is allowed).
        ev_loop::dispatch_and_free(ev);
    }
    0
}
