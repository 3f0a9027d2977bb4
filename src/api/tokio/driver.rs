//! The driver: the future that runs a process's standalone loop from its tokio runtime.
//! It is polled only on the thread that called `block_on` (the loop's thread), so the
//! core is reached from that thread alone, whatever runtime the program chose.
//!
//! Each poll: the commands and the frames accepted by async sends go to the core (sends
//! stop at the core's queue limit until its writable callback says so), then, when the
//! loop's epoll descriptor is readable (tokio's `AsyncFd`), its earliest timer is due
//! (a tokio `Sleep`) or frames were just queued, one non-blocking turn of the loop runs
//! (`reactor::standalone::turn`). The receive queue is bounded: at its capacity the loop
//! holds RECV back (`set_recv_muted`) until the consumers took half of it.

use super::super::{error::send_error, identity, lifecycle, Master, WorkerId};
use super::frame;
use super::shared::{record, Cmd, Dest, Inner};
use crate::abi::{mln_event_t, mln_fork_t};
use crate::process::{self, SendError};
use crate::reactor::standalone as ev_loop;
use core::ffi::c_void;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Sleep};

/// Turns per poll before the driver yields to the program's futures.
const TURNS_PER_POLL: usize = 32;
/// Rounds of driver and program per poll before the process yields to the runtime.
const ROUNDS: usize = 16;

/// Why the driver ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// This process was forked by a restart inside the master's loop: it is a worker now.
    BecameWorker,
}

struct Epfd(RawFd);

impl AsRawFd for Epfd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

thread_local! {
    /// The shared state of this process's driver, for the core's writable callback.
    static CURRENT: RefCell<Option<Arc<Inner>>> = const { RefCell::new(None) };
    /// The loop of this thread's driver, and its shared state (`direct_send`).
    static LOOP: Cell<(*mut mln_event_t, *const Inner)> =
        const { Cell::new((core::ptr::null_mut(), core::ptr::null())) };
}

/// A send on the loop's own thread (outside its turns: the program's futures run between
/// them), with nothing of `inner`'s waiting in `dest`'s window: the frame goes to the
/// core's queue at once, as the driver would hand it. Whether the core took it (no: not
/// this thread, the peer unknown, its queue full; the frame then goes to the window).
pub(super) fn direct_send(inner: &Inner, dest: Dest, ty: u32, payload: &[u8]) -> bool {
    let (ev, owner) = LOOP.get();
    if ev.is_null() || !core::ptr::eq(owner, inner) {
        return false;
    }
    let r = match dest {
        Some(id) => match identity::fork_of(id) {
            Some(f) => process::send_to_child(ev, f, ty, payload),
            None => return false,
        },
        None => process::send_to_master(ev, ty, payload),
    };
    r.is_ok()
}

/// The frames of one window, taken to be handed to the core.
struct Taken {
    dest: Dest,
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    frames: usize,
}

pub(super) struct Driver {
    ev: *mut mln_event_t,
    /// `pump`'s list, kept for its capacity.
    work: Vec<Taken>,
    inner: Arc<Inner>,
    afd: AsyncFd<Epfd>,
    sleep: Pin<Box<Sleep>>,
    muted: bool,
    generation: u64,
    master: bool,
    /// No live child but some not handled to the end yet (master side).
    ending: bool,
    /// The last turn handled reported descriptors: the next one looks again.
    recheck: bool,
    /// `poll_drive` stopped with more to do.
    more: bool,
    /// Every worker is being stopped (`shutdown`), with this deadline.
    stop_all: Option<Duration>,
    /// The stop on signals is done: no child is left (master).
    signal_done: bool,
}

impl Driver {
    /// A driver for the live loop `ev` (in a runtime context: registers with its reactor).
    pub(super) fn new(
        ev: *mut mln_event_t,
        inner: Arc<Inner>,
        master: bool,
    ) -> std::io::Result<Driver> {
        // SAFETY: `ev` is the live loop of this process, freed only after the driver.
        let fd = unsafe { ev_loop::epoll_fd(ev) };
        // SAFETY: the descriptor stays open (the loop owns it) until the loop is freed,
        // after this driver is dropped (or forgotten, in a worker forked by a restart).
        let afd =
            unsafe { AsyncFd::register_with_interest(Epfd(fd), tokio::io::Interest::READABLE) }?;
        // A worker forked by a restart inside the master's driver still names the master's
        // state here: leaked, as the rest of the master's runtime in that process.
        CURRENT.with_borrow_mut(|c| std::mem::forget(c.replace(inner.clone())));
        LOOP.set((ev, Arc::as_ptr(&inner)));
        // And frames the master staged in the turn that forked it are the master's.
        frame::forget();
        process::set_writable_handler(Some(writable), core::ptr::null_mut());
        let mut d = Driver {
            ev,
            work: Vec::new(),
            inner,
            afd,
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            muted: false,
            generation: u64::MAX,
            master,
            ending: false,
            recheck: false,
            more: false,
            stop_all: None,
            signal_done: false,
        };
        d.refresh();
        Ok(d)
    }

    /// The live children as the handles see them, after a change.
    fn refresh(&mut self) {
        let g = process::children_generation();
        if !self.master || (g == self.generation && !self.ending) {
            return;
        }
        let children = process::has_children();
        let mut live = (g != self.generation).then(identity::live);
        self.generation = g;
        if let (Some(deadline), Some(l)) = (self.stop_all, live.as_ref()) {
            if !l.is_empty() {
                // Started after the stop of every worker (a restart under way): stopped too.
                for &id in l {
                    self.stop(id, deadline);
                }
                self.generation = process::children_generation();
                live = Some(identity::live());
            }
        }
        // Until no child is left, ends (not always a new generation) are looked for.
        self.ending = children && (self.ending || live.as_ref().is_some_and(|l| l.is_empty()));
        let mut s = self.inner.lock();
        s.set_children(children);
        if let Some(live) = live {
            // Windows of workers that are gone: their frames are lost, their senders told.
            let gone: Vec<Dest> = s
                .windows
                .iter()
                .map(|w| w.dest)
                .filter(|d| d.is_some_and(|id| !live.contains(&id)))
                .collect();
            for d in gone {
                if let Some(w) = s.windows.remove(d) {
                    s.lost += w.frames as u64;
                }
            }
            s.set_live(live);
            s.wake_senders();
        }
    }

    /// The stop on signals (master): the handles hear that a signal came, and once no
    /// child is left their streams end.
    fn signal_check(&mut self) {
        if !self.master || self.signal_done || !lifecycle::stop_signalled() {
            return;
        }
        let children = process::has_children();
        let mut s = self.inner.lock();
        if !s.signalled {
            s.set_signalled();
        }
        if !children {
            self.signal_done = true;
            s.set_quit();
        }
    }

    /// Commands and accepted frames to the core; whether a frame was queued there.
    fn pump(&mut self) -> bool {
        let (cmds, mut work, direct) = {
            let mut s = self.inner.lock();
            s.nudged = false;
            // Frames handed straight to the core: this pump's turn writes them.
            let direct = s.take_direct();
            if s.cmds.is_empty() && s.windows.iter().all(|w| w.blocked || w.frames == 0) {
                return direct;
            }
            let mut work = std::mem::take(&mut self.work);
            work.extend(
                s.windows
                    .iter_mut()
                    .filter(|w| !w.blocked && w.frames > 0)
                    .map(|w| Taken {
                        dest: w.dest,
                        buf: std::mem::replace(&mut w.buf, std::mem::take(&mut w.spare)),
                        fds: std::mem::take(&mut w.fds),
                        frames: std::mem::take(&mut w.frames),
                    }),
            );
            (std::mem::take(&mut s.cmds), work, direct)
        };
        for c in cmds {
            self.command(c);
        }
        let mut queued = direct;
        for t in work.drain(..) {
            queued |= self.hand_over(t);
        }
        self.work = work;
        queued
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::StopWorker(id, deadline) => self.stop(id, deadline),
            Cmd::StopAll(deadline) => {
                self.stop_all = Some(deadline);
                for id in identity::live() {
                    self.stop(id, deadline);
                }
            }
            Cmd::Rolling(r, ticket) => {
                // The synchronous API's, on this loop.
                let done = Master::new(self.ev).rolling_restart(r);
                self.inner.lock().answer(ticket, done);
            }
        }
    }

    /// The frames taken from one window to the core, until it refuses one (they wait for
    /// its writable callback); whether one was queued.
    fn hand_over(&mut self, t: Taken) -> bool {
        let Taken {
            dest,
            mut buf,
            mut fds,
            frames,
        } = t;
        let f = dest.map(identity::fork_of);
        let (mut at, mut sent, mut bytes) = (0, 0, 0);
        let (mut blocked, mut gone) = (false, false);
        while sent < frames {
            let r = record(&buf, at);
            let res = match (f, r.fds) {
                (Some(None), _) => Err(SendError::NoPeer),
                (Some(Some(f)), 0) => process::send_to_child(self.ev, f, r.ty, r.payload),
                (None, 0) => process::send_to_master(self.ev, r.ty, r.payload),
                (f, n) => {
                    // The core duplicates them; ours close once it took the frame.
                    let raw: Vec<i32> = fds.iter().take(n).map(|d| d.as_raw_fd()).collect();
                    match f {
                        Some(Some(f)) => {
                            process::send_fds_to_child(self.ev, f, r.ty, r.payload, &raw)
                        }
                        _ => process::send_fds_to_master(self.ev, r.ty, r.payload, &raw),
                    }
                }
            };
            match res {
                Ok(()) => {}
                Err(SendError::QueueFull) | Err(SendError::Busy) => {
                    blocked = true;
                    break;
                }
                Err(SendError::NoPeer) => {
                    gone = true;
                    break;
                }
                Err(e) => {
                    // Checked when accepted; a core that cannot queue, or out of
                    // descriptors to duplicate these, gets here.
                    crate::log::error(format_args!(
                        "async send: {}; frame dropped",
                        send_error(e, r.payload.len())
                    ));
                    self.inner.lock().lost += 1;
                }
            }
            if r.fds > 0 {
                fds.drain(..r.fds.min(fds.len()));
            }
            sent += 1;
            bytes += r.payload.len();
            at = r.next;
        }
        let mut s = self.inner.lock();
        if gone {
            s.lost += (frames - sent) as u64;
            s.windows.remove(dest);
            s.wake_senders();
            return sent > 0;
        }
        if let Some(w) = s.windows.get_mut(dest) {
            w.used = w.used.saturating_sub(bytes);
            w.blocked = blocked;
            if sent < frames {
                // Frames accepted meanwhile go behind the ones the core refused.
                buf.drain(..at);
                buf.extend_from_slice(&w.buf);
                w.buf = buf;
                fds.extend(w.fds.drain(..));
                w.fds = fds;
                w.frames += frames - sent;
            } else {
                // The drained buffer goes back: its capacity serves the next sends.
                buf.clear();
                if w.buf.is_empty() {
                    w.spare = std::mem::replace(&mut w.buf, buf);
                } else {
                    w.spare = buf;
                }
            }
        }
        if sent > 0 {
            s.window_room(dest);
        }
        sent > 0
    }

    fn stop(&mut self, id: WorkerId, deadline: Duration) {
        if let Some(f) = identity::fork_of(id) {
            let _ = process::stop(self.ev, f, lifecycle::millis(deadline));
        }
    }

    /// Polled by the process's `block_on`: `Pending` while the process runs.
    pub(super) fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        {
            let mut s = self.inner.lock();
            if !s.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.driver = Some(cx.waker().clone());
            }
        }
        let mut again = false;
        for _ in 0..TURNS_PER_POLL {
            let queued = self.pump();
            // The consumers may have made room: reading resumes with a turn.
            again |= self.mute_check();
            // Taken before the turn: clearing it clears only what was seen before.
            let mut guard = match self.afd.poll_read_ready(cx) {
                Poll::Ready(Ok(g)) => Some(g),
                _ => None,
            };
            let look = guard.is_some() || std::mem::take(&mut again) || self.recheck;
            // SAFETY: the live loop of this process, on its thread.
            let wait = unsafe { ev_loop::next_wait(self.ev) };
            let due = wait.is_some_and(|d| d.is_zero());
            if !look && !due && !queued {
                if let Some(d) = wait {
                    let at = Instant::now() + d;
                    // A sleep due sooner only wakes the driver early: kept (a reset costs
                    // a pass through tokio's timer wheel).
                    if self.sleep.is_elapsed() || self.sleep.deadline() > at {
                        self.sleep.as_mut().reset(at);
                    }
                    if self.sleep.as_mut().poll(cx).is_ready() {
                        continue;
                    }
                }
                if self.inner.lock().nudged {
                    continue;
                }
                return Poll::Pending;
            }
            // SAFETY: as above.
            let seen = unsafe { ev_loop::turn(self.ev, look) };
            frame::flush(&self.inner);
            if look && seen == 0 {
                // Nothing was ready when the turn looked: what comes later raises a new
                // edge in tokio's epoll.
                if let Some(g) = guard.as_mut() {
                    g.clear_ready();
                }
            }
            if self.master && process::is_worker() {
                return Poll::Ready(End::BecameWorker);
            }
            self.refresh();
            self.signal_check();
            again |= self.mute_check();
            // Descriptors were handled; whether they still have data (level-triggered:
            // no new edge) the next turn's look says, after the program's futures ran.
            self.recheck = look && seen > 0;
            if self.recheck {
                break;
            }
        }
        // More to do (a recheck, or the budget ran out): `poll_with` goes round again.
        self.more = true;
        Poll::Pending
    }

    /// One poll of the process: the driver, then the program's future (`user`), round
    /// again while either has more to do without a wake from outside (at most
    /// `ROUNDS`, then a wake of our own: the runtime's other tasks get their turn).
    pub(super) fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut user: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<Result<T, End>> {
        for _ in 0..ROUNDS {
            self.more = false;
            self.inner.lock().polling = true;
            if let Poll::Ready(e) = self.poll_drive(cx) {
                self.inner.lock().polling = false;
                return Poll::Ready(Err(e));
            }
            let r = user(cx);
            let again = {
                let mut s = self.inner.lock();
                s.polling = false;
                s.nudged || std::mem::take(&mut s.self_woken)
            };
            if let Poll::Ready(v) = r {
                return Poll::Ready(Ok(v));
            }
            if !again && !self.more {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Receive backpressure: RECV held back at the receive queue's capacity, given back
    /// at half of it. Whether it was given back now.
    fn mute_check(&mut self) -> bool {
        let (len, cap) = {
            let s = self.inner.lock();
            (s.inbox.len() + s.calls.queued(), s.inbox_cap)
        };
        let want = if self.muted {
            len > cap / 2
        } else {
            len >= cap
        };
        if want != self.muted {
            // SAFETY: the live loop of this process, on its thread.
            if unsafe { ev_loop::set_recv_muted(self.ev, want) } {
                self.muted = want;
                return !want;
            }
        }
        false
    }

    /// Runs the driver until every window is empty (or `deadline`): what async sends
    /// accepted reaches the core's queues before the process stops.
    pub(super) async fn drain(&mut self, deadline: Instant) {
        let empty = |i: &Inner| i.lock().windows.iter().all(|w| w.frames == 0);
        let inner = self.inner.clone();
        let self_inner = &*inner;
        let fut = std::future::poll_fn(|cx| {
            match self.poll_with(cx, |_| {
                if empty(self_inner) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }) {
                Poll::Ready(_) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            }
        });
        let _ = tokio::time::timeout_at(deadline, fut).await;
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        process::set_writable_handler(None, core::ptr::null_mut());
        CURRENT.with_borrow_mut(|c| *c = None);
        LOOP.set((core::ptr::null_mut(), core::ptr::null()));
        frame::flush(&self.inner);
        self.inner.lock().close();
    }
}

/// The core's writable callback: the peer's queue has room again.
unsafe extern "C" fn writable(_ev: *mut mln_event_t, f: *mut mln_fork_t, _data: *mut c_void) {
    let dest = if f.is_null() {
        None
    } else {
        match identity::id_of(f) {
            Some(id) => Some(id),
            None => return,
        }
    };
    CURRENT.with_borrow(|c| {
        if let Some(inner) = c {
            let mut s = inner.lock();
            if let Some(w) = s.windows.get_mut(dest) {
                w.blocked = false;
            }
            s.nudge();
        }
    });
}

/// Runs `f` with this process's driver state, if a driver runs.
pub(super) fn with_current(f: impl FnOnce(&Arc<Inner>)) {
    CURRENT.with_borrow(|c| {
        if let Some(i) = c {
            f(i)
        }
    })
}

/// The core's quit handler in an async worker: the quit notification fires; the worker
/// goes on until its async main returns (1: the core does not exit for it).
pub(super) unsafe extern "C" fn quit(
    _ev: *mut mln_event_t,
    _data: *mut c_void,
) -> core::ffi::c_int {
    with_current(|i| {
        frame::flush(i);
        i.lock().set_quit()
    });
    1
}
