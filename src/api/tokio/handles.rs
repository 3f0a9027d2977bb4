//! The handles the async mains get: [`AsyncMaster`], [`AsyncWorker`], [`Permit`], and the
//! streams. They are `Send + Sync + Clone` (shared state behind a mutex): tasks on any
//! thread of the process's runtime may use them; only the driver touches the core.

use super::super::error::check_len;
use super::super::{Error, Message, WorkerEvent, WorkerId};
use super::shared::{Cmd, Dest, Frame, Inner};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Room for one frame of up to `len` payload bytes in a peer's send window, from
/// [`AsyncMaster::reserve`] or [`AsyncWorker::reserve`]: [`Permit::send`] then cannot
/// fail for lack of room. Dropped unused, the room goes back.
#[must_use = "a permit holds room in the send window until it is used or dropped"]
pub struct Permit {
    inner: Arc<Inner>,
    dest: Dest,
    len: usize,
}

impl Permit {
    /// Queues the frame (the payload is copied). It reaches the peer in order after
    /// everything accepted before it, exactly once, unless the peer dies first.
    /// [`Error::InvalidArgument`] for a payload longer than the room reserved.
    pub fn send(mut self, ty: u32, payload: impl AsRef<[u8]>) -> Result<(), Error> {
        let payload = payload.as_ref();
        if payload.len() > self.len {
            return Err(Error::InvalidArgument(
                "Permit::send: payload longer than the room reserved",
            ));
        }
        let len = std::mem::take(&mut self.len);
        self.inner.enqueue(self.dest, len, ty, payload);
        Ok(())
    }

    /// [`Permit::send`] for a typed message.
    pub fn send_message<M: Message>(self, msg: &M) -> Result<(), Error> {
        self.send(M::TYPE, msg.encode())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.len > 0 {
            self.inner.unreserve(self.dest, self.len);
        }
    }
}

async fn reserve(inner: &Arc<Inner>, dest: Dest, len: usize) -> Result<Permit, Error> {
    check_len(len)?;
    poll_fn(|cx| inner.poll_reserve(cx, dest, len)).await?;
    Ok(Permit {
        inner: inner.clone(),
        dest,
        len,
    })
}

/// The received frames as a [`Stream`](futures_core::Stream) of `(sender, frame)`; ends
/// when the process's async side ends.
pub struct Receiver<T> {
    inner: Arc<Inner>,
    map: fn(Dest, Frame) -> T,
}

impl<T> futures_core::Stream for Receiver<T> {
    type Item = T;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let map = self.map;
        self.inner.poll_recv(cx).map(|o| o.map(|(d, f)| map(d, f)))
    }
}

/// The worker events as a [`Stream`](futures_core::Stream); ends with the master's
/// async side.
pub struct Events {
    inner: Arc<Inner>,
}

impl futures_core::Stream for Events {
    type Item = WorkerEvent;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WorkerEvent>> {
        self.inner.poll_event(cx)
    }
}

fn from_worker(d: Dest, f: Frame) -> (WorkerId, Frame) {
    (d.expect("master side frames have a sender"), f)
}

fn from_master(_: Dest, f: Frame) -> Frame {
    f
}

/// The master's async side, given to the master's async main.
#[derive(Clone)]
pub struct AsyncMaster {
    pub(super) inner: Arc<Inner>,
}

impl AsyncMaster {
    /// The live workers, in index order, as the loop last saw them.
    pub fn workers(&self) -> Vec<WorkerId> {
        self.inner.lock().live.clone()
    }

    /// The live worker with stable index `index`, if any.
    pub fn worker(&self, index: usize) -> Option<WorkerId> {
        self.inner
            .lock()
            .live
            .iter()
            .find(|w| w.index() == index)
            .copied()
    }

    /// Waits for the next frame from any worker (of the types given to
    /// [`Builder::master_types`](super::Builder::master_types)); `None` once the async
    /// side ends.
    pub async fn recv(&self) -> Option<(WorkerId, Frame)> {
        poll_fn(|cx| self.inner.poll_recv(cx))
            .await
            .map(|(d, f)| from_worker(d, f))
    }

    /// Waits for frames as [`AsyncMaster::recv`] does, then appends up to `limit` of those
    /// received (at least one) to `buf`, in order, in one step: the way to take a burst.
    /// Returns how many; 0 only once the async side ends (a `limit` of 0 counts as 1).
    /// Cancel-safe: frames are moved into `buf` only when it returns.
    pub async fn recv_many(&self, buf: &mut Vec<(WorkerId, Frame)>, limit: usize) -> usize {
        poll_fn(|cx| {
            self.inner
                .poll_recv_many(cx, limit, |d, f| buf.push(from_worker(d, f)))
        })
        .await
    }

    /// The received frames as a stream (shared with [`AsyncMaster::recv`]: each frame
    /// goes to one of them).
    pub fn receiver(&self) -> Receiver<(WorkerId, Frame)> {
        Receiver {
            inner: self.inner.clone(),
            map: from_worker,
        }
    }

    /// Waits for room for a frame of up to `len` payload bytes to `to`; cancel-safe
    /// (dropped while waiting, it holds nothing). [`Error::PeerGone`] if `to` is gone,
    /// [`Error::MessageTooLarge`].
    pub async fn reserve(&self, to: WorkerId, len: usize) -> Result<Permit, Error> {
        reserve(&self.inner, Some(to), len).await
    }

    /// Sends a frame to `to`, waiting while its queue is full (never [`Error::QueueFull`]).
    /// Cancel-safe: dropped before it completed, nothing was queued; completed, the frame
    /// is queued once. Errors as [`AsyncMaster::reserve`].
    pub async fn send(
        &self,
        to: WorkerId,
        ty: u32,
        payload: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        let payload = payload.as_ref();
        check_len(payload.len())?;
        poll_fn(|cx| self.inner.poll_send(cx, Some(to), ty, payload)).await
    }

    /// [`AsyncMaster::send`] for a typed message.
    pub async fn send_message<M: Message>(&self, to: WorkerId, msg: &M) -> Result<(), Error> {
        self.send(to, M::TYPE, msg.encode()).await
    }

    /// Waits for the next worker event (start, exit with its status, restart failures,
    /// ...), in the order the loop saw them; `None` once the async side ends.
    pub async fn next_event(&self) -> Option<WorkerEvent> {
        poll_fn(|cx| self.inner.poll_event(cx)).await
    }

    /// The worker events as a stream (shared with [`AsyncMaster::next_event`]).
    pub fn events(&self) -> Events {
        Events {
            inner: self.inner.clone(),
        }
    }

    /// Stops worker `id` gracefully, as [`Master::stop_worker`](super::super::Master::stop_worker):
    /// what was queued to it is written, its quit notification fires
    /// ([`AsyncWorker::quit`]), SIGTERM at `deadline`; it is not restarted.
    pub fn stop_worker(&self, id: WorkerId, deadline: Duration) {
        self.inner.command(Cmd::StopWorker(id, deadline));
    }

    /// Graceful stop of every worker: each is stopped as [`AsyncMaster::stop_worker`]
    /// does (also a worker restarted meanwhile, once it started), then this waits until
    /// every child has ended (their `Exited` events are in the event stream). The
    /// master's async main may then return.
    pub async fn shutdown(&self, deadline: Duration) {
        self.inner.command(Cmd::StopAll(deadline));
        poll_fn(|cx| {
            let mut s = self.inner.lock();
            if !s.children && s.cmds.is_empty() && !s.nudged || s.closed {
                Poll::Ready(())
            } else {
                // Woken with the events (every end is one).
                s.park_event(cx);
                Poll::Pending
            }
        })
        .await
    }

    /// Frames accepted by async sends that were dropped because their worker died first.
    pub fn frames_lost(&self) -> u64 {
        self.inner.lock().lost
    }
}

/// A worker's async side, given to the worker's async main.
#[derive(Clone)]
pub struct AsyncWorker {
    pub(super) inner: Arc<Inner>,
    pub(super) index: Option<usize>,
}

impl AsyncWorker {
    /// This worker's stable index, as the master's [`WorkerId::index`] names it.
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// Waits for the next frame from the master (of the types given to
    /// [`Builder::worker_types`](super::Builder::worker_types)); `None` once the master
    /// asked this worker to quit and the frames that came before were taken.
    pub async fn recv(&self) -> Option<Frame> {
        poll_fn(|cx| self.inner.poll_recv(cx)).await.map(|(_, f)| f)
    }

    /// Frames from the master in one step, as [`AsyncMaster::recv_many`].
    pub async fn recv_many(&self, buf: &mut Vec<Frame>, limit: usize) -> usize {
        poll_fn(|cx| self.inner.poll_recv_many(cx, limit, |_, f| buf.push(f))).await
    }

    /// The received frames as a stream.
    pub fn receiver(&self) -> Receiver<Frame> {
        Receiver {
            inner: self.inner.clone(),
            map: from_master,
        }
    }

    /// Waits for room for a frame of up to `len` payload bytes to the master; as
    /// [`AsyncMaster::reserve`].
    pub async fn reserve(&self, len: usize) -> Result<Permit, Error> {
        reserve(&self.inner, None, len).await
    }

    /// Sends a frame to the master, waiting while the queue is full; cancel-safe, as
    /// [`AsyncMaster::send`].
    pub async fn send(&self, ty: u32, payload: impl AsRef<[u8]>) -> Result<(), Error> {
        let payload = payload.as_ref();
        check_len(payload.len())?;
        poll_fn(|cx| self.inner.poll_send(cx, None, ty, payload)).await
    }

    /// [`AsyncWorker::send`] for a typed message.
    pub async fn send_message<M: Message>(&self, msg: &M) -> Result<(), Error> {
        self.send(M::TYPE, msg.encode()).await
    }

    /// Resolves when the master asks this worker to stop (a graceful stop, a rolling
    /// restart): the worker's async main should then finish its work and return; the
    /// process exits with status 0 once what it queued is written.
    pub async fn quit(&self) {
        poll_fn(|cx| self.inner.poll_quit(cx)).await
    }

    /// Whether the master asked this worker to stop.
    pub fn quit_requested(&self) -> bool {
        self.inner.lock().quit
    }
}
