//! How a send reaches the socket in the melon build without touching Melon's loop from the
//! send path (spec D9).
//!
//! Melon's SIGUSR2 handler calls `mln_ipc_master_send_prepare` in signal context, usually
//! while the dispatcher sits in `epoll_wait` holding `ev->fd_lock` (or runs timers holding
//! `ev->timer_lock`). Any `mln_event_fd_set` / `mln_event_timer_set` from there deadlocks.
//! So a send only queues the frame and calls [`kick`]: one `write(2)` (async-signal-safe)
//! to this process's eventfd, skipped while a kick is already pending. The eventfd is
//! watched (RECV, level-triggered) on every loop that carries an IPC descriptor, registered
//! in normal context by `mln_fork_master_events_set` / `mln_fork_worker_events_set` and
//! restarts; its handler ([`wake_ready`]) flushes every queue that waits, in normal
//! context, and only there is the loop touched (a level-triggered SEND while a socket is
//! full, D10-safe).
//!
//! Remaining limit: queueing copies the frame into the channel's queue, which allocates; a
//! signal that interrupts `malloc` itself (user code in the master) and then sends can
//! still deadlock inside the allocator. Melon's own path allocates there too.

use crate::abi::{mln_event_t, M_EV_NONBLOCK, M_EV_RECV, M_EV_UNLIMITED};
use crate::log;
use crate::reactor;
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// This process's eventfd, -1 until the first [`watch`].
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// A kick was written and its handler has not run yet.
static KICKED: AtomicBool = AtomicBool::new(false);

/// Watches the eventfd on `ev` (creating it on first use) and kicks once, so whatever was
/// queued before the registration is flushed. Normal context only. Idempotent per loop (a
/// replace registration).
pub(crate) fn watch(ev: *mut mln_event_t) {
    let mut fd = WAKE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        // SAFETY: plain syscall creating a new descriptor.
        fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            log::warn(format_args!(
                "eventfd: {}; sends flush through loop timers (not signal-safe)",
                std::io::Error::last_os_error()
            ));
            return;
        }
        WAKE_FD.store(fd, Ordering::SeqCst);
    }
    // SAFETY: `ev` is a live loop (caller's contract).
    let r = unsafe {
        reactor::fd_set(
            ev,
            fd,
            M_EV_RECV | M_EV_NONBLOCK,
            M_EV_UNLIMITED,
            null_mut(),
            Some(wake_ready),
        )
    };
    if r < 0 {
        log::error(format_args!("cannot watch the wake-up eventfd"));
        return;
    }
    KICKED.store(false, Ordering::SeqCst);
    kick();
}

/// Asks the loop to flush the send queues. Async-signal-safe (an atomic and `write(2)`).
/// `false` when there is no eventfd yet: the caller then flushes another way.
pub(crate) fn kick() -> bool {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return false;
    }
    if !KICKED.swap(true, Ordering::SeqCst) {
        let one: u64 = 1;
        // SAFETY: write(2) of 8 bytes from a valid u64 to our eventfd; it cannot block
        // (EFD_NONBLOCK) and an error (counter saturated) still leaves it readable.
        unsafe { libc::write(fd, core::ptr::addr_of!(one).cast(), 8) };
    }
    true
}

/// The eventfd's RECV handler: clears it, then flushes every waiting queue.
unsafe extern "C" fn wake_ready(ev: *mut mln_event_t, fd: c_int, _data: *mut c_void) {
    crate::capi::guard("wake", || {
        // Clear the flag before reading: a kick that lands in between writes again, and
        // the frame it announces is flushed below or on the next round.
        KICKED.store(false, Ordering::SeqCst);
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from our non-blocking eventfd.
        unsafe { libc::read(fd, core::ptr::addr_of_mut!(v).cast(), 8) };
        crate::process::flush_pending(ev);
    })
}

/// In a new child: the inherited eventfd is shared with the parent; forget it (a new one
/// is made when the child's loop is set up).
pub(crate) fn after_fork() {
    let old = WAKE_FD.swap(-1, Ordering::SeqCst);
    if old >= 0 {
        // SAFETY: closing our own descriptor (the parent keeps its copy).
        unsafe { libc::close(old) };
    }
    KICKED.store(false, Ordering::SeqCst);
}
