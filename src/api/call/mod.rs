//! Requests and answers: [`Master::call`] / [`Worker::call`], answered with
//! [`Master::reply`] / [`Worker::reply`] (now) or [`Master::defer_reply`] and
//! [`Master::reply_to`] (later), correlated by the library. This file is the face (the
//! types and the context methods); `table` is the engine.
//!
//! # The wire
//! Two frame types of Melon's reserved range carry them (host byte order, as the frame
//! header):
//! * `CALL` (1019): `[u64 call id][u32 request type][request payload]`;
//! * `REPLY` (1020): `[u64 call id][u32 status][u32 reply type][reply payload]`; status 0
//!   is an answer; 1 (no handler for the request type), 2 (the handler did not answer, a
//!   deferred answer was dropped, the request did not decode) and 3 (the handler
//!   panicked) say why there is none, with type 0 and no payload.
//!
//! The call id is the caller's (monotonic per process); the callee only sends it back.
//!
//! # Who runs what
//! The caller's side keeps a table of pending calls (id, peer, deadline, what to do with
//! the outcome: a `Done`, which knows nothing of the contexts, so another face can reuse
//! the table and the wire), and one loop timer armed at the earliest deadline
//! (`table::rearm`). An outcome is delivered from the loop only: a `REPLY` frame, the
//! timer, the callee's `Exited` event (`peer_gone`); the entry leaves the table before
//! its callback runs, so the callback may call, reply or stop. The callee's side
//! dispatches a `CALL` to the Rust handler of its request type (`handlers::serve`) with
//! the call on a stack of calls being served, which [`Master::reply`] and
//! [`Master::defer_reply`] read; when the handler returns, a call neither answered nor
//! deferred is answered with a status.

use super::identity::{self, WorkerId};
use super::{Error, Master, Message, Worker};
use std::fmt;
use std::time::Duration;
use table::{
    default_timeout, defer_current, reply_current, send_reply, start, typed, Peer, ACTIVE,
    ANSWERED, NO_REPLY,
};

mod table;

pub(super) use table::{drop_all, forget_all, install, peer_gone};

/// The default deadline of a call ([`Builder::call_timeout`](super::Builder::call_timeout)).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One call made with [`Master::call`] or [`Worker::call`]: unique per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u64);

impl CallId {
    /// The number carried on the wire.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Why a call has no answer, given to its callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallError {
    /// No answer before the deadline. An answer that comes later is dropped.
    Timeout,
    /// The worker called died, or was stopped and exited, before it answered (known from
    /// its end: this comes just before its
    /// [`WorkerEvent::Exited`](super::WorkerEvent::Exited)).
    PeerGone,
    /// The callee has no Rust handler for the request's type.
    NoHandler,
    /// The callee's handler returned without answering or deferring, a deferred answer
    /// ([`ReplyTo`]) was dropped unanswered, or the request did not decode for a typed
    /// handler.
    NoReply,
    /// The callee's handler panicked before it answered.
    Panicked,
    /// The answer did not decode as the expected type, or has another type.
    Decode,
    /// The callee (a peer speaking the wire itself) answered with a status this library
    /// does not know.
    Status(u32),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout => f.write_str("no answer before the deadline"),
            CallError::PeerGone => f.write_str("the peer ended before it answered"),
            CallError::NoHandler => f.write_str("the peer has no handler for the request"),
            CallError::NoReply => f.write_str("the peer's handler did not answer"),
            CallError::Panicked => f.write_str("the peer's handler panicked"),
            CallError::Decode => f.write_str("the answer does not decode as expected"),
            CallError::Status(s) => write!(f, "the peer answered with unknown status {s}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The answer to a call, owed: taken by [`Master::defer_reply`] / [`Worker::defer_reply`]
/// in the handler of a request, given back with [`Master::reply_to`] /
/// [`Worker::reply_to`] later (from a timer, another handler, a call's callback). Not
/// `Send`: it stays on the loop thread.
///
/// Dropped unanswered while this process runs, it answers [`CallError::NoReply`] (if that
/// can be queued: the caller waits for its deadline otherwise); dropped after
/// [`Builder::run`](super::Builder::run) ended, or in another process (a worker forked
/// with a copy of it), it does nothing.
#[must_use = "dropped, it answers NoReply at once"]
pub struct ReplyTo {
    id: u64,
    peer: Peer,
    pid: u32,
    answered: bool,
}

impl ReplyTo {
    /// Who called: the worker, or `None` for the master.
    pub fn caller(&self) -> Option<WorkerId> {
        match self.peer {
            Peer::Master => None,
            Peer::Child(w, _) => Some(w),
        }
    }

    fn answer(&mut self, status: u32, ty: u32, payload: &[u8]) -> Result<(), Error> {
        if self.pid != std::process::id() || !ACTIVE.get() {
            self.answered = true;
            return Err(Error::InvalidArgument(
                "reply_to: this answer is not this process's to give",
            ));
        }
        let r = send_reply(self.peer, self.id, status, ty, payload);
        if matches!(r, Ok(()) | Err(Error::PeerGone)) {
            self.answered = true;
        }
        r
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.answer(NO_REPLY, 0, &[]);
        }
    }
}

impl fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyTo")
            .field("call", &self.id)
            .field("caller", &self.caller())
            .finish()
    }
}

impl Master {
    /// Calls worker `to`: sends `req` and has `f(master, outcome)` run once, on the loop,
    /// with the worker's answer decoded as `Resp`, or why there is none ([`CallError`]),
    /// at the latest at the deadline of [`Builder::call_timeout`](super::Builder::call_timeout)
    /// (30 s by default). Any number of calls may be in flight, to any workers; answers are
    /// matched to their calls by the library, in whatever order they come.
    ///
    /// The worker's handler for `Req::TYPE` (the same as for messages sent, e.g.
    /// [`Builder::on_worker_message`](super::Builder::on_worker_message)) gets the request
    /// and answers with [`Worker::reply`] or, later, [`Worker::defer_reply`] and
    /// [`Worker::reply_to`]; one that returns without doing either answers
    /// [`CallError::NoReply`] at once.
    ///
    /// `Err` when the request cannot be queued ([`Error::PeerGone`]: `to` is gone or being
    /// stopped; [`Error::MessageTooLarge`]: the request's payload is above the maximum
    /// payload less 12 bytes; [`Error::QueueFull`]); `f` is then dropped, never called.
    /// Otherwise `f` is called exactly once, unless the master stops first: calls still
    /// pending when `run` ends are dropped uncalled. A worker that is stopped may still
    /// answer ([`Master::stop_worker`] does not fail its calls); once it has exited its
    /// calls fail with [`CallError::PeerGone`], before its
    /// [`WorkerEvent::Exited`](super::WorkerEvent::Exited) is delivered.
    ///
    /// ```no_run
    /// use mln_ipc::api::{Builder, CallError, Master, Message, Worker};
    ///
    /// struct Square(u64);
    /// impl Message for Square {
    ///     const TYPE: u32 = 3000;
    ///     fn encode(&self) -> Vec<u8> {
    ///         self.0.to_ne_bytes().to_vec()
    ///     }
    ///     fn decode(b: &[u8]) -> Option<Self> {
    ///         Some(Square(u64::from_ne_bytes(b.try_into().ok()?)))
    ///     }
    /// }
    /// struct Squared(u64);
    /// impl Message for Squared {
    ///     const TYPE: u32 = 3001;
    ///     fn encode(&self) -> Vec<u8> {
    ///         self.0.to_ne_bytes().to_vec()
    ///     }
    ///     fn decode(b: &[u8]) -> Option<Self> {
    ///         Some(Squared(u64::from_ne_bytes(b.try_into().ok()?)))
    ///     }
    /// }
    ///
    /// Builder::new()
    ///     .workers(2)
    ///     .on_worker_message(|w: &mut Worker, Square(n)| {
    ///         let _ = w.reply(&Squared(n * n));
    ///     })
    ///     .on_master_start(|m: &mut Master| {
    ///         let to = m.worker(0).expect("worker 0");
    ///         m.call(to, &Square(12), |m: &mut Master, r: Result<Squared, CallError>| {
    ///             match r {
    ///                 Ok(Squared(n)) => println!("12 squared is {n}"),
    ///                 Err(e) => println!("no answer: {e}"),
    ///             }
    ///             m.stop();
    ///         })
    ///         .expect("call");
    ///     })
    ///     .run()
    ///     .expect("run");
    /// ```
    pub fn call<Req: Message, Resp: Message + 'static>(
        &mut self,
        to: WorkerId,
        req: &Req,
        f: impl FnOnce(&mut Master, Result<Resp, CallError>) + 'static,
    ) -> Result<CallId, Error> {
        self.call_with_timeout(to, req, default_timeout(), f)
    }

    /// [`Master::call`] with its own deadline, `timeout` from now (any `Duration`: one too
    /// long for the clock is a century).
    pub fn call_with_timeout<Req: Message, Resp: Message + 'static>(
        &mut self,
        to: WorkerId,
        req: &Req,
        timeout: Duration,
        f: impl FnOnce(&mut Master, Result<Resp, CallError>) + 'static,
    ) -> Result<CallId, Error> {
        let fork = identity::fork_of(to).ok_or(Error::PeerGone)?;
        let done = typed(Master::new, f);
        start(
            self.as_raw_event_loop(),
            Peer::Child(to, fork),
            Req::TYPE,
            &req.try_encode().map_err(Error::Encode)?,
            timeout,
            done,
        )
    }

    /// In a master handler serving a worker's call ([`Worker::call`]): answers it with
    /// `resp`. [`Error::InvalidArgument`] when no call is being handled (the handler got a
    /// plain message) or it was answered or deferred already; [`Error::PeerGone`] when the
    /// worker is gone or being stopped (the call counts as answered);
    /// [`Error::MessageTooLarge`] (above the maximum payload less 16 bytes) and
    /// [`Error::QueueFull`] leave the call unanswered.
    pub fn reply<M: Message>(&mut self, resp: &M) -> Result<(), Error> {
        reply_current(M::TYPE, &resp.try_encode().map_err(Error::Encode)?)
    }

    /// In a master handler serving a worker's call: takes the answer for later
    /// ([`Master::reply_to`]); `None` when no call is being handled or it was answered or
    /// deferred already.
    pub fn defer_reply(&mut self) -> Option<ReplyTo> {
        defer_current()
    }

    /// Answers a call deferred with [`Master::defer_reply`]. Errors as [`Master::reply`];
    /// the answer is consumed either way (one that could not be queued answers
    /// [`CallError::NoReply`] if that can be).
    pub fn reply_to<M: Message>(&mut self, to: ReplyTo, resp: &M) -> Result<(), Error> {
        let mut to = to;
        match resp.try_encode() {
            Ok(bytes) => to.answer(ANSWERED, M::TYPE, &bytes),
            Err(why) => {
                // Consumed either way: the caller learns there is no answer.
                let _ = to.answer(NO_REPLY, 0, &[]);
                Err(Error::Encode(why))
            }
        }
    }
}

impl Worker {
    /// Calls the master, as [`Master::call`]: the master's handler for `Req::TYPE` gets
    /// the request and answers with [`Master::reply`] (or [`Master::defer_reply`] and
    /// [`Master::reply_to`]). `f(worker, outcome)` runs once, on this worker's loop. There
    /// is no [`CallError::PeerGone`] here: a worker whose master is gone exits.
    pub fn call<Req: Message, Resp: Message + 'static>(
        &mut self,
        req: &Req,
        f: impl FnOnce(&mut Worker, Result<Resp, CallError>) + 'static,
    ) -> Result<CallId, Error> {
        self.call_with_timeout(req, default_timeout(), f)
    }

    /// [`Worker::call`] with its own deadline, as [`Master::call_with_timeout`].
    pub fn call_with_timeout<Req: Message, Resp: Message + 'static>(
        &mut self,
        req: &Req,
        timeout: Duration,
        f: impl FnOnce(&mut Worker, Result<Resp, CallError>) + 'static,
    ) -> Result<CallId, Error> {
        let done = typed(Worker::new, f);
        start(
            self.as_raw_event_loop(),
            Peer::Master,
            Req::TYPE,
            &req.try_encode().map_err(Error::Encode)?,
            timeout,
            done,
        )
    }

    /// In a worker handler serving the master's call ([`Master::call`]): answers it, as
    /// [`Master::reply`].
    pub fn reply<M: Message>(&mut self, resp: &M) -> Result<(), Error> {
        reply_current(M::TYPE, &resp.try_encode().map_err(Error::Encode)?)
    }

    /// Takes the answer of the call being handled for later, as [`Master::defer_reply`].
    pub fn defer_reply(&mut self) -> Option<ReplyTo> {
        defer_current()
    }

    /// Answers a deferred call, as [`Master::reply_to`].
    pub fn reply_to<M: Message>(&mut self, to: ReplyTo, resp: &M) -> Result<(), Error> {
        let mut to = to;
        match resp.try_encode() {
            Ok(bytes) => to.answer(ANSWERED, M::TYPE, &bytes),
            Err(why) => {
                // Consumed either way: the caller learns there is no answer.
                let _ = to.answer(NO_REPLY, 0, &[]);
                Err(Error::Encode(why))
            }
        }
    }
}
