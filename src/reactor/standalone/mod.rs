//! The standalone event loop: our own epoll loop behind Melon's `mln_event` semantics
//! (its dispatch order and flag rules), exported to C as `mln_event_*` by `capi::event`. It knows nothing of IPC.
//!
//! What is Melon's: the flag vocabulary and its replace/APPEND/CLR rules, the O_NONBLOCK
//! handling, fd timeouts with `M_EV_UNLIMITED`/`M_EV_UNMODIFIED`, one-shot directions, the
//! order of work inside one dispatch iteration, RECV→SEND→ERROR per descriptor, and leaving
//! only through `is_break`. What is deliberately ours (docs/differences.md):
//!
//! * a monotonic clock and 64-bit deadline arithmetic;
//! * no fixed sleeps: `epoll_wait` blocks exactly until the next deadline or an event;
//! * one-shot is tracked per direction and epoll is always re-armed with the remaining
//!   interest (level-triggered, no `EPOLLONESHOT`), so a persistent RECV next to a one-shot
//!   SEND never stalls;
//! * no locks at all: a loop is single-threaded, see "Thread rules" below;
//! * handlers may do anything to any descriptor, timer or to the loop itself without
//!   use-after-free: descriptor records live in a table indexed by fd and carry a
//!   generation that epoll events and the active queue repeat, so a stale event for a
//!   cleared or reused descriptor is ignored; timer handles are (slot, generation) tokens,
//!   so cancelling a fired timer is a harmless no-op; `free` called from inside `dispatch`
//!   is deferred until the outermost `dispatch` returns.
//!
//! Files: `cell` (the allocation, the busy flag and the only way into the state, free and
//! dispatch accounting), `state` (the state, clock, wait timeout), `fds` (descriptor
//! records, epoll interest, fd timeouts), `timers`, `dispatch` (the iteration).
//!
//! # Signal handlers
//!
//! Each loop's private state is reached only through a scoped borrow guarded by a busy
//! flag (`cell`): set while the loop's own code updates its state, clear while handlers,
//! the callback and `epoll_wait` run. A call on a loop whose state is borrowed, which on
//! the loop's thread can only come from a signal handler interrupting that update, does
//! not touch the state and returns its error value: `fd_set` -1, `timer_set` NULL,
//! `timer_cancel`, `fd_timeout_handler_set` and `callback_set` nothing, `dispatch` returns
//! at once, and `free` is deferred like a handler's when the loop is dispatching (the
//! memory goes when the outermost `dispatch` returns) and does nothing otherwise (the
//! interrupted call goes on using the loop; freeing it under that call could only be a
//! use-after-free). So a signal handler may call every function here on a loop of its
//! thread; one that interrupts a handler or the wait (the common case: the loop mostly
//! waits) succeeds, one that interrupts the bookkeeping is refused. A NULL from
//! `timer_set` means "could not set now" (no memory, or busy); [`is_busy`] tells which.
//! `is_break` is outside this protection: a plain store, as Melon's macro does.
//!
//! Thread rules: a loop belongs to one thread at a time. Every call on a loop (including
//! the ones handlers make) must come from the thread that runs its `dispatch` (or from a
//! signal handler on that thread, see above), or from any single thread while nobody
//! dispatches it.
//!
//! Fork: a child inherits the parent's epoll *instance*; changing it from the child would
//! change the parent's interest set. So `free` never calls `epoll_ctl`; it closes the epoll
//! descriptor and frees memory, and never closes user descriptors.

mod cell;
mod dispatch;
mod fds;
mod state;
mod timers;

use self::cell::with_state;
use self::fds::FdCall;
use self::timers::{timer_handle, timer_token};
use crate::abi::{
    dispatch_callback, ev_fd_handler, ev_tm_handler, mln_event_t, mln_event_timer_t, M_EV_CLR,
    M_EV_FD_MASK,
};
use core::ffi::{c_int, c_void};
use core::ptr;

/// `mln_event_new`: a new loop with `is_break` 0, or NULL if the epoll descriptor or the
/// memory cannot be had. The epoll descriptor is close-on-exec.
pub fn new() -> *mut mln_event_t {
    cell::new_loop()
}

/// `mln_event_free`: releases the loop. NULL is a no-op. Never calls `epoll_ctl` (after
/// `fork` the epoll instance is shared with the parent) and never closes user descriptors.
/// Called from inside the loop's own `dispatch` (Melon: use-after-free), the loop stops
/// running handlers, `dispatch` returns, and the epoll descriptor and the memory go when
/// the outermost `dispatch` has returned. On a busy loop (a signal handler interrupting
/// the loop's bookkeeping): deferred the same way while dispatching, otherwise nothing.
/// The free hook ([`set_free_hook`]) runs once, just before the memory goes.
pub unsafe fn free(ev: *mut mln_event_t) {
    // SAFETY: caller contract: NULL or a loop from `new` not yet freed.
    unsafe { cell::free(ev) }
}

/// Sets the process-wide hook that [`free`] calls with the loop (also for a deferred free,
/// then when the outermost `dispatch` returns) just before its memory goes, so that the
/// owner of references to loops can forget them. Every call on the loop from the hook is
/// refused. One hook per process, set once: `false` if one was already set.
pub fn set_free_hook(hook: fn(*mut mln_event_t)) -> bool {
    cell::set_free_hook(hook)
}

/// Sets the process-wide hook that every loop calls with itself once per iteration, after
/// the handlers and just before it waits for events (libuv's "prepare" handles), with no
/// borrow held: the hook may do anything a handler may. One hook per process, set once:
/// `false` if one was already set.
pub fn set_wait_hook(hook: fn(*mut mln_event_t)) -> bool {
    cell::set_wait_hook(hook)
}

/// Whether the state of any loop of this thread is borrowed now: true only in a signal
/// handler that interrupted a loop's bookkeeping, when that loop refuses every call.
pub fn busy_here() -> bool {
    cell::busy_here()
}

/// How many `dispatch` calls are running in this process, over every loop (a loop run
/// from a handler of another one counts as nested too).
pub fn dispatching() -> u32 {
    cell::dispatching()
}

/// How many `dispatch` calls of this loop are running (its nesting depth); 0 for NULL.
/// Answers also while the loop is busy.
pub unsafe fn depth(ev: *mut mln_event_t) -> u32 {
    // SAFETY: caller contract: NULL or a live loop.
    unsafe { cell::depth(ev) }
}

/// Whether the loop's state is borrowed now: true only for the loop's own bookkeeping or a
/// signal handler that interrupted it, when every call on the loop is refused.
pub unsafe fn is_busy(ev: *mut mln_event_t) -> bool {
    // SAFETY: caller contract: NULL or a live loop.
    unsafe { cell::is_busy(ev) }
}

/// `mln_event_fd_set`: register, change (`M_EV_APPEND` or replace) or clear
/// (`flag == M_EV_CLR` exactly) interest in `fd`. Returns 0, or -1 for a NULL, freed or
/// busy loop, a negative or not-open new fd, or memory exhaustion. Bits outside
/// `M_EV_FD_MASK` are ignored. Clearing an unknown or already closed fd returns 0.
pub unsafe fn fd_set(
    ev: *mut mln_event_t,
    fd: c_int,
    flag: u32,
    timeout_ms: c_int,
    data: *mut c_void,
    h: ev_fd_handler,
) -> c_int {
    if fd < 0 {
        return -1;
    }
    let flag = flag & M_EV_FD_MASK;
    // SAFETY: caller contract: `ev` is NULL or a live loop.
    let r = unsafe {
        with_state(ev, |st| {
            if flag == M_EV_CLR {
                st.clear_fd(fd);
                Ok(())
            } else {
                st.set_fd(fd, flag, timeout_ms, data, h)
            }
        })
    };
    match r {
        Some(Ok(())) => 0,
        _ => -1,
    }
}

/// `mln_event_fd_timeout_handler_set`: the handler run once when the fd's timeout expires
/// before any activation. No-op for an unregistered fd or a NULL, freed or busy loop.
pub unsafe fn fd_timeout_handler_set(
    ev: *mut mln_event_t,
    fd: c_int,
    data: *mut c_void,
    h: ev_fd_handler,
) {
    // SAFETY: caller contract.
    unsafe { with_state(ev, |st| st.set_timeout_handler(fd, FdCall { h, data })) };
}

/// `mln_event_timer_set`: a one-shot timer `msec` ms from now (monotonic, no overflow).
/// Returns a handle valid until the timer fires or is cancelled, or NULL: "could not set
/// now" (NULL, freed or busy loop, or no memory). A NULL handler makes a timer that fires
/// silently.
pub unsafe fn timer_set(
    ev: *mut mln_event_t,
    msec: u32,
    data: *mut c_void,
    h: ev_tm_handler,
) -> *mut mln_event_timer_t {
    // SAFETY: caller contract.
    match unsafe { with_state(ev, |st| st.add_timer(msec, data, h)) } {
        Some(Some((idx, gen))) => timer_handle(idx, gen),
        _ => ptr::null_mut(),
    }
}

/// `mln_event_timer_cancel`: cancels a pending timer. NULL, or a handle that already fired
/// or was cancelled (Melon: double free), is a no-op; so is a NULL, freed or busy loop
/// (the timer then stays pending).
pub unsafe fn timer_cancel(ev: *mut mln_event_t, t: *mut mln_event_timer_t) {
    let Some((idx, gen)) = timer_token(t) else {
        return;
    };
    // SAFETY: caller contract.
    unsafe {
        with_state(ev, |st| {
            if st.remove_timer(idx, gen).is_some() {
                st.compact_timers();
            }
        })
    };
}

/// `mln_event_callback_set`: `cb(ev, data)` runs at the top of every iteration; NULL
/// disables it. No-op on a NULL, freed or busy loop.
pub unsafe fn callback_set(ev: *mut mln_event_t, cb: dispatch_callback, data: *mut c_void) {
    // SAFETY: caller contract.
    unsafe {
        with_state(ev, |st| {
            st.callback = cb;
            st.callback_data = data;
        })
    };
}

/// `mln_event_dispatch`: runs the loop until `is_break` is set (it is never reset here).
/// Returns at once for a NULL, freed or busy loop.
pub unsafe fn dispatch(ev: *mut mln_event_t) {
    // SAFETY: caller contract: NULL or a live loop.
    if !unsafe { cell::enter_dispatch(ev) } {
        return;
    }
    // SAFETY: entered: the memory stays until `leave_dispatch`, whatever the handlers do.
    unsafe {
        dispatch::run(ev);
        cell::leave_dispatch(ev);
    }
}

/// One non-blocking turn of the loop, for a loop driven from another event loop (the
/// async face): with `look`, what epoll reports ready now is queued (a wait with timeout
/// 0; without, only activations queued before run: for a turn made for timers or for the
/// wait hook's flush); then the timers that are due, the ready descriptors, the fd
/// timeouts and the wait hook run once, as in one iteration of [`dispatch`] whose wait did
/// not block. Counts as a `dispatch` while it runs (a `free` from a handler is deferred
/// to its end). Returns how many descriptors epoll reported ready (0 without `look`): 0
/// with `look` means the epoll descriptor had nothing ready when the turn began. Returns
/// 0 at once for a NULL, freed, busy or broken loop.
pub unsafe fn turn(ev: *mut mln_event_t, look: bool) -> usize {
    // SAFETY: caller contract: NULL or a live loop.
    if !unsafe { cell::enter_dispatch(ev) } {
        return 0;
    }
    // SAFETY: entered: the memory stays until `leave_dispatch`, whatever the handlers do.
    unsafe {
        let n = dispatch::turn(ev, look);
        cell::leave_dispatch(ev);
        n
    }
}

/// How long until the loop has work to do by the clock: the earliest timer or fd timeout
/// (zero if due, or when activations are queued already); `None` when nothing is pending,
/// and for a NULL, freed or busy loop. For a loop driven by [`turn`]: turn it again then
/// (or when [`epoll_fd`] is readable).
pub unsafe fn next_wait(ev: *mut mln_event_t) -> Option<core::time::Duration> {
    // SAFETY: caller contract.
    let deadline = unsafe { with_state(ev, |st| st.next_deadline_ns()) }??;
    let now = state::now_ns();
    Some(core::time::Duration::from_nanos(
        deadline.saturating_sub(now),
    ))
}

/// The loop's epoll descriptor (readable when one of its descriptors is ready), or -1 for
/// NULL. It belongs to the loop: never close it; valid until the loop is freed.
pub unsafe fn epoll_fd(ev: *mut mln_event_t) -> c_int {
    use std::os::fd::AsRawFd;
    // SAFETY: caller contract; the reference does not outlive this call.
    unsafe { cell::epoll(ev) }.map_or(-1, |e| e.0.as_raw_fd())
}

/// Holds RECV back from epoll on every descriptor of the loop (`true`), or gives it back
/// (`false`): registrations and their handlers stay, only the reports stop, so a consumer
/// that cannot keep up stops reading without closing anything (and without the loop's
/// descriptor staying readable). Activations already queued still run. `false` for a
/// NULL, freed or busy loop.
pub unsafe fn set_recv_muted(ev: *mut mln_event_t, muted: bool) -> bool {
    let dirs = if muted { crate::abi::M_EV_RECV } else { 0 };
    // SAFETY: caller contract.
    unsafe { with_state(ev, |st| st.set_muted(dirs)) }.is_some()
}

/// [`dispatch`], then [`free`] unless a handler freed the loop meanwhile (its memory is
/// gone then): for the owner of a loop that its handlers may free.
pub unsafe fn dispatch_and_free(ev: *mut mln_event_t) {
    // SAFETY: caller contract: NULL or a live loop.
    if !unsafe { cell::enter_dispatch(ev) } {
        // SAFETY: as above (a loop freed inside a dispatch never gets here: the memory
        // goes when that dispatch returns).
        unsafe { free(ev) };
        return;
    }
    // SAFETY: entered, as in `dispatch`; not released: still ours to free.
    unsafe {
        dispatch::run(ev);
        if !cell::leave_dispatch(ev) {
            free(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::M_EV_RECV;

    #[test]
    fn loop_layout_puts_event_first() {
        assert_eq!(cell::event_offset(), 0);
    }

    #[test]
    fn null_arguments_are_refused() {
        // SAFETY: NULL loops are accepted by every function.
        unsafe {
            assert_eq!(
                fd_set(ptr::null_mut(), 0, M_EV_RECV, -1, ptr::null_mut(), None),
                -1
            );
            assert!(timer_set(ptr::null_mut(), 0, ptr::null_mut(), None).is_null());
            timer_cancel(ptr::null_mut(), ptr::null_mut());
            fd_timeout_handler_set(ptr::null_mut(), 0, ptr::null_mut(), None);
            callback_set(ptr::null_mut(), None, ptr::null_mut());
            dispatch(ptr::null_mut());
            free(ptr::null_mut());
            assert_eq!(depth(ptr::null_mut()), 0);
            assert!(!is_busy(ptr::null_mut()));
        }
        let ev = new();
        assert!(!ev.is_null());
        // SAFETY: `ev` is a fresh loop.
        unsafe {
            assert_eq!(fd_set(ev, -1, M_EV_RECV, -1, ptr::null_mut(), None), -1);
            timer_cancel(ev, ptr::null_mut());
            // Clearing an unknown descriptor is Melon's no-op returning 0.
            assert_eq!(fd_set(ev, 12345, M_EV_CLR, -1, ptr::null_mut(), None), 0);
            free(ev);
        }
    }

    unsafe extern "C" fn count(_: *mut mln_event_t, data: *mut c_void) {
        // SAFETY: the test passes a live `u32`.
        unsafe { *data.cast::<u32>() += 1 };
    }

    /// What a signal handler interrupting the loop's bookkeeping meets: every call refused
    /// with its error value, nothing changed. (Entered here the way such a handler would
    /// reach it: while the state is borrowed.)
    #[test]
    fn calls_on_a_busy_loop_are_refused_and_change_nothing() {
        let ev = new();
        let mut fired = 0u32;
        let data = (&mut fired as *mut u32).cast::<c_void>();
        let mut p = [0; 2];
        // SAFETY: valid out-array.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        // SAFETY: `ev` is a live loop of this thread; the calls inside the borrow are what
        // a signal handler would make.
        unsafe {
            let pending = timer_set(ev, 0, data, Some(count));
            assert!(!pending.is_null());
            let seen = with_state(ev, |st| {
                assert!(is_busy(ev));
                assert_eq!(fd_set(ev, p[0], M_EV_RECV, -1, data, None), -1);
                assert!(timer_set(ev, 0, data, Some(count)).is_null());
                timer_cancel(ev, pending);
                callback_set(ev, Some(count), data);
                fd_timeout_handler_set(ev, p[0], data, None);
                dispatch(ev); // returns at once
                free(ev); // not dispatching: nothing happens
                (st.live_timers, st.callback.is_none(), st.fds.len())
            });
            assert_eq!(seen, Some((1, true, 0)));
            assert!(!is_busy(ev));
            assert_eq!(depth(ev), 0);
            // The loop is intact and usable: the pending timer fires once.
            let brk = timer_set(ev, 1, ev.cast(), Some(break_loop));
            assert!(!brk.is_null());
            dispatch(ev);
            assert_eq!(fired, 1);
            free(ev);
            libc::close(p[0]);
            libc::close(p[1]);
        }
    }

    unsafe extern "C" fn break_loop(ev: *mut mln_event_t, _: *mut c_void) {
        // SAFETY: the live loop being dispatched.
        unsafe { crate::reactor::break_set(ev) };
    }

    /// A busy free while dispatching is deferred to the end of the outermost `dispatch`.
    #[test]
    fn busy_free_inside_dispatch_is_deferred() {
        unsafe extern "C" fn free_while_busy(ev: *mut mln_event_t, data: *mut c_void) {
            // SAFETY: the live loop being dispatched, borrowed here as a signal handler
            // interrupting its bookkeeping would find it.
            unsafe {
                with_state(ev, |_| free(ev));
                // Freed (deferred): every call is refused, dispatch leaves.
                assert!(timer_set(ev, 0, ptr::null_mut(), None).is_null());
                *data.cast::<u32>() += 1;
            }
        }
        let ev = new();
        let mut n = 0u32;
        // SAFETY: live loop; not used after the dispatch that frees it.
        unsafe {
            assert!(
                !timer_set(ev, 0, (&mut n as *mut u32).cast(), Some(free_while_busy)).is_null()
            );
            assert!(!timer_set(ev, 0, (&mut n as *mut u32).cast(), Some(count)).is_null());
            dispatch(ev);
        }
        assert_eq!(n, 1, "no handler runs after the free");
    }

    /// A wait nested in a signal handler that interrupted this loop's own wait finds the
    /// events buffer out (taken by the interrupted wait): it waits into a spare one, and the
    /// slot stays empty for the interrupted wait to put its buffer back.
    #[test]
    fn wait_without_the_buffer_uses_a_spare_one() {
        unsafe extern "C" fn ready(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
            let mut v = 0u64;
            // SAFETY: 8 bytes into a u64 from the test's eventfd; `data` is its counter.
            unsafe {
                libc::read(fd, (&mut v as *mut u64).cast(), 8);
                *data.cast::<u32>() += 1;
                crate::reactor::break_set(ev);
            }
        }
        let ev = new();
        let mut n = 0u32;
        // SAFETY: plain syscall; `ev` is a live loop of this thread.
        unsafe {
            let efd = libc::eventfd(1, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
            assert!(efd >= 0);
            let taken = with_state(ev, |st| std::mem::take(&mut st.events)).unwrap();
            assert_eq!(
                fd_set(
                    ev,
                    efd,
                    M_EV_RECV,
                    -1,
                    (&mut n as *mut u32).cast(),
                    Some(ready)
                ),
                0
            );
            // Breaks (and fails the test) if the descriptor is never reported.
            let guard = timer_set(ev, 5_000, ev.cast(), Some(break_loop));
            dispatch(ev);
            assert_eq!(n, 1);
            timer_cancel(ev, guard);
            assert_eq!(with_state(ev, |st| st.events.len()), Some(0));
            with_state(ev, |st| st.events = taken).unwrap();
            free(ev);
            libc::close(efd);
        }
    }
    /// Whether `fd` is readable now (poll with timeout 0).
    fn readable_now(fd: c_int) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    unsafe extern "C" fn drain_count(_: *mut mln_event_t, fd: c_int, data: *mut c_void) {
        let mut b = [0u8; 64];
        // SAFETY: reading into a local buffer; `data` is the test's counter.
        unsafe {
            libc::read(fd, b.as_mut_ptr().cast(), b.len());
            *data.cast::<u32>() += 1;
        }
    }

    /// `turn` never blocks: it runs what is due and what epoll has ready, once;
    /// `next_wait` says when a timer is due; `epoll_fd` is readable when a descriptor is.
    #[test]
    fn turn_runs_what_is_ready_without_blocking() {
        let ev = new();
        let (mut fired, mut read) = (0u32, 0u32);
        let mut p = [0; 2];
        // SAFETY: valid out-array; `ev` is a live loop of this thread; the counters outlive
        // the loop's use of them.
        unsafe {
            assert_eq!(libc::pipe(p.as_mut_ptr()), 0);
            assert_eq!(next_wait(ev), None);
            let t0 = std::time::Instant::now();
            turn(ev, true); // nothing to do: returns at once
            assert!(t0.elapsed() < core::time::Duration::from_millis(500));
            let data = (&mut read as *mut u32).cast();
            assert_eq!(fd_set(ev, p[0], M_EV_RECV, -1, data, Some(drain_count)), 0);
            assert!(!readable_now(epoll_fd(ev)));
            assert_eq!(libc::write(p[1], b"x".as_ptr().cast(), 1), 1);
            assert!(readable_now(epoll_fd(ev)));
            assert_eq!(turn(ev, true), 1);
            assert_eq!(read, 1);
            assert!(!readable_now(epoll_fd(ev)));
            assert_eq!(turn(ev, true), 0);
            let t = timer_set(ev, 30_000, (&mut fired as *mut u32).cast(), Some(count));
            assert!(!t.is_null());
            let w = next_wait(ev).expect("a timer is pending");
            assert!(
                w > core::time::Duration::from_secs(29) && w <= core::time::Duration::from_secs(30)
            );
            timer_cancel(ev, t);
            assert_eq!(next_wait(ev), None);
            let t = timer_set(ev, 0, (&mut fired as *mut u32).cast(), Some(count));
            assert!(!t.is_null());
            assert_eq!(next_wait(ev), Some(core::time::Duration::ZERO));
            turn(ev, true);
            assert_eq!(fired, 1);
            assert_eq!(next_wait(ev), None);
            // A broken loop does nothing.
            assert_eq!(libc::write(p[1], b"x".as_ptr().cast(), 1), 1);
            crate::reactor::break_set(ev);
            turn(ev, true);
            assert_eq!(read, 1);
            free(ev);
            libc::close(p[0]);
            libc::close(p[1]);
        }
    }

    /// While RECV is muted, a readable descriptor neither makes the loop's descriptor
    /// readable nor runs its handler; unmuted, both come back.
    #[test]
    fn muted_recv_holds_reports_back() {
        let ev = new();
        let mut read = 0u32;
        let mut p = [0; 2];
        // SAFETY: as above.
        unsafe {
            assert_eq!(libc::pipe(p.as_mut_ptr()), 0);
            let data = (&mut read as *mut u32).cast();
            assert_eq!(fd_set(ev, p[0], M_EV_RECV, -1, data, Some(drain_count)), 0);
            assert!(set_recv_muted(ev, true));
            assert_eq!(libc::write(p[1], b"x".as_ptr().cast(), 1), 1);
            assert!(!readable_now(epoll_fd(ev)));
            turn(ev, true);
            assert_eq!(read, 0);
            // A registration changed while muted stays muted.
            assert_eq!(fd_set(ev, p[0], M_EV_RECV, -1, data, Some(drain_count)), 0);
            assert!(!readable_now(epoll_fd(ev)));
            assert!(set_recv_muted(ev, false));
            assert!(readable_now(epoll_fd(ev)));
            turn(ev, true);
            assert_eq!(read, 1);
            assert!(!set_recv_muted(ptr::null_mut(), true));
            assert_eq!(epoll_fd(ptr::null_mut()), -1);
            free(ev);
            libc::close(p[0]);
            libc::close(p[1]);
        }
    }
}
