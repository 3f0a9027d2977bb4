//! [`Builder`]: what to run (handlers, workers, programs, limits), collected before
//! [`Builder::run`] starts anything.

use super::handlers::{MasterFn, MasterWritableFn, WorkerFn, WorkerWritableFn};
use super::identity;
use super::lifecycle::{self, EventFn, QuitFn};
use super::{run, Error, Master, Message, RunSummary, Worker, WorkerEvent, WorkerId, DRAIN_LIMIT};
use crate::log;
use crate::process;
use std::ffi::CString;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Message types up to this one are Melon's (its configuration reload is 1) and the
/// library's (1019..=1023); handlers for them are refused at registration.
pub const RESERVED_MAX: u32 = 1024;
const RESERVED_WHY: &str =
    "message types 0..=1024 are reserved (Melon's and the library's own); use 1025 or above";

pub(super) type MasterStartFn = dyn FnOnce(&mut Master);
pub(super) type WorkerStartFn = dyn FnMut(&mut Worker);

/// Configures and starts the processes: handlers per message type and side, the number of
/// workers, programs to spawn, limits. Methods chain; a bad argument is reported by
/// [`Builder::run`] (the first one wins).
///
/// Handler closures are `'static` and `FnMut`: they keep their captured state across
/// messages, per process (each worker has its own copy, taken at its fork). They need not
/// be `Send`. Registering a type twice on the same side keeps the later closure. A Rust
/// handler takes precedence over a C handler registered with `mln_ipc_handler_register`
/// for the same type and side (Rust handlers are installed like
/// `mln_fork_*_ipc_handler_set`); C handlers of other types, or of the other side, keep
/// working.
#[must_use = "a Builder does nothing until run() is called"]
pub struct Builder {
    pub(super) workers: u32,
    pub(super) master: Vec<(u32, Box<MasterFn>)>,
    pub(super) worker: Vec<(u32, Box<WorkerFn>)>,
    pub(super) master_start: Option<Box<MasterStartFn>>,
    pub(super) worker_start: Option<Box<WorkerStartFn>>,
    pub(super) master_writable: Option<Box<MasterWritableFn>>,
    pub(super) worker_writable: Option<Box<WorkerWritableFn>>,
    pub(super) programs: Vec<(Vec<CString>, bool)>,
    pub(super) max_message: Option<usize>,
    pub(super) queue_limit: Option<usize>,
    pub(super) stop_timeout: Duration,
    pub(super) allow_threads: bool,
    pub(super) on_event: Option<Box<EventFn>>,
    pub(super) on_quit: Option<Box<QuitFn>>,
    pub(super) restart_policy: Option<(u32, Duration)>,
    pub(super) stop_on_signals: Option<Duration>,
    pub(super) fds_limit: Option<usize>,
    pub(super) call_timeout: Duration,
    pub(super) error: Option<Error>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field(
                "master_types",
                &self.master.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .field(
                "worker_types",
                &self.worker.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .field("programs", &self.programs)
            .field("max_message", &self.max_message)
            .field("queue_limit", &self.queue_limit)
            .field("stop_timeout", &self.stop_timeout)
            .field("allow_threads", &self.allow_threads)
            .field("call_timeout", &self.call_timeout)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// One worker, no handlers, no programs.
    pub fn new() -> Self {
        Builder {
            workers: 1,
            master: Vec::new(),
            worker: Vec::new(),
            master_start: None,
            worker_start: None,
            master_writable: None,
            worker_writable: None,
            programs: Vec::new(),
            max_message: None,
            queue_limit: None,
            stop_timeout: DRAIN_LIMIT,
            allow_threads: false,
            on_event: None,
            on_quit: None,
            restart_policy: None,
            stop_on_signals: None,
            fds_limit: None,
            call_timeout: super::CALL_TIMEOUT,
            error: None,
        }
    }

    fn fail(mut self, e: Error) -> Self {
        self.error.get_or_insert(e);
        self
    }

    /// How many supervised workers to fork (default 1; 0 is allowed).
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = n;
        self
    }

    /// Handles frames of type `ty` arriving in the master: `f(master, from, payload)`;
    /// `payload` is borrowed from the receive buffer for the duration of the call. Types
    /// 0..=[`RESERVED_MAX`] (1024) are refused: [`Error::InvalidArgument`] from `run`
    /// (sending them stays possible, for C peers that handle them; 1021..=1023 are refused
    /// there too).
    pub fn on_master(
        mut self,
        ty: u32,
        f: impl FnMut(&mut Master, WorkerId, &[u8]) + 'static,
    ) -> Self {
        if ty <= RESERVED_MAX {
            return self.fail(Error::InvalidArgument(RESERVED_WHY));
        }
        self.master.retain(|(t, _)| *t != ty);
        self.master.push((ty, Box::new(f)));
        self
    }

    /// Handles frames of type `ty` arriving in a worker (from the master):
    /// `f(worker, payload)`. Types 0..=1024 are refused as in [`Builder::on_master`].
    pub fn on_worker(mut self, ty: u32, f: impl FnMut(&mut Worker, &[u8]) + 'static) -> Self {
        if ty <= RESERVED_MAX {
            return self.fail(Error::InvalidArgument(RESERVED_WHY));
        }
        self.worker.retain(|(t, _)| *t != ty);
        self.worker.push((ty, Box::new(f)));
        self
    }

    /// [`Builder::on_master`] for frames of `M::TYPE`, decoded to `M` (a frame that does
    /// not decode is dropped and logged).
    pub fn on_master_message<M: Message + 'static>(
        self,
        mut f: impl FnMut(&mut Master, WorkerId, M) + 'static,
    ) -> Self {
        self.on_master(M::TYPE, move |m, from, bytes| match M::try_decode(bytes) {
            Ok(msg) => f(m, from, msg),
            Err(why) => {
                if let Some(rec) = identity::open_fork_of(from) {
                    process::note_undecoded(rec);
                }
                log::warn(format_args!(
                    "type {}: {} bytes from {from} do not decode ({why}); dropped",
                    M::TYPE,
                    bytes.len()
                ))
            }
        })
    }

    /// [`Builder::on_worker`] for frames of `M::TYPE`, decoded to `M`.
    pub fn on_worker_message<M: Message + 'static>(
        self,
        f: impl FnMut(&mut Worker, M) + 'static,
    ) -> Self {
        self.on_worker(M::TYPE, typed_worker(f))
    }

    /// Runs once in the master after the workers are forked, before its loop starts
    /// (Melon's `master_process`). Messages sent here are written once the loop runs. If
    /// it panics, `run` stops the workers and returns [`Error::Panicked`].
    pub fn on_master_start(mut self, f: impl FnOnce(&mut Master) + 'static) -> Self {
        self.master_start = Some(Box::new(f));
        self
    }

    /// Runs once in each worker (also in each restarted one) before its loop starts
    /// (Melon's `worker_process`). If it panics, the worker exits with status 101 (and is
    /// restarted, within the restart policy).
    pub fn on_worker_start(mut self, f: impl FnMut(&mut Worker) + 'static) -> Self {
        self.worker_start = Some(Box::new(f));
        self
    }

    /// Called in the master, as `f(master, to)`, when the queue to child `to`, after a
    /// send to it was refused with [`Error::QueueFull`], has drained to half the queue
    /// limit or less: once per such episode. A good place to resume sending to `to`.
    ///
    /// The writable callback is process-wide: setting one on either side replaces a C
    /// handler set with `mln_ipc_writable_handler_set`.
    pub fn on_master_writable(mut self, f: impl FnMut(&mut Master, WorkerId) + 'static) -> Self {
        self.master_writable = Some(Box::new(f));
        self
    }

    /// Called in a worker, as `f(worker)`, when its queue to the master, after a send was
    /// refused with [`Error::QueueFull`], has drained to half the queue limit or less;
    /// once per such episode. As [`Builder::on_master_writable`].
    pub fn on_worker_writable(mut self, f: impl FnMut(&mut Worker) + 'static) -> Self {
        self.worker_writable = Some(Box::new(f));
        self
    }

    /// Also forks and executes `program` with `args` (as `mln_fork_spawn`): the program
    /// gets one more argument, the decimal number of its socketpair descriptor, which is
    /// the only descriptor of ours it inherits, and speaks the wire format on it.
    /// `supervised`: restart it (executing it again) when it dies. `program` must be a
    /// path to an executable file (no `PATH` search); `run` checks that before forking,
    /// and reports an `execv` the kernel refuses at the first start as [`Error::Io`].
    pub fn spawn<I, S>(mut self, program: impl AsRef<Path>, args: I, supervised: bool) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match program_argv(program.as_ref(), args) {
            Ok(v) => {
                self.programs.push((v, supervised));
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// The largest message accepted and sent, counted as the frame's length field (4 +
    /// payload bytes); default 64 MiB. Must be 4..=4294967295 and not above the queue
    /// limit. Applies to the whole process (C API included), as
    /// `mln_ipc_max_message_set`.
    pub fn max_message(mut self, max: usize) -> Self {
        self.max_message = Some(max);
        self
    }

    /// The most bytes (frame headers included) queued and not yet written, per peer and
    /// direction, before a send is refused with [`Error::QueueFull`]; 0 = unlimited;
    /// default 256 MiB. Must be 0 or at least the maximum message size. Applies to the
    /// whole process (C API included), as `mln_ipc_queue_limit_set`.
    pub fn queue_limit(mut self, bytes: usize) -> Self {
        self.queue_limit = Some(bytes);
        self
    }

    /// The most descriptors queued and not yet written per peer (default 1,024; 0 =
    /// unlimited); a send with descriptors beyond it is [`Error::QueueFull`] (a peer with
    /// none queued always takes one message's). Applies to the whole process, as
    /// `mln_ipc_fds_limit_set`.
    pub fn fds_limit(mut self, n: usize) -> Self {
        self.fds_limit = Some(n);
        self
    }

    /// How long stopping may take (default [`DRAIN_LIMIT`], 5 s). In the master, after
    /// [`Master::stop`]: writing what is still queued to the children, then waiting for
    /// them to exit (they get at least `min(timeout, 1 s)` after their channel closed);
    /// those still running are then killed (SIGKILL) and `run` returns once they are
    /// gone. In a worker, after [`Worker::stop`]: writing what is queued to the master.
    /// What could not be written is dropped and counted ([`RunSummary::undelivered`]).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Called in the master, on its loop, for every event of its workers' lives, in order
    /// (see [`WorkerEvent`]): started (also the first workers, once the loop runs), exited
    /// (how and with which status, whether and when it restarts, what was lost), given
    /// up by the restart policy, and the end of a rolling restart.
    pub fn on_worker_event(mut self, f: impl FnMut(&mut Master, &WorkerEvent) + 'static) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }

    /// Called in a worker when its master stops it gracefully ([`Master::stop_worker`], a
    /// rolling restart, the stop on signals), after every message the master sent before
    /// the stop. When it returns, the worker stops as [`Worker::stop`] does: what it queued
    /// is written and it exits with status 0. Without it, the worker just stops so.
    pub fn on_quit(mut self, f: impl FnMut(&mut Worker) + 'static) -> Self {
        self.on_quit = Some(Box::new(f));
        self
    }

    /// Gives a worker index up when it already had `intensity` restarts within `period`
    /// and dies again: [`WorkerEvent::GaveUp`], never restarted. `intensity` 0 never gives
    /// up (the default). A non-zero `intensity` needs a `period` of at least a
    /// millisecond (saturated at about 49 days).
    pub fn restart_policy(mut self, intensity: u32, period: Duration) -> Self {
        match lifecycle::check_restart_policy(intensity, period) {
            Ok(p) => {
                self.restart_policy = Some(p);
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// On SIGTERM or SIGINT the master stops every worker gracefully (as
    /// [`Master::stop_worker`] with `deadline`; nobody is restarted any more) and stops
    /// itself once the last one has ended: `run` then returns, with every end in
    /// [`RunSummary::ends`]. Workers get the default dispositions back.
    pub fn stop_on_signals(mut self, deadline: Duration) -> Self {
        self.stop_on_signals = Some(deadline);
        self
    }

    /// Starts even if other threads are running (`yes`), instead of refusing with
    /// [`Error::ThreadsRunning`].
    ///
    /// # Safety
    /// Forking copies only the calling thread. Every other thread vanishes from the
    /// workers in whatever state it was: a lock it held (a logger's, an allocator arena's,
    /// a `Mutex` of yours) stays locked forever there, and data it was changing stays
    /// half-updated. The caller must make sure that, at every fork `run` makes (the
    /// workers' start and every restart, for as long as the master runs), no other thread
    /// holds a lock or is in the middle of an update that a worker will use. This is the
    /// contract of `std`'s `CommandExt::pre_exec`, without the `exec` that would end it.
    /// (The core's own lock is taken across the fork and is safe.)
    ///
    /// ```compile_fail
    /// // Safe code cannot opt in:
    /// let b = mln_ipc::api::Builder::new().allow_threads(true);
    /// ```
    pub unsafe fn allow_threads(mut self, yes: bool) -> Self {
        self.allow_threads = yes;
        self
    }

    /// Forks the workers and the programs, and runs this process's event loop.
    ///
    /// **Once per process, by one thread.** The first call claims the process for its
    /// thread; every later call, from any thread, is [`Error::AlreadyStarted`] (checked
    /// before anything else is touched). A call refused by the argument checks below
    /// does not claim the process.
    ///
    /// **In the master** it returns `Ok(RunSummary)` after [`Master::stop`], once the
    /// children are stopped (see [`Builder::stop_timeout`] and [`RunSummary`]), or an
    /// error before any loop ran: [`Error::AlreadyStarted`], [`Error::ThreadsRunning`],
    /// [`Error::InvalidArgument`] (from a builder method), [`Error::Io`] (a program that
    /// is missing, not an executable file, or that `execv` refuses; socketpair, fork or
    /// handshake failure; children already started are stopped again).
    ///
    /// **In a worker** it never returns: the worker runs [`Builder::on_worker_start`] and
    /// its loop, and exits with status 0 after [`Worker::stop`], or 127 when the master is
    /// gone (the core's rule).
    ///
    /// SIGCHLD's disposition is left as it was (Melon's `mln_fork_prepare` ignores it; this
    /// does not): the library reaps its own children by pid, so `std::process::Command`
    /// and `waitpid` on other children keep working, during and after `run`. SIGPIPE is
    /// ignored (as Rust programs have it by default). Before every fork (start and
    /// restarts) Rust's and C's stdio are flushed, so nothing buffered is printed twice.
    pub fn run(self) -> Result<RunSummary, Error> {
        run::run(self)
    }

    /// The deadline of [`Master::call`] and [`Worker::call`], from the call (default
    /// [`CALL_TIMEOUT`](super::CALL_TIMEOUT), 30 s; any `Duration`: one too long for the
    /// clock is a century). [`Master::call_with_timeout`] sets one per call.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }
}

/// A worker handler of `M`: decodes the payload and calls `f`, or counts, logs and drops a
/// frame that does not decode (shared with [`Program`](super::Program)).
pub(super) fn typed_worker<M: Message + 'static>(
    mut f: impl FnMut(&mut Worker, M) + 'static,
) -> impl FnMut(&mut Worker, &[u8]) + 'static {
    move |w, bytes| match M::try_decode(bytes) {
        Ok(msg) => f(w, msg),
        Err(why) => {
            process::note_undecoded(core::ptr::null());
            log::warn(format_args!(
                "type {}: {} bytes from the master do not decode ({why}); dropped",
                M::TYPE,
                bytes.len()
            ))
        }
    }
}

/// A program's `argv` for `spawn` (the Builder's and the async Builder's): the path, then
/// the arguments, each without a NUL byte.
pub(super) fn program_argv<I, S>(program: &Path, args: I) -> Result<Vec<CString>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    use std::os::unix::ffi::OsStrExt;
    let prog = program.as_os_str().as_bytes();
    if prog.is_empty() {
        return Err(Error::InvalidArgument("spawn: empty program path"));
    }
    let mut v = vec![CString::new(prog)
        .map_err(|_| Error::InvalidArgument("spawn: NUL byte in the program path"))?];
    for a in args {
        v.push(
            CString::new(a.as_ref())
                .map_err(|_| Error::InvalidArgument("spawn: NUL byte in an argument"))?,
        );
    }
    Ok(v)
}
