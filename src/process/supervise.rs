//! Deaths and supervision: closing a child, making sure its process is gone, restarting
//! it (with backoff, from the loop), and a worker's exit when its master is gone.
//!
//! # A child's end
//! 1. [`close_child`] (end of stream, a protocol error, or `mln_fork_socketpair_close_handler`)
//!    removes the child from the list at once (its record becomes a tombstone, see
//!    `state`), unregisters and closes its channel, and counts what was still queued to it.
//!    Inside one of its own receive passes this waits until the pass ends.
//! 2. The process must be gone before a replacement starts (a child that merely closed its
//!    end must not live on beside its replacement, D13). A pidfd is opened only now (so a
//!    child costs one descriptor while it lives), after checking that the pid still names
//!    our child (`pids`: waitid, and its kernel start time; a child whose state cannot be
//!    read, e.g. with no descriptor left, is alive); if the process is still running it gets
//!    [`EXIT_GRACE`] to exit by itself (a worker that closes its channel to stop), then
//!    SIGKILL.
//! 3. A supervised child is then restarted from its loop, by a timer: at once for the first
//!    quick death, then after a delay that doubles from [`BACKOFF_FIRST`] to [`BACKOFF_MAX`]
//!    while it keeps dying within [`STABLE_UPTIME`] of its start (D7). The restart never
//!    happens inside a user callback: a timer that fires while one runs (a handler that
//!    runs the loop) waits for it to return. So no master code ever runs in a new worker
//!    (Melon forks in place, inside whatever callback saw the death).

use super::ending::{how_ended, policy_exceeded, rolling_failed, rolling_note_end};
use super::flush::flush_dirty;
use super::peer::{Phase, HANDSHAKE_DEADLINE};
use super::pids::{status_of, Pidfd, Status, POLL_INTERVAL};
use super::state::{label, Dying, Ending, Peer, PendingRestart, Plan, Proc, PROC};
use super::{fork, ENTRIES};
use crate::abi::*;
use crate::log;
use crate::reactor;
use core::ptr::null_mut;
use std::time::{Duration, Instant};

pub(crate) const STABLE_UPTIME: Duration = Duration::from_secs(1);
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long a child whose channel closed may take to exit by itself.
pub(crate) const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for a SIGKILLed child to go.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(2);
/// Between SIGTERM at a graceful stop's deadline and SIGKILL.
pub(crate) const TERM_TO_KILL: Duration = Duration::from_secs(1);
/// A restart due while a user callback runs is retried after this.
const RESTART_RETRY: Duration = Duration::from_millis(10);

/// Delay before the restart that follows the `quick`-th quick death in a row.
pub(crate) fn backoff_delay(quick: u32) -> Duration {
    if quick <= 1 {
        return Duration::ZERO;
    }
    let exp = (quick - 2).min(16);
    (BACKOFF_FIRST * (1u32 << exp)).min(BACKOFF_MAX)
}

/// The worker's master is gone: exit with status 127 (Melon's rule), unless this process
/// adopted its connection asking for its loop `ev` to end instead (`adopt`).
pub(crate) fn master_gone(ev: *mut mln_event_t, why: &str) {
    if super::adopt::end_loop_instead(ev, why) {
        return;
    }
    log::info(format_args!(
        "connection to the master closed ({why}; the master stopped or died): exiting with status 127"
    ));
    if let Some(h) = super::settings::exit_hook() {
        h();
    }
    std::process::exit(127)
}

/// `mln_fork_socketpair_close_handler` and every death path of a child. `ev_hint` is the
/// loop to restart on when the child was registered on none.
pub(crate) fn close_child(ev_hint: *mut mln_event_t, c: *mut super::state::Child, why: &str) {
    PROC.with(|p| close_in(p, ev_hint, c, why));
}

pub(crate) fn close_in(
    p: &mut Proc,
    ev_hint: *mut mln_event_t,
    c: *mut super::state::Child,
    why: &str,
) {
    let peer = Peer::Child(c);
    let Some(ch) = p.chan(peer) else { return };
    if ch.busy > 0 {
        // Its frames are being dispatched: finish that first (the pass closes it). Nothing
        // more is read meanwhile, so the loop stops watching it now (a nested dispatch
        // would otherwise spin on a readable socket no pass reads).
        if ch.phase != Phase::Closing && !ch.ev.is_null() {
            // SAFETY: the channel's loop is live (forgotten when freed); a CLR inside that
            // fd's own handler is allowed.
            unsafe { reactor::fd_clear(ch.ev, ch.ch.raw()) };
            ch.send_armed = false;
        }
        if ch.phase.advance(Phase::Closing) {
            super::state::bump_generation();
        }
        ch.pending_why.get_or_insert_with(|| why.to_string());
        return;
    }
    // SAFETY: `c` is a live record (its channel was found).
    let pid = unsafe { (*c).f.pid };
    let Some(mut live) = p.bury(c) else { return };
    let starting = live.chan.phase == Phase::Handshake;
    let requested = live.chan.requested;
    live.cancel_timers();
    let live = *live;
    if live.replacing {
        // A rolling restart's replacement that never became ready: that run is aborted,
        // and ends after this child's EXITED.
        // SAFETY: a tombstone now, allocated.
        let id = unsafe { (*c).id };
        if let Some(r) = p.rolling.as_mut() {
            r.waiting.push(id);
        }
        rolling_failed(p);
    }
    if !p.overfull.is_empty() {
        super::flush::recheck_overfull(p);
    }
    p.dirty.retain(|&d| d != peer);
    let chan = live.chan;
    if !chan.ev.is_null() {
        // SAFETY: the channel's loop is live (forgotten when freed); a CLR inside that
        // fd's own handler is allowed.
        unsafe { reactor::fd_clear(chan.ev, chan.ch.raw()) };
    }
    let ev = if chan.ev.is_null() { ev_hint } else { chan.ev };
    let lost = chan.ch.tx.queued_frames();
    let fds_lost = chan.ch.tx.queued_fds() as u64;
    if fds_lost > 0 {
        log::warn(format_args!(
            "{}: {fds_lost} descriptor(s) queued to it closed unsent",
            Peer::Child(c)
        ));
    }
    let who = label(pid, &live.plan);
    p.pin(c);
    let stop = live.stop.as_ref();
    let end = Ending {
        who,
        why: why.to_string(),
        lost,
        record: c,
        slot: live.plan.slot,
        pid,
        restarts: live.plan.restarts,
        asked: requested || stop.is_some(),
        term_at: stop.map(|s| s.deadline),
        termed: stop.is_some_and(|s| s.termed),
        killed: live.killed || stop.is_some_and(|s| s.killed),
    };
    // Stopped children and replacements that never became ready are not restarted.
    let supervised = live.plan.stype == M_PST_SUP && live.stop.is_none() && !live.replacing;
    // The descriptor closes here.
    drop(chan);
    let mut plan = live.plan;
    plan.fds_lost += fds_lost;
    let restart = if supervised {
        // A child that never completed its handshake died quickly, however long it took;
        // one the program closed did not die: its replacement keeps the count as it was.
        plan.quick_deaths = if starting || (!requested && live.started.elapsed() < STABLE_UPTIME) {
            plan.quick_deaths + 1
        } else if requested {
            plan.quick_deaths
        } else {
            0
        };
        Some(plan)
    } else {
        None
    };
    watch_exit(p, ev, pid, live.start_ticks, end, restart);
}

/// The handshake deadline of child `c` passed: if it is still starting, it is closed (and
/// killed after the grace) as a quick death.
pub(crate) fn handshake_expired(ev: *mut mln_event_t, c: *mut super::state::Child) {
    PROC.with(|p| {
        let Some(c) = p.find(c.cast()) else { return };
        let Some(live) = p.live_of(c) else { return };
        live.handshake_timer = null_mut();
        if live.chan.phase == Phase::Handshake {
            let why = format!(
                "no fork handshake within {} s",
                HANDSHAKE_DEADLINE.as_secs()
            );
            close_in(p, ev, c, &why);
        }
    })
}

/// The handshake byte of child `c` was read: it is live.
pub(crate) fn handshake_done(p: &mut Proc, c: *mut super::state::Child) {
    // SAFETY: `c` is a live record (the caller found its channel).
    let pid = unsafe { (*c).f.pid };
    let Some(live) = p.live_of(c) else { return };
    if !live.chan.phase.advance(Phase::Live) {
        return;
    }
    live.cancel_handshake();
    log::info(format_args!("{} started", label(pid, &live.plan)));
    p.push_started(c);
}

/// A child being stopped exited and its pass delivered what it sent: if its channel is
/// still open (a process it forked holds the other end), it is closed now.
pub(crate) fn stop_exited(ev: *mut mln_event_t, c: *mut super::state::Child) {
    PROC.with(|p| {
        if p.find(c.cast()).is_some() {
            close_in(p, ev, c, HELD_OPEN);
        }
    })
}

/// Why a stopped child that exited is closed although its channel is still open.
const HELD_OPEN: &str = "exited; a process it started still holds its end of the channel";

/// A graceful stop's deadline timer of live child `c` fired: SIGTERM, and a second later
/// SIGKILL; if its channel still has not closed [`KILL_WAIT`] after that (a descendant
/// holds its end), it is closed.
pub(crate) fn stop_deadline(c: *mut super::state::Child) {
    PROC.with(|p| {
        let Some(c) = p.find(c.cast()) else { return };
        // SAFETY: a live record.
        let pid = unsafe { (*c).f.pid };
        let Some(live) = p.live_of(c) else { return };
        let ev = live.stop_loop();
        let ticks = live.start_ticks;
        let Some(st) = live.stop.as_mut() else { return };
        st.timer = null_mut();
        let (sig, next) = if !st.termed {
            st.termed = true;
            (Some(libc::SIGTERM), Some(TERM_TO_KILL))
        } else if !st.killed {
            st.killed = true;
            (Some(libc::SIGKILL), Some(KILL_WAIT))
        } else {
            (None, None)
        };
        if let Some(sig) = sig {
            match Pidfd::open(pid, ticks) {
                Some(fd) if !fd.exited() => fd.signal(sig),
                _ => {
                    // It exited by itself (without a pidfd to tell us sooner), and a
                    // process it forked holds its channel: no signal for it.
                    // The signal just marked as sent was not.
                    if let Some(st) = p.live_of(c).and_then(|l| l.stop.as_mut()) {
                        if sig == libc::SIGTERM {
                            st.termed = false;
                        } else {
                            st.killed = false;
                        }
                    }
                    return close_in(p, ev, c, HELD_OPEN);
                }
            }
        }
        match next {
            Some(wait) if !ev.is_null() => {
                let ms = wait.as_millis() as u32;
                // SAFETY: `ev` is live (forgotten when freed); the callback looks `c` up.
                let t =
                    unsafe { reactor::timer_set(ev, ms, c.cast(), Some(ENTRIES.stop_deadline)) };
                if let Some(st) = p.live_of(c).and_then(|l| l.stop.as_mut()) {
                    st.timer = t;
                }
            }
            Some(_) => {}
            None => close_in(p, ev, c, "still connected after SIGKILL"),
        }
    })
}

/// Step 2: waits (from the loop) until `pid` is gone, then step 3.
fn watch_exit(
    p: &mut Proc,
    ev: *mut mln_event_t,
    pid: i32,
    start_ticks: Option<u64>,
    mut end: Ending,
    plan: Option<Plan>,
) {
    let Some(pidfd) = Pidfd::open(pid, start_ticks) else {
        // Gone already (auto-reaped) or no longer ours.
        return gone(p, ev, end, status_of(pid), plan);
    };
    if pidfd.exited() {
        return gone(p, ev, end, status_of(pid), plan);
    }
    if ev.is_null() {
        pidfd.kill();
        pidfd.wait(KILL_WAIT);
        end.killed = true;
        return gone(p, ev, end, status_of(pid), plan);
    }
    let first = first_wait(&end);
    let d = Box::into_raw(Box::new(Dying {
        pid,
        pidfd: None,
        ev,
        timer: null_mut(),
        deadline: Instant::now(),
        end,
        plan,
    }));
    // SAFETY: `ev` is a live loop; `d` stays allocated until `finish_dying`.
    unsafe {
        let fd = pidfd.raw();
        (*d).pidfd = Some(pidfd);
        (*d).timer = arm(d, first);
        let watched = match fd {
            Some(fd) => {
                reactor::fd_set(
                    ev,
                    fd,
                    M_EV_RECV,
                    M_EV_UNLIMITED,
                    d.cast(),
                    Some(ENTRIES.exit_ready),
                ) == 0
            }
            // No pidfd: the timer polls.
            None => true,
        };
        if !watched || (*d).timer.is_null() {
            // Cannot wait on this loop: kill and move on.
            let mut d = Box::from_raw(d);
            if !d.timer.is_null() {
                reactor::timer_cancel(ev, d.timer);
            }
            if let Some(f) = &d.pidfd {
                if let Some(fd) = f.raw() {
                    reactor::fd_clear(ev, fd);
                }
                f.kill();
                f.wait(KILL_WAIT);
                d.end.killed = true;
            }
            let Dying { pid, end, plan, .. } = *d;
            return gone(p, ev, end, status_of(pid), plan);
        }
    }
    p.dying.push(d);
}

/// How long a closed child may take before the next signal: until its stop's deadline
/// (then SIGTERM), [`TERM_TO_KILL`] after SIGTERM, [`KILL_WAIT`] after SIGKILL, otherwise
/// [`EXIT_GRACE`] (then SIGKILL).
fn first_wait(end: &Ending) -> Duration {
    if end.killed {
        KILL_WAIT
    } else if end.termed {
        TERM_TO_KILL
    } else if let Some(t) = end.term_at {
        t.saturating_duration_since(Instant::now())
    } else {
        EXIT_GRACE
    }
}

/// The timer of dying child `d` for a wait of `wait`: with a pidfd, one timer at the end
/// (its readiness ends the wait sooner); without, a timer that checks every
/// `POLL_INTERVAL` until `deadline`. NULL if the loop refused it.
///
/// # Safety
/// `d` is a live `Dying` whose loop is live.
unsafe fn arm(d: *mut Dying, wait: Duration) -> *mut mln_event_timer_t {
    // SAFETY: caller contract.
    unsafe {
        (*d).deadline = Instant::now() + wait;
        if (*d).pidfd.as_ref().is_some_and(|f| f.raw().is_none()) {
            return poll_timer(d, wait);
        }
        let ms = wait.as_millis() as u32;
        reactor::timer_set((*d).ev, ms, d.cast(), Some(ENTRIES.exit_timeout))
    }
}

/// Without a pidfd: the timer of `d`'s next check, `POLL_INTERVAL` from now or at the end
/// of the `left` that remains of its wait, whichever comes first. NULL if refused.
///
/// # Safety
/// As [`arm`].
unsafe fn poll_timer(d: *mut Dying, left: Duration) -> *mut mln_event_timer_t {
    let ms = left.min(POLL_INTERVAL).as_millis().max(1) as u32;
    // SAFETY: caller contract.
    unsafe { reactor::timer_set((*d).ev, ms, d.cast(), Some(ENTRIES.exit_poll)) }
}

/// Without a pidfd: a dying child's periodic check.
pub(crate) fn dying_poll(d: *mut Dying) {
    enum Seen {
        Gone,
        Due,
        Waiting,
    }
    let seen = PROC.with(|p| {
        if !p.dying.contains(&d) {
            return Seen::Waiting;
        }
        // SAFETY: listed, so live; the timer that fired is gone.
        unsafe {
            (*d).timer = null_mut();
            if (*d).pidfd.as_ref().is_none_or(|f| f.exited()) {
                return Seen::Gone;
            }
            let left = (*d).deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Seen::Due;
            }
            (*d).timer = poll_timer(d, left);
            if (*d).timer.is_null() {
                Seen::Due
            } else {
                Seen::Waiting
            }
        }
    });
    match seen {
        Seen::Gone => dying_ready(d),
        Seen::Due => dying_timeout(d),
        Seen::Waiting => {}
    }
}

/// The pidfd of a dying child became readable: it is gone.
pub(crate) fn dying_ready(d: *mut Dying) {
    PROC.with(|p| {
        let Some(i) = p.dying.iter().position(|&x| x == d) else {
            return;
        };
        p.dying.swap_remove(i);
        // SAFETY: removed from the list: we own it now.
        let d = unsafe { Box::from_raw(d) };
        let status = status_of(d.pid);
        finish_dying(p, *d, status);
    })
}

/// A dying child's wait ran out: its stop's deadline (SIGTERM), the grace or the second
/// after SIGTERM (SIGKILL), or the wait after SIGKILL (given up).
pub(crate) fn dying_timeout(d: *mut Dying) {
    PROC.with(|p| {
        let Some(i) = p.dying.iter().position(|&x| x == d) else {
            return;
        };
        // SAFETY: listed, so live; the timer that fired is gone.
        unsafe {
            (*d).timer = null_mut();
            let end = &mut (*d).end;
            if !end.killed {
                let term = end.term_at.is_some() && !end.termed;
                if let Some(f) = &(*d).pidfd {
                    f.signal(if term { libc::SIGTERM } else { libc::SIGKILL });
                }
                let wait = if term {
                    end.termed = true;
                    TERM_TO_KILL
                } else {
                    end.killed = true;
                    KILL_WAIT
                };
                (*d).timer = arm(d, wait);
                if !(*d).timer.is_null() {
                    return;
                }
            }
        }
        p.dying.swap_remove(i);
        // SAFETY: removed from the list: we own it now.
        let d = unsafe { Box::from_raw(d) };
        log::error(format_args!(
            "{}: still there after SIGKILL; not waiting any longer",
            d.end.who
        ));
        finish_dying(p, *d, Status::Unknown);
    })
}

fn finish_dying(p: &mut Proc, mut d: Dying, status: Status) {
    // SAFETY: the loop the watch was registered on (forgotten when freed).
    unsafe {
        if !d.timer.is_null() {
            reactor::timer_cancel(d.ev, d.timer);
        }
        if let Some(fd) = d.pidfd.as_ref().and_then(|f| f.raw()) {
            reactor::fd_clear(d.ev, fd);
        }
    }
    d.pidfd = None;
    let ev = d.ev;
    let Dying { end, plan, .. } = d;
    gone(p, ev, end, status, plan);
}

/// Step 3: the process is gone. One line says who, how it ended, why its channel closed,
/// what was lost and what happens next; the EXITED event says the same to the program; a
/// supervised child is restarted, unless the restart policy gives its slot up.
fn gone(p: &mut Proc, ev: *mut mln_event_t, end: Ending, status: Status, plan: Option<Plan>) {
    let how = how_ended(&end, status);
    let (exited, code) = match status {
        Status::Exited(c) => (1, c),
        Status::Signaled(s, _) => (0, s),
        Status::Unknown => (-1, -1),
    };
    let mut e = mln_ipc_child_event_t {
        r#type: M_IPC_CHILD_EXITED,
        slot: end.slot,
        pid: end.pid,
        how,
        exited,
        status: code,
        restarts: end.restarts.min(u32::MAX as u64) as u32,
        restart_in_ms: -1,
        frames_lost: end.lost as u64,
    };
    let Ending {
        who,
        why,
        lost,
        record,
        ..
    } = end;
    let lost = if lost > 0 {
        format!(", {lost} queued frame(s) to it lost")
    } else {
        String::new()
    };
    let status = match (how, status) {
        (M_IPC_END_KILLED, Status::Unknown) => "killed by SIGKILL".to_string(),
        (M_IPC_END_KILLED, s) => format!("{s} (it had not exited on its own)"),
        (_, s) => s.to_string(),
    };
    let mut gave_up = false;
    match plan {
        None => {
            if how == M_IPC_END_STOPPED {
                log::info(format_args!("{who} {status}: stopped"));
            } else if how == M_IPC_END_CRASHED {
                log::warn(format_args!(
                    "{who} {status} ({why}){lost}; not supervised: not restarted"
                ));
            } else {
                log::warn(format_args!("{who} {status} ({why}){lost}; not restarted"));
            }
            p.push_event(e, record);
        }
        Some(_) if ev.is_null() => {
            log::warn(format_args!(
                "{who} {status} ({why}){lost}; not restarted: it was registered on no event loop"
            ));
            p.push_event(e, record);
        }
        Some(mut plan) => {
            if let Some((n, period)) = policy_exceeded(&mut plan) {
                log::error(format_args!(
                    "{who} {status} ({why}){lost}; slot {} given up: {n} restart(s) within {} ms \
                     (restart policy)",
                    e.slot,
                    period.as_millis()
                ));
                p.push_event(e, record);
                gave_up = true;
            } else {
                let delay = backoff_delay(plan.quick_deaths);
                log::warn(format_args!(
                    "{who} {status} ({why}){lost}; restarting in {} ms",
                    delay.as_millis()
                ));
                e.restart_in_ms = delay.as_millis().min(i64::MAX as u128) as i64;
                p.push_event(e, record);
                plan.restarts += 1;
                schedule_restart(p, ev, plan, delay);
            }
        }
    }
    if gave_up {
        e.r#type = M_IPC_CHILD_GAVE_UP;
        e.how = 0;
        e.exited = 0;
        e.status = 0;
        e.frames_lost = 0;
        p.push_event(e, record);
    }
    // SAFETY: pinned by `close_in`, so allocated.
    let id = unsafe { (*record).id };
    // The pin of the close: the events hold their own.
    p.unpin(record);
    rolling_note_end(p, id);
}

/// Cancels the pending restarts whose plan `which` selects (their timers too), and takes
/// such plans from the exit watches, so nothing restarts them (a stop of everything, the
/// slot a rolling replacement took, the orderly end). How many restarts were cancelled.
pub(crate) fn cancel_restarts(p: &mut Proc, which: impl Fn(&Plan) -> bool) -> usize {
    let (cancel, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut p.restarts)
        .into_iter()
        // SAFETY: listed records are live boxes.
        .partition(|&r| which(unsafe { &(*r).plan }));
    p.restarts = keep;
    let n = cancel.len();
    for r in cancel {
        // SAFETY: unlisted above, freed once; its timer is pending on its loop.
        let r = unsafe { Box::from_raw(r) };
        // SAFETY: as above.
        unsafe { reactor::timer_cancel(r.ev, r.timer) };
    }
    for &d in &p.dying {
        // SAFETY: listed records are live boxes.
        let plan = unsafe { &mut (*d).plan };
        if plan.as_ref().is_some_and(&which) {
            *plan = None;
        }
    }
    n
}

pub(crate) fn schedule_restart(p: &mut Proc, ev: *mut mln_event_t, plan: Plan, delay: Duration) {
    let rec = Box::into_raw(Box::new(PendingRestart {
        ev,
        timer: null_mut(),
        plan,
    }));
    let ms = delay.as_millis().min(u32::MAX as u128) as u32;
    // SAFETY: `ev` is a live loop (a channel's, forgotten when freed).
    let t = unsafe { reactor::timer_set(ev, ms, rec.cast(), Some(ENTRIES.restart_fired)) };
    if t.is_null() {
        // SAFETY: never shared.
        drop(unsafe { Box::from_raw(rec) });
        log::error(format_args!(
            "cannot set a restart timer on the loop; the child is not restarted"
        ));
        return;
    }
    // SAFETY: `rec` is live until its timer fires or it is dropped.
    unsafe { (*rec).timer = t };
    p.restarts.push(rec);
}

/// A restart timer fired.
pub(crate) fn restart_fired(ev: *mut mln_event_t, rec: *mut PendingRestart) {
    let due = PROC.with(|p| {
        let i = p.restarts.iter().position(|&r| r == rec)?;
        p.restarts.swap_remove(i);
        // SAFETY: removed from the list: we own it now.
        let r = unsafe { Box::from_raw(rec) };
        if p.dispatch_stopped {
            // The process is stopping: nobody is restarted any more.
            return None;
        }
        // Never fork inside a user callback (a handler running the loop, or a loop - this
        // one or another, e.g. a temporary loop - run from a callback): try again when it
        // has returned.
        if p.callbacks > 0 || reactor::dispatching().unwrap_or(0) > 1 {
            schedule_restart(p, ev, r.plan, RESTART_RETRY);
            return None;
        }
        flush_dirty(p);
        Some(r.plan)
    });
    let Some(plan) = due else { return };
    let retry = plan.copy();
    match fork::start(ev, plan) {
        Ok(fork::Forked::Parent) => {}
        Ok(fork::Forked::Child) => {
            // We are the new worker, inside the master's loop: leave it; the framework
            // (or `Builder::run`) then runs the worker routine (spec §5).
            PROC.with(|p| p.restarted = true);
            // SAFETY: the loop we are dispatching.
            unsafe { reactor::break_set(ev) };
        }
        Err(e) => {
            let mut retry = retry;
            retry.quick_deaths = retry.quick_deaths.max(1) + 1;
            let delay = backoff_delay(retry.quick_deaths);
            log::error(format_args!(
                "restart failed: {e}; trying again in {} ms",
                delay.as_millis()
            ));
            let failed = mln_ipc_child_event_t {
                r#type: M_IPC_CHILD_RESTART_FAILED,
                slot: retry.slot,
                status: e.raw_os_error().unwrap_or(-1),
                restarts: retry.restarts.min(u32::MAX as u64) as u32,
                restart_in_ms: delay.as_millis().min(i64::MAX as u128) as i64,
                ..Default::default()
            };
            PROC.with(|p| {
                schedule_restart(p, ev, retry, delay);
                p.push_event(failed, null_mut());
            });
        }
    }
}

#[cfg(feature = "standalone")]
/// Forgets everything tied to loop `ev` (it is being freed): registrations, timers;
/// restarts due on it and exit watches (the process killed now) move to another loop the
/// core watches, if there is one.
pub(crate) fn forget_loop(p: &mut Proc, ev: *mut mln_event_t) {
    for c in p.children() {
        if let Some(ch) = p.chan(Peer::Child(c)) {
            if ch.ev == ev {
                ch.ev = null_mut();
                ch.send_armed = false;
            }
        }
    }
    if let Some(ch) = p.chan(Peer::Master) {
        if ch.ev == ev {
            ch.ev = null_mut();
            ch.send_armed = false;
        }
    }
    p.wake_loops.retain(|&e| e != ev);
    // Stop deadlines on that loop died with it: SIGTERM / SIGKILL come from the exit watch
    // once the child's channel closes.
    for c in p.children() {
        if let Some(live) = p.live_of(c) {
            let on_it = live.stop_loop() == ev;
            if let Some(st) = live.stop.as_mut() {
                if on_it {
                    st.timer = null_mut();
                    st.ev = null_mut();
                }
            }
        }
    }
    if p.rolling.as_ref().is_some_and(|r| r.ev == ev) {
        if let Some(r) = p.rolling.as_mut() {
            r.timer = null_mut();
            r.ev = null_mut();
        }
        log::error(format_args!(
            "rolling restart aborted: its event loop was freed"
        ));
        super::ending::rolling_finish(p, -1);
    }
    // Restarts and exit watches move to another loop the core watches (a program that ran
    // its children on a temporary loop and freed it); with none left they are dropped.
    let alt = p.wake_loops.first().copied();
    let (moved, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut p.restarts)
        .into_iter()
        // SAFETY: listed records are live boxes.
        .partition(|&r| unsafe { (*r).ev } == ev);
    p.restarts = kept;
    let mut dropped = 0;
    for r in moved {
        // SAFETY: unlisted above, freed once; its timer dies with the loop.
        let r = unsafe { Box::from_raw(r) };
        match alt {
            Some(a) => schedule_restart(p, a, r.plan, RESTART_RETRY),
            None => dropped += 1,
        }
    }
    if dropped > 0 {
        log::info(format_args!(
            "{dropped} pending restart(s) dropped: their event loop was freed"
        ));
    }
    let (gone_here, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut p.dying)
        .into_iter()
        // SAFETY: listed records are live boxes.
        .partition(|&d| unsafe { (*d).ev } == ev);
    p.dying = kept;
    for d in gone_here {
        // SAFETY: unlisted above, freed once; its timer and registration die with the loop.
        let d = unsafe { Box::from_raw(d) };
        let mut d = *d;
        if let Some(f) = &d.pidfd {
            if !f.exited() {
                f.kill();
                f.wait(KILL_WAIT);
                d.end.killed = true;
            }
        }
        let status = status_of(d.pid);
        let Dying { end, plan, .. } = d;
        gone(p, alt.unwrap_or(null_mut()), end, status, plan);
    }
}
