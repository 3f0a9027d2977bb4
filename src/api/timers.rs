//! One-shot timers on a process's loop, holding a closure; and the process's "stopped"
//! state that keeps them (and everything else) from running after `stop`.

use super::handlers::guarded;
use super::Error;
use crate::abi::{mln_event_t, mln_event_timer_t};
use crate::process;
use crate::reactor;
use core::ffi::c_void;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::time::Duration;

/// A pending timer, to cancel it with [`Master::cancel`](super::Master::cancel) /
/// [`Worker::cancel`](super::Worker::cancel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

struct TimerRec {
    ev: *mut mln_event_t,
    handle: *mut mln_event_timer_t,
    run: Box<dyn FnOnce(*mut mln_event_t)>,
}

#[derive(Default)]
struct Timers {
    pending: HashMap<u64, TimerRec>,
    next: u64,
}

thread_local! {
    // The loop thread's. After `fork` the child's only thread is the one that forked, so
    // a worker sees the master's values: see `forget_all`.
    static TIMERS: RefCell<Timers> = RefCell::default();
    /// Set by `stop`: no handler or timer runs any more in this process.
    static STOPPED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `run` on loop `ev` once, `delay` from now (rounded up to milliseconds).
pub(super) fn set(
    ev: *mut mln_event_t,
    delay: Duration,
    run: Box<dyn FnOnce(*mut mln_event_t)>,
) -> Result<TimerId, Error> {
    let ms = delay.as_nanos().div_ceil(1_000_000).min(u32::MAX as u128) as u32;
    let id = TIMERS.with_borrow_mut(|t| {
        t.next += 1;
        t.next
    });
    // SAFETY: `ev` is the live loop of this process (contexts exist only while it runs).
    let handle = unsafe { reactor::timer_set(ev, ms, id as usize as *mut c_void, Some(fired)) };
    if handle.is_null() {
        return Err(Error::Io(io::Error::from(io::ErrorKind::OutOfMemory)));
    }
    TIMERS.with_borrow_mut(|t| t.pending.insert(id, TimerRec { ev, handle, run }));
    Ok(TimerId(id))
}

unsafe extern "C" fn fired(ev: *mut mln_event_t, data: *mut c_void) {
    let id = data as usize as u64;
    let Some(rec) = TIMERS.with_borrow_mut(|t| t.pending.remove(&id)) else {
        return;
    };
    if STOPPED.get() {
        return;
    }
    guarded(format_args!("timer"), || (rec.run)(ev));
}

/// Cancels a pending timer; whether it was pending.
pub(super) fn cancel(t: TimerId) -> bool {
    match TIMERS.with_borrow_mut(|st| st.pending.remove(&t.0)) {
        Some(rec) => {
            // SAFETY: the timer is pending on its live loop (it is removed when it fires).
            unsafe { reactor::timer_cancel(rec.ev, rec.handle) };
            true
        }
        None => false,
    }
}

/// Ends this process's loop once the current callback returns: no handler (Rust or C),
/// timer, writable callback or restart runs any more.
pub(super) fn stop(ev: *mut mln_event_t) {
    STOPPED.set(true);
    process::stop_dispatch();
    // SAFETY: `ev` is the live loop of this process.
    unsafe { reactor::break_set(ev) };
}

/// At the end of `run`: drops the closures of timers that never fired (their handles
/// die with the loop), behind the panic boundary (a closure's captures may panic in
/// `Drop`).
pub(super) fn drop_all() {
    let pending = TIMERS.with_borrow_mut(|t| std::mem::take(&mut t.pending));
    guarded(format_args!("dropping a pending timer"), || drop(pending));
}

/// In a worker forked inside the master's loop: the master's pending timers belong to
/// the master's loop and their closures to the master; they are leaked, neither run nor
/// dropped in this process.
pub(super) fn forget_all() {
    STOPPED.set(false);
    TIMERS.with_borrow_mut(|t| std::mem::forget(std::mem::take(&mut t.pending)));
}

/// Whether this process was stopped (`stop`): nothing of the program runs any more.
pub(super) fn stopped() -> bool {
    STOPPED.get()
}
