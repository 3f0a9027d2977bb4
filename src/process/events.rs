//! Registration with event loops: child and master connections, the wake-up descriptor,
//! `mln_fork_iterate`.

use super::flush::{mark_dirty, set_recv_interest};
use super::state::{with_published, Child, Peer, Proc, PROC};
use super::ENTRIES;
use crate::abi::*;
use crate::log;
use crate::reactor;
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;

/// Makes `ev` the loop `peer`'s channel receives on (a replace registration: a SEND
/// interest there goes) and flushes there what was queued before. `false` if the
/// registration failed (nothing changed).
pub(crate) fn register(p: &mut Proc, ev: *mut mln_event_t, peer: Peer) -> bool {
    let Some(ch) = p.chan(peer) else { return false };
    let fd = ch.ch.raw();
    let old = ch.ev;
    if set_recv_interest(ev, fd, peer) < 0 {
        return false;
    }
    let ch = p.chan(peer).expect("still live");
    if !old.is_null() && old != ev {
        // Standalone: a loop we still know is live (freed loops are forgotten through the
        // free hook); drop the registration there so only one loop drives this channel.
        #[cfg(feature = "standalone")]
        // SAFETY: `old` is live, see above.
        unsafe {
            reactor::fd_clear(old, fd)
        };
    }
    ch.ev = ev;
    ch.send_armed = false;
    let queued = !ch.ch.tx.is_empty();
    if queued {
        ch.dirty = false;
        p.dirty.retain(|&d| d != peer);
        mark_dirty(p, peer);
    }
    true
}

/// Watches this process's wake-up descriptor on `ev` (once per loop), so that frames
/// parked by signal handlers reach their queues, and flushes requested without a timer
/// happen.
pub(crate) fn watch_wake(p: &mut Proc, ev: *mut mln_event_t) {
    if p.wake_loops.contains(&ev) {
        return;
    }
    // Standalone: learn when a loop the core uses is freed, to forget it.
    #[cfg(feature = "standalone")]
    {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            crate::reactor::set_free_hook(ENTRIES.loop_freed);
            if crate::reactor::set_wait_hook(ENTRIES.before_wait) {
                super::flush::WAIT_HOOK.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let fd = crate::sigsafe::wake_fd();
    if fd < 0 {
        log::warn(format_args!(
            "no eventfd: sends from signal handlers that interrupt the library will be refused"
        ));
        return;
    }
    // SAFETY: `ev` is a live loop (caller's contract).
    let r = unsafe {
        reactor::fd_set(
            ev,
            fd,
            M_EV_RECV | M_EV_NONBLOCK,
            M_EV_UNLIMITED,
            null_mut(),
            Some(ENTRIES.wake_ready),
        )
    };
    if r == 0 {
        p.wake_loops.push(ev);
        if crate::sigsafe::parked() {
            crate::sigsafe::kick();
        }
    }
}

/// `mln_fork_master_events_set`.
pub(crate) fn master_events_set(ev: *mut mln_event_t) {
    PROC.with(|p| {
        watch_wake(p, ev);
        for c in p.children() {
            if !register(p, ev, Peer::Child(c)) {
                // SAFETY: a live record.
                let pid = unsafe { (*c).f.pid };
                log::error(format_args!(
                    "cannot watch child {pid}: event registration failed"
                ));
            }
        }
    })
}

/// `mln_fork_worker_events_set`.
pub(crate) fn worker_events_set(ev: *mut mln_event_t) {
    PROC.with(|p| {
        p.release_inherited();
        if !p.is_worker || p.master().chan.is_none() {
            // Melon's framework does this in the master once its loop ends: nothing to say.
            log::debug(format_args!(
                "mln_fork_worker_events_set: this process has no master"
            ));
            return;
        }
        watch_wake(p, ev);
        if !register(p, ev, Peer::Master) {
            log::error(format_args!(
                "mln_fork_worker_events_set: event registration failed"
            ));
        }
        if p.announce_ready && !p.ready_sent {
            // A rolling replacement: its master waits to hear that this loop runs.
            // SAFETY: `ev` is a live loop (caller's contract); the callback takes no data.
            let t = unsafe { reactor::timer_set(ev, 0, null_mut(), Some(ENTRIES.ready_fired)) };
            if t.is_null() {
                log::error(format_args!(
                    "mln_fork_worker_events_set: cannot set the ready timer"
                ));
            }
        }
    })
}

/// `mln_fork_iterate`: calls `h` for every child that was live when the walk started and
/// still is when its turn comes, oldest first. -1 when `h` returns a negative value.
///
/// From a signal handler that interrupted the library, the walk uses the list as last
/// published (children started or closed at that very moment may be missed or seen).
pub(crate) fn iterate(ev: *mut mln_event_t, h: fork_iterate_handler, data: *mut c_void) -> c_int {
    let Some(h) = h else { return 0 };
    let Some((list, epoch)) = PROC.try_with(|p| {
        let list: Vec<(*mut Child, u64)> = p
            .children()
            .into_iter()
            // SAFETY: live records.
            .map(|c| (c, unsafe { (*c).id }))
            .collect();
        (list, p.epoch)
    }) else {
        return with_published(|list| {
            for &c in list {
                // SAFETY: user callback with a record that is live or a tombstone (never
                // freed while this runs: nothing can bury records until we return).
                if unsafe { h(ev, c.cast(), data) } < 0 {
                    return -1;
                }
            }
            0
        });
    };
    for (c, id) in list {
        let go = PROC.with(|p| {
            if p.epoch != epoch {
                return None;
            }
            // SAFETY: a record listed as live is not freed; tombstones are kept.
            let alive = p.find_open(c.cast()).is_some() && unsafe { (*c).id } == id;
            if alive {
                p.callbacks += 1;
            }
            Some(alive)
        });
        match go {
            None => return 0,
            Some(false) => continue,
            Some(true) => {}
        }
        // SAFETY: user callback with a live child.
        let r = unsafe { h(ev, c.cast(), data) };
        let forked = PROC.with(|p| {
            // The callback returned (in this process, parent or new child).
            p.callbacks = p.callbacks.saturating_sub(1);
            p.epoch != epoch
        });
        if r < 0 {
            return -1;
        }
        if forked {
            // The callback forked and we are the new child: the walk is the parent's.
            return 0;
        }
    }
    0
}
