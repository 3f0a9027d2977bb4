//! Sending: queueing frames, flushing after the current handlers, waiting for a full socket.

use super::*;

#[derive(Clone, Copy)]
pub(super) enum Peer {
    Child(*mut Child),
    Master,
}

impl Peer {
    pub(super) fn chan(self) -> *mut Chan {
        match self {
            // SAFETY: callers only build `Peer::Child` from live children.
            Peer::Child(c) => unsafe { ptr::addr_of_mut!((*c).chan) },
            // SAFETY: the master record is never freed.
            Peer::Master => unsafe { ptr::addr_of_mut!((*master()).chan) },
        }
    }
    pub(super) fn data(self) -> *mut c_void {
        match self {
            Peer::Child(c) => c.cast(),
            Peer::Master => null_mut(),
        }
    }
    pub(super) fn recv_handler(self) -> ev_fd_handler {
        match self {
            Peer::Child(_) => Some(crate::capi::fork::mln_ipc_fd_handler_master),
            Peer::Master => Some(crate::capi::fork::mln_ipc_fd_handler_worker),
        }
    }
}

/// Why a send was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The payload cannot be framed (D4) or exceeds the maximum message size.
    TooLarge,
    /// No such child / no master.
    NoPeer,
}

/// Queues one frame to a child (`mln_ipc_master_send_prepare`).
pub(crate) fn send_to_child(
    ev: *mut mln_event_t,
    f: *const mln_fork_t,
    ty: u32,
    payload: &[u8],
) -> Result<(), SendError> {
    let c = find_child(f).ok_or(SendError::NoPeer)?;
    send(ev, Peer::Child(c), ty, payload)
}

/// Queues one frame to the master (`mln_ipc_worker_send_prepare`).
pub(crate) fn send_to_master(
    ev: *mut mln_event_t,
    ty: u32,
    payload: &[u8],
) -> Result<(), SendError> {
    // SAFETY: the master record is live.
    if !proc().is_worker || unsafe { (*master()).chan.fd } < 0 {
        return Err(SendError::NoPeer);
    }
    send(ev, Peer::Master, ty, payload)
}

pub(super) fn send(
    ev: *mut mln_event_t,
    peer: Peer,
    ty: u32,
    payload: &[u8],
) -> Result<(), SendError> {
    if payload.len().saturating_add(wire::TYPE_LEN) > max_message() {
        return Err(SendError::TooLarge);
    }
    let ch = peer.chan();
    // SAFETY: `ch` is a live channel; the borrow ends before any callback.
    unsafe { (*ch).tx.push(ty, payload).ok_or(SendError::TooLarge)? };
    schedule_flush(ev, peer);
    Ok(())
}

/// Arranges for the queue to be written after the current handlers return: one write for
/// everything queued meanwhile, and no write at all while a SEND interest is armed.
pub(super) fn schedule_flush(ev: *mut mln_event_t, peer: Peer) {
    let ch = peer.chan();
    // SAFETY: live channel; short borrow.
    let (armed, pending) = unsafe { (!(*ch).send_ev.is_null(), !(*ch).flush_timer.is_null()) };
    if armed || pending {
        return;
    }
    // Melon build: never call into Melon's loop from the send path, which Melon's SIGUSR2
    // handler runs in signal context (D9); the eventfd's handler flushes.
    #[cfg(not(feature = "standalone"))]
    if crate::sigsafe::kick() {
        return;
    }
    let data = match peer {
        Peer::Child(c) => c.cast(),
        Peer::Master => null_mut(),
    };
    // SAFETY: `ev` is a live loop (caller's contract).
    let t = unsafe { reactor::timer_set(ev, 0, data, Some(flush_timer_fired)) };
    if t.is_null() {
        // No timer: write now instead.
        flush(ev, peer);
        return;
    }
    // SAFETY: live channel.
    unsafe {
        (*ch).flush_ev = ev;
        (*ch).flush_timer = t;
    }
}

pub(super) unsafe extern "C" fn flush_timer_fired(ev: *mut mln_event_t, data: *mut c_void) {
    crate::capi::guard("flush", || {
        // A child's flush timer is cancelled before the child is freed, unless the channel
        // moved to another loop meanwhile (`rebind`): look it up rather than trust `data`.
        let peer = if data.is_null() {
            Peer::Master
        } else {
            match find_child(data.cast()) {
                Some(c) => Peer::Child(c),
                None => return,
            }
        };
        let ch = peer.chan();
        // SAFETY: a live channel.
        unsafe {
            if (*ch).flush_ev == ev {
                (*ch).flush_timer = null_mut();
                (*ch).flush_ev = null_mut();
            }
        }
        flush(ev, peer);
    })
}

/// The SEND handler armed while a queue waits for a full socket.
pub(crate) unsafe extern "C" fn send_ready(ev: *mut mln_event_t, _fd: c_int, data: *mut c_void) {
    crate::capi::guard("send_ready", || {
        let peer = if data.is_null() {
            Peer::Master
        } else {
            match find_child(data.cast()) {
                Some(c) => Peer::Child(c),
                None => return,
            }
        };
        flush(ev, peer);
    })
}

pub(super) fn flush(ev: *mut mln_event_t, peer: Peer) {
    let ch = peer.chan();
    // SAFETY: live channel; the borrow ends before any callback.
    let (fd, res) = unsafe { ((*ch).fd, (*ch).tx.flush((*ch).fd)) };
    match res {
        Flushed::Drained => {
            // SAFETY: live channel.
            let (send_ev, recv_ev) = unsafe { ((*ch).send_ev, (*ch).recv_ev) };
            if send_ev.is_null() {
                return;
            }
            // SAFETY: live channel.
            unsafe { (*ch).send_ev = null_mut() };
            // Drop the SEND interest: a replace with RECV alone where RECV lives, or a
            // CLR where it was the only interest.
            // SAFETY: `send_ev` is the live loop we armed.
            unsafe {
                if send_ev == recv_ev {
                    set_recv_interest(send_ev, peer);
                } else {
                    reactor::fd_set(send_ev, fd, M_EV_CLR, M_EV_UNLIMITED, null_mut(), None);
                }
            }
        }
        Flushed::Blocked => {
            // SAFETY: live channel.
            if unsafe { !(*ch).send_ev.is_null() } {
                return;
            }
            // Level-triggered SEND added beside the persistent RECV: no one-shot, so
            // neither direction can stall the other (D10), in either backend.
            // SAFETY: `ev` is a live loop.
            let r = unsafe {
                reactor::fd_set(
                    ev,
                    fd,
                    M_EV_SEND | M_EV_APPEND | M_EV_NONBLOCK,
                    M_EV_UNLIMITED,
                    peer.data(),
                    Some(send_ready),
                )
            };
            if r == 0 {
                // SAFETY: live channel.
                unsafe { (*ch).send_ev = ev };
            } else {
                log::error(format_args!("cannot wait for writability on fd {fd}"));
            }
        }
        Flushed::Error(e) => match peer {
            // SAFETY: live child.
            Peer::Child(c) if unsafe { (*c).busy } == 0 => {
                drain_then_close(ev, c, &format!("send: {e}"))
            }
            _ => peer_gone(ev, peer, &format!("send: {e}")),
        },
    }
}

/// Melon build: flushes every queue that waits for a flush (non-empty, no SEND interest
/// armed, no flush timer), on the loop its channel receives on. Run by the wake-up
/// eventfd's handler (`wake_ready`), in normal context.
#[cfg(not(feature = "standalone"))]
pub(crate) fn flush_pending(ev: *mut mln_event_t) {
    fn waiting(ch: *mut Chan) -> bool {
        // SAFETY: a live channel; short borrow.
        unsafe { !(*ch).tx.is_empty() && (*ch).send_ev.is_null() && (*ch).flush_timer.is_null() }
    }
    fn loop_of(ch: *mut Chan, ev: *mut mln_event_t) -> *mut mln_event_t {
        // SAFETY: as above.
        let r = unsafe { (*ch).recv_ev };
        if r.is_null() {
            ev
        } else {
            r
        }
    }
    let mut children = Vec::new();
    let mut c = proc().head;
    while !c.is_null() {
        children.push(c);
        // SAFETY: list members are live.
        c = unsafe { (*c).f.next.cast() };
    }
    for c in children {
        // A flush may close a child, and a restart may turn us into a new worker: act only
        // on children that are still ours.
        if proc().is_worker || find_child(c.cast()).is_none() {
            continue;
        }
        let peer = Peer::Child(c);
        if waiting(peer.chan()) {
            flush(loop_of(peer.chan(), ev), peer);
        }
    }
    let peer = Peer::Master;
    // SAFETY: the master record is live.
    if proc().is_worker && unsafe { (*peer.chan()).fd } >= 0 && waiting(peer.chan()) {
        flush(loop_of(peer.chan(), ev), peer);
    }
}

/// Upper bound of receive passes when draining a child whose socket failed on send.
pub(super) const DRAIN_PASSES: usize = 64;

/// A child's socket failed on send (it died, typically with frames of ours unread). What it
/// sent before is still in our receive buffer: deliver that first, so a dead worker loses
/// only what it had not sent (spec D6); `child_readable` closes it at the end of stream.
/// If it is still there after that (alive but not reading), close it now.
pub(super) fn drain_then_close(ev: *mut mln_event_t, c: *mut Child, why: &str) {
    for _ in 0..DRAIN_PASSES {
        child_readable(ev, c);
        if find_child(c.cast()).is_none() {
            return;
        }
    }
    close_child(ev, c, why);
}
