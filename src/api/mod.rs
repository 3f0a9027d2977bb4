//! The safe Rust API: master/worker processes exchanging typed frames, without `unsafe`,
//! C callbacks or global-state ceremony.
//!
//! It is a thin face over the same core as the C API (`mln_fork_*`, `mln_ipc_*`): the
//! same handler tables, the same processes, the same wire format
//! (`[u32 len = 4 + payload][u32 type][payload]`, host byte order). A Rust master talks to
//! C workers and the other way round, and C handlers registered with
//! [`mln_ipc_handler_register`](crate::capi::ipc::mln_ipc_handler_register) keep working
//! beside Rust ones.
//!
//! # Shape
//! A [`Builder`] collects handlers (closures, per message type and side), the number of
//! workers and the programs to spawn; [`Builder::run`] forks the workers and runs the event
//! loop of each process. Handlers get a context, [`Master`] or [`Worker`], to send
//! messages, set timers, read counters and stop; payloads are borrowed straight from the
//! receive buffer. In the master, `run` returns a [`RunSummary`] once stopped. A request
//! that wants an answer is a call: [`Master::call`] / [`Worker::call`] send it and run a
//! callback with the answer (or why there is none: [`CallError`]); the handler of the
//! request's type answers with [`Worker::reply`] / [`Master::reply`], now or later. A
//! program started with [`Builder::spawn`] (or C's `mln_fork_spawn`) and written in Rust
//! uses the worker's side through [`Program`]: the same handlers and [`Worker`] context,
//! its channel taken from its last argument.
//!
//! ```no_run
//! use mln_ipc::api::{Builder, Master, Worker, WorkerId};
//!
//! const PING: u32 = 2000;
//! const PONG: u32 = 2001;
//!
//! let summary = Builder::new()
//!     .workers(2)
//!     .on_master_start(|m: &mut Master| {
//!         assert!(m.broadcast(PING, b"hello").expect("broadcast").all_sent());
//!     })
//!     .on_worker(PING, |w: &mut Worker, payload: &[u8]| {
//!         let _ = w.send(PONG, payload);
//!     })
//!     .on_master(PONG, {
//!         let mut pongs = 0;
//!         move |m: &mut Master, from: WorkerId, _payload: &[u8]| {
//!             println!("pong from worker {} (pid {})", from.index(), from.pid());
//!             pongs += 1;
//!             if pongs == 2 {
//!                 m.stop();
//!             }
//!         }
//!     })
//!     .run()
//!     .expect("run");
//! assert!(summary.is_clean());
//! ```
//!
//! # Rules
//! * **Processes.** [`Builder::run`] may be called once per process. It returns only in the
//!   master. A worker runs its loop until it calls [`Worker::stop`] (it then exits with
//!   status 0) or its master is gone (it exits with status 127, the core's rule). Workers
//!   are supervised: one that dies is restarted, with backoff when it keeps dying, once the
//!   process it replaces is gone.
//! * **Stopping.** After [`Master::stop`] no handler (Rust or C), timer or writable
//!   callback runs in the master and nobody is restarted. `run` then writes what is still
//!   queued, closes every channel (idle workers see the end of stream and exit with
//!   status 127), waits for the children, kills those still running at
//!   [`Builder::stop_timeout`] (a worker busy in a handler), reaps them all, and returns a
//!   [`RunSummary`]: frames not delivered, per worker, and who exited and who was killed.
//!   Frames already in a socket buffer when their worker is killed are lost without being
//!   counted.
//! * **Threads.** Everything runs on the thread that called [`Builder::run`]: handlers,
//!   timers and start callbacks run there, one at a time; no context type is `Send`, and
//!   closures need not be `Send` either. The first `run` claims the process for its
//!   thread; a `run` from any other thread (or a second one) is
//!   [`Error::AlreadyStarted`], refused before it touches any state, so the loop thread's
//!   state is never reached from another thread through this API. Nothing in this module
//!   may be called from a signal handler.
//! * **Fork.** `run` forks. `fork` copies only the calling thread: a lock held by any
//!   other thread stays locked forever in the child. So `run` refuses to start while other
//!   threads exist ([`Error::ThreadsRunning`]), and every later fork (restarts, rolling
//!   restarts) is refused while they do ([`WorkerEvent::RestartFailed`], tried again with
//!   backoff), unless the `unsafe` [`Builder::allow_threads`] says the caller upholds its
//!   contract. A worker is a copy
//!   of the master at the moment of the fork: it inherits every open file and socket (the
//!   core's own descriptors are close-on-exec and a worker closes its siblings'
//!   channels) and the closures' captured state as it was. Rust's and C's stdio are
//!   flushed before every fork (start and restarts), so nothing buffered is printed
//!   twice. Spawned programs ([`Builder::spawn`]) are exec'd and inherit only their
//!   channel.
//! * **Signals.** SIGCHLD keeps the disposition it had (Melon's C `mln_fork_prepare`
//!   ignores it; `run` does not): the library waits for its own children by pid, so
//!   `std::process::Command` and your own `waitpid` work in handlers and after `run`. A
//!   SIGCHLD handler of yours that reaps every child (`waitpid(-1)`) takes the exit
//!   statuses the library would log, nothing else. SIGPIPE is ignored.
//! * **Handlers** may send, set and cancel timers, stop, and call the C API on the raw
//!   handles ([`Master::as_raw_event_loop`], [`Master::as_raw_fork`]); they must not block
//!   for long (the whole process waits) and must not call [`Builder::run`]. A handler,
//!   timer or other callback that panics is stopped at the boundary: the panic is logged
//!   (`MLN_IPC_LOG`), that message is dropped, and the loop goes on with the handler's
//!   state as the panic left it; a panic payload whose `Drop` panics too is caught as
//!   well (and leaked). A start hook that panics ends the run instead: `on_master_start`
//!   makes `run` stop the workers and return [`Error::Panicked`]; `on_worker_start` ends
//!   that worker with exit status 101.
//! * **Backpressure.** Each peer's send queue is bounded ([`Builder::queue_limit`]); a
//!   send past it is [`Error::QueueFull`] and nothing is queued; the writable callback
//!   ([`Builder::on_master_writable`], [`Builder::on_worker_writable`]) says when to
//!   resume. [`Master::stats`] and [`Worker::stats`] give each connection's counters.
//! * **Ownership.** Closures are owned by the library until `run` ends: the master drops
//!   them all when `run` returns; a worker drops its own side's before it exits (stopped,
//!   or its master gone) and leaks its copies of the master's (their destructors must not
//!   run twice).
//!   Sending copies the payload into the channel's queue: it is written after the current
//!   handler returns, in order, exactly once, unless the peer dies first.
//!
//! The API is built for the standalone build (our event loop); the `melon` build does not
//! have it yet.
//!
//! # Files
//! `error` ([`Error`]), `message` ([`Message`]), `serde_message` (`SerdeMessage`, feature
//! `serde`: serde types as messages), `identity` ([`WorkerId`] and the table of
//! live children), `context` ([`Master`], [`Worker`]), `timers`, `handlers` (the
//! trampoline and the panic boundary), `call` (requests and answers: [`Master::call`],
//! [`Master::reply`], their wire and the table of pending calls), `stats` ([`Stats`],
//! [`RunSummary`]), `builder` ([`Builder`]), `run` (what `Builder::run` does, and a
//! program's life), `program` ([`Program`]: a program started with `spawn`, written with
//! the worker's handlers), `tokio` (feature `tokio`: the async face, docs/async.md).

mod builder;
mod call;
mod context;
mod error;
mod handlers;
mod identity;
mod lifecycle;
mod message;
mod program;
mod run;
#[cfg(feature = "serde")]
mod serde_message;
mod stats;
mod timers;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use builder::{Builder, RESERVED_MAX};
pub use call::{CallError, CallId, ReplyTo, CALL_TIMEOUT};
pub use context::{Broadcast, Master, Worker};
pub use error::Error;
pub use identity::WorkerId;
pub use lifecycle::{End, RollingRestart, WorkerEnd, WorkerEvent};
pub use message::Message;
pub use program::Program;
#[cfg(feature = "serde")]
pub use serde_message::SerdeMessage;
pub use stats::{RunSummary, Stats};
pub use timers::TimerId;

use std::time::Duration;

/// The default of [`Builder::stop_timeout`]: how long the end of [`Builder::run`] (and a
/// stopping worker) keeps writing frames that are still queued, and waits for children to
/// exit, before it drops and kills.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);
