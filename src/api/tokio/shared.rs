//! What the handles (any thread) and the driver (the loop's thread) share: the receive
//! queue, the send windows, the worker events, the commands. One lock (`lock.rs`), never
//! held while user code runs; the core runs under it only for a send handed straight to
//! its queue (`Inner::poll_send`: a queueing that calls nothing back).

use super::super::{Error, RollingRestart, WorkerEvent, WorkerId};
use super::frame::Entry;
use super::lock::{Guard, Lock};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Who a send window leads to: a worker (in the master) or the master (in a worker).
pub(super) type Dest = Option<WorkerId>;

/// Frames accepted by async sends, waiting to enter the core's queue for one peer: one
/// buffer of `[u32 type][u32 length][u32 descriptors][payload]` records (host order), so a
/// send costs no allocation of its own; the descriptors of those frames wait in `fds`, in
/// order.
pub(super) struct Window {
    pub(super) dest: Dest,
    pub(super) buf: Vec<u8>,
    /// The other buffer: `buf` is taken while the driver hands its frames to the core,
    /// and sends go on into this one (its capacity kept: no regrowing, no page faults).
    pub(super) spare: Vec<u8>,
    pub(super) fds: VecDeque<OwnedFd>,
    pub(super) frames: usize,
    /// Payload bytes of `buf` plus bytes reserved by live permits.
    pub(super) used: usize,
    /// Payload bytes handed straight to the core since the driver's last pump (see
    /// `Inner::poll_send`): they count toward the window until then.
    pub(super) direct: usize,
    /// The core refused the last frame (its queue is full) and has not said writable yet.
    pub(super) blocked: bool,
    waiters: Vec<Waker>,
}

impl Window {
    fn new(dest: Dest) -> Window {
        Window {
            dest,
            buf: Vec::new(),
            spare: Vec::new(),
            fds: VecDeque::new(),
            frames: 0,
            used: 0,
            direct: 0,
            blocked: false,
            waiters: Vec::new(),
        }
    }

    /// Queues a frame, with the descriptors of `fds` (taken) if any.
    fn push(&mut self, ty: u32, payload: &[u8], fds: Option<&mut Vec<OwnedFd>>) {
        let n = fds.as_ref().map_or(0, |f| f.len());
        let mut head = [0u8; RECORD_HEAD];
        head[..4].copy_from_slice(&ty.to_ne_bytes());
        head[4..8].copy_from_slice(&(payload.len() as u32).to_ne_bytes());
        head[8..].copy_from_slice(&(n as u32).to_ne_bytes());
        self.buf.reserve(RECORD_HEAD + payload.len());
        self.buf.extend_from_slice(&head);
        self.buf.extend_from_slice(payload);
        if let Some(f) = fds {
            self.fds.extend(f.drain(..));
        }
        self.frames += 1;
        self.used = self.used.saturating_add(payload.len());
    }
}

const RECORD_HEAD: usize = 12;

/// One frame of a window's buffer.
pub(super) struct Record<'a> {
    pub(super) ty: u32,
    pub(super) payload: &'a [u8],
    /// How many of the window's descriptors go with it.
    pub(super) fds: usize,
    /// Where the next record begins.
    pub(super) next: usize,
}

/// The record at `at` in a window's buffer.
pub(super) fn record(buf: &[u8], at: usize) -> Record<'_> {
    let word = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
    let (ty, len, fds) = (word(at), word(at + 4) as usize, word(at + 8) as usize);
    let start = at + RECORD_HEAD;
    Record {
        ty,
        payload: &buf[start..start + len],
        fds,
        next: start + len,
    }
}

/// The windows by peer: slot 0 the master, slot `i + 1` worker index `i` (its current
/// process; a window of an older process at that index is gone).
#[derive(Default)]
pub(super) struct Windows {
    slots: Vec<Option<Window>>,
}

fn slot_of(dest: Dest) -> usize {
    dest.map_or(0, |id| id.index().saturating_add(1))
}

impl Windows {
    pub(super) fn get_mut(&mut self, dest: Dest) -> Option<&mut Window> {
        self.slots
            .get_mut(slot_of(dest))?
            .as_mut()
            .filter(|w| w.dest == dest)
    }

    /// `dest`'s window, made if needed (replacing an older process's).
    fn entry(&mut self, dest: Dest) -> &mut Window {
        let i = slot_of(dest);
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        let w = self.slots[i].get_or_insert_with(|| Window::new(dest));
        if w.dest != dest {
            *w = Window::new(dest);
        }
        w
    }

    pub(super) fn remove(&mut self, dest: Dest) -> Option<Window> {
        let w = self.slots.get_mut(slot_of(dest))?;
        if w.as_ref().is_some_and(|w| w.dest == dest) {
            w.take()
        } else {
            None
        }
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Window> {
        self.slots.iter_mut().flatten()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Window> {
        self.slots.iter().flatten()
    }
}

pub(super) enum Cmd {
    StopWorker(WorkerId, Duration),
    /// Every worker, also those that start later (restarts under way).
    StopAll(Duration),
    /// `AsyncMaster::rolling_restart`; its result goes to `answers` under this ticket.
    Rolling(RollingRestart, u64),
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) inbox: VecDeque<Entry>,
    pub(super) inbox_cap: usize,
    recv_waiters: Vec<Waker>,
    pub(super) windows: Windows,
    pub(super) window_cap: usize,
    /// Live workers as the driver last saw them (master side).
    pub(super) live: Vec<WorkerId>,
    /// The same by index, for the sends' check.
    pub(super) live_at: Vec<Option<WorkerId>>,
    /// Children not yet handled to the end (master side): `has_children` after a turn.
    pub(super) children: bool,
    pub(super) events: VecDeque<WorkerEvent>,
    event_waiters: Vec<Waker>,
    /// In a worker: the master asked it to quit. In the master: the stop on signals is
    /// done (no child left). The receive streams end once what came before is taken.
    pub(super) quit: bool,
    /// In the master: a stop signal came (`Builder::stop_on_signals`).
    pub(super) signalled: bool,
    quit_waiters: Vec<Waker>,
    /// Results of commands that have one (`Cmd::Rolling`), by ticket.
    pub(super) answers: Vec<(u64, Result<(), Error>)>,
    pub(super) next_ticket: u64,
    answer_waiters: Vec<Waker>,
    pub(super) cmds: Vec<Cmd>,
    /// The process is ending: receivers end, sends fail.
    pub(super) closed: bool,
    pub(super) driver: Option<Waker>,
    /// Set by the handles when the driver has something to do (frames to pump, a
    /// command, room in the receive queue).
    pub(super) nudged: bool,
    /// Frames dropped from windows whose peer was gone.
    pub(super) lost: u64,
    /// Frames were handed straight to the core: the driver's next turn writes them.
    pub(super) direct: bool,
    /// The process's `block_on` is polling its futures (the driver, then the program's):
    /// wakers of that very task are not woken (a wake would cost a pass through tokio's
    /// driver) but noted in `self_woken`, and the poll goes round again.
    pub(super) polling: bool,
    pub(super) self_woken: bool,
    /// Calls made and received (`call.rs`).
    pub(super) calls: super::call::Calls,
}

/// Wakes every waker of `v` but those of the task `skip` (polling now); whether one was
/// skipped.
fn wake_except(v: &mut Vec<Waker>, skip: Option<&Waker>) -> bool {
    let mut skipped = false;
    for w in v.drain(..) {
        if skip.is_some_and(|s| s.will_wake(&w)) {
            skipped = true;
        } else {
            w.wake();
        }
    }
    skipped
}

fn wake_all(v: &mut Vec<Waker>) {
    for w in v.drain(..) {
        w.wake();
    }
}

fn park(v: &mut Vec<Waker>, cx: &Context<'_>) {
    if !v.iter().any(|w| w.will_wake(cx.waker())) {
        v.push(cx.waker().clone());
    }
}

impl Shared {
    pub(super) fn nudge(&mut self) {
        if self.nudged {
            return; // the driver was woken and has not looked yet
        }
        self.nudged = true;
        if self.polling {
            return; // the poll goes round again (see `polling`)
        }
        if let Some(w) = &self.driver {
            w.wake_by_ref();
        }
    }

    /// Wakes `v`, or notes the wake of the polling task.
    fn wake_list(polling: bool, driver: &Option<Waker>, v: &mut Vec<Waker>) -> bool {
        wake_except(v, driver.as_ref().filter(|_| polling))
    }

    pub(super) fn set_live(&mut self, live: Vec<WorkerId>) {
        for id in &self.live {
            if !live.contains(id) {
                self.calls.peer_gone(Some(*id));
            }
        }
        self.live_at.clear();
        for id in &live {
            let i = id.index();
            if self.live_at.len() <= i {
                self.live_at.resize(i + 1, None);
            }
            self.live_at[i] = Some(*id);
        }
        self.live = live;
    }

    fn is_live(&self, id: WorkerId) -> bool {
        self.live_at.get(id.index()).copied().flatten() == Some(id)
    }

    /// Frames received (in order), with one wake; `frames` is left empty (the inbox's
    /// buffer when it was empty: the two are swapped, no frame is moved).
    pub(super) fn push_frames(&mut self, frames: &mut Vec<Entry>) {
        if self.inbox.is_empty() {
            // Both O(1): a Vec becomes a deque as it is; an empty deque a Vec.
            let old = std::mem::replace(&mut self.inbox, std::mem::take(frames).into());
            *frames = old.into();
        } else {
            self.inbox.extend(frames.drain(..));
        }
        if Shared::wake_list(self.polling, &self.driver, &mut self.recv_waiters) {
            self.self_woken = true;
        }
    }

    pub(super) fn push_event(&mut self, e: WorkerEvent) {
        self.events.push_back(e);
        wake_all(&mut self.event_waiters);
    }

    pub(super) fn park_event(&mut self, cx: &Context<'_>) {
        park(&mut self.event_waiters, cx);
    }

    /// Whether children remain; their end wakes whoever waits for events.
    pub(super) fn set_children(&mut self, children: bool) {
        if self.children != children {
            self.children = children;
            wake_all(&mut self.event_waiters);
        }
    }

    pub(super) fn set_quit(&mut self) {
        self.quit = true;
        wake_all(&mut self.quit_waiters);
        wake_all(&mut self.recv_waiters);
        wake_all(&mut self.event_waiters);
        self.calls.wake_waiters();
    }

    /// A stop signal came (master).
    pub(super) fn set_signalled(&mut self) {
        self.signalled = true;
        wake_all(&mut self.quit_waiters);
    }

    /// The result of the command of `ticket`.
    pub(super) fn answer(&mut self, ticket: u64, r: Result<(), Error>) {
        self.answers.push((ticket, r));
        wake_all(&mut self.answer_waiters);
    }

    pub(super) fn close(&mut self) {
        self.closed = true;
        self.calls.close();
        wake_all(&mut self.recv_waiters);
        wake_all(&mut self.event_waiters);
        wake_all(&mut self.quit_waiters);
        wake_all(&mut self.answer_waiters);
        for w in self.windows.iter_mut() {
            wake_all(&mut w.waiters);
        }
    }

    /// Room again in `dest`'s window (frames went to the core, a permit was dropped, the
    /// peer is gone): its waiting senders look again.
    pub(super) fn window_room(&mut self, dest: Dest) {
        if let Some(w) = self.windows.get_mut(dest) {
            if Shared::wake_list(self.polling, &self.driver, &mut w.waiters) {
                self.self_woken = true;
            }
        }
    }

    /// The frames handed straight to the core are being written: their bytes stop
    /// counting toward their windows, whose waiting senders look again. Whether some were.
    pub(super) fn take_direct(&mut self) -> bool {
        if !std::mem::take(&mut self.direct) {
            return false;
        }
        let skip = self.driver.as_ref().filter(|_| self.polling);
        let mut woken = false;
        for w in self.windows.slots.iter_mut().flatten() {
            if std::mem::take(&mut w.direct) > 0 {
                woken |= wake_except(&mut w.waiters, skip);
            }
        }
        self.self_woken |= woken;
        true
    }

    /// Wakes every waiting sender (the set of live workers changed).
    pub(super) fn wake_senders(&mut self) {
        for w in self.windows.iter_mut() {
            wake_all(&mut w.waiters);
        }
    }
}

/// The shared state behind every handle of one process.
pub(super) struct Inner {
    state: Lock<Shared>,
}

impl Inner {
    pub(super) fn new(inbox_cap: usize, window_cap: usize) -> Arc<Inner> {
        Arc::new(Inner {
            state: Lock::new(Shared {
                inbox_cap: inbox_cap.max(1),
                window_cap: window_cap.max(1),
                ..Shared::default()
            }),
        })
    }

    pub(super) fn lock(&self) -> Guard<'_, Shared> {
        self.state.lock()
    }

    /// The next received frame, when one is there.
    pub(super) fn poll_recv(&self, cx: &Context<'_>) -> Poll<Option<Entry>> {
        let mut s = self.lock();
        if let Some(e) = s.inbox.pop_front() {
            // Reading resumes at half the queue (see the driver's mute).
            if s.inbox.len() == s.inbox_cap / 2 {
                s.nudge();
            }
            return Poll::Ready(Some(e));
        }
        // A worker asked to quit: its stream ends once what came before is taken.
        if s.closed || s.quit {
            return Poll::Ready(None);
        }
        park(&mut s.recv_waiters, cx);
        Poll::Pending
    }

    /// Up to `limit` received frames, in order, handed to `take`: how many (0 only once the
    /// stream ended, as [`Inner::poll_recv`]'s `None`); one lock for the batch.
    pub(super) fn poll_recv_many(
        &self,
        cx: &Context<'_>,
        limit: usize,
        mut take: impl FnMut(Entry),
    ) -> Poll<usize> {
        let mut s = self.lock();
        let before = s.inbox.len();
        let n = before.min(limit.max(1));
        if n > 0 {
            for e in s.inbox.drain(..n) {
                take(e);
            }
            // Reading resumes at half the queue (see the driver's mute).
            let half = s.inbox_cap / 2;
            if before > half && s.inbox.len() <= half {
                s.nudge();
            }
            return Poll::Ready(n);
        }
        if s.closed || s.quit {
            return Poll::Ready(0);
        }
        park(&mut s.recv_waiters, cx);
        Poll::Pending
    }

    pub(super) fn poll_event(&self, cx: &Context<'_>) -> Poll<Option<WorkerEvent>> {
        let mut s = self.lock();
        if let Some(e) = s.events.pop_front() {
            return Poll::Ready(Some(e));
        }
        if s.closed || s.quit {
            return Poll::Ready(None);
        }
        park(&mut s.event_waiters, cx);
        Poll::Pending
    }

    pub(super) fn poll_quit(&self, cx: &Context<'_>) -> Poll<()> {
        let mut s = self.lock();
        if s.quit || s.signalled || s.closed {
            return Poll::Ready(());
        }
        park(&mut s.quit_waiters, cx);
        Poll::Pending
    }

    /// The answer to the command of `ticket` (`Cmd::Rolling`); the process's end if it
    /// never came.
    pub(super) fn poll_answer(&self, cx: &Context<'_>, ticket: u64) -> Poll<Result<(), Error>> {
        let mut s = self.lock();
        if let Some(i) = s.answers.iter().position(|(t, _)| *t == ticket) {
            return Poll::Ready(s.answers.swap_remove(i).1);
        }
        if s.closed {
            return Poll::Ready(Err(Error::PeerGone));
        }
        park(&mut s.answer_waiters, cx);
        Poll::Pending
    }

    /// Forgets the answer of a command whose future went before it came.
    pub(super) fn forget_answer(&self, ticket: u64) {
        self.lock().answers.retain(|(t, _)| *t != ticket);
    }

    /// Room for `len` bytes in `dest`'s window, then `f` with the window (its room
    /// taken). A frame larger than the whole window gets it once the window is empty.
    fn poll_room(
        &self,
        cx: &Context<'_>,
        dest: Dest,
        len: usize,
        f: impl FnOnce(&mut Window),
    ) -> Poll<Result<(), Error>> {
        let mut s = self.lock();
        if s.closed || dest.is_some_and(|id| !s.is_live(id)) {
            return Poll::Ready(Err(Error::PeerGone));
        }
        let cap = s.window_cap;
        let w = s.windows.entry(dest);
        if w.used == 0 || w.used.saturating_add(len) <= cap {
            f(w);
            s.nudge();
            return Poll::Ready(Ok(()));
        }
        park(&mut w.waiters, cx);
        Poll::Pending
    }

    /// Reserves `len` bytes of `dest`'s window.
    pub(super) fn poll_reserve(
        &self,
        cx: &Context<'_>,
        dest: Dest,
        len: usize,
    ) -> Poll<Result<(), Error>> {
        self.poll_room(cx, dest, len, |w| w.used = w.used.saturating_add(len))
    }

    /// Queues a frame in `dest`'s window once it has room: in the poll that completes,
    /// never before (a send future dropped earlier queued nothing). On the loop's thread,
    /// with nothing waiting in the window, the frame goes straight to the core's queue
    /// instead (`driver::direct_send`: the window's copy and the driver's hand-over
    /// saved); those bytes count toward the window until the driver's next pump, so the
    /// driver gets to write them.
    pub(super) fn poll_send(
        &self,
        cx: &Context<'_>,
        dest: Dest,
        ty: u32,
        payload: &[u8],
        fds: Option<&mut Vec<OwnedFd>>,
    ) -> Poll<Result<(), Error>> {
        let len = payload.len();
        let mut s = self.lock();
        if s.closed || dest.is_some_and(|id| !s.is_live(id)) {
            return Poll::Ready(Err(Error::PeerGone));
        }
        let cap = s.window_cap;
        let w = s.windows.entry(dest);
        let taken = w.used.saturating_add(w.direct);
        if taken == 0 || taken.saturating_add(len) <= cap {
            if fds.is_none()
                && w.frames == 0
                && !w.blocked
                && super::driver::direct_send(self, dest, ty, payload)
            {
                w.direct += len;
                s.direct = true;
            } else {
                w.push(ty, payload, fds);
            }
            s.nudge();
            return Poll::Ready(Ok(()));
        }
        park(&mut w.waiters, cx);
        Poll::Pending
    }

    /// Gives back `len` reserved bytes that were not used.
    pub(super) fn unreserve(&self, dest: Dest, len: usize) {
        let mut s = self.lock();
        if let Some(w) = s.windows.get_mut(dest) {
            w.used = w.used.saturating_sub(len);
        }
        s.window_room(dest);
    }

    /// Queues a frame in `dest`'s window, whose `reserved` bytes were reserved for it.
    pub(super) fn enqueue(
        &self,
        dest: Dest,
        reserved: usize,
        ty: u32,
        payload: &[u8],
        fds: Option<&mut Vec<OwnedFd>>,
    ) {
        let mut s = self.lock();
        let w = s.windows.entry(dest);
        w.used = w.used.saturating_sub(reserved);
        w.push(ty, payload, fds);
        s.nudge();
    }

    pub(super) fn command(&self, c: Cmd) {
        let mut s = self.lock();
        s.cmds.push(c);
        s.nudge();
    }
}
