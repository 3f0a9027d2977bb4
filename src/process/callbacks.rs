//! Every function the core registers on an event loop, in one place. Each is a thin
//! `extern "C"` entry that looks its record up (a `data` pointer is never trusted to be
//! live) and runs the body behind a panic boundary: a panic is logged and never unwinds
//! into the loop.

use super::flush::{drain_parked, flush, flush_dirty, loop_turned, run_writable_callbacks};
use super::lifecycle::{self, arm_stops, deliver_events, quit_check};
use super::state::{Dying, Peer, PendingRestart, PROC};
use super::{recv, supervise};
use crate::abi::*;
use crate::log;
use core::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn catch(what: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        log::error(format_args!("{what}: internal error (panic caught)"));
    }
}

/// RECV on a child's channel; `data` is its record.
pub(crate) unsafe extern "C" fn child_readable(
    ev: *mut mln_event_t,
    _fd: c_int,
    data: *mut c_void,
) {
    loop_turned();
    catch("child_readable", || on_child_readable(ev, data))
}

/// The body of `mln_ipc_fd_handler_master`: `data` must be a live child's `mln_fork_t *`;
/// anything else is ignored.
pub(crate) fn on_child_readable(ev: *mut mln_event_t, data: *mut c_void) {
    let Some(c) = PROC.with(|p| p.find(data.cast())) else {
        return;
    };
    recv::readable(ev, Peer::Child(c));
}

/// RECV on the master connection.
pub(crate) unsafe extern "C" fn master_readable(
    ev: *mut mln_event_t,
    _fd: c_int,
    _data: *mut c_void,
) {
    loop_turned();
    catch("master_readable", || on_master_readable(ev))
}

/// The body of `mln_ipc_fd_handler_worker`.
pub(crate) fn on_master_readable(ev: *mut mln_event_t) {
    recv::readable(ev, Peer::Master);
}

/// SEND readiness of a channel whose queue met a full socket.
pub(crate) unsafe extern "C" fn send_ready(ev: *mut mln_event_t, _fd: c_int, data: *mut c_void) {
    catch("send_ready", || {
        PROC.with(|p| {
            let peer = if data.is_null() {
                Peer::Master
            } else {
                match p.find(data.cast()) {
                    Some(c) => Peer::Child(c),
                    None => return,
                }
            };
            flush(p, peer);
        });
        run_writable_callbacks(ev);
        super::lifecycle::quit_check();
    })
}

/// Rounds of flushing and callbacks `before_wait` runs; if there is still something to
/// write after them, the wait is made not to block (the wake-up descriptor is kicked), so
/// other events get their turn and the rest is done right after.
#[cfg(feature = "standalone")]
const SETTLE_ROUNDS: usize = 8;

/// Run by every standalone loop just before it waits: flushes what is still queued (sends
/// made outside a receive pass, e.g. from timers, or by a handler that runs the loop
/// itself), runs the writable callbacks that flush made due and delivers frames held
/// behind a handler that runs the loop; and again, until none of them left anything to
/// write: nothing queued may wait for a wake-up that no descriptor will give.
#[cfg(feature = "standalone")]
pub(crate) fn before_wait(ev: *mut mln_event_t) {
    loop_turned();
    catch("before_wait", || {
        for _ in 0..SETTLE_ROUNDS {
            let Some(due) = PROC.try_with(|p| {
                p.release_inherited();
                if crate::sigsafe::parked() {
                    drain_parked(p);
                }
                arm_stops(p);
                flush_dirty(p);
                !p.writable_due.is_empty()
            }) else {
                return;
            };
            if due {
                run_writable_callbacks(ev);
            }
            deliver_events(ev);
            quit_check();
            super::recv::deliver_held(ev);
            let settled = PROC.try_with(|p| {
                p.dirty.is_empty() && (p.writable_due.is_empty() || p.dispatch_stopped)
            });
            if settled != Some(false) {
                return;
            }
        }
        crate::sigsafe::kick();
    })
}

/// The wake-up descriptor: frames parked by signal handlers, flushes requested without a
/// timer.
pub(crate) unsafe extern "C" fn wake_ready(ev: *mut mln_event_t, _fd: c_int, _data: *mut c_void) {
    loop_turned();
    catch("wake", || {
        crate::sigsafe::consume();
        PROC.with(|p| {
            if crate::sigsafe::parked() {
                drain_parked(p);
            }
            arm_stops(p);
            flush_dirty(p);
        });
        run_writable_callbacks(ev);
        deliver_events(ev);
        quit_check();
    })
}

/// A restart timer.
pub(crate) unsafe extern "C" fn restart_fired(ev: *mut mln_event_t, data: *mut c_void) {
    catch("restart", || {
        supervise::restart_fired(ev, data.cast::<PendingRestart>())
    })
}

/// A rolling restart's step is due.
pub(crate) unsafe extern "C" fn rolling_step(ev: *mut mln_event_t, _data: *mut c_void) {
    catch("rolling_step", || lifecycle::rolling_step(ev))
}

/// A graceful stop's deadline (SIGTERM, then SIGKILL) of a child that is still connected.
pub(crate) unsafe extern "C" fn stop_deadline(_ev: *mut mln_event_t, data: *mut c_void) {
    catch("stop_deadline", || supervise::stop_deadline(data.cast()))
}

/// A child being stopped exited (its pidfd): what it sent is delivered, then, if a process
/// it forked still holds its end of the channel (no end of stream came), it is closed.
pub(crate) unsafe extern "C" fn stop_exited(ev: *mut mln_event_t, _fd: c_int, data: *mut c_void) {
    loop_turned();
    catch("stop_exited", || {
        on_child_readable(ev, data);
        supervise::stop_exited(ev, data.cast());
    })
}

/// In a worker: its loop runs (a rolling replacement's ready).
pub(crate) unsafe extern "C" fn ready_fired(_ev: *mut mln_event_t, _data: *mut c_void) {
    catch("ready", lifecycle::ready_fired)
}

/// A child started from the loop did not complete its fork handshake in time.
pub(crate) unsafe extern "C" fn handshake_expired(ev: *mut mln_event_t, data: *mut c_void) {
    catch("handshake", || {
        supervise::handshake_expired(ev, data.cast())
    })
}

/// The pidfd of a closed child became readable: its process is gone.
pub(crate) unsafe extern "C" fn exit_ready(_ev: *mut mln_event_t, _fd: c_int, data: *mut c_void) {
    catch("exit_ready", || {
        supervise::dying_ready(data.cast::<Dying>())
    })
}

/// A closed child's grace period (or the wait after SIGKILL) ran out.
pub(crate) unsafe extern "C" fn exit_timeout(_ev: *mut mln_event_t, data: *mut c_void) {
    catch("exit_timeout", || {
        supervise::dying_timeout(data.cast::<Dying>())
    })
}

/// Without a pidfd: time to check whether a closed child's process is gone.
pub(crate) unsafe extern "C" fn exit_poll(_ev: *mut mln_event_t, data: *mut c_void) {
    catch("exit_poll", || supervise::dying_poll(data.cast::<Dying>()))
}

/// The free hook of the standalone loop.
#[cfg(feature = "standalone")]
pub(crate) fn loop_freed(ev: *mut mln_event_t) {
    catch("loop_freed", || {
        if PROC.try_with(|p| supervise::forget_loop(p, ev)).is_none() {
            log::error(format_args!(
                "an event loop was freed while the library was busy (from a signal handler?)"
            ));
        }
    })
}
