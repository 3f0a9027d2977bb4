//! Registration with the event loop: child and master connections, the wake-up eventfd
//! (frames parked by signal handlers, see `sigsafe`), and `mln_fork_iterate`.

use super::*;

pub(super) fn register_child(ev: *mut mln_event_t, c: *mut Child) {
    // Melon build: sends reach the socket through the wake-up eventfd (D9).
    #[cfg(not(feature = "standalone"))]
    watch_wake_fd(ev);
    if !watch(ev, Peer::Child(c)) {
        // SAFETY: `c` is a live child.
        let pid = unsafe { (*c).f.pid };
        log::error(format_args!(
            "cannot watch child {pid}: event registration failed"
        ));
    }
}

/// Registers RECV for `peer`'s channel on `ev`. A replace registration: it also drops a
/// SEND interest on that loop. Returns the backend's result.
pub(super) fn set_recv_interest(ev: *mut mln_event_t, peer: Peer) -> c_int {
    // SAFETY: `peer` is live (callers build it from live records); `ev` is a live loop.
    unsafe {
        let fd = (*peer.chan()).fd;
        reactor::fd_set(
            ev,
            fd,
            M_EV_RECV | M_EV_NONBLOCK,
            M_EV_UNLIMITED,
            peer.data(),
            peer.recv_handler(),
        )
    }
}

/// Makes `ev` the loop `peer`'s channel receives on, and flushes there what was queued
/// before. `false` if the registration failed (nothing changed).
fn watch(ev: *mut mln_event_t, peer: Peer) -> bool {
    if set_recv_interest(ev, peer) < 0 {
        return false;
    }
    let ch = peer.chan();
    // SAFETY: a live channel.
    unsafe { rebind(ch, ev) };
    // SAFETY: as above.
    if unsafe { !(*ch).tx.is_empty() } {
        schedule_flush(ev, peer);
    }
    true
}

/// Watches this process's wake-up eventfd on `ev` (a replace registration: idempotent), so
/// that frames parked by signal handlers reach their queues and, in the melon build, so
/// that every send is flushed without the send path calling into Melon's loop (D9). Then
/// wakes it once, for whatever was queued before.
pub(super) fn watch_wake_fd(ev: *mut mln_event_t) {
    let fd = crate::sigsafe::wake_fd();
    if fd < 0 {
        log::warn(format_args!(
            "no eventfd: sends from signal handlers that interrupt the library will be refused"
        ));
        return;
    }
    // SAFETY: `ev` is a live loop (caller's contract).
    unsafe {
        reactor::fd_set(
            ev,
            fd,
            M_EV_RECV | M_EV_NONBLOCK,
            M_EV_UNLIMITED,
            null_mut(),
            Some(wake_ready),
        )
    };
    crate::sigsafe::kick();
}

pub(super) unsafe extern "C" fn wake_ready(ev: *mut mln_event_t, _fd: c_int, _data: *mut c_void) {
    crate::capi::guard("wake", || {
        drain_parked();
        #[cfg(not(feature = "standalone"))]
        flush_pending(ev);
        #[cfg(feature = "standalone")]
        let _ = ev;
    })
}

/// Queues the frames parked by signal handlers, in the order they were sent.
pub(crate) fn drain_parked() {
    let mut n = 0usize;
    crate::sigsafe::drain(|p| {
        n += 1;
        let ev: *mut mln_event_t = p.ev.cast();
        let r = if p.to.is_null() {
            send_to_master(ev, p.ty, p.payload)
        } else {
            send_to_child(ev, p.to.cast(), p.ty, p.payload)
        };
        if let Err(e) = r {
            log::warn(format_args!(
                "frame of type {} sent from a signal handler dropped: {e:?}",
                p.ty
            ));
        }
    });
    log::debug(format_args!(
        "queued {n} frame(s) parked by signal handlers"
    ));
}

/// Records that `ch` now receives on `ev` (a replace registration, so no SEND interest is
/// left). A flush timer pending on another loop is forgotten, not cancelled: that loop is
/// usually gone (the framework frees the master's loop when it ends), and a flush that
/// still fires there is harmless; without this the queue would wait for a timer that never
/// runs.
pub(super) unsafe fn rebind(ch: *mut Chan, ev: *mut mln_event_t) {
    // SAFETY: caller passes a live channel.
    unsafe {
        (*ch).recv_ev = ev;
        (*ch).send_ev = null_mut();
        if (*ch).flush_ev != ev {
            (*ch).flush_ev = null_mut();
            (*ch).flush_timer = null_mut();
        }
    }
}

/// `mln_fork_master_events_set`.
pub(crate) fn master_events_set(ev: *mut mln_event_t) {
    watch_wake_fd(ev);
    let mut c = proc().head;
    while !c.is_null() {
        register_child(ev, c);
        // SAFETY: list members are live.
        c = unsafe { (*c).f.next.cast() };
    }
}

/// `mln_fork_worker_events_set`.
pub(crate) fn worker_events_set(ev: *mut mln_event_t) {
    // SAFETY: the master record is live.
    if unsafe { (*master()).chan.fd } < 0 {
        log::warn(format_args!(
            "mln_fork_worker_events_set: this process has no master"
        ));
        return;
    }
    watch_wake_fd(ev);
    if !watch(ev, Peer::Master) {
        log::error(format_args!(
            "mln_fork_worker_events_set: event registration failed"
        ));
    }
}

/// `mln_fork_iterate`: -1 when the handler returns a negative value.
pub(crate) fn iterate(ev: *mut mln_event_t, h: fork_iterate_handler, data: *mut c_void) -> c_int {
    let mut c = proc().head;
    while !c.is_null() {
        // Read the successor first: the handler may close this child.
        // SAFETY: list members are live until removed.
        let next: *mut Child = unsafe { (*c).f.next.cast() };
        if let Some(h) = h {
            // SAFETY: user callback with a live child.
            if crate::sigsafe::outside(|| unsafe { h(ev, c.cast(), data) }) < 0 {
                return -1;
            }
        }
        c = next;
    }
    0
}
