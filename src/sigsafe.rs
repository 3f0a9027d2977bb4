//! Sending from a signal handler (spec D9).
//!
//! Melon's configuration reload calls `mln_ipc_master_send_prepare` from a SIGUSR2 handler.
//! Melon deadlocks there (the dispatcher holds a mutex inside `epoll_wait`). melon-ipc takes
//! no lock on that path, but a signal can still arrive while the library itself is in the
//! middle of updating a send queue or the event loop's tables. So:
//!
//! * `DEPTH` counts how deep the current thread of control is inside melon-ipc: every
//!   exported function enters it (the panic guard does it), and every call out to user code
//!   (handlers, callbacks) and the blocking wait of the event loop leave it for the duration
//!   ([`outside`]). An entry made while `DEPTH > 0` can only come from a signal handler;
//!   `INTERRUPTED` remembers it through callbacks.
//! * A send made on top of an interrupted update (see [`interrupted_library`]) was made
//!   by a signal handler that interrupted the library. It does not touch any queue: it copies the frame into one of [`SLOTS`]
//!   preallocated slots (no allocation, no lock) and writes to an eventfd that every loop
//!   carrying IPC descriptors watches; the loop then moves the frame to its queue, in
//!   normal context, in the order the slots were filled.
//! * Otherwise the signal interrupted user code or the loop's wait: the library's
//!   state is consistent and the ordinary path is used. It allocates, so the interrupted
//!   code must not itself be inside `malloc` (true of any non-async-signal-safe call from a
//!   signal handler; Melon's path allocates too).
//!
//! Limits: a frame sent through a slot is at most [`SLOT_PAYLOAD`] bytes and at most
//! [`SLOT_COUNT`] such frames can wait at once (beyond that the send returns -1); the
//! signal must be delivered on the thread that runs the loop.

use core::cell::{Cell, UnsafeCell};
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering,
};

thread_local! {
    /// How deep this thread's control flow is inside melon-ipc (not counting frames
    /// suspended by [`outside`]).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// How many library entries on this thread were made while library code was already
    /// running, i.e. by a signal handler that interrupted it. Unlike `DEPTH`, [`outside`]
    /// does not clear it: user code called back from such an entry (a `mln_fork_iterate`
    /// handler in a SIGUSR2 handler) still runs on top of the interrupted update.
    static INTERRUPTED: Cell<u32> = const { Cell::new(0) };
}

/// Held while inside melon-ipc.
pub(crate) struct Inside {
    nested: bool,
}

impl Inside {
    /// Enters the library on this thread.
    pub(crate) fn enter() -> Inside {
        let prev = DEPTH.with(|d| d.replace(d.get() + 1));
        let nested = prev > 0;
        if nested {
            INTERRUPTED.with(|i| i.set(i.get() + 1));
        }
        Inside { nested }
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        if self.nested {
            INTERRUPTED.with(|i| i.set(i.get().saturating_sub(1)));
        }
    }
}

/// Runs user code (or a blocking wait) outside the library's critical state.
pub(crate) fn outside<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(self.0));
        }
    }
    let _r = Restore(DEPTH.with(|d| d.replace(0)));
    f()
}

/// Is the caller running on top of an interrupted library update (a signal handler)?
pub(crate) fn interrupted_library() -> bool {
    DEPTH.with(|d| d.get()) > 0 || INTERRUPTED.with(|i| i.get()) > 0
}

pub(crate) const SLOT_COUNT: usize = 32;
pub(crate) const SLOT_PAYLOAD: usize = 4096;

const FREE: u8 = 0;
const FILLING: u8 = 1;
const READY: u8 = 2;

struct Slot {
    state: AtomicU8,
    /// Fill order, so the drain keeps the order of sends.
    seq: AtomicU64,
    ev: AtomicPtr<c_void>,
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
    ev: AtomicPtr::new(null_mut()),
    to: AtomicPtr::new(null_mut()),
    ty: AtomicU32::new(0),
    len: AtomicU32::new(0),
    data: UnsafeCell::new([0; SLOT_PAYLOAD]),
};

static SLOTS: [Slot; SLOT_COUNT] = [EMPTY_SLOT; SLOT_COUNT];
static SEQ: AtomicU64 = AtomicU64::new(0);
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

/// Creates this process's wake-up descriptor if it has none. Not for signal context.
pub(crate) fn wake_fd() -> c_int {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        return fd;
    }
    // SAFETY: plain syscall creating a new descriptor.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd >= 0 {
        WAKE_FD.store(fd, Ordering::SeqCst);
    }
    fd
}

/// In a new child: the inherited eventfd is shared with the parent; replace it, and forget
/// frames the parent had parked.
pub(crate) fn after_fork() {
    let old = WAKE_FD.swap(-1, Ordering::SeqCst);
    if old >= 0 {
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(old) };
    }
    KICKED.store(false, Ordering::SeqCst);
    for s in SLOTS.iter() {
        s.state.store(FREE, Ordering::SeqCst);
    }
}

/// Parks one frame (signal context; async-signal-safe: atomics, memcpy, write(2)).
/// `false` when the payload is too large for a slot or every slot is taken.
pub(crate) fn park(ev: *mut c_void, to: *mut c_void, ty: u32, payload: &[u8]) -> bool {
    if payload.len() > SLOT_PAYLOAD {
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
    s.ev.store(ev, Ordering::Relaxed);
    s.to.store(to, Ordering::Relaxed);
    s.ty.store(ty, Ordering::Relaxed);
    s.len.store(payload.len() as u32, Ordering::Relaxed);
    s.seq
        .store(SEQ.fetch_add(1, Ordering::SeqCst), Ordering::Relaxed);
    s.state.store(READY, Ordering::Release);
    kick();
    true
}

/// One parked frame, handed to the drain's callback.
pub(crate) struct Parked<'a> {
    pub ev: *mut c_void,
    pub to: *mut c_void,
    pub ty: u32,
    pub payload: &'a [u8],
}

/// Moves every parked frame, oldest first, to `send` (normal context), and clears the
/// eventfd.
pub(crate) fn drain(mut send: impl FnMut(Parked<'_>)) {
    // Consume the wake-up first, then clear the flag. The other order loses wake-ups: a
    // kick landing between the two would write a wake-up that this read swallows while
    // the flag stays set, and no later kick would write again. In this order a kick that
    // lands in between finds the flag set and does not write, but its frame is READY
    // before the scan below, which picks it up.
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from our non-blocking eventfd.
        unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    }
    KICKED.store(false, Ordering::SeqCst);
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
            ev: s.ev.load(Ordering::Relaxed),
            to: s.to.load(Ordering::Relaxed),
            ty: s.ty.load(Ordering::Relaxed),
            payload: data,
        });
        s.state.store(FREE, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_and_outside() {
        assert!(!interrupted_library());
        let g = Inside::enter();
        assert!(interrupted_library());
        outside(|| {
            assert!(!interrupted_library());
            // A user callback's own call into the library is not an interruption...
            let inner = Inside::enter();
            outside(|| assert!(!interrupted_library()));
            drop(inner);
        });
        // ... but an entry on top of running library code is, even through callbacks.
        let sig = Inside::enter();
        outside(|| assert!(interrupted_library()));
        drop(sig);
        drop(g);
        assert!(!interrupted_library());
    }

    #[test]
    fn parked_frames_drain_in_order() {
        assert!(park(null_mut(), null_mut(), 1, b"a"));
        assert!(park(null_mut(), null_mut(), 2, b"bb"));
        assert!(!park(null_mut(), null_mut(), 3, &[0; SLOT_PAYLOAD + 1]));
        let mut got = Vec::new();
        drain(|p| got.push((p.ty, p.payload.to_vec())));
        assert_eq!(got, vec![(1, b"a".to_vec()), (2, b"bb".to_vec())]);
        let mut n = 0;
        drain(|_| n += 1);
        assert_eq!(n, 0);
    }
}
