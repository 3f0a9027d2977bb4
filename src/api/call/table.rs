//! The engine of requests and answers: the wire, the table of pending calls and their
//! deadline timer, the stack of calls being served, the core's handlers of the two frame
//! types, and the hooks of `run`. It knows nothing of the closures' contexts (a call's
//! outcome goes to a [`Done`]), so another face can reuse it.

use super::super::error::send_error;
use super::super::handlers::{self, guarded, Served};
use super::super::identity::{self, WorkerId};
use super::super::timers::{self, TimerId};
use super::super::{Error, Message};
use super::{CallError, CallId, ReplyTo, CALL_TIMEOUT};
use crate::abi::{mln_event_t, mln_fork_t};
use crate::log;
use crate::process;
use crate::registry::Side;
use crate::wire;
use core::ffi::c_void;
use core::ptr::null_mut;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The frame type of a request (in Melon's reserved range, used by nothing else).
pub(super) const CALL_TYPE: u32 = 1019;
/// The frame type of an answer.
pub(super) const REPLY_TYPE: u32 = 1020;
/// A `CALL` payload's header: call id, request type.
const CALL_HEAD: usize = 12;
/// A `REPLY` payload's header: call id, status, reply type.
const REPLY_HEAD: usize = 16;

/// `REPLY` status: answered (the reply type and payload follow).
pub(super) const ANSWERED: u32 = 0;
/// `REPLY` status: no handler for the request type.
const NO_HANDLER: u32 = 1;
/// `REPLY` status: the handler returned without answering or deferring, a deferred
/// answer was dropped unanswered, or the request did not decode.
pub(super) const NO_REPLY: u32 = 2;
/// `REPLY` status: the handler panicked before answering.
const PANICKED: u32 = 3;

// ---------------------------------------------------------------------------------------
// The table of pending calls
// ---------------------------------------------------------------------------------------

/// The other end of a call: the master (from a worker), or a child (from the master),
/// with its record as the core knows it (a stale record is refused by the send path).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Peer {
    Master,
    Child(WorkerId, *mut mln_fork_t),
}

/// An answer as it came: its type and payload (borrowed from the receive buffer).
pub(super) struct RawReply<'a> {
    pub(super) ty: u32,
    pub(super) payload: &'a [u8],
}

/// What to do with a call's outcome, on the loop.
pub(super) type Done = Box<dyn for<'a> FnOnce(*mut mln_event_t, Result<RawReply<'a>, CallError>)>;

struct Pending {
    peer: Peer,
    deadline: Instant,
    done: Done,
}

/// A call being served by the handler running now.
struct Serving {
    id: u64,
    peer: Peer,
    /// Neither answered nor deferred yet.
    open: bool,
}

struct Calls {
    next: u64,
    timeout: Duration,
    pending: HashMap<u64, Pending>,
    /// The pending calls by deadline.
    deadlines: BTreeSet<(Instant, u64)>,
    /// The timer armed, and the deadline it was armed for.
    armed: Option<(Instant, TimerId)>,
    /// The calls being served, innermost last (handlers nest only in a loop run inside a
    /// handler).
    serving: Vec<Serving>,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            next: 0,
            timeout: CALL_TIMEOUT,
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            armed: None,
            serving: Vec::new(),
        }
    }
}

/// The table goes when the thread-locals are destroyed (a worker's, at its `exit`):
/// answers are off before the pending callbacks are dropped (which happens after this), so
/// a [`ReplyTo`] they hold does nothing.
impl Drop for Calls {
    fn drop(&mut self) {
        ACTIVE.set(false);
    }
}

thread_local! {
    // The loop thread's (see `run`). A worker forked inside the master's loop sees the
    // master's: `forget_all`.
    static CALLS: RefCell<Calls> = RefCell::default();
    /// From `install` to `drop_all`: answers may be sent.
    pub(super) static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

pub(super) fn default_timeout() -> Duration {
    CALLS.with_borrow(|c| c.timeout)
}

/// The largest request or answer payload, after the frame's type and the header.
fn max_body(head: usize) -> usize {
    process::max_message().saturating_sub(wire::TYPE_LEN + head)
}

fn send(peer: Peer, ty: u32, frame: &[u8]) -> Result<(), Error> {
    // The core never dereferences the loop pointer of a send (NULL is allowed).
    let r = match peer {
        Peer::Master => process::send_to_master(null_mut(), ty, frame),
        Peer::Child(_, f) => process::send_to_child(null_mut(), f, ty, frame),
    };
    r.map_err(|e| send_error(e, frame.len()))
}

pub(super) fn send_reply(
    peer: Peer,
    id: u64,
    status: u32,
    ty: u32,
    payload: &[u8],
) -> Result<(), Error> {
    let max = max_body(REPLY_HEAD);
    if payload.len() > max {
        return Err(Error::MessageTooLarge {
            len: payload.len(),
            max,
        });
    }
    let mut frame = Vec::with_capacity(REPLY_HEAD + payload.len());
    frame.extend_from_slice(&id.to_ne_bytes());
    frame.extend_from_slice(&status.to_ne_bytes());
    frame.extend_from_slice(&ty.to_ne_bytes());
    frame.extend_from_slice(payload);
    send(peer, REPLY_TYPE, &frame)
}

/// The outcome decoded as `Resp`, handed to `f` with a context built by `mk`.
pub(super) fn typed<C: 'static, Resp: Message + 'static>(
    mk: fn(*mut mln_event_t) -> C,
    f: impl FnOnce(&mut C, Result<Resp, CallError>) + 'static,
) -> Done {
    Box::new(move |ev, r| {
        let r = r.and_then(|raw| {
            if raw.ty != Resp::TYPE {
                return Err(CallError::Decode);
            }
            // A decoder that panics is an answer that does not decode: `f` still runs
            // once.
            let mut decoded = None;
            guarded(
                format_args!("decoding an answer of type {}", Resp::TYPE),
                || decoded = Some(Resp::try_decode(raw.payload)),
            );
            match decoded {
                Some(Ok(v)) => Ok(v),
                _ => Err(CallError::Decode),
            }
        });
        f(&mut mk(ev), r)
    })
}

/// Sends a `CALL` and records it as pending.
pub(super) fn start(
    ev: *mut mln_event_t,
    peer: Peer,
    ty: u32,
    payload: &[u8],
    timeout: Duration,
    done: Done,
) -> Result<CallId, Error> {
    let max = max_body(CALL_HEAD);
    if payload.len() > max {
        return Err(Error::MessageTooLarge {
            len: payload.len(),
            max,
        });
    }
    let id = CALLS.with_borrow_mut(|c| {
        c.next += 1;
        c.next
    });
    let mut frame = Vec::with_capacity(CALL_HEAD + payload.len());
    frame.extend_from_slice(&id.to_ne_bytes());
    frame.extend_from_slice(&ty.to_ne_bytes());
    frame.extend_from_slice(payload);
    send(peer, CALL_TYPE, &frame)?;
    let now = Instant::now();
    let deadline = now
        .checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now);
    CALLS.with_borrow_mut(|c| {
        c.pending.insert(
            id,
            Pending {
                peer,
                deadline,
                done,
            },
        );
        c.deadlines.insert((deadline, id));
    });
    rearm(ev);
    Ok(CallId(id))
}

/// Takes pending call `id` out of the table.
fn take(c: &mut Calls, id: u64) -> Option<Pending> {
    let p = c.pending.remove(&id)?;
    c.deadlines.remove(&(p.deadline, id));
    Some(p)
}

/// Runs a call's callback behind the panic boundary.
fn complete(ev: *mut mln_event_t, done: Done, r: Result<RawReply<'_>, CallError>) {
    guarded(format_args!("call callback"), || done(ev, r));
}

/// Makes sure the timer fires by the earliest deadline. One timer for every call: with
/// the usual single timeout the earliest deadline is the oldest call's, so a new call
/// rarely re-arms it and an answer never does (the timer finds nothing due, and arms for
/// the next); one timer per call would cost a timer and a closure per call, and a cancel
/// per answer.
fn rearm(ev: *mut mln_event_t) {
    let (want, armed) = CALLS.with_borrow(|c| (c.deadlines.first().map(|d| d.0), c.armed));
    let Some(want) = want else { return };
    if let Some((at, t)) = armed {
        if at <= want {
            return;
        }
        timers::cancel(t);
    }
    let delay = want.saturating_duration_since(Instant::now());
    let armed = match timers::set(ev, delay, Box::new(sweep)) {
        Ok(t) => Some((want, t)),
        Err(e) => {
            log::error(format_args!("calls: cannot arm the deadline timer: {e}"));
            None
        }
    };
    CALLS.with_borrow_mut(|c| c.armed = armed);
}

/// The deadline timer: every call due fails with [`CallError::Timeout`], oldest deadline
/// first (none once the process is stopped).
fn sweep(ev: *mut mln_event_t) {
    CALLS.with_borrow_mut(|c| c.armed = None);
    while !timers::stopped() {
        let now = Instant::now();
        let due = CALLS.with_borrow_mut(|c| {
            let &(at, id) = c.deadlines.first()?;
            if at > now {
                return None;
            }
            take(c, id)
        });
        let Some(p) = due else { break };
        complete(ev, p.done, Err(CallError::Timeout));
    }
    rearm(ev);
}

/// Worker `w` is gone (its `Exited` event, from the loop): its pending calls fail with
/// [`CallError::PeerGone`], in the order they were made.
pub(in crate::api) fn peer_gone(ev: *mut mln_event_t, w: WorkerId) {
    let mut ids: Vec<u64> = CALLS.with_borrow(|c| {
        c.pending
            .iter()
            .filter(|(_, p)| matches!(p.peer, Peer::Child(x, _) if x == w))
            .map(|(id, _)| *id)
            .collect()
    });
    ids.sort_unstable();
    for id in ids {
        if timers::stopped() {
            return;
        }
        if let Some(p) = CALLS.with_borrow_mut(|c| take(c, id)) {
            complete(ev, p.done, Err(CallError::PeerGone));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Serving calls
// ---------------------------------------------------------------------------------------

pub(super) fn reply_current(ty: u32, payload: &[u8]) -> Result<(), Error> {
    let Some((id, peer)) =
        CALLS.with_borrow(|c| c.serving.last().filter(|s| s.open).map(|s| (s.id, s.peer)))
    else {
        return Err(Error::InvalidArgument(
            "reply: no call is being handled, or it was answered or deferred already",
        ));
    };
    let r = send_reply(peer, id, ANSWERED, ty, payload);
    if matches!(r, Ok(()) | Err(Error::PeerGone)) {
        CALLS.with_borrow_mut(|c| {
            if let Some(s) = c.serving.last_mut() {
                s.open = false;
            }
        });
    }
    r
}

pub(super) fn defer_current() -> Option<ReplyTo> {
    CALLS.with_borrow_mut(|c| {
        let s = c.serving.last_mut().filter(|s| s.open)?;
        s.open = false;
        Some(ReplyTo {
            id: s.id,
            peer: s.peer,
            pid: std::process::id(),
            answered: false,
        })
    })
}

/// A `CALL` from `peer`: its handler runs with it as the call being served; a call
/// neither answered nor deferred is then answered with a status.
fn serve_call(ev: *mut mln_event_t, side: Side, peer: Peer, f_ptr: *mut c_void, data: &[u8]) {
    let Some((id, ty, body)) = parse_call(data) else {
        log::warn(format_args!(
            "a request frame of {} bytes is too short; dropped",
            data.len()
        ));
        return;
    };
    let pid = std::process::id();
    CALLS.with_borrow_mut(|c| {
        c.serving.push(Serving {
            id,
            peer,
            open: true,
        })
    });
    let served = handlers::serve(side, ty, ev, f_ptr, body);
    if std::process::id() != pid {
        // The handler forked and this is the child: the call is the parent's to answer.
        return;
    }
    let Some(s) = CALLS.with_borrow_mut(|c| c.serving.pop()) else {
        return;
    };
    if !s.open {
        return;
    }
    let status = match served {
        Served::NoHandler => NO_HANDLER,
        Served::Panicked => PANICKED,
        Served::Returned | Served::Busy => NO_REPLY,
    };
    if let Err(e) = send_reply(peer, id, status, 0, &[]) {
        log::debug(format_args!(
            "call {id} for type {ty}: cannot say it has no answer: {e}"
        ));
    }
}

/// A `REPLY` from `from` (a worker; `None`: the master).
fn reply_came(ev: *mut mln_event_t, from: Option<WorkerId>, data: &[u8]) {
    let Some((id, status, ty, body)) = parse_reply(data) else {
        log::warn(format_args!(
            "an answer frame of {} bytes is too short; dropped",
            data.len()
        ));
        return;
    };
    let p = CALLS.with_borrow_mut(|c| {
        let ours = match (c.pending.get(&id)?.peer, from) {
            (Peer::Master, None) => true,
            (Peer::Child(w, _), Some(f)) => w == f,
            _ => false,
        };
        if ours {
            take(c, id)
        } else {
            None
        }
    });
    let Some(p) = p else {
        log::debug(format_args!(
            "an answer to call {id}, which is not pending (expired?); dropped"
        ));
        return;
    };
    let r = match status {
        ANSWERED => Ok(RawReply { ty, payload: body }),
        NO_HANDLER => Err(CallError::NoHandler),
        NO_REPLY => Err(CallError::NoReply),
        PANICKED => Err(CallError::Panicked),
        s => Err(CallError::Status(s)),
    };
    complete(ev, p.done, r);
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn parse_call(b: &[u8]) -> Option<(u64, u32, &[u8])> {
    let id = u64::from_ne_bytes(b.get(..8)?.try_into().ok()?);
    Some((id, u32_at(b, 8)?, b.get(CALL_HEAD..)?))
}

fn parse_reply(b: &[u8]) -> Option<(u64, u32, u32, &[u8])> {
    let id = u64::from_ne_bytes(b.get(..8)?.try_into().ok()?);
    Some((id, u32_at(b, 8)?, u32_at(b, 12)?, b.get(REPLY_HEAD..)?))
}

// ---------------------------------------------------------------------------------------
// The core's handlers, and the hooks of `run`
// ---------------------------------------------------------------------------------------

unsafe extern "C" fn master_call(
    ev: *mut mln_event_t,
    f_ptr: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _: *mut *mut c_void,
) {
    // SAFETY: the core hands the frame's payload, valid during this call.
    let data = unsafe { handlers::payload(buf, len) };
    guarded(
        format_args!("request from a worker"),
        || match identity::id_of(f_ptr.cast()) {
            Some(w) => serve_call(ev, Side::Master, Peer::Child(w, f_ptr.cast()), f_ptr, data),
            None => log::error(format_args!(
                "a request from a child that is not live; dropped"
            )),
        },
    );
}

unsafe extern "C" fn master_reply(
    ev: *mut mln_event_t,
    f_ptr: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _: *mut *mut c_void,
) {
    // SAFETY: as in `master_call`.
    let data = unsafe { handlers::payload(buf, len) };
    guarded(
        format_args!("answer from a worker"),
        || match identity::id_of(f_ptr.cast()) {
            Some(w) => reply_came(ev, Some(w), data),
            None => log::error(format_args!(
                "an answer from a child that is not live; dropped"
            )),
        },
    );
}

unsafe extern "C" fn worker_call(
    ev: *mut mln_event_t,
    f_ptr: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _: *mut *mut c_void,
) {
    // SAFETY: as in `master_call`.
    let data = unsafe { handlers::payload(buf, len) };
    guarded(format_args!("request from the master"), || {
        serve_call(ev, Side::Worker, Peer::Master, f_ptr, data)
    });
}

unsafe extern "C" fn worker_reply(
    ev: *mut mln_event_t,
    _: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _: *mut *mut c_void,
) {
    // SAFETY: as in `master_call`.
    let data = unsafe { handlers::payload(buf, len) };
    guarded(format_args!("answer from the master"), || {
        reply_came(ev, None, data)
    });
}

/// At `run`, after the program's handlers (so these win for their types) and before the
/// workers are forked (they inherit them): the handlers of both frame types on both sides.
pub(in crate::api) fn install(timeout: Duration) {
    CALLS.with_borrow_mut(|c| c.timeout = timeout);
    ACTIVE.set(true);
    process::handler_set(Side::Master, CALL_TYPE, Some(master_call), null_mut());
    process::handler_set(Side::Master, REPLY_TYPE, Some(master_reply), null_mut());
    process::handler_set(Side::Worker, CALL_TYPE, Some(worker_call), null_mut());
    process::handler_set(Side::Worker, REPLY_TYPE, Some(worker_reply), null_mut());
}

/// In a worker forked inside the master's loop: the master's pending calls are the
/// master's (their callbacks take a `Master`); they are leaked, neither run nor dropped
/// here. (Their timer is forgotten with the master's timers.)
pub(in crate::api) fn forget_all() {
    CALLS.with_borrow_mut(|c| {
        std::mem::forget(std::mem::take(&mut c.pending));
        c.deadlines.clear();
        c.armed = None;
        c.serving.clear();
    });
}

/// At the end of `run` (after the stop): pending calls are dropped uncalled, behind the
/// panic boundary (a callback's captures may panic in `Drop`), and answers are sent no
/// more.
pub(in crate::api) fn drop_all() {
    ACTIVE.set(false);
    let pending = CALLS.with_borrow_mut(|c| {
        c.deadlines.clear();
        c.armed = None;
        std::mem::take(&mut c.pending)
    });
    guarded(format_args!("dropping a pending call"), || drop(pending));
}
