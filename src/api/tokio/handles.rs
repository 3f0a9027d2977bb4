//! The handles the async mains get: [`AsyncMaster`], [`AsyncWorker`], [`Permit`], and the
//! streams. They are `Send + Sync + Clone` (shared state behind a mutex): tasks on any
//! thread of the process's runtime may use them; only the driver touches the core.

use super::super::error::{check_fds, check_len};
use super::super::{Error, Message, RollingRestart, WorkerEvent, WorkerId};
use super::frame::{Entry, Frame};
use super::shared::{Cmd, Dest, Inner};
use std::future::{poll_fn, Future};
use std::os::fd::OwnedFd;
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
        self.inner.enqueue(self.dest, len, ty, payload, None);
        Ok(())
    }

    /// [`Permit::send`] with descriptors (at most 253), as
    /// [`AsyncMaster::send_with_fds`]: the way to send them without a future that could
    /// be dropped with them (reserve first, then this cannot wait).
    pub fn send_with_fds(
        mut self,
        ty: u32,
        payload: impl AsRef<[u8]>,
        mut fds: Vec<OwnedFd>,
    ) -> Result<(), Error> {
        let payload = payload.as_ref();
        check_fds(fds.len())?;
        if payload.len() > self.len {
            return Err(Error::InvalidArgument(
                "Permit::send: payload longer than the room reserved",
            ));
        }
        let len = std::mem::take(&mut self.len);
        self.inner
            .enqueue(self.dest, len, ty, payload, Some(&mut fds));
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

/// A send of either side: waits for room in `dest`'s window, then queues the frame and its
/// descriptors in the poll that completes (dropped before, it queued nothing). One
/// `poll_fn` (no state machine of its own): this is the path of every frame.
fn send<'a>(
    inner: &'a Inner,
    dest: Dest,
    ty: u32,
    payload: impl AsRef<[u8]> + 'a,
    mut fds: Option<Vec<OwnedFd>>,
) -> impl Future<Output = Result<(), Error>> + 'a {
    let mut checked = false;
    // Kept as two words, the `Dest` made again at each poll: copied whole from the
    // future's state (just written, field by field), it stalled on store forwarding.
    let (index, pid) = dest.map_or((usize::MAX, 0), |id| (id.index(), id.pid()));
    poll_fn(move |cx| {
        let payload = payload.as_ref();
        if !checked {
            let n = fds.as_ref().map_or(0, Vec::len);
            if let Err(e) = check_len(payload.len()).and_then(|()| check_fds(n)) {
                return Poll::Ready(Err(e));
            }
            checked = true;
        }
        let dest = (index != usize::MAX).then(|| WorkerId::new(index, pid));
        inner.poll_send(cx, dest, ty, payload, fds.as_mut())
    })
}

/// The received frames as a [`Stream`](futures_core::Stream) of `(sender, frame)`; ends
/// when the process's async side ends.
pub struct Receiver<T> {
    inner: Arc<Inner>,
    map: fn(Entry) -> T,
}

impl<T> futures_core::Stream for Receiver<T> {
    type Item = T;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let map = self.map;
        self.inner.poll_recv(cx).map(|o| o.map(map))
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

fn from_worker(e: Entry) -> (WorkerId, Frame) {
    e.into_master()
}

fn from_master(e: Entry) -> Frame {
    e.into_frame()
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
    pub fn recv(&self) -> impl Future<Output = Option<(WorkerId, Frame)>> + '_ {
        poll_fn(|cx| self.inner.poll_recv(cx).map(|o| o.map(Entry::into_master)))
    }

    /// Waits for frames as [`AsyncMaster::recv`] does, then appends up to `limit` of those
    /// received (at least one) to `buf`, in order, in one step: the way to take a burst.
    /// Returns how many; 0 only once the async side ends (a `limit` of 0 counts as 1).
    /// Cancel-safe: frames are moved into `buf` only when it returns.
    pub async fn recv_many(&self, buf: &mut Vec<(WorkerId, Frame)>, limit: usize) -> usize {
        poll_fn(|cx| {
            self.inner
                .poll_recv_many(cx, limit, |e| buf.push(e.into_master()))
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
    pub fn send<'a>(
        &'a self,
        to: WorkerId,
        ty: u32,
        payload: impl AsRef<[u8]> + 'a,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        send(&self.inner, Some(to), ty, payload, None)
    }

    /// [`AsyncMaster::send`] with descriptors: they arrive with this frame and no other, in
    /// [`Frame::fds`], at most 253 (as [`Master::send_with_fds`](super::super::Master::send_with_fds)).
    /// They are moved: closed here once the core took the frame (it sends copies), or if
    /// `to` dies first; a future dropped before it completed closes them too (to keep them,
    /// [`AsyncMaster::reserve`] then [`Permit::send_with_fds`]). Waits while `to`'s queue
    /// or its descriptor limit ([`Builder::fds_limit`](super::Builder::fds_limit)) is
    /// full. [`Error::InvalidArgument`] above 253; otherwise errors as
    /// [`AsyncMaster::send`].
    ///
    /// ```no_run
    /// # async fn f(m: mln_ipc::api::tokio::AsyncMaster, to: mln_ipc::api::WorkerId) {
    /// use std::io::Write;
    /// use std::os::fd::OwnedFd;
    ///
    /// let (r, mut w) = std::io::pipe().expect("pipe");
    /// w.write_all(b"through the pipe").expect("write");
    /// drop(w);
    /// // The worker reads the pipe from `frame.fds[0]`.
    /// m.send_with_fds(to, 2000, b"a pipe", vec![OwnedFd::from(r)])
    ///     .await
    ///     .expect("send");
    /// # }
    /// ```
    pub async fn send_with_fds(
        &self,
        to: WorkerId,
        ty: u32,
        payload: impl AsRef<[u8]>,
        fds: Vec<OwnedFd>,
    ) -> Result<(), Error> {
        send(&self.inner, Some(to), ty, payload, Some(fds)).await
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

    /// Replaces every worker (not the spawned programs), `r.batch` at a time, as
    /// [`Master::rolling_restart`](super::super::Master::rolling_restart) (the same code,
    /// run on the master's loop): each replacement is forked from the master as it is
    /// then, keeps its predecessor's index and runs the worker's async main; once its loop
    /// runs, its predecessor is stopped as [`AsyncMaster::stop_worker`] does with
    /// `r.deadline` (its [`AsyncWorker::quit`] fires). The event stream shows each
    /// replacement (`Started` of the new process, `Exited` of the old one, how
    /// [`End::Stopped`](super::super::End)) and the end, one
    /// [`WorkerEvent::RollingDone`]. Returns once the restart has begun:
    /// [`Error::Busy`] while one runs, [`Error::InvalidArgument`] for a zero `batch` or
    /// `ready_timeout`. A future dropped before it returned may have begun it anyway (its
    /// `RollingDone` says so).
    ///
    /// ```no_run
    /// # async fn f(m: mln_ipc::api::tokio::AsyncMaster) {
    /// use mln_ipc::api::{RollingRestart, WorkerEvent};
    ///
    /// m.rolling_restart(RollingRestart::default()).await.expect("rolling restart");
    /// while let Some(e) = m.next_event().await {
    ///     if let WorkerEvent::RollingDone { completed } = e {
    ///         assert!(completed);
    ///         break;
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn rolling_restart(&self, r: RollingRestart) -> Result<(), Error> {
        let ticket = {
            let mut s = self.inner.lock();
            s.next_ticket += 1;
            s.next_ticket
        };
        struct Forget<'a>(&'a Inner, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.forget_answer(self.1);
            }
        }
        let _forget = Forget(&self.inner, ticket);
        self.inner.command(Cmd::Rolling(r, ticket));
        poll_fn(|cx| self.inner.poll_answer(cx, ticket)).await
    }

    /// Resolves when a stop signal came ([`Builder::stop_on_signals`](super::Builder::stop_on_signals):
    /// SIGTERM or SIGINT): the workers are being stopped gracefully; once the last one
    /// has ended, the master's streams end. Never resolves without `stop_on_signals`.
    pub async fn stop_requested(&self) {
        poll_fn(|cx| self.inner.poll_quit(cx)).await
    }

    /// Whether a stop signal came (see [`AsyncMaster::stop_requested`]).
    pub fn is_stop_requested(&self) -> bool {
        self.inner.lock().signalled
    }

    /// Frames accepted by async sends that were dropped: their worker died first, or the
    /// core could not take them (logged).
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
    pub fn recv(&self) -> impl Future<Output = Option<Frame>> + '_ {
        poll_fn(|cx| self.inner.poll_recv(cx).map(|o| o.map(Entry::into_frame)))
    }

    /// Frames from the master in one step, as [`AsyncMaster::recv_many`].
    pub async fn recv_many(&self, buf: &mut Vec<Frame>, limit: usize) -> usize {
        poll_fn(|cx| {
            self.inner
                .poll_recv_many(cx, limit, |e| buf.push(e.into_frame()))
        })
        .await
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
    pub fn send<'a>(
        &'a self,
        ty: u32,
        payload: impl AsRef<[u8]> + 'a,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        send(&self.inner, None, ty, payload, None)
    }

    /// [`AsyncWorker::send`] with descriptors, as [`AsyncMaster::send_with_fds`]: the
    /// master finds them in [`Frame::fds`].
    pub async fn send_with_fds(
        &self,
        ty: u32,
        payload: impl AsRef<[u8]>,
        fds: Vec<OwnedFd>,
    ) -> Result<(), Error> {
        send(&self.inner, None, ty, payload, Some(fds)).await
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
