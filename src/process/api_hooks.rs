//! Hooks for the safe Rust API (`crate::api`): fork and spawn with errors as values, and
//! the orderly shutdown of `Builder::run`.

use super::*;

/// `mln_fork_restart` with the error as a value instead of a log line.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn fork_worker_checked(ev: *mut mln_event_t) -> io::Result<Forked> {
    fork_core(ev, M_PET_DFL, M_PST_SUP, None, 0)
}

/// `mln_fork_spawn` with the error as a value. Never returns in the child.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn spawn_checked(
    stype: proc_state_type,
    args: Vec<CString>,
    ev: *mut mln_event_t,
) -> io::Result<()> {
    let args = ExecArgs::new(args);
    let exec = args.copy();
    match fork_core(ev, M_PET_EXE, stype, Some(args), 0)? {
        Forked::Parent => Ok(()),
        Forked::Child => exec_child(exec),
    }
}

/// The end of the Rust API's `run` (called after the loop returned, so no handler runs):
/// drops pending restarts, writes what is still queued on every channel (blocking, until
/// `deadline` at the latest), then closes every channel without restarting anyone. A
/// master's workers see end of stream and exit with status 127. The loops the channels
/// were registered on must still be live. Returns the number of frames not delivered.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn shutdown(deadline: Instant) -> usize {
    for r in std::mem::take(&mut proc().restarts) {
        // SAFETY: pending records are live boxes whose timers are pending on their loop.
        let r = unsafe { Box::from_raw(r) };
        // SAFETY: as above.
        unsafe { reactor::timer_cancel(r.ev, r.timer) };
    }
    let mut lost = 0;
    let p = proc();
    let mut c = p.head;
    p.head = null_mut();
    p.tail = null_mut();
    p.live.clear();
    while !c.is_null() {
        // SAFETY: list members are live boxes; unlinked above, each is freed once.
        let mut b = unsafe { Box::from_raw(c) };
        c = b.f.next.cast();
        lost += drain_and_close(&mut b.chan, deadline);
        close_fd(b.pidfd);
    }
    let m = master();
    // SAFETY: the master record is live and never freed; no handler holds its channel.
    unsafe {
        if (*m).chan.fd >= 0 {
            lost += drain_and_close(&mut (*m).chan, deadline);
            (*m).chan = Chan::new(-1);
            (*m).conn = conn_new(-1);
        }
    }
    lost
}

/// Writes what `ch` has queued (blocking until `deadline` at the latest), removes it from
/// its loops and closes it. Returns the number of frames not delivered.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(super) fn drain_and_close(ch: &mut Chan, deadline: Instant) -> usize {
    let lost = loop {
        match ch.tx.flush(ch.fd) {
            Flushed::Drained => break 0,
            Flushed::Error(_) => break ch.tx.undelivered(),
            Flushed::Blocked => {
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = left.as_millis().min(c_int::MAX as u128) as c_int;
                let mut pfd = libc::pollfd {
                    fd: ch.fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                if ms == 0 || retry_eintr(|| syscall!(poll(&mut pfd, 1, ms))).is_err() {
                    break ch.tx.undelivered();
                }
            }
        }
    };
    unregister_and_close(ch);
    lost
}
