//! The orderly end of a process's IPC, for the safe Rust API: write what is queued, close
//! every channel without restarting anyone, and (in a master) make sure the children are
//! gone. Also the live children as the Rust API sees them.
#![cfg_attr(not(feature = "standalone"), allow(dead_code))]

use super::pids::{reap, Pidfd, Status};
use super::state::{Chan, PROC};
use super::supervise::KILL_WAIT;
use crate::abi::*;
use crate::channel::Flushed;
use crate::reactor;
use crate::sys::retry_eintr;
use core::ptr::null_mut;
use std::time::{Duration, Instant};

/// A live child as the Rust API sees it.
#[derive(Clone, Debug)]
#[allow(dead_code)]
pub(crate) struct ChildInfo {
    /// Unique in this process, never reused.
    pub id: u64,
    /// Supervision slot: a replacement keeps the slot of the child it replaces.
    pub slot: u32,
    pub pid: i32,
    /// The record C code knows it by.
    pub fork: *mut mln_fork_t,
    /// An exec'd program (not a plain worker).
    pub program: bool,
    /// Being stopped gracefully: not listed to the program any more, but its frames
    /// still arrive.
    pub stopping: bool,
    /// Known to be gone (a write to it failed, or its close waits for the receive pass
    /// under way): not listed to the program any more either.
    pub gone: bool,
}

/// The live children, oldest first.
pub(crate) fn children() -> Vec<ChildInfo> {
    PROC.with(|p| {
        p.children()
            .into_iter()
            .filter_map(|c| {
                let live = p.live_of(c)?;
                let stopping = live.chan.stopping;
                let gone = live.chan.phase.ended();
                let plan = &live.plan;
                let (slot, program) = (plan.slot, plan.args.is_some());
                // SAFETY: a live record.
                let (id, pid) = unsafe { ((*c).id, (*c).f.pid) };
                Some(ChildInfo {
                    id,
                    slot,
                    pid,
                    fork: c.cast(),
                    program,
                    stopping,
                    gone,
                })
            })
            .collect()
    })
}

/// What `shutdown` did.
#[derive(Debug, Default, Clone)]
pub(crate) struct Shutdown {
    /// Per channel whose queue could not be written before the deadline: (child slot, or
    /// `None` for the master connection; frames not delivered).
    pub undelivered: Vec<(Option<u32>, usize)>,
    /// Children (live at the call; by pid) that exited by themselves after their channel
    /// closed.
    pub exited: Vec<i32>,
    /// Children (live at the call; by pid) still running at the end of the wait, killed.
    pub killed: Vec<i32>,
    /// How each child live at the call ended (pid, wait status as `waitpid` gives it, if
    /// known).
    pub statuses: Vec<(i32, Option<i32>)>,
}

/// Drops pending restarts, queues the frames parked by signal handlers, writes what every
/// channel has queued (blocking, until
/// `deadline` at the latest), closes every channel without restarting anyone, then waits
/// for the children to exit (they see end of stream and exit with status 127) until
/// `deadline`, and at least `grace` after the channels closed, and kills those still
/// running. Children closed earlier and not yet gone (exit watches) are waited for and
/// killed the same way, not reported. Every child is reaped unless SIGCHLD is ignored.
/// The loops the channels are registered on must still be live. A fork server ends too
/// (its socket closes first; it is waited for as the children are, not reported).
pub(crate) fn shutdown(deadline: Instant, grace: Duration) -> Shutdown {
    let mut out = Shutdown::default();
    let server = super::forkserver::close();
    let (chans, master, pids, dying) = PROC.with(|p| {
        // Frames that signal handlers parked were accepted (their sends returned 0): they
        // join their queues first, to be written with the rest.
        if crate::sigsafe::parked() {
            super::flush::drain_parked(p);
        }
        super::supervise::cancel_restarts(p, |_| true);
        let mut dying = Vec::new();
        for d in std::mem::take(&mut p.dying) {
            // SAFETY: listed records are live boxes; their loop is live.
            let mut d = unsafe { Box::from_raw(d) };
            // SAFETY: as above.
            unsafe {
                if !d.timer.is_null() {
                    reactor::timer_cancel(d.ev, d.timer);
                }
                if let Some(fd) = d.pidfd.as_ref().and_then(|f| f.raw()) {
                    reactor::fd_clear(d.ev, fd);
                }
            }
            if let Some(f) = d.pidfd.take() {
                dying.push((d.pid, f));
            }
        }
        p.dirty.clear();
        let mut chans: Vec<(u32, Chan)> = Vec::new();
        let mut pids = Vec::new();
        for c in p.children() {
            // SAFETY: a live record.
            let pid = unsafe { (*c).f.pid };
            if let Some(mut live) = p.bury(c) {
                live.cancel_handshake();
                let live = *live;
                pids.push((pid, live.start_ticks));
                chans.push((live.plan.slot, live.chan));
            }
        }
        let master = p.master().chan.take();
        (chans, master, pids, dying)
    });
    for (slot, mut chan) in chans {
        let lost = drain_and_close(&mut chan, deadline);
        if lost > 0 {
            out.undelivered.push((Some(slot), lost));
        }
    }
    if let Some(mut chan) = master {
        let lost = drain_and_close(&mut chan, deadline);
        if lost > 0 {
            out.undelivered.push((None, lost));
        }
        PROC.with(|p| p.master().conn.sockfd = -1);
    }
    let end = deadline.max(Instant::now() + grace);
    for (pid, ticks) in pids {
        let (killed, status) = match Pidfd::open(pid, ticks) {
            Some(fd) => wait_gone(pid, &fd, end),
            None => (false, None),
        };
        out.statuses.push((pid, status.and_then(|s| s.raw())));
        if killed {
            out.killed.push(pid);
        } else {
            out.exited.push(pid);
        }
    }
    for (pid, fd) in dying {
        let _ = wait_gone(pid, &fd, end);
    }
    if let Some((pid, ticks)) = server {
        match Pidfd::open(pid, ticks) {
            Some(fd) => {
                let _ = wait_gone(pid, &fd, end);
            }
            None => {
                let _ = reap(pid);
            }
        }
    }
    out
}

/// Waits until the process of `fd` exits, at most until `end`, and kills it then; reaps
/// it (no zombie left behind when SIGCHLD is not ignored). Whether it had to be killed,
/// and how it ended if that can be known.
fn wait_gone(pid: i32, fd: &Pidfd, end: Instant) -> (bool, Option<Status>) {
    let killed = !fd.wait(end.saturating_duration_since(Instant::now()));
    if killed {
        fd.kill();
        fd.wait(KILL_WAIT);
    }
    (killed, reap(pid))
}

/// Writes what `chan` has queued (blocking until `deadline` at the latest), removes it from
/// its loop and closes it. Returns the number of frames not delivered.
fn drain_and_close(chan: &mut Chan, deadline: Instant) -> usize {
    let fd = chan.ch.raw();
    let lost = loop {
        if chan.phase.ended() {
            break chan.ch.tx.queued_frames();
        }
        match chan.ch.tx.write(fd) {
            Flushed::Drained => break 0,
            Flushed::Error(_) => break chan.ch.tx.queued_frames(),
            Flushed::Blocked => {
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = left.as_millis().min(i32::MAX as u128) as i32;
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if ms == 0 || retry_eintr(|| crate::sys::syscall!(poll(&mut pfd, 1, ms))).is_err() {
                    break chan.ch.tx.queued_frames();
                }
            }
        }
    };
    if !chan.ev.is_null() {
        // SAFETY: the channel's loop is live (caller's contract).
        unsafe { reactor::fd_clear(chan.ev, fd) };
        chan.ev = null_mut();
    }
    lost
}
