//! Lifecycle control in the Rust API: worker events, graceful stops, rolling restarts, the
//! restart policy, the worker's quit, stopping on SIGTERM/SIGINT, and the record of every
//! worker process's end for the [`RunSummary`](super::RunSummary).
//!
//! The core's C hooks (`mln_ipc_child_event_handler_set`, `mln_ipc_worker_quit_handler_set`)
//! are installed by `run` with the trampolines below; the closures live in a thread-local
//! of the loop thread (the only thread that reaches them, see `run`).

use super::context::{Master, Worker};
use super::handlers::guarded;
use super::identity::WorkerId;
use crate::abi::*;
use crate::process;
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;
use std::cell::RefCell;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};
use std::time::Duration;

/// How a worker process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum End {
    /// It exited or was killed without being asked to stop.
    Crashed,
    /// It exited after a graceful stop ([`Master::stop_worker`], a rolling restart, the
    /// stop on signals), before the deadline.
    Stopped,
    /// SIGTERM ended it at the deadline of a graceful stop.
    Terminated,
    /// The library killed it (SIGKILL): a second after SIGTERM, a channel that closed
    /// without the process exiting, a missed fork handshake, an aborted rolling
    /// replacement.
    Killed,
}

impl End {
    fn from_raw(how: mln_ipc_end_t) -> End {
        match how {
            M_IPC_END_STOPPED => End::Stopped,
            M_IPC_END_TERMINATED => End::Terminated,
            M_IPC_END_KILLED => End::Killed,
            _ => End::Crashed,
        }
    }
}

/// One event of a worker's life, given to
/// [`Builder::on_worker_event`](super::Builder::on_worker_event) on the master's loop,
/// in order (per index: `Started`, then `Exited`, then its replacement's `Started`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// Its fork handshake is done: sends to `id` work. For the workers started by `run`,
    /// delivered once the master's loop runs.
    Started {
        /// The stable index.
        index: usize,
        /// The process.
        id: WorkerId,
        /// Its pid.
        pid: u32,
    },
    /// The process is gone, after every message it sent reached the master's handlers.
    Exited {
        /// The stable index.
        index: usize,
        /// The process that ended.
        id: WorkerId,
        /// Its pid.
        pid: u32,
        /// How it ended.
        how: End,
        /// Its exit status (`code()`, `signal()`); `None` when it cannot be known.
        status: Option<ExitStatus>,
        /// Restarts of this index so far.
        restarts: u32,
        /// When its replacement starts; `None` if none will (not supervised, stopped,
        /// given up, replaced by a rolling restart).
        restart_in: Option<Duration>,
        /// Messages queued to it and never written.
        frames_lost: u64,
    },
    /// The restart policy ([`Builder::restart_policy`](super::Builder::restart_policy))
    /// gave this index up: it stays empty.
    GaveUp {
        /// The stable index.
        index: usize,
    },
    /// A rolling restart ended: `completed` (every worker replaced), or aborted (a
    /// replacement was not ready in time; the old workers not replaced go on).
    RollingDone {
        /// Whether it completed.
        completed: bool,
    },
    /// The restart of this index could not fork; it is tried again after `retry_in` (the
    /// index stays empty meanwhile).
    RestartFailed {
        /// The stable index.
        index: usize,
        /// The fork was refused because other threads run in the master (forking would
        /// copy their locks, held for ever in the child): see
        /// [`Builder::allow_threads`](super::Builder::allow_threads). `errno` is then
        /// `EDEADLK`.
        threads_running: bool,
        /// Why the fork failed (`EAGAIN`, `ENOMEM`, ...; `EDEADLK` for `threads_running`).
        errno: i32,
        /// When it is tried again.
        retry_in: Duration,
    },
}

/// One worker process's end, in the [`RunSummary`](super::RunSummary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerEnd {
    /// The process.
    pub id: WorkerId,
    /// How it ended (at the end of `run`: [`End::Stopped`] if it exited by itself once its
    /// channel closed, [`End::Killed`] otherwise).
    pub how: End,
    /// Its exit status, when it can be known.
    pub status: Option<ExitStatus>,
}

impl WorkerEnd {
    pub(super) fn new(id: WorkerId, how: End, status: Option<ExitStatus>) -> WorkerEnd {
        WorkerEnd { id, how, status }
    }
}

/// The arguments of [`Master::rolling_restart`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollingRestart {
    /// How many workers are replaced at once (at least 1).
    pub batch: u32,
    /// How long a replacement has to get its loop running (its
    /// [`Builder::on_worker_start`](super::Builder::on_worker_start) returned) before the
    /// restart is aborted (more than zero).
    pub ready_timeout: Duration,
    /// The deadline of each old worker's graceful stop (SIGTERM then, SIGKILL a second
    /// later).
    pub deadline: Duration,
}

impl Default for RollingRestart {
    /// One at a time, 10 s to get ready, 10 s to stop.
    fn default() -> Self {
        RollingRestart {
            batch: 1,
            ready_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(10),
        }
    }
}

pub(super) type EventFn = dyn FnMut(&mut Master, &WorkerEvent);
pub(super) type QuitFn = dyn FnMut(&mut Worker);

/// The most ends a run keeps for its summary (the oldest go first beyond it).
pub(super) const ENDS_KEPT: usize = 4096;

#[derive(Default)]
struct Life {
    on_event: Option<Box<EventFn>>,
    on_quit: Option<Box<QuitFn>>,
    ends: Vec<WorkerEnd>,
    ends_dropped: u64,
    running: bool,
}

thread_local! {
    static LIFE: RefCell<Life> = RefCell::default();
}

/// `Builder::restart_policy`'s arguments, checked (both builders).
pub(super) fn check_restart_policy(
    intensity: u32,
    period: Duration,
) -> Result<(u32, Duration), super::Error> {
    if intensity > 0 && period < Duration::from_millis(1) {
        return Err(super::Error::InvalidArgument(
            "restart_policy: a non-zero intensity needs a period of at least 1 ms",
        ));
    }
    Ok((intensity, period))
}

/// Gives the core the restart policy (before the workers are forked).
pub(super) fn set_restart_policy(policy: Option<(u32, Duration)>) {
    if let Some((n, period)) = policy {
        process::set_restart_policy(n, millis(period).max(u32::from(n > 0)));
    }
}

/// Milliseconds for the core, saturated.
pub(super) fn millis(d: Duration) -> u32 {
    d.as_millis().min(u32::MAX as u128) as u32
}

/// Installs the hooks (before the workers are forked: they inherit the quit hook).
pub(super) fn install(on_event: Option<Box<EventFn>>, on_quit: Option<Box<QuitFn>>) {
    LIFE.with_borrow_mut(|l| {
        l.on_event = on_event;
        l.on_quit = on_quit;
    });
    process::set_event_handler(Some(event_trampoline), null_mut());
    process::set_quit_handler(Some(quit_trampoline), null_mut());
}

/// Drops the hooks at the end of `run` (`master`), or of a worker (`!master`: its own
/// quit hook; the master's event hook, a copy of the master's state it never ran, is
/// leaked rather than dropped, as its timers are). The core's hooks are removed first.
pub(super) fn drop_hooks(master: bool) {
    process::set_event_handler(None, null_mut());
    process::set_quit_handler(None, null_mut());
    let (on_event, on_quit) = LIFE.with_borrow_mut(|l| (l.on_event.take(), l.on_quit.take()));
    if master {
        guarded(format_args!("dropping on_worker_event"), || drop(on_event));
    } else {
        std::mem::forget(on_event);
    }
    guarded(format_args!("dropping on_quit"), || drop(on_quit));
}

/// The ends recorded so far, and how many older ones were dropped.
pub(super) fn take_ends() -> (Vec<WorkerEnd>, u64) {
    LIFE.with_borrow_mut(|l| (std::mem::take(&mut l.ends), l.ends_dropped))
}

pub(super) fn record_end(end: WorkerEnd) {
    LIFE.with_borrow_mut(|l| {
        if l.ends.len() >= ENDS_KEPT {
            l.ends.remove(0);
            l.ends_dropped += 1;
        }
        l.ends.push(end);
    })
}

fn status_of(e: &mln_ipc_child_event_t) -> Option<ExitStatus> {
    match e.exited {
        1 => Some(ExitStatus::from_raw((e.status & 0xff) << 8)),
        0 => Some(ExitStatus::from_raw(e.status & 0x7f)),
        _ => None,
    }
}

/// The status as `waitpid` gives it, for the ends found at the stop.
pub(super) fn status_from_raw(raw: Option<i32>) -> Option<ExitStatus> {
    raw.map(ExitStatus::from_raw)
}

unsafe extern "C" fn event_trampoline(
    ev: *mut mln_event_t,
    _f: *mut mln_fork_t,
    e: *const mln_ipc_child_event_t,
    _data: *mut c_void,
) {
    if e.is_null() {
        return;
    }
    // SAFETY: the core passes an event valid during the call.
    let e = unsafe { *e };
    let index = e.slot as usize;
    let pid = e.pid as u32;
    let id = WorkerId::new(index, pid);
    let event = match e.r#type {
        M_IPC_CHILD_STARTED => WorkerEvent::Started { index, id, pid },
        M_IPC_CHILD_EXITED => {
            let how = End::from_raw(e.how);
            let status = status_of(&e);
            record_end(WorkerEnd { id, how, status });
            WorkerEvent::Exited {
                index,
                id,
                pid,
                how,
                status,
                restarts: e.restarts,
                restart_in: u64::try_from(e.restart_in_ms)
                    .ok()
                    .map(Duration::from_millis),
                frames_lost: e.frames_lost,
            }
        }
        M_IPC_CHILD_GAVE_UP => WorkerEvent::GaveUp { index },
        M_IPC_ROLLING_DONE => WorkerEvent::RollingDone {
            completed: e.status == 0,
        },
        M_IPC_CHILD_RESTART_FAILED => WorkerEvent::RestartFailed {
            index,
            threads_running: e.status == libc::EDEADLK,
            errno: e.status,
            retry_in: Duration::from_millis(u64::try_from(e.restart_in_ms).unwrap_or(0)),
        },
        _ => return,
    };
    if let WorkerEvent::Exited { id, .. } = event {
        // Its pending calls fail first: the program sees them ended with its end.
        super::call::peer_gone(ev, id);
    }
    let taken = LIFE.with_borrow_mut(|l| {
        if l.running {
            return None;
        }
        l.running = true;
        l.on_event.take()
    });
    if let Some(mut f) = taken {
        guarded(format_args!("on_worker_event"), || {
            f(&mut Master::new(ev), &event)
        });
        LIFE.with_borrow_mut(|l| l.on_event = Some(f));
    }
    LIFE.with_borrow_mut(|l| l.running = false);
    if matches!(event, WorkerEvent::Exited { .. })
        && SIGNALLED.load(Ordering::Relaxed)
        && STOP_MASTER.load(Ordering::Relaxed)
        && !process::has_children()
    {
        // Stopping on a signal: the last worker is gone, the master stops too.
        Master::new(ev).stop();
    }
}

unsafe extern "C" fn quit_trampoline(ev: *mut mln_event_t, _data: *mut c_void) -> c_int {
    let taken = LIFE.with_borrow_mut(|l| l.on_quit.take());
    let mut w = Worker::new(ev);
    if let Some(mut f) = taken {
        guarded(format_args!("on_quit"), || f(&mut w));
        LIFE.with_borrow_mut(|l| l.on_quit = Some(f));
    }
    // The worker stops as `Worker::stop` does: its queue is written, it exits with 0.
    w.stop();
    1
}

// ---------------------------------------------------------------------------------------
// Stopping on SIGTERM / SIGINT
// ---------------------------------------------------------------------------------------

static MASTER_LOOP: AtomicPtr<mln_event_t> = AtomicPtr::new(null_mut());
static SIGNAL_DEADLINE_MS: AtomicU32 = AtomicU32::new(0);
/// A stop signal came: the master stops once its last worker has ended.
static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// Whether the master's loop stops once the last worker has ended after a stop signal
/// (the synchronous `run`); the async face ends its streams instead (its driver looks).
static STOP_MASTER: AtomicBool = AtomicBool::new(true);
/// The self-pipe that tells the master's loop a stop signal came (read end, write end).
static PIPE: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];

/// Installs the SIGTERM / SIGINT handlers of `Builder::stop_on_signals` (in the master,
/// once its loop exists; workers restore the default dispositions). `stop_master`: the
/// master's loop stops once the last worker has ended.
pub(super) fn stop_on_signals(
    ev: *mut mln_event_t,
    deadline: Duration,
    stop_master: bool,
) -> std::io::Result<()> {
    STOP_MASTER.store(stop_master, Ordering::Relaxed);
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    PIPE[0].store(fds[0], Ordering::Relaxed);
    PIPE[1].store(fds[1], Ordering::Relaxed);
    // SAFETY: `ev` is the live loop of `run`; the callback reads its own pipe.
    let r = unsafe {
        crate::reactor::fd_set(
            ev,
            fds[0],
            M_EV_RECV | M_EV_NONBLOCK,
            M_EV_UNLIMITED,
            null_mut(),
            Some(stop_signal_ready),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    MASTER_LOOP.store(ev, Ordering::Relaxed);
    SIGNAL_DEADLINE_MS.store(millis(deadline), Ordering::Relaxed);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: an all-zero sigaction is valid to fill in; the handler only calls the
        // async-signal-safe `mln_fork_stop` path, atomics and write(2).
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// In a worker: SIGTERM and SIGINT get their default dispositions back, and the master's
/// self-pipe is closed.
pub(super) fn reset_signals() {
    if MASTER_LOOP.swap(null_mut(), Ordering::Relaxed).is_null() {
        return;
    }
    // SAFETY: restoring default dispositions and closing our own descriptors.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        for p in &PIPE {
            let fd = p.swap(-1, Ordering::Relaxed);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
}

extern "C" fn on_stop_signal(_sig: c_int) {
    // SAFETY: reading errno through libc's thread-local pointer.
    let saved = unsafe { *libc::__errno_location() };
    let ev = MASTER_LOOP.load(Ordering::Relaxed);
    if !ev.is_null() && !SIGNALLED.swap(true, Ordering::Relaxed) {
        let _ = process::stop(ev, null_mut(), SIGNAL_DEADLINE_MS.load(Ordering::Relaxed));
        let w = PIPE[1].load(Ordering::Relaxed);
        if w >= 0 {
            // SAFETY: one byte from a valid buffer to our own pipe (async-signal-safe).
            unsafe { libc::write(w, [1u8].as_ptr().cast(), 1) };
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// The self-pipe is readable: a stop signal came. With no worker left, the master stops
/// now; otherwise when the last one has ended (`event_trampoline`).
unsafe extern "C" fn stop_signal_ready(ev: *mut mln_event_t, fd: c_int, _data: *mut c_void) {
    let mut buf = [0u8; 16];
    // SAFETY: reading into a local buffer from our own non-blocking pipe.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    guarded(format_args!("stop on signal"), || {
        crate::log::info(format_args!(
            "stop signal: stopping every worker gracefully"
        ));
        if !process::has_children() && STOP_MASTER.load(Ordering::Relaxed) {
            Master::new(ev).stop();
        }
    });
}

/// Whether a stop signal came (`stop_on_signals`).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(super) fn stop_signalled() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}
