//! Peer death and supervision: closing a dead child, restart with backoff (D7), a worker's
//! exit when its master is gone.

use super::*;

/// The peer of `peer` is gone (end of stream, socket error, protocol error, or closed by
/// request). Worker: exit 127. Master: forget the child and restart it if supervised.
pub(super) fn peer_gone(ev: *mut mln_event_t, peer: Peer, why: &str) {
    match peer {
        Peer::Master => {
            log::info(format_args!("{why}: exiting with status 127"));
            std::process::exit(127);
        }
        Peer::Child(c) => close_child(ev, c, why),
    }
}

/// `mln_fork_socketpair_close_handler` and every death path of a child.
pub(crate) fn close_child(ev: *mut mln_event_t, c: *mut Child, why: &str) {
    // SAFETY: `c` is a live child.
    unsafe {
        if (*c).busy > 0 {
            // Its frames are being dispatched: finish that first (child_readable calls us
            // again), so no handler's `f_ptr` or buffer dangles.
            (*c).close_pending = true;
            return;
        }
    }
    list_remove(c);
    // SAFETY: `c` was a live list member; we now own it and free it exactly once.
    let child = unsafe { Box::from_raw(c) };
    let lost = child.chan.tx.undelivered();
    if lost > 0 {
        log::warn(format_args!(
            "child {} gone with {lost} queued frame(s) undelivered",
            child.f.pid
        ));
    }
    unregister_and_close(&child.chan);
    if child.pidfd >= 0 {
        // Make sure it is really gone: a child that merely closed its end must not live on
        // beside its replacement (D13). Harmless if it already exited.
        // SAFETY: signalling through our own pidfd.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                child.pidfd,
                libc::SIGKILL,
                ptr::null::<c_void>(),
                0,
            )
        };
        close_fd(child.pidfd);
    }
    log::info(format_args!("child {} dead ({why})", child.f.pid));
    if child.f.stype != M_PST_SUP {
        return;
    }
    // Backoff (D7): the first restart is immediate; deaths soon after a start double the
    // delay from 100 ms up to 10 s; a child that stayed up a while resets it.
    let quick = if child.started.elapsed() < STABLE_UPTIME {
        child.quick_deaths + 1
    } else {
        0
    };
    let delay = backoff_delay(quick);
    let args = child.args.as_ref().map(ExecArgs::copy);
    let etype = child.f.etype;
    drop(child);
    if delay.is_zero() || ev.is_null() {
        do_restart(ev, etype, args, quick);
    } else {
        schedule_restart(ev, etype, args, quick, delay);
    }
}

pub(super) const STABLE_UPTIME: Duration = Duration::from_secs(1);
pub(super) const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Delay before the restart that follows the `quick`-th quick death in a row.
pub(crate) fn backoff_delay(quick: u32) -> Duration {
    if quick <= 1 {
        return Duration::ZERO;
    }
    let exp = (quick - 2).min(16);
    (BACKOFF_FIRST * (1u32 << exp)).min(BACKOFF_MAX)
}

pub(super) fn do_restart(
    ev: *mut mln_event_t,
    etype: proc_exec_type,
    args: Option<ExecArgs>,
    quick: u32,
) {
    let retry_args = args.as_ref().map(ExecArgs::copy);
    let r = match args {
        Some(a) => {
            let name = a.strings[0].to_string_lossy().into_owned();
            let r = spawn_args(M_PST_SUP, a, ev, quick);
            if r == 0 {
                log::info(format_args!("Process {name} restart."));
            }
            r
        }
        None => match fork_core(ev, etype, M_PST_SUP, None, quick) {
            Ok(Forked::Parent) => {
                log::info(format_args!("Child process restart."));
                0
            }
            Ok(Forked::Child) => {
                // We are the new worker, still inside the master's loop: leave it; the
                // framework then runs the worker routine (spec §5).
                if !ev.is_null() {
                    // SAFETY: the loop we were dispatching.
                    unsafe { reactor::break_set(ev) };
                }
                0
            }
            Err(e) => {
                log::error(format_args!("restart: {e}"));
                -1
            }
        },
    };
    if r < 0 && !ev.is_null() && !proc().is_worker {
        // Keep supervising: try again later rather than abort (Melon aborts).
        let quick = quick.max(1) + 1;
        schedule_restart(ev, etype, retry_args, quick, backoff_delay(quick));
    }
}

pub(super) fn schedule_restart(
    ev: *mut mln_event_t,
    etype: proc_exec_type,
    args: Option<ExecArgs>,
    quick: u32,
    delay: Duration,
) {
    let rec = Box::into_raw(Box::new(PendingRestart {
        ev,
        timer: null_mut(),
        etype,
        args,
        quick_deaths: quick,
    }));
    let ms = delay.as_millis().min(u32::MAX as u128) as u32;
    // SAFETY: `ev` is the live loop the death was seen on.
    let t = unsafe { reactor::timer_set(ev, ms, rec.cast(), Some(restart_timer_fired)) };
    if t.is_null() {
        // SAFETY: `rec` was never shared.
        let r = unsafe { Box::from_raw(rec) };
        log::error(format_args!(
            "cannot schedule a restart: no timer; restarting now"
        ));
        do_restart(ev, r.etype, r.args, r.quick_deaths);
        return;
    }
    // SAFETY: `rec` is live until the timer fires or is cancelled.
    unsafe { (*rec).timer = t };
    proc().restarts.push(rec);
    log::info(format_args!("restart in {} ms", ms));
}

pub(super) unsafe extern "C" fn restart_timer_fired(ev: *mut mln_event_t, data: *mut c_void) {
    crate::capi::guard("restart", || {
        let rec: *mut PendingRestart = data.cast();
        let p = proc();
        let Some(i) = p.restarts.iter().position(|r| *r == rec) else {
            return;
        };
        p.restarts.swap_remove(i);
        // SAFETY: removed from the pending list, so we own it now.
        let r = unsafe { Box::from_raw(rec) };
        do_restart(ev, r.etype, r.args, r.quick_deaths);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_starts_immediate() {
        assert_eq!(backoff_delay(0), Duration::ZERO);
        assert_eq!(backoff_delay(1), Duration::ZERO);
        assert_eq!(backoff_delay(2), Duration::from_millis(100));
        assert_eq!(backoff_delay(3), Duration::from_millis(200));
        assert_eq!(backoff_delay(8), Duration::from_millis(6400));
        assert_eq!(backoff_delay(9), Duration::from_secs(10));
        assert_eq!(backoff_delay(10), Duration::from_secs(10));
        assert_eq!(backoff_delay(u32::MAX), Duration::from_secs(10));
    }
}
