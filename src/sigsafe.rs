//! Sending from a signal handler (spec D9), and the process's wake-up descriptor.
//!
//! Melon's configuration reload calls `mln_ipc_master_send_prepare` from a SIGUSR2
//! handler; Melon deadlocks there (its dispatcher holds a mutex inside `epoll_wait`).
//! melon-ipc takes no lock on the send path, and its state is lent to one borrow at a time
//! (`process::state::Global`): a send made by a signal handler that interrupted such a
//! borrow cannot touch the queues. It copies the frame into one of [`SLOT_COUNT`]
//! preallocated slots instead ([`park`]: atomics, a copy and `write(2)`; no allocation, no
//! lock) and wakes the loop through an eventfd that every loop carrying channels watches.
//! The next send of this process, or the loop, queues the parked frames first, in the
//! order they were parked, so per peer the frames keep the order of the sends.
//!
//! The same eventfd is the loop's wake-up when a flush cannot be scheduled with a timer
//! (the melon build never calls Melon's loop from the send path; the standalone loop
//! refuses a timer while its own bookkeeping is interrupted).
//!
//! Limits: a parked frame is at most [`SLOT_PAYLOAD`] bytes and at most [`SLOT_COUNT`]
//! can wait at once (beyond that the send returns -1 with EAGAIN); the signal must be
//! delivered on the thread that runs the loop.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering,
};

pub(crate) const SLOT_COUNT: usize = 32;
pub(crate) const SLOT_PAYLOAD: usize = 4096;

const FREE: u8 = 0;
const FILLING: u8 = 1;
const READY: u8 = 2;

struct Slot {
    state: AtomicU8,
    /// Fill order, so the drain keeps the order of sends.
    seq: AtomicU64,
    /// The child's `mln_fork_t *`, or NULL for the master.
    to: AtomicPtr<c_void>,
    ty: AtomicU32,
    len: AtomicU32,
    data: UnsafeCell<[u8; SLOT_PAYLOAD]>,
}

// SAFETY: `data` is written only by the owner of the FILLING state and read only by the
// drain after observing READY (acquire/release on `state`).
unsafe impl Sync for Slot {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    state: AtomicU8::new(FREE),
    seq: AtomicU64::new(0),
    to: AtomicPtr::new(null_mut()),
    ty: AtomicU32::new(0),
    len: AtomicU32::new(0),
    data: UnsafeCell::new([0; SLOT_PAYLOAD]),
};

static SLOTS: [Slot; SLOT_COUNT] = [EMPTY_SLOT; SLOT_COUNT];
static SEQ: AtomicU64 = AtomicU64::new(0);
/// Slots READY and not drained yet: the send path's cheap "anything parked?" check.
static PARKED: AtomicU32 = AtomicU32::new(0);
/// The process's wake-up eventfd (-1 until created).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// A wake-up was written and the loop has not consumed it yet.
static KICKED: AtomicBool = AtomicBool::new(false);

/// Wakes the loops watching the eventfd (async-signal-safe: an atomic and `write(2)`);
/// skipped while a wake-up is already pending. `false` when there is no eventfd yet.
pub(crate) fn kick() -> bool {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return false;
    }
    if !KICKED.swap(true, Ordering::SeqCst) {
        let one: u64 = 1;
        // SAFETY: write(2) of 8 bytes from a valid u64 to our non-blocking eventfd; an
        // error (counter saturated) still leaves it readable.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
    true
}

/// Consumes a pending wake-up (loop context).
pub(crate) fn consume() {
    // Read first, then clear the flag. The other order loses wake-ups: a kick landing
    // between the two would write a wake-up that this read swallows while the flag stays
    // set, and no later kick would write again. In this order a kick that lands in between
    // finds the flag set and does not write, but its frame is READY (or its channel dirty)
    // before the caller looks, so the caller picks it up.
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from our non-blocking eventfd.
        unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    }
    KICKED.store(false, Ordering::SeqCst);
}

/// This process's wake-up descriptor, created on first use (close-on-exec, non-blocking).
/// Not for signal context. -1 if it cannot be created.
pub(crate) fn wake_fd() -> c_int {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        return fd;
    }
    use nix::sys::eventfd::{EfdFlags, EventFd};
    match EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK) {
        Ok(fd) => {
            let raw = std::os::fd::IntoRawFd::into_raw_fd(std::os::fd::OwnedFd::from(fd));
            WAKE_FD.store(raw, Ordering::SeqCst);
            raw
        }
        Err(_) => -1,
    }
}

/// At the end of the Rust API's `run`, no loop left to wake: closes the eventfd (a later
/// use creates another). Only while the calling thread is the process's only one (the
/// caller checks): a signal handler then runs on it and cannot be between its load of the
/// descriptor and its write, but a kick from another thread could write to a number
/// reused meanwhile.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn close_wake_fd() {
    let old = WAKE_FD.swap(-1, Ordering::SeqCst);
    if old >= 0 {
        // SAFETY: closing our own descriptor, no longer published.
        unsafe { libc::close(old) };
    }
    KICKED.store(false, Ordering::SeqCst);
}

/// In a new child: the inherited eventfd is shared with the parent; replace it (lazily),
/// and forget frames the parent had parked.
pub(crate) fn after_fork() {
    let old = WAKE_FD.swap(-1, Ordering::SeqCst);
    if old >= 0 {
        // SAFETY: closing our own descriptor (the process-wide eventfd, owned here).
        unsafe { libc::close(old) };
    }
    KICKED.store(false, Ordering::SeqCst);
    for s in SLOTS.iter() {
        s.state.store(FREE, Ordering::SeqCst);
    }
    PARKED.store(0, Ordering::SeqCst);
    OVERFULL.store(false, Ordering::SeqCst);
}

/// Set while a parked frame had to be queued beyond its peer's queue limit (it was
/// accepted already) and that queue has not drained back under the limit: parking is
/// refused meanwhile, so signal handlers cannot grow a queue without bound.
static OVERFULL: AtomicBool = AtomicBool::new(false);

/// See [`OVERFULL`].
pub(crate) fn set_overfull(on: bool) {
    OVERFULL.store(on, Ordering::Release);
}

/// Whether frames wait in the slots.
#[inline]
pub(crate) fn parked() -> bool {
    PARKED.load(Ordering::Acquire) > 0
}

/// Parks one frame (signal context; async-signal-safe: atomics, memcpy, write(2)).
/// `false` when the payload is too large for a slot, every slot is taken, or a queue is
/// over its limit because of parked frames ([`OVERFULL`]).
pub(crate) fn park(to: *mut c_void, ty: u32, payload: &[u8]) -> bool {
    if payload.len() > SLOT_PAYLOAD || OVERFULL.load(Ordering::Acquire) {
        return false;
    }
    let Some(s) = SLOTS.iter().find(|s| {
        s.state
            .compare_exchange(FREE, FILLING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }) else {
        return false;
    };
    // SAFETY: we own the slot in the FILLING state; nobody else reads or writes `data`.
    unsafe { (&mut *s.data.get())[..payload.len()].copy_from_slice(payload) };
    s.to.store(to, Ordering::Relaxed);
    s.ty.store(ty, Ordering::Relaxed);
    s.len.store(payload.len() as u32, Ordering::Relaxed);
    s.seq
        .store(SEQ.fetch_add(1, Ordering::SeqCst), Ordering::Relaxed);
    s.state.store(READY, Ordering::Release);
    PARKED.fetch_add(1, Ordering::AcqRel);
    kick();
    true
}

/// One parked frame, handed to the drain's callback.
pub(crate) struct Parked<'a> {
    pub to: *mut c_void,
    pub ty: u32,
    pub payload: &'a [u8],
}

/// Hands every parked frame, oldest first, to `send` (normal context).
pub(crate) fn drain(mut send: impl FnMut(Parked<'_>)) {
    loop {
        let next = SLOTS
            .iter()
            .filter(|s| s.state.load(Ordering::Acquire) == READY)
            .min_by_key(|s| s.seq.load(Ordering::Relaxed));
        let Some(s) = next else { return };
        let len = s.len.load(Ordering::Relaxed) as usize;
        // SAFETY: READY observed with acquire: the filler's writes are visible and it no
        // longer touches the slot until we free it.
        let data = unsafe { &(&*s.data.get())[..len] };
        send(Parked {
            to: s.to.load(Ordering::Relaxed),
            ty: s.ty.load(Ordering::Relaxed),
            payload: data,
        });
        s.state.store(FREE, Ordering::Release);
        PARKED.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_frames_drain_in_order() {
        assert!(park(null_mut(), 1, b"a"));
        assert!(park(null_mut(), 2, b"bb"));
        assert!(!park(null_mut(), 3, &[0; SLOT_PAYLOAD + 1]));
        assert!(parked());
        let mut got = Vec::new();
        drain(|p| got.push((p.ty, p.payload.to_vec())));
        assert_eq!(got, vec![(1, b"a".to_vec()), (2, b"bb".to_vec())]);
        assert!(!parked());
        let mut n = 0;
        drain(|_| n += 1);
        assert_eq!(n, 0);
    }
}
