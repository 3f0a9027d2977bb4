//! `mln_framework.h` for the standalone build: the multiprocess lifecycle of Melon's
//! `mln_framework_init` (spec §5), without configuration file, daemon or trace.
#![cfg(feature = "standalone")]

use crate::abi::{mln_event_t, mln_framework_attr, mln_framework_process_t};
use crate::capi::{guard, non_null};
use crate::log;
use crate::process;
use crate::reactor::standalone as ev_loop;
use core::ffi::c_int;

/// Runs the multiprocess lifecycle:
/// 1. `attr->global_init()` if set (register IPC handlers here); negative: return -1;
/// 2. `mln_fork_prepare()`, then `mln_fork()` (`mln_fork_worker_num_set` workers);
/// 3. master: a new event loop, `mln_fork_master_events_set`, `attr->master_process(ev)`,
///    dispatch until the loop is broken, free the loop;
/// 4. worker (including a worker restarted inside the master's loop, which leaves that
///    loop and falls through here): a new loop, `mln_fork_worker_events_set`,
///    `attr->worker_process(ev)`, dispatch, free the loop.
///
/// Returns 0 when the process's loop ends, -1 on failure (NULL `attr`, `global_init`
/// failed, fork failed, no event loop). Difference from Melon: when the master's loop is
/// broken by the program itself, the master returns 0 instead of running the worker
/// routine with no master connection. `argc`/`argv` and `main_thread` are not used.
#[no_mangle]
pub unsafe extern "C" fn mln_framework_init(attr: *mut mln_framework_attr) -> c_int {
    guard("mln_framework_init", || {
        non_null!(attr);
        // SAFETY: non-NULL; the caller provides a valid attribute block.
        let attr = unsafe { &*attr };
        if let Some(init) = attr.global_init {
            // SAFETY: user callback.
            if crate::sigsafe::outside(|| unsafe { init() }) < 0 {
                log::error(format_args!("mln_framework_init: global_init failed"));
                return -1;
            }
        }
        if process::prepare() < 0 {
            return -1;
        }
        match process::fork_workers() {
            r if r < 0 => return -1,
            r if r > 0 => {
                if run_loop(attr.master_process, process::master_events_set) < 0 {
                    return -1;
                }
                if !process::is_worker() {
                    return 0;
                }
            }
            _ => {}
        }
        run_loop(attr.worker_process, process::worker_events_set)
    })
}

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
            crate::sigsafe::outside(|| b(ev));
        }
        // The loop's handlers are user code: they run outside the library, as under
        // `mln_event_dispatch` (the loop no longer tells `sigsafe` itself).
        crate::sigsafe::outside(|| ev_loop::dispatch(ev));
        ev_loop::free(ev);
    }
    0
}
