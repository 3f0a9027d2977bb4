//! Frames with descriptors (`mln_ipc_*_send_fds_prepare`, issue 23): the descriptors are
//! duplicated at the call, then the frame goes through the same queue as any other
//! (`flush.rs`).

use super::flush::{
    drain_parked, mark_dirty, queued, refused, reserved, resolve, SendError, Target,
};
use super::settings::{fds_limit, max_message, queue_limit};
use super::state::{Proc, PROC};
use crate::abi::*;
use crate::channel::Refused;
use crate::reactor;
use crate::wire;
use std::os::fd::{AsRawFd, FromRawFd};

/// `mln_ipc_master_send_fds_prepare`.
pub(crate) fn send_fds_to_child(
    ev: *mut mln_event_t,
    f: *const mln_fork_t,
    ty: u32,
    payload: &[u8],
    fds: &[i32],
) -> Result<(), SendError> {
    send_fds(ev, Target::Child(f), ty, payload, fds)
}

/// `mln_ipc_worker_send_fds_prepare`.
pub(crate) fn send_fds_to_master(
    ev: *mut mln_event_t,
    ty: u32,
    payload: &[u8],
    fds: &[i32],
) -> Result<(), SendError> {
    send_fds(ev, Target::Master, ty, payload, fds)
}

/// `mln_ipc_*_send_fds_prepare`: a frame with descriptors (1..=253, duplicated here,
/// close-on-exec; the caller keeps its own). From a signal handler that interrupted the
/// library: EAGAIN (a parked frame cannot hold descriptors).
fn send_fds(
    ev: *mut mln_event_t,
    t: Target,
    ty: u32,
    payload: &[u8],
    fds: &[i32],
) -> Result<(), SendError> {
    if payload.len() > max_message().saturating_sub(wire::TYPE_LEN) {
        return Err(SendError::TooLarge);
    }
    if reserved(ty) {
        return Err(SendError::Reserved);
    }
    let _ = ev;
    if reactor::busy_here() {
        return Err(SendError::Busy);
    }
    // Everything inside the borrow: a signal handler that interrupted the library (maybe
    // inside `malloc`) gets EAGAIN before anything is allocated.
    match PROC.try_with(|p| {
        let mut dups: Vec<std::os::fd::OwnedFd> = Vec::new();
        dups.try_reserve_exact(fds.len())
            .map_err(|_| SendError::NoMemory)?;
        for &fd in fds {
            // A copy made for an earlier entry took this number: it was not open.
            if dups.iter().any(|d| d.as_raw_fd() == fd) {
                return Err(SendError::BadFd);
            }
            // SAFETY: F_DUPFD_CLOEXEC on a descriptor number: no memory is passed; a number
            // that is not open is EBADF.
            let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if d < 0 {
                let e = std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EBADF);
                return Err(match e {
                    libc::EBADF => SendError::BadFd,
                    // Out of descriptors while this peer holds some of ours (a peer that
                    // stopped reading): backpressure, with the writable callback once it
                    // drains, not an error.
                    libc::EMFILE if peer_holds_fds(p, t) => {
                        note_refused(p, t);
                        SendError::QueueFull
                    }
                    e => SendError::Os(e),
                });
            }
            // SAFETY: a fresh descriptor we own.
            dups.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(d) });
        }
        if crate::sigsafe::parked() {
            drain_parked(p);
        }
        let (peer, ch) = resolve(p, t, false)?;
        // SAFETY: as in `send_in`.
        let ch = unsafe { &mut *ch };
        if !ch.phase.accepts_sends() {
            return Err(SendError::NoPeer);
        }
        ch.ch.tx.set_limit(queue_limit());
        ch.ch
            .tx
            .push_fds(ty, payload, dups, fds_limit())
            .map_err(|r| {
                if r == Refused::QueueFull {
                    ch.refused = true;
                }
                refused(r)
            })
            .inspect_err(|e| {
                if matches!(e, SendError::QueueFull) {
                    mark_dirty(p, peer);
                }
            })?;
        queued(p, peer, ch, wire::HEADER_LEN + payload.len())
    }) {
        Some(r) => r,
        None => Err(SendError::Busy),
    }
}

/// Whether the peer `t` names has descriptors of ours queued.
fn peer_holds_fds(p: &mut Proc, t: Target) -> bool {
    resolve(p, t, false).is_ok_and(|(_, ch)| {
        // SAFETY: the channel of a live peer, reached inside the borrow.
        unsafe { (*ch).ch.tx.queued_fds() > 0 }
    })
}

/// A send to `t` was refused for lack of room: its writable callback is due once it
/// drains.
fn note_refused(p: &mut Proc, t: Target) {
    if let Ok((peer, ch)) = resolve(p, t, false) {
        // SAFETY: as above.
        unsafe {
            (*ch).refused = true;
            (*ch).ch.tx.count_refused();
        }
        mark_dirty(p, peer);
    }
}
