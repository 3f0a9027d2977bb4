//! The async face (feature `tokio`): the same workers, the same frames, driven from a tokio
//! runtime in each process. See docs/async.md.
//!
//! [`Builder::run`] forks the workers first, before any runtime exists (it refuses to
//! start inside a runtime, [`Error::RuntimeRunning`], or beside other threads,
//! [`Error::ThreadsRunning`]); then each worker builds its own runtime
//! ([`Builder::worker_runtime`]: current-thread by default, multi-thread if the program
//! wants) and runs its async main with an [`AsyncWorker`]; the master runs its async main
//! with an [`AsyncMaster`] on a current-thread runtime, or on the runtime
//! [`Builder::master_runtime`] builds (multi-thread included: the restarts are then forked
//! by a fork server, a copy of the master made before its runtime existed; see
//! docs/async.md).
//!
//! Nothing is reimplemented: each process runs the core's standalone loop, one
//! non-blocking turn at a time, from a driver future polled by `block_on` on the process's
//! main thread (the loop's epoll descriptor is a tokio `AsyncFd`, its timers a tokio
//! `Sleep`); the handles talk to the driver through shared queues.
//!
//! What the synchronous [`Builder`](super::Builder) offers for a worker's life is here
//! too, on the same code of the core: descriptors with frames
//! ([`AsyncMaster::send_with_fds`], [`Frame::take_fds`]), the rolling restart
//! ([`AsyncMaster::rolling_restart`]), the restart policy ([`Builder::restart_policy`])
//! and the stop on signals ([`Builder::stop_on_signals`], [`AsyncMaster::stop_requested`]).
//! A received [`Frame`]'s [`Payload`] is a view of the buffer its turn of the loop filled.
//!
//! ```no_run
//! use mln_ipc::api::tokio::Builder;
//!
//! const REQ: u32 = 2000;
//! const ANS: u32 = 2001;
//!
//! let summary = Builder::new()
//!     .workers(2)
//!     .master_types([ANS])
//!     .worker_types([REQ])
//!     .run(
//!         |w| async move {
//!             while let Some(req) = w.recv().await {
//!                 if w.send(ANS, &req.payload).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         },
//!         |m| async move {
//!             for id in m.workers() {
//!                 m.send(id, REQ, b"hi").await.expect("send");
//!             }
//!             for _ in 0..2 {
//!                 let (from, ans) = m.recv().await.expect("answer");
//!                 println!("{from}: {:?}", ans.payload);
//!             }
//!             m.shutdown(std::time::Duration::from_secs(5)).await;
//!         },
//!     )
//!     .expect("run");
//! assert!(summary.is_clean());
//! ```

mod call;
mod driver;
mod frame;
mod handles;
mod lock;
mod shared;

pub use call::{Call, Reply};
pub use frame::{Frame, Payload};
pub use handles::{AsyncMaster, AsyncWorker, Events, Permit, Receiver};

use super::handlers::{self, guarded_with};
use super::run::{self as sync_run, CLAIMED};
use super::{lifecycle, Error, RunSummary, WorkerEvent, RESERVED_MAX};
use crate::abi::{M_PET_DFL, M_PET_EXE, M_PST_DFL, M_PST_SUP};
use crate::process::{self, Forked};
use crate::reactor::standalone as ev_loop;
use crate::registry::Side;
use core::ptr::null_mut;
use driver::Driver;
use shared::Inner;
use std::future::{poll_fn, Future};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;
use tokio::runtime::Runtime;

type RuntimeFn = dyn Fn() -> io::Result<Runtime>;
type MasterRuntimeFn = dyn FnOnce() -> io::Result<Runtime>;

/// A worker whose async main panicked exits with this status.
const PANIC_STATUS: i32 = 101;

/// Collects the settings, then [`Builder::run`] starts everything.
pub struct Builder {
    workers: u32,
    master_types: Vec<u32>,
    worker_types: Vec<u32>,
    receive_capacity: usize,
    send_window: usize,
    max_message: Option<usize>,
    queue_limit: Option<usize>,
    stop_timeout: Duration,
    worker_runtime: Option<Box<RuntimeFn>>,
    master_runtime: Option<Box<MasterRuntimeFn>>,
    programs: Vec<(Vec<std::ffi::CString>, bool)>,
    restart_policy: Option<(u32, Duration)>,
    stop_on_signals: Option<Duration>,
    fds_limit: Option<usize>,
    error: Option<Error>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// No workers, no types; a receive queue of 1,024 frames, a send window of 256 KiB.
    pub fn new() -> Builder {
        Builder {
            workers: 0,
            master_types: Vec::new(),
            worker_types: Vec::new(),
            receive_capacity: 1024,
            send_window: 256 * 1024,
            max_message: None,
            queue_limit: None,
            stop_timeout: super::DRAIN_LIMIT,
            worker_runtime: None,
            master_runtime: None,
            programs: Vec::new(),
            restart_policy: None,
            stop_on_signals: None,
            fds_limit: None,
            error: None,
        }
    }

    /// How many workers to fork.
    pub fn workers(mut self, n: u32) -> Builder {
        self.workers = n;
        self
    }

    /// The frame types the master receives (others are dropped, as with no handler).
    pub fn master_types(mut self, types: impl IntoIterator<Item = u32>) -> Builder {
        self.master_types.extend(types);
        self
    }

    /// The frame types the workers receive.
    pub fn worker_types(mut self, types: impl IntoIterator<Item = u32>) -> Builder {
        self.worker_types.extend(types);
        self
    }

    /// The receive queue's capacity in frames (at least 1): once it is full, the process
    /// stops reading its channels until the consumer took half of it; senders then wait.
    pub fn receive_capacity(mut self, frames: usize) -> Builder {
        self.receive_capacity = frames.max(1);
        self
    }

    /// Bytes accepted by async sends to one peer beyond the core's own queue
    /// ([`Builder::queue_limit`]) before they wait (at least 1; a larger frame is
    /// accepted alone).
    pub fn send_window(mut self, bytes: usize) -> Builder {
        self.send_window = bytes.max(1);
        self
    }

    /// As [`super::Builder::max_message`].
    pub fn max_message(mut self, bytes: usize) -> Builder {
        self.max_message = Some(bytes);
        self
    }

    /// As [`super::Builder::queue_limit`]: each peer's queue in the core.
    pub fn queue_limit(mut self, bytes: usize) -> Builder {
        self.queue_limit = Some(bytes);
        self
    }

    /// As [`super::Builder::stop_timeout`]; also bounds how long a process that ends
    /// writes what its async sends accepted.
    pub fn stop_timeout(mut self, timeout: Duration) -> Builder {
        self.stop_timeout = timeout;
        self
    }

    /// Also starts `program` with `args`, as [`super::Builder::spawn`]: an executable
    /// file, given its channel's descriptor number as its last argument; `supervised`:
    /// executed again when it dies. It speaks the wire format: a C program, or a Rust one
    /// written with [`super::Program`]. Its frames reach the master's `recv` and calls as
    /// a worker's do; its index follows the workers'.
    pub fn spawn<I, S>(
        mut self,
        program: impl AsRef<std::path::Path>,
        args: I,
        supervised: bool,
    ) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match super::builder::program_argv(program.as_ref(), args) {
            Ok(v) => self.programs.push((v, supervised)),
            Err(e) => return self.fail(e),
        }
        self
    }

    /// Keeps the first bad argument, for `run`.
    fn fail(mut self, e: Error) -> Builder {
        self.error.get_or_insert(e);
        self
    }

    /// As [`super::Builder::fds_limit`]: the most descriptors queued per peer (default
    /// 1,024; 0 = unlimited); an async send with descriptors beyond it waits.
    pub fn fds_limit(mut self, n: usize) -> Builder {
        self.fds_limit = Some(n);
        self
    }

    /// As [`super::Builder::restart_policy`]: a worker index that already had `intensity`
    /// restarts within `period` and dies again is given up, never restarted:
    /// [`WorkerEvent::GaveUp`] in the master's event stream. `intensity` 0 never gives up
    /// (the default); a non-zero one needs a `period` of at least a millisecond
    /// ([`Error::InvalidArgument`] from `run`).
    ///
    /// ```no_run
    /// use mln_ipc::api::tokio::Builder;
    /// use mln_ipc::api::WorkerEvent;
    /// use std::time::Duration;
    ///
    /// Builder::new()
    ///     .workers(1)
    ///     .restart_policy(3, Duration::from_secs(10)) // 3 restarts in 10 s at most
    ///     .run(
    ///         |_w| async move { std::process::abort() }, // dies at once, every time
    ///         |m| async move {
    ///             while let Some(e) = m.next_event().await {
    ///                 if let WorkerEvent::GaveUp { index } = e {
    ///                     println!("worker {index} given up");
    ///                     break;
    ///                 }
    ///             }
    ///         },
    ///     )
    ///     .expect("run");
    /// ```
    pub fn restart_policy(mut self, intensity: u32, period: Duration) -> Builder {
        match lifecycle::check_restart_policy(intensity, period) {
            Ok(p) => self.restart_policy = Some(p),
            Err(e) => return self.fail(e),
        }
        self
    }

    /// As [`super::Builder::stop_on_signals`]: on SIGTERM or SIGINT the master stops every
    /// worker gracefully (as [`AsyncMaster::stop_worker`] with `deadline`; nobody is
    /// restarted any more). The master's future sees it two ways:
    /// [`AsyncMaster::stop_requested`] resolves when the signal came, and once the last
    /// worker has ended (its `Exited` in the event stream) the master's streams end:
    /// [`AsyncMaster::recv`], [`AsyncMaster::next_event`], [`AsyncMaster::next_call`]
    /// give `None` once what came before is taken. The master's future should then return;
    /// `run` returns the [`RunSummary`], every end in [`RunSummary::ends`]. Workers get the
    /// default dispositions back.
    ///
    /// ```no_run
    /// use mln_ipc::api::tokio::Builder;
    /// use std::time::Duration;
    ///
    /// let summary = Builder::new()
    ///     .workers(2)
    ///     .master_types([2000])
    ///     .stop_on_signals(Duration::from_secs(5))
    ///     .run(
    ///         |w| async move { w.quit().await }, // a graceful stop ends the worker
    ///         |m| async move {
    ///             // Ends after a SIGTERM, once both workers are gone.
    ///             while let Some((from, frame)) = m.recv().await {
    ///                 println!("{from}: {:?}", frame.payload);
    ///             }
    ///         },
    ///     )
    ///     .expect("run");
    /// assert!(summary.is_clean());
    /// ```
    pub fn stop_on_signals(mut self, deadline: Duration) -> Builder {
        self.stop_on_signals = Some(deadline);
        self
    }

    /// How each worker builds its runtime, after the fork (default: current-thread with
    /// I/O and time). A multi-thread runtime is fine in a worker: its async main and
    /// tasks may use the [`AsyncWorker`] from any thread.
    pub fn worker_runtime(mut self, f: impl Fn() -> io::Result<Runtime> + 'static) -> Builder {
        self.worker_runtime = Some(Box::new(f));
        self
    }

    /// How the master builds its runtime, once the workers are forked (default:
    /// current-thread with I/O and time). Any runtime, multi-thread included: its tasks
    /// may use the [`AsyncMaster`] from any thread, and the master may start threads.
    ///
    /// With this set, `run` starts a **fork server** before it builds the runtime: a
    /// single-threaded copy of this process as it is then (workers forked, no runtime, no
    /// other thread), which makes every later worker (restarts; also programs restarted)
    /// as a child of the master, so no thread of the master is ever copied into a worker.
    /// A worker it makes is a copy of the process as it was when `run` started the server
    /// (as the initial workers are), never of the master's later state. The server is not
    /// a worker (not listed, no events, never restarted) and ends with the master; if it
    /// dies, restarts fail with [`WorkerEvent::RestartFailed`] (`errno` ECHILD). See
    /// docs/async.md.
    pub fn master_runtime(mut self, f: impl FnOnce() -> io::Result<Runtime> + 'static) -> Builder {
        self.master_runtime = Some(Box::new(f));
        self
    }

    /// Forks the workers, then runs `master` on a current-thread runtime in this process
    /// (or on [`Builder::master_runtime`]'s) and `worker` in each worker (and in each
    /// restarted one) on its own runtime. When `master`'s future returns, what it sent is
    /// written and every worker is stopped as [`super::Builder::run`] does (the fork
    /// server too); `run` returns the [`RunSummary`]. A worker whose
    /// future returns exits with status 0 once what it sent is written (101 if it
    /// panicked); the master restarts workers that end unasked. Errors before any fork:
    /// [`Error::RuntimeRunning`], [`Error::ThreadsRunning`], [`Error::AlreadyStarted`],
    /// [`Error::InvalidArgument`].
    pub fn run<W, WF, M, MF>(self, worker: W, master: M) -> Result<RunSummary, Error>
    where
        W: FnOnce(AsyncWorker) -> WF,
        WF: Future<Output = ()>,
        M: FnOnce(AsyncMaster) -> MF,
        MF: Future<Output = ()>,
    {
        if let Some(e) = self.error {
            return Err(e);
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::RuntimeRunning);
        }
        for (args, _) in &self.programs {
            sync_run::check_executable(&args[0])?;
        }
        let threads = process::thread_count();
        if threads > 1 {
            return Err(Error::ThreadsRunning { threads });
        }
        if let Some(&ty) = self
            .master_types
            .iter()
            .chain(&self.worker_types)
            .find(|&&t| t <= RESERVED_MAX)
        {
            let _ = ty;
            return Err(Error::InvalidArgument(
                "message types 0..=1024 are reserved for Melon",
            ));
        }
        sync_run::check_sizes(self.max_message, self.queue_limit)?;
        if CLAIMED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
            || process::is_worker()
        {
            return Err(Error::AlreadyStarted);
        }
        sync_run::set_sizes(self.max_message, self.queue_limit)?;
        start(self, worker, master)
    }
}

fn start<W, WF, M, MF>(mut b: Builder, worker: W, master: M) -> Result<RunSummary, Error>
where
    W: FnOnce(AsyncWorker) -> WF,
    WF: Future<Output = ()>,
    M: FnOnce(AsyncMaster) -> MF,
    MF: Future<Output = ()>,
{
    for &ty in &b.master_types {
        handlers::install_raw(
            Side::Master,
            ty,
            Box::new(move |_, from, data| frame::stage(Some(from.cast()), ty, data)),
        );
    }
    for &ty in &b.worker_types {
        handlers::install_raw(
            Side::Worker,
            ty,
            Box::new(move |_, _, data| frame::stage(None, ty, data)),
        );
    }
    // The call frames (call.rs), on both sides.
    handlers::install_master(
        call::CALL,
        Box::new(|_, from, data| driver::with_current(|i| call::on_call(i, Some(from), data))),
    );
    handlers::install_master(
        call::REPLY,
        Box::new(|_, from, data| driver::with_current(|i| call::on_reply(i, Some(from), data))),
    );
    handlers::install_worker(
        call::CALL,
        Box::new(|_, data| driver::with_current(|i| call::on_call(i, None, data))),
    );
    handlers::install_worker(
        call::REPLY,
        Box::new(|_, data| driver::with_current(|i| call::on_reply(i, None, data))),
    );
    process::set_pacing(false);
    process::set_single_threaded_forks(true);
    lifecycle::set_restart_policy(b.restart_policy);
    if let Some(n) = b.fds_limit {
        process::set_fds_limit(n);
    }
    let on_event: Box<lifecycle::EventFn> =
        Box::new(|_, e: &WorkerEvent| driver::with_current(|i| i.lock().push_event(e.clone())));
    lifecycle::install(Some(on_event), None);
    process::set_quit_handler(Some(driver::quit), null_mut());
    if process::prepare_keep_sigchld() < 0 {
        return Err(Error::Io(io::Error::last_os_error()));
    }
    let mut worker = Some(worker);
    for _ in 0..b.workers {
        match process::fork_core(null_mut(), process::new_plan(M_PET_DFL, M_PST_SUP, None)) {
            Ok(Forked::Parent) => {}
            Ok(Forked::Child) => worker_process(&b, worker.take()),
            Err(e) => return Err(sync_run::abort_start(e)),
        }
    }
    for (args, supervised) in std::mem::take(&mut b.programs) {
        let stype = if supervised { M_PST_SUP } else { M_PST_DFL };
        let plan = process::new_plan(M_PET_EXE, stype, Some(process::ExecArgs::new(args)));
        if let Err(e) = process::spawn_plan_checked(plan, null_mut()) {
            return Err(sync_run::abort_start(e));
        }
    }
    let master_runtime = b.master_runtime.take();
    if master_runtime.is_some() {
        // Before any runtime or thread: later forks are the server's (docs/async.md).
        match process::start_fork_server() {
            Ok(Forked::Parent) => {}
            Ok(Forked::Child) => worker_process(&b, worker.take()),
            Err(e) => return Err(sync_run::abort_start(e)),
        }
    }
    let ev = ev_loop::new();
    if ev.is_null() {
        return Err(sync_run::abort_start(io::Error::other(
            "cannot create an event loop",
        )));
    }
    process::master_events_set(ev);
    if let Some(deadline) = b.stop_on_signals {
        // The driver sees the signal (`Driver::signal_check`); the loop goes on.
        if let Err(e) = lifecycle::stop_on_signals(ev, deadline, false) {
            // SAFETY: never dispatched; nothing else refers to it.
            unsafe { ev_loop::free(ev) };
            return Err(sync_run::abort_start(e));
        }
    }
    let rt = match master_runtime {
        Some(f) => f(),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            // SAFETY: never dispatched; nothing else refers to it.
            unsafe { ev_loop::free(ev) };
            return Err(sync_run::abort_start(e));
        }
    };
    let inner = Inner::new(b.receive_capacity, b.send_window);
    let handle = AsyncMaster {
        inner: inner.clone(),
    };
    let stop_timeout = b.stop_timeout;
    let outcome: Result<Option<String>, Error> = rt.block_on(async move {
        let mut driver = Driver::new(ev, inner, true)?;
        let mut user = Box::pin(master(handle));
        let end = poll_fn(|cx| {
            driver
                .poll_with(cx, |cx| {
                    match catch_unwind(AssertUnwindSafe(|| user.as_mut().poll(cx))) {
                        Ok(Poll::Pending) => Poll::Pending,
                        Ok(Poll::Ready(())) => Poll::Ready(None),
                        Err(p) => Poll::Ready(Some(handlers::panic_message(p))),
                    }
                })
                // Err: End::BecameWorker.
                .map(|r| r.ok())
        })
        .await;
        match end {
            None => {
                // A restarted worker, inside the master's runtime: what belongs to the
                // master is leaked here, neither run nor dropped (it is the master's).
                std::mem::forget(user);
                std::mem::forget(driver);
                Err(Error::AlreadyStarted)
            }
            Some(panicked) => {
                drop(user);
                driver
                    .drain(tokio::time::Instant::now() + stop_timeout)
                    .await;
                Ok(panicked)
            }
        }
    });
    if process::is_worker() {
        // Forked by a restart from the master's loop: become that worker.
        std::mem::forget(rt);
        sync_run::into_worker(ev);
        worker_process(&b, worker.take());
    }
    drop(rt);
    let summary = sync_run::stop_children(stop_timeout);
    // SAFETY: not turned any more; nothing refers to the loop after this.
    unsafe { ev_loop::free(ev) };
    handlers::drop_all(None);
    lifecycle::drop_hooks(true);
    match outcome {
        Ok(None) => Ok(summary),
        Ok(Some(message)) => Err(Error::Panicked {
            hook: "async master",
            message,
        }),
        Err(e) => Err(e),
    }
}

/// The core's last word in a worker whose master is gone.
fn worker_exit_hook() {
    handlers::drop_all(Some(Side::Worker));
}

/// A worker's life after the fork: its runtime, its async main; never returns.
fn worker_process<W, WF>(b: &Builder, worker: Option<W>) -> !
where
    W: FnOnce(AsyncWorker) -> WF,
    WF: Future<Output = ()>,
{
    lifecycle::reset_signals();
    let _ = lifecycle::take_ends();
    let ev = ev_loop::new();
    let rt = match &b.worker_runtime {
        Some(f) => f(),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let (Some(worker), false, Ok(rt)) = (worker, ev.is_null(), rt) else {
        crate::log::error(format_args!(
            "async worker: cannot create its event loop or runtime"
        ));
        std::process::exit(1);
    };
    process::worker_events_set(ev);
    process::set_exit_hook(worker_exit_hook);
    let inner = Inner::new(b.receive_capacity, b.send_window);
    let handle = AsyncWorker {
        inner: inner.clone(),
        index: process::my_slot().map(|s| s as usize),
    };
    let timeout = b.stop_timeout;
    let status = rt.block_on(async move {
        let mut driver = match Driver::new(ev, inner, false) {
            Ok(d) => d,
            Err(e) => {
                crate::log::error(format_args!("async worker: {e}"));
                return 1;
            }
        };
        let mut user = Box::pin(worker(handle));
        let panicked = poll_fn(|cx| {
            driver
                .poll_with(cx, |cx| {
                    match catch_unwind(AssertUnwindSafe(|| user.as_mut().poll(cx))) {
                        Ok(Poll::Pending) => Poll::Pending,
                        Ok(Poll::Ready(())) => Poll::Ready(false),
                        Err(p) => {
                            let m = handlers::panic_message(p);
                            crate::log::error(format_args!("async worker main panicked ({m})"));
                            Poll::Ready(true)
                        }
                    }
                })
                // A worker's driver never ends by itself.
                .map(|r| r.unwrap_or(false))
        })
        .await;
        drop(user);
        driver.drain(tokio::time::Instant::now() + timeout).await;
        if panicked {
            PANIC_STATUS
        } else {
            0
        }
    });
    drop(rt);
    process::flush_stdio();
    let _ = process::shutdown(sync_run::deadline_after(timeout), Duration::ZERO);
    let _ = guarded_with(format_args!("dropping the worker's handlers"), || {
        handlers::drop_all(Some(Side::Worker))
    });
    process::flush_stdio();
    std::process::exit(status)
}
