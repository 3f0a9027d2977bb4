//! [`Program`]: the worker's side of the API in a program started with `spawn`
//! ([`Builder::spawn`](super::Builder::spawn), C's `mln_fork_spawn`), which finds its
//! channel in its last argument.

use super::builder::WorkerStartFn;
use super::handlers::{self, WorkerFn, WorkerWritableFn};
use super::lifecycle::{self, QuitFn};
use super::{call, run, Error, Message, Worker, CALL_TIMEOUT, DRAIN_LIMIT, RESERVED_MAX};
use crate::process;
use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set once `from_env` took the descriptor named by the last argument: it has one owner.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// A program started with `spawn` ([`Builder::spawn`](super::Builder::spawn), or C's
/// `mln_fork_spawn`), written with the same handlers as a forked worker.
///
/// The master executes the program with one more argument, last: the decimal number of
/// the program's end of a socketpair, the only descriptor of the master's it inherits.
/// [`Program::from_env`] takes that descriptor; the methods then collect the worker's
/// side of a [`Builder`](super::Builder): handlers per message type
/// ([`on_worker`](Program::on_worker), [`on_worker_message`](Program::on_worker_message)),
/// [`on_start`](Program::on_start), [`on_writable`](Program::on_writable),
/// [`on_quit`](Program::on_quit) and the limits; and [`Program::run`] runs the loop. The
/// handlers get the same [`Worker`] context as a forked worker's: `send`, `send_with_fds`,
/// `take_fds`, `after`, `stats`, `stop`; a C master or a Rust one sees no difference
/// (the fork handshake was written by the forked child before it executed the program, so
/// the program owes none).
///
/// # Rules
/// * **Once per process.** `run` claims the process as [`Builder::run`](super::Builder::run) does: a second
///   `run` (of either) is [`Error::AlreadyStarted`], and so is a `run` in a process that
///   is already a worker, or a master with children, through the C API.
/// * **Threads** are allowed: the program was executed, not forked, and this API never
///   forks in it. Everything runs on the thread that called `run`, one callback at a time;
///   no context is `Send`.
/// * **Stopping.** After [`Worker::stop`] (from a handler, a timer or `on_start`), or once
///   [`on_quit`](Program::on_quit) returned (the master stopped this program gracefully),
///   no handler or timer runs any more; `run` flushes stdio, writes what is queued for the
///   master (within [`stop_timeout`](Program::stop_timeout)), closes the channel and
///   **returns `Ok(())`**: a program is its own process, so unlike a forked worker it is
///   not exited for you. `main` can clean up and return; the master sees its exit status
///   (a supervised program is executed again).
/// * **The master gone.** When the channel ends (the master stopped, died, or closed it),
///   `run` stops dispatching and returns [`Error::PeerGone`], where a forked worker would
///   exit with status 127. A program has its own resources to release (files, temporary
///   state, children of its own), and its master may be gone for good: returning lets
///   `main` decide. `std::process::exit(127)` then behaves as a forked worker does. Frames
///   still queued for the master are lost (logged).
/// * Dropping a `Program` without running it closes the channel: the master sees this
///   program's end of stream and closes it.
///
/// ```no_run
/// use mln_ipc::api::{Error, Program, Worker};
///
/// const PING: u32 = 2000;
/// const PONG: u32 = 2001;
/// const QUIT: u32 = 2002;
///
/// fn main() -> std::process::ExitCode {
///     let program = match Program::from_env() {
///         Ok(p) => p,
///         Err(e) => {
///             eprintln!("start me with Builder::spawn or mln_fork_spawn: {e}");
///             return std::process::ExitCode::from(2);
///         }
///     };
///     let greeting = format!("{:?}", program.args());
///     let r = program
///         .on_start(move |w: &mut Worker| {
///             let _ = w.send(PONG, greeting.as_bytes());
///         })
///         .on_worker(PING, |w: &mut Worker, payload: &[u8]| {
///             let _ = w.send(PONG, payload);
///         })
///         .on_worker(QUIT, |w: &mut Worker, _: &[u8]| w.stop())
///         .run();
///     match r {
///         Ok(()) => std::process::ExitCode::SUCCESS,
///         Err(Error::PeerGone) => std::process::ExitCode::from(127),
///         Err(e) => {
///             eprintln!("{e}");
///             std::process::ExitCode::FAILURE
///         }
///     }
/// }
/// ```
#[must_use = "a Program does nothing until run() is called"]
pub struct Program {
    fd: OwnedFd,
    args: Vec<OsString>,
    handlers: Vec<(u32, Box<WorkerFn>)>,
    start: Option<Box<WorkerStartFn>>,
    writable: Option<Box<WorkerWritableFn>>,
    on_quit: Option<Box<QuitFn>>,
    max_message: Option<usize>,
    queue_limit: Option<usize>,
    stop_timeout: Duration,
    call_timeout: Duration,
    /// The first refused argument, reported by `run`.
    error: Option<Error>,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("fd", &self.fd)
            .field("args", &self.args)
            .field(
                "types",
                &self.handlers.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .field("max_message", &self.max_message)
            .field("queue_limit", &self.queue_limit)
            .field("stop_timeout", &self.stop_timeout)
            .finish_non_exhaustive()
    }
}

/// The text of `from_env`'s refusals.
const NO_ARG: &str = "Program::from_env: no argument; a program started by spawn gets its \
     channel's descriptor number as its last argument";
const NOT_NUMBER: &str = "Program::from_env: the last argument is not a descriptor number; \
     a program started by spawn gets its channel's as its last argument";
const NOT_OPEN: &str = "Program::from_env: the descriptor named by the last argument is not open";
const NOT_CHANNEL: &str = "Program::from_env: the descriptor named by the last argument is \
     not a stream Unix socket (not a channel given by spawn)";
const TWICE: &str = "Program::from_env: the channel was already taken in this process";
const FD_NOT_CHANNEL: &str = "Program::from_fd: not a stream Unix socket";

impl Program {
    /// The program's channel from its command line: the last argument of
    /// [`std::env::args_os`], the decimal number of an open stream Unix socket, which the
    /// returned `Program` owns (closed when it is dropped or `run` ends). The other
    /// arguments are the program's own: [`Program::args`].
    ///
    /// [`Error::InvalidArgument`], saying why, when there is no argument, the last one is
    /// not a number, names no open descriptor or one that is not a stream Unix socket (the
    /// program was not started by `spawn`), or an earlier `from_env` took the channel.
    /// Nothing is changed then.
    pub fn from_env() -> Result<Program, Error> {
        let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let last = args.pop().ok_or(Error::InvalidArgument(NO_ARG))?;
        let fd = last
            .to_str()
            .and_then(parse_fd)
            .ok_or(Error::InvalidArgument(NOT_NUMBER))?;
        if TAKEN.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument(TWICE));
        }
        // SAFETY: F_GETFD on any number only reads its descriptor flags (EBADF if closed).
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(Error::InvalidArgument(NOT_OPEN));
        }
        // SAFETY: `fd` is open (checked just above) and is not closed while borrowed here.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if process::check_channel(borrowed).is_err() {
            return Err(Error::InvalidArgument(NOT_CHANNEL));
        }
        if TAKEN
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::InvalidArgument(TWICE));
        }
        // SAFETY: the descriptor the master handed this program for its channel (the
        // spawn contract: the last argument names it, and nothing else in the program
        // owns it); `TAKEN` makes this the only `OwnedFd` made from it here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Program::with(fd, args))
    }

    /// A program whose channel is `fd` (found some other way than the last argument):
    /// [`Error::InvalidArgument`] if it is not a stream Unix socket (`fd` is closed
    /// then). [`Program::args`] are then all the arguments but the program's name.
    pub fn from_fd(fd: OwnedFd) -> Result<Program, Error> {
        if process::check_channel(fd.as_fd()).is_err() {
            return Err(Error::InvalidArgument(FD_NOT_CHANNEL));
        }
        Ok(Program::with(fd, std::env::args_os().skip(1).collect()))
    }

    fn with(fd: OwnedFd, args: Vec<OsString>) -> Program {
        Program {
            fd,
            args,
            handlers: Vec::new(),
            start: None,
            writable: None,
            on_quit: None,
            max_message: None,
            queue_limit: None,
            stop_timeout: DRAIN_LIMIT,
            call_timeout: CALL_TIMEOUT,
            error: None,
        }
    }

    /// The program's own arguments: the command line without the program's name and (from
    /// [`Program::from_env`]) without the descriptor number `spawn` appended.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// Handles frames of type `ty` from the master: `f(worker, payload)`, as
    /// [`Builder::on_worker`](super::Builder::on_worker); `payload` is borrowed from the
    /// receive buffer for the duration of the call. Registering a type twice keeps the
    /// later closure.
    pub fn on_worker(mut self, ty: u32, f: impl FnMut(&mut Worker, &[u8]) + 'static) -> Self {
        if ty <= RESERVED_MAX {
            self.error.get_or_insert(Error::InvalidArgument(
                "message types 0..=1024 are reserved (Melon's and the library's own); use 1025 or above",
            ));
            return self;
        }
        self.handlers.retain(|(t, _)| *t != ty);
        self.handlers.push((ty, Box::new(f)));
        self
    }

    /// [`Program::on_worker`] for frames of `M::TYPE`, decoded to `M` (a frame that does
    /// not decode is dropped and logged), as
    /// [`Builder::on_worker_message`](super::Builder::on_worker_message).
    pub fn on_worker_message<M: Message + 'static>(
        self,
        f: impl FnMut(&mut Worker, M) + 'static,
    ) -> Self {
        self.on_worker(M::TYPE, super::builder::typed_worker(f))
    }

    /// Runs once in `run` before the loop starts (messages sent here are written once it
    /// runs), as [`Builder::on_worker_start`](super::Builder::on_worker_start).
    pub fn on_start(mut self, f: impl FnOnce(&mut Worker) + 'static) -> Self {
        let mut f = Some(f);
        self.start = Some(Box::new(move |w: &mut Worker| {
            if let Some(f) = f.take() {
                f(w)
            }
        }));
        self
    }

    /// Called when the queue to the master, after a send was refused with
    /// [`Error::QueueFull`], has drained to half the queue limit or less; once per such
    /// episode. As [`Builder::on_worker_writable`](super::Builder::on_worker_writable).
    pub fn on_writable(mut self, f: impl FnMut(&mut Worker) + 'static) -> Self {
        self.writable = Some(Box::new(f));
        self
    }

    /// Called when the master stops this program gracefully
    /// ([`Master::stop_worker`](super::Master::stop_worker), the stop on signals), after
    /// every message the master sent before the stop. When it returns the program stops as
    /// [`Worker::stop`] does, and `run` returns `Ok(())`. Without it, the program just
    /// stops so.
    pub fn on_quit(mut self, f: impl FnMut(&mut Worker) + 'static) -> Self {
        self.on_quit = Some(Box::new(f));
        self
    }

    /// The largest message accepted and sent, as
    /// [`Builder::max_message`](super::Builder::max_message) (default 64 MiB). Match the
    /// master's: a frame above this program's maximum ends the channel.
    pub fn max_message(mut self, max: usize) -> Self {
        self.max_message = Some(max);
        self
    }

    /// The most bytes queued for the master and not yet written before a send is refused
    /// with [`Error::QueueFull`], as [`Builder::queue_limit`](super::Builder::queue_limit)
    /// (default 256 MiB; 0 = unlimited).
    pub fn queue_limit(mut self, bytes: usize) -> Self {
        self.queue_limit = Some(bytes);
        self
    }

    /// How long `run`, once stopped, keeps writing what is queued for the master before it
    /// drops the rest (default [`DRAIN_LIMIT`], 5 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// How long this program's calls to its master ([`Worker::call`]) wait for an answer,
    /// as [`Builder::call_timeout`](super::Builder::call_timeout) (default
    /// [`CALL_TIMEOUT`], 30 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Makes this process a worker whose master connection is the channel, and runs its
    /// loop on the calling thread: `on_start`, then the handlers as frames arrive.
    ///
    /// Returns `Ok(())` after [`Worker::stop`] or a graceful stop by the master (see
    /// [`Program::on_quit`]), once what was queued is written (or
    /// [`stop_timeout`](Program::stop_timeout) ran out; the rest is logged and dropped);
    /// [`Error::PeerGone`] when the master is gone (see the type's rules); or, before any
    /// loop ran: [`Error::AlreadyStarted`] (a second `run` in this process, or
    /// [`Builder::run`](super::Builder::run) ran, or the C API made this process a
    /// worker or a master with children), [`Error::InvalidArgument`] (the sizes),
    /// [`Error::Io`] (the channel cannot be set up).
    pub fn run(self) -> Result<(), Error> {
        let Program {
            fd,
            args: _,
            handlers: types,
            start,
            writable,
            on_quit,
            max_message,
            queue_limit,
            stop_timeout,
            call_timeout,
            error,
        } = self;
        if let Some(e) = error {
            return Err(e);
        }
        run::claim_program(max_message, queue_limit)?;
        process::adopt_master(fd, true).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => Error::AlreadyStarted,
            _ => Error::Io(e),
        })?;
        for (ty, f) in types {
            handlers::install_worker(ty, f);
        }
        call::install(call_timeout);
        if writable.is_some() {
            handlers::install_writable(None, writable);
        }
        // As a forked worker of the Rust API: a full queue is `QueueFull`, never a wait.
        process::set_pacing(false);
        lifecycle::install(None, on_quit);
        run::program_main(start, stop_timeout)
    }
}

/// A descriptor number as `spawn` writes it: decimal digits, no sign, at most `i32::MAX`.
fn parse_fd(s: &str) -> Option<RawFd> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
