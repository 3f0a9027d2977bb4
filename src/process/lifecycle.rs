//! Lifecycle control (extensions, issue 22): the master's child events, graceful stops
//! with a deadline, rolling restarts, and the worker's side of a stop (its quit handler)
//! and of a rolling restart (its "ready").
//!
//! # Events
//! The layers below queue events in `Proc::events` (`state::Proc::push_event`: STARTED
//! when a handshake completes, EXITED / GAVE_UP when a process is gone, ROLLING_DONE) and
//! wake the loop; [`deliver_events`] hands them to the program's handler from the loop
//! (the wake-up descriptor's callback, and the standalone loop's before-wait hook), never
//! from inside a send, a walk or a fork, outside every borrow, one at a time and in order.
//! The record an event names stays allocated until its delivery (pins).
//!
//! # A graceful stop
//! [`stop`] marks the child (`Chan::stopping`: sends refused with ESRCH, not listed) and
//! does nothing that allocates, so it may run in a signal handler; from the loop,
//! [`arm_stops`] queues the quit frame behind what was queued to it and arms the deadline
//! (`supervise::stop_deadline`: SIGTERM, a second later SIGKILL). The channel keeps
//! reading until the worker closes it: its frames reach the master's handlers, then its
//! end is handled as any end (`supervise`), never restarted.
//!
//! # A rolling restart
//! [`rolling_restart`] lists the plain workers; [`rolling_step`] (a loop timer, never run
//! inside a user callback) forks `batch` replacements from the master as it is now (each
//! takes its predecessor's slot, and announces when its loop runs: [`on_ready`]); a ready
//! replacement retires its predecessor (a graceful stop); when the batch is ready the next
//! one starts. A replacement that dies or is not ready in time aborts the run: the
//! replacements not ready are killed, the old workers not replaced go on.

use super::ending::{rolling_finish, rolling_poke};
use super::flush::{flush_dirty, send_control};
use super::peer::{Phase, QUIT_TYPE, READY_TYPE};
use super::pids::Pidfd;
use super::state::{bump_generation, Child, Peer, Proc, Replacement, Rolling, Stop, PROC};
use super::supervise::{cancel_restarts, close_in};
use super::{fork, ENTRIES};
use crate::abi::*;
use crate::log;
use crate::reactor;
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rolling step due while a user callback runs is retried after this.
const STEP_RETRY: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------
// Handlers (thread-safe to set)
// ---------------------------------------------------------------------------------------

static EVENT_HANDLER: Mutex<(mln_ipc_child_event_handler, usize)> = Mutex::new((None, 0));
static QUIT_HANDLER: Mutex<(mln_ipc_quit_handler, usize)> = Mutex::new((None, 0));

/// `mln_ipc_child_event_handler_set`.
pub(crate) fn set_event_handler(h: mln_ipc_child_event_handler, data: *mut c_void) {
    *EVENT_HANDLER.lock().unwrap_or_else(|e| e.into_inner()) = (h, data as usize);
}

/// `mln_ipc_worker_quit_handler_set`.
pub(crate) fn set_quit_handler(h: mln_ipc_quit_handler, data: *mut c_void) {
    *QUIT_HANDLER.lock().unwrap_or_else(|e| e.into_inner()) = (h, data as usize);
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// Hands the queued child events to the handler, oldest first (loop context, no borrow
/// held). A delivery inside another (a handler that runs the loop) leaves the queue to the
/// outer one, so the order holds.
pub(crate) fn deliver_events(ev: *mut mln_event_t) {
    loop {
        let next = PROC.try_with(|p| {
            if p.delivering || p.dispatch_stopped {
                return None;
            }
            let e = p.events.pop_front()?;
            p.delivering = true;
            p.callbacks += 1;
            Some((e, p.epoch))
        });
        let Some(Some((e, epoch))) = next else { return };
        let (h, data) = *EVENT_HANDLER.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = h {
            // SAFETY: the user's handler with its data, on the loop thread; `e.f` is pinned
            // (allocated until the unpin below) or NULL; the event lives on this stack.
            unsafe { h(ev, e.f.cast(), &e.e, data as *mut c_void) };
        }
        let forked = PROC.with(|p| {
            p.callbacks = p.callbacks.saturating_sub(1);
            p.delivering = false;
            if p.epoch != epoch {
                // The handler forked and we are the new child: the parent's events are
                // not ours (the records are kept until no callback runs).
                return true;
            }
            p.unpin(e.f);
            false
        });
        if forked {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Graceful stop
// ---------------------------------------------------------------------------------------

/// `mln_fork_stop`: `f` NULL stops every child. Allocates nothing and takes no lock, so a
/// signal handler may call it; one that interrupted the library parks the request, which
/// the loop carries out. Err(errno).
pub(crate) fn stop(ev: *mut mln_event_t, f: *mut mln_fork_t, deadline_ms: u32) -> Result<(), i32> {
    if ev.is_null() {
        return Err(libc::EINVAL);
    }
    let deadline = Instant::now() + Duration::from_millis(u64::from(deadline_ms));
    match PROC.try_with(|p| stop_in(p, ev, f, deadline)) {
        Some(r) => r,
        None => park_stop(ev, f, deadline_ms),
    }
}

fn stop_in(
    p: &mut Proc,
    ev: *mut mln_event_t,
    f: *mut mln_fork_t,
    deadline: Instant,
) -> Result<(), i32> {
    if f.is_null() {
        // The list itself, not `children()`: no allocation here.
        let mut c = p.head;
        while !c.is_null() {
            mark_stop(p, ev, c, deadline);
            // SAFETY: list members are live records.
            c = unsafe { (*c).f.next.cast() };
        }
        p.stop_all = true;
    } else {
        let c = p.find_open(f).ok_or(libc::ESRCH)?;
        if !mark_stop(p, ev, c, deadline) {
            return Err(libc::ESRCH);
        }
    }
    p.stops_due = true;
    bump_generation();
    crate::sigsafe::kick();
    Ok(())
}

/// Marks live child `c` as stopping; false if it is already stopping or going.
fn mark_stop(p: &mut Proc, ev: *mut mln_event_t, c: *mut Child, deadline: Instant) -> bool {
    let Some(live) = p.live_of(c) else {
        return false;
    };
    if live.chan.stopping || live.chan.phase == Phase::Closing {
        return false;
    }
    live.chan.stopping = true;
    live.stop = Some(Stop {
        deadline,
        ev,
        armed: false,
        timer: null_mut(),
        termed: false,
        killed: false,
        exit_fd: None,
    });
    true
}

/// Stop requests made by signal handlers that interrupted the library.
struct ParkedStop {
    /// 0 free, 1 being filled, 2 ready.
    state: AtomicU8,
    ev: AtomicPtr<mln_event_t>,
    f: AtomicPtr<mln_fork_t>,
    deadline_ms: AtomicU32,
}

const PARKED_STOPS: usize = 16;
#[allow(clippy::declare_interior_mutable_const)]
const FREE_STOP: ParkedStop = ParkedStop {
    state: AtomicU8::new(0),
    ev: AtomicPtr::new(null_mut()),
    f: AtomicPtr::new(null_mut()),
    deadline_ms: AtomicU32::new(0),
};
static PARKED: [ParkedStop; PARKED_STOPS] = [FREE_STOP; PARKED_STOPS];
/// The parked stop of every child (one is enough).
static PARKED_ALL: ParkedStop = FREE_STOP;
/// Set after a slot became ready: the loop looks at the slots only then (it asks before
/// every wait).
static ANY_PARKED: AtomicBool = AtomicBool::new(false);

fn park_stop(ev: *mut mln_event_t, f: *mut mln_fork_t, deadline_ms: u32) -> Result<(), i32> {
    // A stop of everything already waiting covers this one (a handler that stops on every
    // SIGTERM of a burst asks the same again and again).
    if PARKED_ALL.state.load(Ordering::Acquire) != 0 {
        return Ok(());
    }
    let slots: &[ParkedStop] = if f.is_null() {
        core::slice::from_ref(&PARKED_ALL)
    } else {
        if PARKED
            .iter()
            .any(|s| s.state.load(Ordering::Acquire) == 2 && s.f.load(Ordering::Relaxed) == f)
        {
            // The same child's stop waits already.
            return Ok(());
        }
        &PARKED
    };
    for s in slots {
        if s.state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            s.ev.store(ev, Ordering::Relaxed);
            s.f.store(f, Ordering::Relaxed);
            s.deadline_ms.store(deadline_ms, Ordering::Relaxed);
            s.state.store(2, Ordering::Release);
            ANY_PARKED.store(true, Ordering::Release);
            crate::sigsafe::kick();
            return Ok(());
        }
    }
    if f.is_null() {
        // Being filled by a handler this one interrupted: that one will be carried out.
        return Ok(());
    }
    Err(libc::EAGAIN)
}

/// Carries out the stops parked by signal handlers (loop context, inside a borrow); the
/// deadline counts from now.
fn drain_parked_stops(p: &mut Proc) {
    // Cleared before the walk: a slot made ready during it sets the flag again.
    if !ANY_PARKED.load(Ordering::Relaxed) || !ANY_PARKED.swap(false, Ordering::AcqRel) {
        return;
    }
    for s in PARKED.iter().chain(core::iter::once(&PARKED_ALL)) {
        if s.state.load(Ordering::Acquire) != 2 {
            continue;
        }
        let ev = s.ev.load(Ordering::Relaxed);
        let f = s.f.load(Ordering::Relaxed);
        let ms = s.deadline_ms.load(Ordering::Relaxed);
        s.state.store(0, Ordering::Release);
        let deadline = Instant::now() + Duration::from_millis(u64::from(ms));
        if stop_in(p, ev, f, deadline).is_err() {
            log::debug(format_args!(
                "mln_fork_stop from a signal handler: no such live child"
            ));
        }
    }
}

/// From the loop: the stops asked since the last call get their quit frame (behind
/// everything queued to them before) and their deadline timer; a stop of everything also
/// cancels the pending restarts and aborts a rolling restart.
pub(crate) fn arm_stops(p: &mut Proc) {
    drain_parked_stops(p);
    if !std::mem::take(&mut p.stops_due) {
        return;
    }
    if std::mem::take(&mut p.stop_all) {
        let n = cancel_restarts(p, |_| true);
        if n > 0 {
            log::info(format_args!("{n} pending restart(s) cancelled (stop)"));
        }
        if let Some(r) = p.rolling.as_mut() {
            if r.outcome.is_none() {
                r.outcome = Some(-1);
                r.todo.clear();
                let pending: Vec<u64> = r.current.drain(..).map(|x| x.new_id).collect();
                r.waiting.extend(pending);
            }
            if r.waiting.is_empty() {
                rolling_finish(p, -1);
            }
        }
    }
    for c in p.children() {
        let Some(live) = p.live_of(c) else { continue };
        let ev = live.stop_loop();
        let Some(st) = live.stop.as_mut() else {
            continue;
        };
        if st.armed {
            continue;
        }
        st.armed = true;
        let left = st.deadline.saturating_duration_since(Instant::now());
        if !send_control(p, Peer::Child(c), QUIT_TYPE) {
            log::debug(format_args!(
                "{}: the quit frame of its stop was not queued",
                Peer::Child(c)
            ));
        }
        if ev.is_null() {
            log::warn(format_args!(
                "{}: stopped, but registered on no event loop: no deadline",
                Peer::Child(c)
            ));
            continue;
        }
        let ms = left.as_millis().min(u32::MAX as u128) as u32;
        // SAFETY: a live loop (forgotten when freed); the callback looks `c` up first.
        let t = unsafe { reactor::timer_set(ev, ms, c.cast(), Some(ENTRIES.stop_deadline)) };
        if t.is_null() {
            log::error(format_args!(
                "{}: cannot set the deadline of its stop",
                Peer::Child(c)
            ));
        }
        // SAFETY: a live record.
        let pid = unsafe { (*c).f.pid };
        let ticks = p.live_of(c).and_then(|l| l.start_ticks);
        let exit_fd = Pidfd::open(pid, ticks).filter(|f| {
            f.raw().is_some_and(|fd| {
                // SAFETY: a live loop; the callback looks `c` up first.
                unsafe {
                    reactor::fd_set(
                        ev,
                        fd,
                        M_EV_RECV,
                        M_EV_UNLIMITED,
                        c.cast(),
                        Some(ENTRIES.stop_exited),
                    ) == 0
                }
            })
        });
        if let Some(st) = p.live_of(c).and_then(|l| l.stop.as_mut()) {
            st.timer = t;
            st.exit_fd = exit_fd;
        }
        log::info(format_args!(
            "child {pid}: graceful stop, deadline in {} ms",
            left.as_millis()
        ));
    }
    p.publish();
}

// ---------------------------------------------------------------------------------------
// Rolling restart
// ---------------------------------------------------------------------------------------

/// `mln_fork_rolling_restart`. Err(errno).
pub(crate) fn rolling_restart(
    ev: *mut mln_event_t,
    batch: u32,
    ready_timeout_ms: u32,
    deadline_ms: u32,
) -> Result<(), i32> {
    if ev.is_null() || batch == 0 || ready_timeout_ms == 0 {
        return Err(libc::EINVAL);
    }
    PROC.with(|p| {
        if p.rolling.is_some() {
            return Err(libc::EBUSY);
        }
        let mut todo = VecDeque::new();
        for c in p.children() {
            // SAFETY: a live record.
            let id = unsafe { (*c).id };
            let Some(live) = p.live_of(c) else { continue };
            if live.plan.args.is_none()
                && !live.chan.stopping
                && !live.replacing
                && !live.chan.phase.ended()
            {
                todo.push_back((c, id));
            }
        }
        log::info(format_args!(
            "rolling restart of {} worker(s), {batch} at a time",
            todo.len()
        ));
        p.rolling = Some(Box::new(Rolling {
            ev,
            batch,
            ready_timeout: Duration::from_millis(u64::from(ready_timeout_ms)),
            deadline_ms,
            todo,
            current: Vec::new(),
            waiting: Vec::new(),
            timer: null_mut(),
            ready_by: None,
            failed: false,
            outcome: None,
        }));
        rolling_poke(p, Duration::ZERO);
        if p.rolling.as_ref().is_some_and(|r| r.timer.is_null()) {
            p.rolling = None;
            return Err(libc::ENOMEM);
        }
        Ok(())
    })
}

/// The rolling restart's step timer fired.
pub(crate) fn rolling_step(ev: *mut mln_event_t) {
    let batch = PROC.with(|p| {
        let now = Instant::now();
        let r = p.rolling.as_mut()?;
        r.timer = null_mut();
        if r.outcome.is_some() {
            return None;
        }
        // Never fork inside a user callback (see `supervise::restart_fired`).
        if p.callbacks > 0 || reactor::dispatching().unwrap_or(0) > 1 {
            rolling_poke(p, STEP_RETRY);
            return None;
        }
        let r = p.rolling.as_mut()?;
        let late = r.ready_by.is_some_and(|t| now >= t) && !r.current.is_empty();
        if r.failed || late {
            abort(p, late);
            return None;
        }
        if !r.current.is_empty() {
            let left = r.ready_by.map_or(STEP_RETRY, |t| t - now);
            rolling_poke(p, left);
            return None;
        }
        let mut plans = Vec::new();
        while plans.len() < r.batch as usize {
            let Some((c, id)) = r.todo.pop_front() else {
                break;
            };
            plans.push((c, id));
        }
        let mut forks = Vec::new();
        for (c, id) in plans {
            // SAFETY: records stay allocated while listed as live; tombstones are kept.
            let same = p.find(c.cast()).is_some() && unsafe { (*c).id } == id;
            let Some(live) = p.live_of(c).filter(|_| same) else {
                // Ended meanwhile: supervision restarted its slot from the master as it
                // is now already.
                continue;
            };
            if live.chan.stopping || live.chan.phase.ended() {
                continue;
            }
            let mut plan = live.plan.copy();
            plan.quick_deaths = 0;
            forks.push((plan, c, id));
        }
        let r = p.rolling.as_mut()?;
        if forks.is_empty() && r.todo.is_empty() {
            r.outcome = Some(0);
            if r.waiting.is_empty() {
                rolling_finish(p, 0);
            }
            return None;
        }
        if forks.is_empty() {
            rolling_poke(p, Duration::ZERO);
            return None;
        }
        r.ready_by = Some(now + r.ready_timeout);
        flush_dirty(p);
        Some(forks)
    });
    let Some(forks) = batch else { return };
    for (plan, _old, _old_id) in forks {
        let slot = plan.slot;
        let go = PROC.with(|p| {
            // A stop of everything (a signal handler) or an abort since the batch began:
            // no more forks.
            let go = !p.stop_all && p.rolling.as_ref().is_some_and(|r| r.outcome.is_none());
            p.announce_ready = go;
            go
        });
        if !go {
            break;
        }
        let r = fork::start(ev, plan);
        if let Ok(fork::Forked::Child) = r {
            // We are the replacement, inside the master's loop: leave it, as a restarted
            // child does (`supervise::restart_fired`); our loop will say when it runs.
            PROC.with(|p| p.restarted = true);
            // SAFETY: the loop we are dispatching.
            unsafe { reactor::break_set(ev) };
            return;
        }
        PROC.with(|p| {
            p.announce_ready = false;
            match r {
                Ok(_) => {
                    let c = p.tail;
                    // SAFETY: the record `fork::start` just appended.
                    let new_id = unsafe { (*c).id };
                    if let Some(live) = p.live_of(c) {
                        live.replacing = true;
                    }
                    if let Some(r) = p.rolling.as_mut() {
                        r.current.push(Replacement {
                            new: c,
                            new_id,
                            slot,
                        });
                    }
                }
                Err(e) => {
                    log::error(format_args!(
                        "rolling restart: cannot start the replacement of slot {slot}: {e}"
                    ));
                    super::ending::rolling_failed(p);
                }
            }
        });
    }
    PROC.with(|p| {
        let left = p
            .rolling
            .as_ref()
            .and_then(|r| r.ready_by)
            .map_or(Duration::ZERO, |t| {
                t.saturating_duration_since(Instant::now())
            });
        if p.rolling.as_ref().is_some_and(|r| r.failed) {
            rolling_poke(p, Duration::ZERO);
        } else {
            rolling_poke(p, left);
        }
    });
}

/// Aborts the rolling restart: the replacements not ready are killed; ROLLING_DONE -1
/// comes after their ends.
fn abort(p: &mut Proc, late: bool) {
    let Some(r) = p.rolling.as_mut() else { return };
    let ev = r.ev;
    r.outcome = Some(-1);
    r.todo.clear();
    let pending = std::mem::take(&mut r.current);
    log::error(format_args!(
        "rolling restart aborted: {}",
        if late {
            "a replacement was not ready in time"
        } else {
            "a replacement ended before it was ready"
        }
    ));
    // Every replacement still live is waited for before any is closed: the end of the
    // first one may be handled at once, and must not find the run's list already empty.
    // SAFETY: records stay allocated while listed as live.
    let live: Vec<Replacement> = pending
        .into_iter()
        .filter(|x| p.find(x.new.cast()).is_some() && unsafe { (*x.new).id } == x.new_id)
        .collect();
    if let Some(r) = p.rolling.as_mut() {
        r.waiting.extend(live.iter().map(|x| x.new_id));
    }
    for x in live {
        // SAFETY: a live record.
        let pid = unsafe { (*x.new).f.pid };
        let Some(live) = p.live_of(x.new) else {
            continue;
        };
        live.killed = true;
        let ticks = live.start_ticks;
        if let Some(fd) = Pidfd::open(pid, ticks) {
            fd.kill();
        }
        close_in(p, ev, x.new, "rolling restart aborted: killed");
    }
    if p.rolling.as_ref().is_some_and(|r| r.waiting.is_empty()) {
        rolling_finish(p, -1);
    }
}

/// The ready frame of child `c` arrived (its loop runs). A rolling replacement retires its
/// predecessor now; the next batch starts when the batch is ready.
pub(crate) fn on_ready(p: &mut Proc, c: *mut Child) {
    let Some(live) = p.live_of(c) else { return };
    live.ready = true;
    if !live.replacing {
        return;
    }
    live.replacing = false;
    let Some(r) = p.rolling.as_mut() else { return };
    let Some(i) = r.current.iter().position(|x| x.new == c) else {
        return;
    };
    let x = r.current.swap_remove(i);
    let (ev, deadline_ms, batch_done) = (r.ev, r.deadline_ms, r.current.is_empty());
    retire_slot(p, ev, x.slot, c, deadline_ms);
    if batch_done {
        rolling_poke(p, Duration::ZERO);
    }
}

/// Stops (gracefully) every child of `slot` but `keep`, and makes sure nothing restarts the
/// slot: a replacement took it.
fn retire_slot(p: &mut Proc, ev: *mut mln_event_t, slot: u32, keep: *mut Child, deadline_ms: u32) {
    let deadline = Instant::now() + Duration::from_millis(u64::from(deadline_ms));
    for c in p.children() {
        if c == keep {
            continue;
        }
        let Some(live) = p.live_of(c) else { continue };
        if live.plan.slot != slot || live.plan.args.is_some() {
            continue;
        }
        // SAFETY: a live record.
        let id = unsafe { (*c).id };
        if mark_stop(p, ev, c, deadline) {
            if let Some(r) = p.rolling.as_mut() {
                r.waiting.push(id);
            }
            p.stops_due = true;
        }
    }
    cancel_restarts(p, |pl| pl.slot == slot && pl.args.is_none());
    bump_generation();
    arm_stops(p);
}

// ---------------------------------------------------------------------------------------
// The worker's side
// ---------------------------------------------------------------------------------------

/// In a worker: the ready timer fired (its loop runs): tell the master, if this worker is
/// a rolling replacement.
pub(crate) fn ready_fired() {
    PROC.with(|p| {
        if p.is_worker && p.announce_ready && !p.ready_sent {
            p.ready_sent = true;
            send_control(p, Peer::Master, READY_TYPE);
            flush_dirty(p);
        }
    })
}

/// In a worker: its master stops it gracefully. Runs the quit handler (a user callback);
/// unless it returns 1, the worker exits with status 0 once its queue is written.
pub(crate) fn on_quit(ev: *mut mln_event_t) {
    let (h, data) = *QUIT_HANDLER.lock().unwrap_or_else(|e| e.into_inner());
    log::info(format_args!("stop asked by the master"));
    let r: c_int = match h {
        Some(h) => {
            let epoch = PROC.with(|p| {
                p.callbacks += 1;
                p.epoch
            });
            // SAFETY: the user's handler with its data, on the loop thread.
            let r = unsafe { h(ev, data as *mut c_void) };
            let forked = PROC.with(|p| {
                p.callbacks = p.callbacks.saturating_sub(1);
                p.epoch != epoch
            });
            if forked {
                return;
            }
            r
        }
        None => 0,
    };
    if r != 1 {
        PROC.with(|p| p.quit_exit = true);
    }
}

/// In a worker whose quit handler said to exit: exits with status 0 once its queue to the
/// master is written (or the master is gone). Called by the loop entry points, outside
/// every borrow.
pub(crate) fn quit_check() {
    let go = PROC.try_with(|p| {
        p.quit_exit
            && p.master()
                .chan
                .as_ref()
                .is_none_or(|c| c.ch.tx.is_empty() || c.phase.ended())
    });
    if go == Some(true) {
        log::info(format_args!("stopped by the master: exiting with status 0"));
        super::fork::flush_stdio();
        std::process::exit(0)
    }
}
