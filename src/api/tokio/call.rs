//! Request/response over the library's call frames, the wire of the synchronous
//! call/reply: type 1019 (CALL) with payload `[u64 call id][u32 request type][request]`,
//! type 1020 (REPLY) with payload `[u64 call id][u32 status (0 = answered)][u32 reply
//! type][reply]`, host byte order. So an async master can call a worker that answers with
//! the synchronous API's `reply()`, and the other way round.
//!
//! A call's id is this process's (a counter); the answer is matched by it. A call future
//! dropped before its answer came forgets the call (a late answer is dropped); a call to a
//! worker that dies first ends with [`Error::PeerGone`].

use super::super::error::check_len;
use super::super::{Error, WorkerId};
use super::frame::Frame;
use super::handles::{AsyncMaster, AsyncWorker};
use super::shared::{Dest, Inner};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// The CALL frame type.
pub(super) const CALL: u32 = 1019;
/// The REPLY frame type.
pub(super) const REPLY: u32 = 1020;
/// A REPLY's status: answered (not `pub`: cbindgen would put it in the C header).
const ANSWERED: u32 = 0;

/// An answer to [`AsyncMaster::call`] / [`AsyncWorker::call`].
#[derive(Debug)]
pub struct Reply {
    /// 0 ([`Reply::answered`]) when the peer's handler answered; otherwise the peer's reason
    /// (the synchronous API's statuses).
    pub status: u32,
    /// The reply's type and payload.
    pub frame: Frame,
}

impl Reply {
    /// Whether the peer's handler answered (status 0).
    pub fn answered(&self) -> bool {
        self.status == ANSWERED
    }
}

/// A call received from the peer, to answer with [`Call::reply`].
pub struct Call {
    inner: Arc<Inner>,
    from: Dest,
    id: u64,
    /// The request's type and payload.
    pub request: Frame,
}

impl Call {
    /// The worker that called (in the master); `None` in a worker (the master called).
    pub fn from(&self) -> Option<WorkerId> {
        self.from
    }

    /// Answers the call (waits while the caller's queue is full, as a send does).
    pub async fn reply(self, ty: u32, payload: impl AsRef<[u8]>) -> Result<(), Error> {
        self.answer(ANSWERED, ty, payload.as_ref()).await
    }

    /// Answers with `status`, which should not be 0 (answered): the call is refused.
    pub async fn refuse(self, status: u32) -> Result<(), Error> {
        self.answer(status, 0, &[]).await
    }

    async fn answer(self, status: u32, ty: u32, payload: &[u8]) -> Result<(), Error> {
        let mut p = Vec::with_capacity(16 + payload.len());
        p.extend_from_slice(&self.id.to_ne_bytes());
        p.extend_from_slice(&status.to_ne_bytes());
        p.extend_from_slice(&ty.to_ne_bytes());
        p.extend_from_slice(payload);
        check_len(p.len())?;
        let (inner, from) = (&self.inner, self.from);
        poll_fn(|cx| inner.poll_send(cx, from, REPLY, &p, None)).await
    }
}

struct Pending {
    to: Dest,
    answer: Option<Reply>,
    gone: bool,
    waker: Option<Waker>,
}

/// A process's calls: those it made (by id) and those it received.
#[derive(Default)]
pub(super) struct Calls {
    out: HashMap<u64, Pending>,
    next: u64,
    incoming: VecDeque<(Dest, u64, Frame)>,
    waiters: Vec<Waker>,
}

impl Calls {
    pub(super) fn queued(&self) -> usize {
        self.incoming.len()
    }

    /// The peer `to` is gone: its pending calls end with `PeerGone`.
    pub(super) fn peer_gone(&mut self, to: Dest) {
        for p in self.out.values_mut().filter(|p| p.to == to) {
            p.gone = true;
            if let Some(w) = p.waker.take() {
                w.wake();
            }
        }
    }

    /// Whoever waits for a call looks again (the stream may have ended).
    pub(super) fn wake_waiters(&mut self) {
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }

    pub(super) fn close(&mut self) {
        for p in self.out.values_mut() {
            p.gone = true;
            if let Some(w) = p.waker.take() {
                w.wake();
            }
        }
        self.wake_waiters();
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A CALL frame from `from` (the core's handler, on the loop thread).
pub(super) fn on_call(inner: &Inner, from: Dest, b: &[u8]) {
    let (Some(id), Some(ty)) = (u64_at(b, 0), u32_at(b, 8)) else {
        crate::log::warn(format_args!(
            "a CALL frame too short to carry its header: dropped"
        ));
        return;
    };
    let request = Frame::new(ty, &b[12..]);
    let mut s = inner.lock();
    s.calls.incoming.push_back((from, id, request));
    s.calls.wake_waiters();
}

/// A REPLY frame from `from`.
pub(super) fn on_reply(inner: &Inner, from: Dest, b: &[u8]) {
    let (Some(id), Some(status), Some(ty)) = (u64_at(b, 0), u32_at(b, 8), u32_at(b, 12)) else {
        crate::log::warn(format_args!(
            "a REPLY frame too short to carry its header: dropped"
        ));
        return;
    };
    let mut s = inner.lock();
    // An answer to a call forgotten (its future dropped) or from another peer: dropped.
    if let Some(p) = s.calls.out.get_mut(&id).filter(|p| p.to == from) {
        p.answer = Some(Reply {
            status,
            frame: Frame::new(ty, &b[16..]),
        });
        if let Some(w) = p.waker.take() {
            w.wake();
        }
    }
}

/// Forgets a call when its future goes (answered or not).
struct Forget<'a>(&'a Inner, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.lock().calls.out.remove(&self.1);
    }
}

async fn call(inner: &Inner, to: Dest, ty: u32, payload: &[u8]) -> Result<Reply, Error> {
    check_len(payload.len().saturating_add(12))?;
    let id = {
        let mut s = inner.lock();
        s.calls.next += 1;
        let id = s.calls.next;
        s.calls.out.insert(
            id,
            Pending {
                to,
                answer: None,
                gone: false,
                waker: None,
            },
        );
        id
    };
    let _forget = Forget(inner, id);
    let mut p = Vec::with_capacity(12 + payload.len());
    p.extend_from_slice(&id.to_ne_bytes());
    p.extend_from_slice(&ty.to_ne_bytes());
    p.extend_from_slice(payload);
    poll_fn(|cx| inner.poll_send(cx, to, CALL, &p, None)).await?;
    poll_fn(|cx: &mut Context<'_>| {
        let mut s = inner.lock();
        let Some(p) = s.calls.out.get_mut(&id) else {
            return Poll::Ready(Err(Error::PeerGone));
        };
        if let Some(a) = p.answer.take() {
            return Poll::Ready(Ok(a));
        }
        if p.gone {
            return Poll::Ready(Err(Error::PeerGone));
        }
        p.waker = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

fn poll_incoming(inner: &Arc<Inner>, cx: &Context<'_>) -> Poll<Option<Call>> {
    let mut s = inner.lock();
    if let Some((from, id, request)) = s.calls.incoming.pop_front() {
        if s.calls.incoming.len() + s.inbox.len() == s.inbox_cap / 2 {
            s.nudge();
        }
        return Poll::Ready(Some(Call {
            inner: inner.clone(),
            from,
            id,
            request,
        }));
    }
    if s.closed || s.quit {
        return Poll::Ready(None);
    }
    if !s.calls.waiters.iter().any(|w| w.will_wake(cx.waker())) {
        s.calls.waiters.push(cx.waker().clone());
    }
    Poll::Pending
}

impl AsyncMaster {
    /// Calls worker `to` with a request of type `ty` and waits for its answer (a CALL
    /// frame, answered by a REPLY: the wire of the synchronous call/reply). The send
    /// waits while `to`'s queue is full. [`Error::PeerGone`] if `to` is gone or dies
    /// before it answered. Dropped before the answer, the call is forgotten.
    pub async fn call(
        &self,
        to: WorkerId,
        ty: u32,
        payload: impl AsRef<[u8]>,
    ) -> Result<Reply, Error> {
        call(&self.inner, Some(to), ty, payload.as_ref()).await
    }

    /// The next call a worker made to the master; `None` once the async side ends.
    pub async fn next_call(&self) -> Option<Call> {
        poll_fn(|cx| poll_incoming(&self.inner, cx)).await
    }
}

impl AsyncWorker {
    /// Calls the master, as [`AsyncMaster::call`].
    pub async fn call(&self, ty: u32, payload: impl AsRef<[u8]>) -> Result<Reply, Error> {
        call(&self.inner, None, ty, payload.as_ref()).await
    }

    /// The next call the master made to this worker; `None` after a quit or once the
    /// async side ends.
    pub async fn next_call(&self) -> Option<Call> {
        poll_fn(|cx| poll_incoming(&self.inner, cx)).await
    }
}
