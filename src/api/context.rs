//! The contexts handed to user code: [`Master`] and [`Worker`].

use super::error::{check_fds, check_len, send_error};
use super::identity::{self, WorkerId};
use super::lifecycle::{self, RollingRestart};
use super::stats::Stats;
use super::timers::{self, TimerId};
use super::{Error, Message};
use crate::abi::{mln_event_t, mln_fork_t};
use crate::process;
use core::marker::PhantomData;
use core::ptr::null;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// The master's side of the conversation, given to master handlers, master timers,
/// [`Builder::on_master_start`](super::Builder::on_master_start) and
/// [`Builder::on_master_writable`](super::Builder::on_master_writable). Only ever
/// borrowed: it lives as long as the call it was given to, on the loop thread (not
/// `Send`).
pub struct Master {
    ev: *mut mln_event_t,
    _not_send: PhantomData<*mut ()>,
}

impl Master {
    pub(super) fn new(ev: *mut mln_event_t) -> Self {
        Master {
            ev,
            _not_send: PhantomData,
        }
    }

    /// The live children (workers, then spawned programs) in index order.
    pub fn workers(&self) -> Vec<WorkerId> {
        identity::live()
    }

    /// The live child with stable index `index`, if any.
    pub fn worker(&self, index: usize) -> Option<WorkerId> {
        identity::at(index).map(|(w, _)| w)
    }

    /// Queues a message of type `ty` for `to` (the payload is copied). It is written after
    /// the current handler returns and reaches `to`'s worker handler for `ty` in order.
    /// O(1) whatever the number of workers. Errors: [`Error::PeerGone`] if that process is
    /// gone (also when it was restarted: ask [`Master::worker`] for the new one),
    /// [`Error::MessageTooLarge`], [`Error::QueueFull`].
    pub fn send_to(
        &mut self,
        to: WorkerId,
        ty: u32,
        payload: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        let payload = payload.as_ref();
        check_len(payload.len())?;
        let f = identity::fork_of(to).ok_or(Error::PeerGone)?;
        process::send_to_child(self.ev, f, ty, payload).map_err(|e| send_error(e, payload.len()))
    }

    /// [`Master::send_to`] with descriptors: they arrive with this message and no other
    /// (the worker's handler gets them from [`Worker::take_fds`]), at most 253. They are
    /// moved: closed here once handed to the socket (or if the send is refused, or `to`
    /// dies first). [`Error::QueueFull`] also when `to`'s descriptor limit (1,024 queued)
    /// is reached; [`Error::InvalidArgument`] above 253.
    pub fn send_with_fds(
        &mut self,
        to: WorkerId,
        ty: u32,
        payload: impl AsRef<[u8]>,
        fds: Vec<OwnedFd>,
    ) -> Result<(), Error> {
        // The core duplicates them; ours close when `fds` goes.
        let b: Vec<BorrowedFd<'_>> = fds.iter().map(|d| d.as_fd()).collect();
        self.send_with_borrowed_fds(to, ty, payload, &b)
    }

    /// [`Master::send_with_fds`] with borrowed descriptors: the library duplicates them
    /// (close-on-exec) and the caller keeps its own.
    pub fn send_with_borrowed_fds(
        &mut self,
        to: WorkerId,
        ty: u32,
        payload: impl AsRef<[u8]>,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        let payload = payload.as_ref();
        check_len(payload.len())?;
        check_fds(fds.len())?;
        let f = identity::fork_of(to).ok_or(Error::PeerGone)?;
        let raw: Vec<i32> = fds.iter().map(|d| d.as_raw_fd()).collect();
        process::send_fds_to_child(self.ev, f, ty, payload, &raw)
            .map_err(|e| send_error(e, payload.len()))
    }

    /// In a master handler: the descriptors that came with the message being handled, in
    /// the sender's order, now the caller's (those not taken are closed when the handler
    /// returns); empty outside a handler or when none came.
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        process::fds::take_all()
    }

    /// In a master handler: whether some descriptors of the message being handled were
    /// dropped by the kernel (this process was at its descriptor limit).
    pub fn fds_truncated(&self) -> bool {
        process::fds::truncated()
    }

    /// Queues a message of type `ty` for every live child, in index order, trying every
    /// one whatever the others gave: the [`Broadcast`] says each child's result (a full
    /// queue of one does not keep the message from the next). [`Error::MessageTooLarge`]
    /// is reported before anything is queued.
    pub fn broadcast(&mut self, ty: u32, payload: impl AsRef<[u8]>) -> Result<Broadcast, Error> {
        let payload = payload.as_ref();
        check_len(payload.len())?;
        let mut results = Vec::new();
        for i in 0..identity::index_bound() {
            if let Some((id, f)) = identity::at(i) {
                let r = process::send_to_child(self.ev, f, ty, payload)
                    .map_err(|e| send_error(e, payload.len()));
                results.push((id, r));
            }
        }
        Ok(Broadcast { results })
    }

    /// [`Master::send_to`] for a typed message; [`Error::Encode`] if it does not encode.
    pub fn send_message_to<M: Message>(&mut self, to: WorkerId, msg: &M) -> Result<(), Error> {
        self.send_to(to, M::TYPE, msg.try_encode().map_err(Error::Encode)?)
    }

    /// [`Master::broadcast`] for a typed message; [`Error::Encode`] if it does not encode.
    pub fn broadcast_message<M: Message>(&mut self, msg: &M) -> Result<Broadcast, Error> {
        self.broadcast(M::TYPE, msg.try_encode().map_err(Error::Encode)?)
    }

    /// The counters of the channel to live child `worker` (`None` if that process is
    /// gone); `restarts` counts the restarts of its index.
    pub fn stats(&self, worker: WorkerId) -> Option<Stats> {
        Stats::of(identity::fork_of(worker)?)
    }

    /// Runs `f` once, `delay` from now (monotonic clock, rounded up to milliseconds, at
    /// most about 49 days), on the loop thread. The closure is dropped unrun if the timer
    /// is cancelled; it is also dropped when `run` returns, and leaked (never run, never
    /// dropped) in a worker forked before it fired.
    pub fn after(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut Master) + 'static,
    ) -> Result<TimerId, Error> {
        timers::set(self.ev, delay, Box::new(move |ev| f(&mut Master::new(ev))))
    }

    /// Cancels a pending timer: `true` if it was pending (its closure is dropped), `false`
    /// if it already ran or was cancelled.
    pub fn cancel(&mut self, timer: TimerId) -> bool {
        timers::cancel(timer)
    }

    /// Ends the master's loop once the current handler returns; no other handler (Rust or
    /// C), timer or writable callback runs afterwards in this process, frames not yet
    /// dispatched are left unread, and no child is restarted any more.
    /// [`Builder::run`](super::Builder::run) then stops the children (see
    /// [`RunSummary`](super::RunSummary)) and returns.
    pub fn stop(&mut self) {
        timers::stop(self.ev)
    }

    /// Stops worker `id` gracefully: from now on it is gone to this API (sends to it are
    /// [`Error::PeerGone`], [`Master::workers`] and [`Master::worker`] do not list it) and it
    /// is never restarted; what was queued to it is written, then its
    /// [`Builder::on_quit`](super::Builder::on_quit) runs and it exits with status 0 once
    /// its own queue is written; the messages it sends meanwhile still reach the master's
    /// handlers. At `deadline` it gets SIGTERM, a second later SIGKILL. Its end is a
    /// [`WorkerEvent::Exited`](super::WorkerEvent::Exited) (how [`End::Stopped`](super::End),
    /// `Terminated` or `Killed`). [`Error::PeerGone`] if it is gone or already stopping.
    pub fn stop_worker(&mut self, id: WorkerId, deadline: Duration) -> Result<(), Error> {
        let f = identity::fork_of(id).ok_or(Error::PeerGone)?;
        process::stop(self.ev, f, lifecycle::millis(deadline)).map_err(|_| Error::PeerGone)
    }

    /// Replaces every worker (not the spawned programs), `r.batch` at a time: each
    /// replacement is forked from the master as it is now (after the current handler
    /// returns), keeps its predecessor's index, and once its loop runs (its
    /// [`Builder::on_worker_start`](super::Builder::on_worker_start) returned) its
    /// predecessor is stopped as [`Master::stop_worker`] does with `r.deadline`. A
    /// replacement not ready within `r.ready_timeout` aborts the run (the replacements not
    /// ready are killed; the old workers not replaced go on). Ends with one
    /// [`WorkerEvent::RollingDone`](super::WorkerEvent::RollingDone), after the `Exited` of
    /// every old worker it stopped. [`Error::Busy`] while one runs;
    /// [`Error::InvalidArgument`] for a zero `batch` or `ready_timeout`.
    pub fn rolling_restart(&mut self, r: RollingRestart) -> Result<(), Error> {
        if r.batch == 0 || r.ready_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "rolling_restart: batch and ready_timeout must be more than zero",
            ));
        }
        process::rolling_restart(
            self.ev,
            r.batch,
            lifecycle::millis(r.ready_timeout).max(1),
            lifecycle::millis(r.deadline),
        )
        .map_err(|e| match e {
            libc::EBUSY => Error::Busy,
            e => Error::Io(std::io::Error::from_raw_os_error(e)),
        })
    }

    /// The master's event loop as Melon's `mln_event_t *`, for the C API
    /// (`mln_ipc_master_send_prepare`, `mln_event_timer_set`, ...). Valid while `run`
    /// runs; use it only on the loop thread.
    pub fn as_raw_event_loop(&self) -> *mut mln_event_t {
        self.ev
    }

    /// The core's `mln_fork_t *` of a live child (the `f_ptr` C master handlers get), for
    /// the C API; `None` if that process is gone. Valid until the loop handles its death.
    pub fn as_raw_fork(&self, worker: WorkerId) -> Option<*mut mln_fork_t> {
        identity::fork_of(worker)
    }
}

/// A worker's side of the conversation, given to worker handlers, worker timers,
/// [`Builder::on_worker_start`](super::Builder::on_worker_start) and
/// [`Builder::on_worker_writable`](super::Builder::on_worker_writable). Its peer is
/// always the master. Only ever borrowed, on the loop thread (not `Send`).
pub struct Worker {
    ev: *mut mln_event_t,
    _not_send: PhantomData<*mut ()>,
}

impl Worker {
    pub(super) fn new(ev: *mut mln_event_t) -> Self {
        Worker {
            ev,
            _not_send: PhantomData,
        }
    }

    /// Queues a message of type `ty` for the master (the payload is copied); it is written
    /// after the current handler returns and reaches the master's handler for `ty` in
    /// order. Errors: [`Error::MessageTooLarge`], [`Error::QueueFull`],
    /// [`Error::PeerGone`] (no master).
    pub fn send(&mut self, ty: u32, payload: impl AsRef<[u8]>) -> Result<(), Error> {
        let payload = payload.as_ref();
        check_len(payload.len())?;
        process::send_to_master(self.ev, ty, payload).map_err(|e| send_error(e, payload.len()))
    }

    /// [`Worker::send`] with descriptors, as [`Master::send_with_fds`].
    pub fn send_with_fds(
        &mut self,
        ty: u32,
        payload: impl AsRef<[u8]>,
        fds: Vec<OwnedFd>,
    ) -> Result<(), Error> {
        // The core duplicates them; ours close when `fds` goes.
        let b: Vec<BorrowedFd<'_>> = fds.iter().map(|d| d.as_fd()).collect();
        self.send_with_borrowed_fds(ty, payload, &b)
    }

    /// [`Worker::send_with_fds`] with borrowed descriptors, as
    /// [`Master::send_with_borrowed_fds`].
    pub fn send_with_borrowed_fds(
        &mut self,
        ty: u32,
        payload: impl AsRef<[u8]>,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        let payload = payload.as_ref();
        check_len(payload.len())?;
        check_fds(fds.len())?;
        let raw: Vec<i32> = fds.iter().map(|d| d.as_raw_fd()).collect();
        process::send_fds_to_master(self.ev, ty, payload, &raw)
            .map_err(|e| send_error(e, payload.len()))
    }

    /// In a worker handler: the descriptors that came with the message being handled, as
    /// [`Master::take_fds`].
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        process::fds::take_all()
    }

    /// In a worker handler: as [`Master::fds_truncated`].
    pub fn fds_truncated(&self) -> bool {
        process::fds::truncated()
    }

    /// [`Worker::send`] for a typed message; [`Error::Encode`] if it does not encode.
    pub fn send_message<M: Message>(&mut self, msg: &M) -> Result<(), Error> {
        self.send(M::TYPE, msg.try_encode().map_err(Error::Encode)?)
    }

    /// This process's id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// This worker's stable index, as the master's [`WorkerId::index`] names it (a
    /// restarted worker has its predecessor's); `None` in a program the library did not
    /// fork itself (one started with `spawn` that runs this API after `exec`).
    pub fn index(&self) -> Option<usize> {
        process::my_slot().map(|s| s as usize)
    }

    /// The counters of the connection to the master (`restarts` is 0).
    pub fn stats(&self) -> Stats {
        // The connection lives as long as the worker's loop, so as long as any `Worker`.
        Stats::of(null()).unwrap_or_default()
    }

    /// Runs `f` once, `delay` from now; as [`Master::after`].
    pub fn after(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut Worker) + 'static,
    ) -> Result<TimerId, Error> {
        timers::set(self.ev, delay, Box::new(move |ev| f(&mut Worker::new(ev))))
    }

    /// Cancels a pending timer; as [`Master::cancel`].
    pub fn cancel(&mut self, timer: TimerId) -> bool {
        timers::cancel(timer)
    }

    /// Ends this worker once the current handler returns: no other handler or timer runs,
    /// its stdio is flushed, what is queued for the master is written (within
    /// [`Builder::stop_timeout`](super::Builder::stop_timeout)), its channel is closed and
    /// the process exits with status 0. The master gives it time to exit by itself after
    /// the channel closes (about a second) before it would kill it, and starts a
    /// replacement once it is gone (workers are supervised). In a
    /// [`Program`](super::Program), [`Program::run`](super::Program::run) returns `Ok(())`
    /// instead of exiting.
    pub fn stop(&mut self) {
        timers::stop(self.ev)
    }

    /// The worker's event loop as Melon's `mln_event_t *`, for the C API
    /// (`mln_ipc_worker_send_prepare`, ...). Valid while the worker runs; loop thread only.
    pub fn as_raw_event_loop(&self) -> *mut mln_event_t {
        self.ev
    }
}

/// What [`Master::broadcast`] did: each live child it tried, in index order, with its
/// send's result.
#[derive(Debug)]
#[must_use = "a broadcast may have failed for some workers"]
pub struct Broadcast {
    results: Vec<(WorkerId, Result<(), Error>)>,
}

impl Broadcast {
    /// To how many children the message was queued.
    pub fn sent(&self) -> usize {
        self.results.iter().filter(|(_, r)| r.is_ok()).count()
    }

    /// Whether it was queued to every child tried (also when there was none).
    pub fn all_sent(&self) -> bool {
        self.results.iter().all(|(_, r)| r.is_ok())
    }

    /// The children it was not queued to, and why.
    pub fn failures(&self) -> impl Iterator<Item = (WorkerId, &Error)> {
        self.results
            .iter()
            .filter_map(|(w, r)| r.as_ref().err().map(|e| (*w, e)))
    }

    /// Every child tried, in index order, with its result.
    pub fn results(&self) -> &[(WorkerId, Result<(), Error>)] {
        &self.results
    }

    /// [`Broadcast::results`], owned.
    pub fn into_results(self) -> Vec<(WorkerId, Result<(), Error>)> {
        self.results
    }
}
