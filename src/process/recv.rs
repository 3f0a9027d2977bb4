//! Receiving: reading a channel and dispatching its frames to this process's handlers.

use super::*;

/// The master's RECV handler body (`mln_ipc_fd_handler_master`).
pub(crate) fn child_readable(ev: *mut mln_event_t, c: *mut Child) {
    // SAFETY: `c` is a live child; `busy` keeps it alive until we are done.
    unsafe { (*c).busy += 1 };
    let end = receive(ev, Peer::Child(c));
    // SAFETY: still live (closing was deferred while busy).
    let close = unsafe {
        (*c).busy -= 1;
        (*c).busy == 0 && (*c).close_pending
    };
    match end {
        RecvEnd::Drained => {}
        RecvEnd::Stopped => {}
        RecvEnd::Eof => return peer_gone(ev, Peer::Child(c), "end of stream"),
        RecvEnd::TooLong(n) => {
            return peer_gone(
                ev,
                Peer::Child(c),
                &format!("protocol error: frame length {n} above the maximum"),
            )
        }
        RecvEnd::Error(e) => return peer_gone(ev, Peer::Child(c), &format!("recv: {e}")),
    }
    if close {
        peer_gone(ev, Peer::Child(c), "closed by a handler");
    }
}

/// The worker's RECV handler body (`mln_ipc_fd_handler_worker`).
pub(crate) fn master_readable(ev: *mut mln_event_t) {
    match receive(ev, Peer::Master) {
        RecvEnd::Drained | RecvEnd::Stopped => {}
        RecvEnd::Eof => peer_gone(ev, Peer::Master, "Master process dead!"),
        RecvEnd::TooLong(n) => peer_gone(
            ev,
            Peer::Master,
            &format!("protocol error: frame length {n} above the maximum"),
        ),
        RecvEnd::Error(e) => peer_gone(ev, Peer::Master, &format!("recv: {e}")),
    }
}

pub(super) fn receive(ev: *mut mln_event_t, peer: Peer) -> RecvEnd {
    let ch = peer.chan();
    let (side, f_ptr): (Side, *mut c_void) = match peer {
        Peer::Child(c) => (Side::Master, c.cast()),
        Peer::Master => (Side::Worker, master_connection().cast()),
    };
    // SAFETY: `ch` is live for the whole call (children are kept by `busy`, the master
    // record is never freed). `rx` and `cache` are only touched here, and this function is
    // not re-entered for the same channel: a handler that calls the fd handler itself
    // would read into the same buffer, so that is refused below. `tx` (touched by sends
    // from handlers) is a different field, reached only through `ch`.
    unsafe {
        let rx = ptr::addr_of_mut!((*ch).rx);
        let cache = ptr::addr_of_mut!((*ch).cache);
        let fd = (*ch).fd;
        (*rx).receive(fd, max_message(), |ty, payload| {
            let Some(found) = (*cache).lookup(side, ty) else {
                return Flow::Continue;
            };
            let Some(h) = found.handler else {
                return Flow::Continue;
            };
            let (buf, len) = (payload.as_mut_ptr().cast(), payload.len() as u32);
            crate::sigsafe::outside(|| h(ev, f_ptr, buf, len, found.slot));
            match peer {
                Peer::Child(c) if (*c).close_pending => Flow::Stop,
                _ => Flow::Continue,
            }
        })
    }
}
