//! [`Builder::run`]: claiming the process, starting the children, the master's loop, a
//! worker's life, and the stop.
//!
//! # Who may touch the core
//! The core's process state is one global, lent to one borrow at a time and meant for
//! the thread that runs the loop. The safe API reaches it only from `run` and from the
//! contexts (`Master`, `Worker`), which exist only on the thread running `run`. So `run`
//! first claims the process for its thread with one atomic step ([`CLAIMED`]), before it
//! touches anything of the core; every other call, from any thread, is refused without
//! touching it. Nothing else in the safe API can reach the core from another thread.

use super::builder::{Builder, WorkerStartFn};
use super::handlers::{self, guarded, guarded_with};
use super::lifecycle::{self, End, WorkerEnd};
use super::{call, identity, timers, Error, Master, RunSummary, Worker, WorkerId};
use crate::abi::{mln_event_t, M_PET_DFL, M_PET_EXE, M_PST_DFL, M_PST_SUP};
use crate::log;
use crate::process::{self, Forked};
use crate::reactor::standalone as ev_loop;
use crate::registry::Side;
use core::ffi::CStr;
use core::ptr::null_mut;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set once, by the first `run` that passed its argument checks: the process is its
/// thread's (and, after fork, each worker's only thread's).
pub(super) static CLAIMED: AtomicBool = AtomicBool::new(false);

/// A worker whose start hook panicked exits with this status, as a Rust program whose
/// `main` panicked does.
const PANIC_STATUS: i32 = 101;

/// What a child gets, at least, to exit by itself once its channel closed at the stop.
const EXIT_WAIT: Duration = Duration::from_secs(1);

pub(super) fn run(b: Builder) -> Result<RunSummary, Error> {
    if CLAIMED.load(Ordering::Acquire) {
        return Err(Error::AlreadyStarted);
    }
    let Builder {
        workers,
        master,
        worker,
        master_start,
        mut worker_start,
        master_writable,
        worker_writable,
        programs,
        max_message,
        queue_limit,
        stop_timeout,
        allow_threads,
        on_event,
        on_quit,
        restart_policy,
        stop_on_signals,
        fds_limit,
        call_timeout,
        error,
    } = b;
    if let Some(e) = error {
        return Err(e);
    }
    if !allow_threads {
        let threads = process::thread_count();
        if threads > 1 {
            return Err(Error::ThreadsRunning { threads });
        }
    }
    check_sizes(max_message, queue_limit)?;
    for (args, _) in &programs {
        check_executable(&args[0])?;
    }
    if CLAIMED
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(Error::AlreadyStarted);
    }
    // From here on, this thread owns the core's process state.
    if process::is_worker() {
        // A worker started through the C API.
        return Err(Error::AlreadyStarted);
    }
    set_sizes(max_message, queue_limit)?;
    for (ty, f) in master {
        handlers::install_master(ty, f);
    }
    for (ty, f) in worker {
        handlers::install_worker(ty, f);
    }
    call::install(call_timeout);
    if master_writable.is_some() || worker_writable.is_some() {
        handlers::install_writable(master_writable, worker_writable);
    }
    // The Rust API's sends are never paced: a full queue is `QueueFull`, never a wait.
    process::set_pacing(false);
    // Every later fork (restarts, rolling restarts, restarted programs) is checked too: a
    // thread started after this point (in a start hook, a handler) makes them refused.
    process::set_single_threaded_forks(!allow_threads);
    lifecycle::set_restart_policy(restart_policy);
    lifecycle::install(on_event, on_quit);
    if let Some(n) = fds_limit {
        process::set_fds_limit(n);
    }
    if process::prepare_keep_sigchld() < 0 {
        return Err(Error::Io(io::Error::last_os_error()));
    }
    for _ in 0..workers {
        match process::fork_core(null_mut(), process::new_plan(M_PET_DFL, M_PST_SUP, None)) {
            Ok(Forked::Parent) => {}
            Ok(Forked::Child) => worker_main(worker_start.take(), stop_timeout),
            Err(e) => return Err(abort_start(e)),
        }
    }
    for (args, supervised) in programs {
        let stype = if supervised { M_PST_SUP } else { M_PST_DFL };
        let plan = process::new_plan(M_PET_EXE, stype, Some(process::ExecArgs::new(args)));
        if let Err(e) = process::spawn_plan_checked(plan, null_mut()) {
            return Err(abort_start(e));
        }
    }
    let ev = ev_loop::new();
    if ev.is_null() {
        return Err(abort_start(io::Error::other("cannot create an event loop")));
    }
    process::master_events_set(ev);
    if let Some(deadline) = stop_on_signals {
        if let Err(e) = lifecycle::stop_on_signals(ev, deadline, true) {
            // SAFETY: not dispatched yet; nothing else refers to it.
            unsafe { ev_loop::free(ev) };
            return Err(abort_start(e));
        }
    }
    // A start hook that panicked leaves the program half set up: `run` ends (after
    // stopping the workers) instead of running a loop that may have nothing to do.
    let start_panic = master_start.and_then(|f| {
        guarded_with(format_args!("on_master_start"), || f(&mut Master::new(ev))).err()
    });
    if start_panic.is_none() {
        // SAFETY: `ev` is the live loop created above, dispatched on this thread.
        unsafe { ev_loop::dispatch(ev) };
    }
    if process::is_worker() {
        // A worker restarted inside the master's loop left it (spec §5): drop the
        // master's loop and state, and become that worker.
        into_worker(ev);
        worker_main(worker_start.take(), stop_timeout);
    }
    let summary = stop_children(stop_timeout);
    timers::drop_all();
    // SAFETY: not dispatching any more; nothing refers to the loop after this.
    unsafe { ev_loop::free(ev) };
    drop_closures(Side::Master, worker_start);
    match start_panic {
        Some(message) => Err(Error::Panicked {
            hook: "on_master_start",
            message,
        }),
        None => Ok(summary),
    }
}

/// Drops what `run` installed (see `handlers::drop_all`): in the master everything, in a
/// worker its own side's closures.
fn drop_closures(side: Side, worker_start: Option<Box<WorkerStartFn>>) {
    let master = side == Side::Master;
    if master && process::thread_count() == 1 {
        // No loop is left to wake (in a worker, the process exits next); with other
        // threads, one of them could be kicking it (see `close_wake_fd`).
        crate::sigsafe::close_wake_fd();
    }
    // Pending calls are this process's own (a worker's copies of the master's were
    // forgotten at its fork).
    call::drop_all();
    handlers::drop_all(if master { None } else { Some(Side::Worker) });
    lifecycle::drop_hooks(master);
    guarded(format_args!("dropping on_worker_start"), || {
        drop(worker_start)
    });
}

/// The core's last word in a worker whose master is gone (it exits with status 127): the
/// closures go first, as at a stop.
fn worker_exit_hook() {
    timers::drop_all();
    let start = WORKER_START.take();
    drop_closures(Side::Worker, start);
}

thread_local! {
    /// A worker's start hook, kept where its exit hook finds it.
    static WORKER_START: std::cell::Cell<Option<Box<WorkerStartFn>>> =
        const { std::cell::Cell::new(None) };
}

/// The checks of `max_message` and `queue_limit` that touch nothing.
pub(super) fn check_sizes(max: Option<usize>, limit: Option<usize>) -> Result<(), Error> {
    let max_now = max.unwrap_or_else(process::max_message);
    if !(4..=u32::MAX as usize).contains(&max_now) {
        return Err(Error::InvalidArgument(
            "max_message must be between 4 and 4294967295",
        ));
    }
    let limit_now = limit.unwrap_or_else(process::queue_limit);
    if limit_now != 0 && limit_now < max_now {
        return Err(Error::InvalidArgument(
            "queue_limit must be 0 (unlimited) or at least max_message",
        ));
    }
    Ok(())
}

pub(super) fn set_sizes(max: Option<usize>, limit: Option<usize>) -> Result<(), Error> {
    let ok = match (max, limit) {
        (None, None) => true,
        (Some(m), None) => process::set_max_message(m),
        (m, Some(l)) => {
            // Unlimited first, so the order of the two checks cannot refuse a valid pair.
            process::set_queue_limit(0)
                && m.is_none_or(process::set_max_message)
                && process::set_queue_limit(l)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "max_message / queue_limit refused (changed through the C API meanwhile?)",
        ))
    }
}

/// `timeout` from now; a timeout too long for the clock (`Duration::MAX`) is a deadline a
/// century away instead of a panic.
pub(super) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Stops every child (see `Builder::stop_timeout`) and says how it went.
pub(super) fn stop_children(timeout: Duration) -> RunSummary {
    let ids = identity::live();
    let s = process::shutdown(deadline_after(timeout), timeout.min(EXIT_WAIT));
    let by_pid = |pids: &[i32]| -> Vec<WorkerId> {
        let mut v: Vec<WorkerId> = pids
            .iter()
            .filter_map(|&p| ids.iter().find(|w| w.pid() == p as u32).copied())
            .collect();
        v.sort();
        v
    };
    let mut undelivered: Vec<(WorkerId, usize)> = s
        .undelivered
        .iter()
        .filter_map(|&(slot, n)| {
            let slot = slot? as usize;
            Some((*ids.iter().find(|w| w.index() == slot)?, n))
        })
        .collect();
    undelivered.sort();
    for &(pid, status) in &s.statuses {
        if let Some(&id) = ids.iter().find(|w| w.pid() == pid as u32) {
            let how = if s.killed.contains(&pid) {
                End::Killed
            } else {
                End::Stopped
            };
            lifecycle::record_end(WorkerEnd::new(id, how, lifecycle::status_from_raw(status)));
        }
    }
    let (ends, ends_dropped) = lifecycle::take_ends();
    let summary = RunSummary {
        undelivered,
        exited: by_pid(&s.exited),
        killed: by_pid(&s.killed),
        ends,
        ends_dropped,
    };
    if !summary.is_clean() {
        log::warn(format_args!(
            "stop: {} queued frame(s) not delivered; {} child(ren) killed",
            summary.undelivered_frames(),
            summary.killed.len()
        ));
    }
    summary
}

/// Closes the children started so far, and gives the error back.
pub(super) fn abort_start(e: io::Error) -> Error {
    process::shutdown(Instant::now(), EXIT_WAIT);
    Error::Io(e)
}

/// In a worker forked inside the master's loop: forget what belonged to the master.
pub(super) fn into_worker(master_ev: *mut mln_event_t) {
    timers::forget_all();
    call::forget_all();
    // SAFETY: our copy of the master's loop; `free` never touches the epoll interest set
    // (shared with the master) nor any descriptor but its own epoll descriptor.
    unsafe { ev_loop::free(master_ev) };
}

/// A worker's life after the fork; never returns.
fn worker_main(mut start: Option<Box<WorkerStartFn>>, timeout: Duration) -> ! {
    lifecycle::reset_signals();
    let _ = lifecycle::take_ends();
    let ev = ev_loop::new();
    if ev.is_null() {
        log::error(format_args!("worker: cannot create an event loop"));
        std::process::exit(1);
    }
    process::worker_events_set(ev);
    process::set_exit_hook(worker_exit_hook);
    if let Some(f) = start.as_deref_mut() {
        let started = guarded_with(format_args!("on_worker_start"), || f(&mut Worker::new(ev)));
        if started.is_err() {
            // As an uncaught panic ends a Rust program: the master sees it exit with 101
            // (and restarts it, within its restart policy).
            process::flush_stdio();
            process::shutdown(deadline_after(timeout), Duration::ZERO);
            drop_closures(Side::Worker, start);
            std::process::exit(PANIC_STATUS)
        }
    }
    WORKER_START.set(start);
    // SAFETY: the live loop created above, dispatched on this thread.
    unsafe { ev_loop::dispatch(ev) };
    let start = WORKER_START.take();
    // Stopped (`Worker::stop`). What this process printed goes out before its channel
    // closes: the master may kill it once it is closed and the grace ran out.
    process::flush_stdio();
    let s = process::shutdown(deadline_after(timeout), Duration::ZERO);
    let lost: usize = s.undelivered.iter().map(|(_, n)| n).sum();
    if lost > 0 {
        log::warn(format_args!(
            "{lost} queued message(s) to the master not delivered at stop"
        ));
    }
    timers::drop_all();
    drop_closures(Side::Worker, start);
    process::flush_stdio();
    std::process::exit(0)
}

pub(super) fn check_executable(program: &CStr) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let path = Path::new(std::ffi::OsStr::from_bytes(program.to_bytes()));
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not an executable file", path.display()),
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A program started with spawn (`Program::run`, program.rs)
// ---------------------------------------------------------------------------------------

/// `Program::run`'s checks and claim, as `run`'s: the sizes checked, the process claimed
/// for this thread (once per process, shared with [`Builder::run`]), the sizes applied.
/// No thread check: a program is never forked by this API.
pub(super) fn claim_program(max: Option<usize>, limit: Option<usize>) -> Result<(), Error> {
    if CLAIMED.load(Ordering::Acquire) {
        return Err(Error::AlreadyStarted);
    }
    check_sizes(max, limit)?;
    if CLAIMED
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(Error::AlreadyStarted);
    }
    if process::is_worker() || process::has_children() {
        // A worker or a master through the C API.
        return Err(Error::AlreadyStarted);
    }
    set_sizes(max, limit)
}

/// A program's life once it adopted its channel: as [`worker_main`], but it returns:
/// `Ok` after [`Worker::stop`] (what was queued is written first), [`Error::PeerGone`]
/// once the master is gone (the core ends the loop instead of exiting, see
/// `process::adopt_master`).
pub(super) fn program_main(
    mut start: Option<Box<WorkerStartFn>>,
    timeout: Duration,
) -> Result<(), Error> {
    let ev = ev_loop::new();
    if ev.is_null() {
        return Err(Error::Io(io::Error::other("cannot create an event loop")));
    }
    process::worker_events_set(ev);
    let start_panic = start
        .as_deref_mut()
        .and_then(|f| guarded_with(format_args!("on_start"), || f(&mut Worker::new(ev))).err());
    if start_panic.is_none() {
        // SAFETY: the live loop created above, dispatched on this thread.
        unsafe { ev_loop::dispatch(ev) };
    }
    process::flush_stdio();
    let s = process::shutdown(deadline_after(timeout), Duration::ZERO);
    let lost: usize = s.undelivered.iter().map(|(_, n)| n).sum();
    if lost > 0 {
        log::warn(format_args!(
            "{lost} queued message(s) to the master not delivered"
        ));
    }
    timers::drop_all();
    // SAFETY: not dispatching any more; the channel was closed by `shutdown`.
    unsafe { ev_loop::free(ev) };
    // Every closure is this program's own.
    drop_closures(Side::Master, start);
    if let Some(message) = start_panic {
        Err(Error::Panicked {
            hook: "on_start",
            message,
        })
    } else if process::master_lost() {
        Err(Error::PeerGone)
    } else {
        Ok(())
    }
}
