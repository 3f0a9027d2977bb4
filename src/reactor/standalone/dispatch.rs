//! `dispatch`: one iteration after another until `is_break` (spec §6). Every step borrows
//! the state only to pick the next piece of work (see `cell`); the user's handlers and
//! `epoll_wait` run with no borrow held, so they may call anything on the loop, and a
//! signal handler that interrupts them may too.

use super::cell::{self, with_state};
use super::fds::{Next, DIRS};
use super::state::now_ns;
use crate::abi::mln_event_t;
use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollTimeout};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

/// Why a dispatch step stopped early: break set, loop freed, or (never on the loop's own
/// path, see `cell`) its state busy.
struct Leave;

/// Events buffer for a wait nested in a signal handler that interrupted this loop's own
/// wait (the loop's buffer is out for that one).
const SPARE_EVENTS: usize = 8;

/// # Safety
/// `ev` is a live loop that entered `dispatch` (`cell::enter_dispatch`), so its memory
/// stays until `cell::leave_dispatch`.
pub(super) unsafe fn run(ev: *mut mln_event_t) {
    // SAFETY: caller contract, passed on.
    let _ = unsafe { iterate(ev) };
}

/// One non-blocking turn (`turn`): with `look`, what epoll has ready now is queued (a
/// wait with timeout 0); then steps 1 to 5 and the wait hook run once, as in an iteration.
/// Returns how many descriptors epoll reported.
///
/// # Safety
/// As [`run`].
pub(super) unsafe fn turn(ev: *mut mln_event_t, look: bool) -> usize {
    // SAFETY: caller contract, passed on.
    unsafe {
        let n = match leave_if(ev).and_then(|()| if look { wait(ev, false) } else { Ok(0) }) {
            Ok(n) => n,
            Err(Leave) => return 0,
        };
        let _ = steps(ev);
        n
    }
}

unsafe fn iterate(ev: *mut mln_event_t) -> Result<(), Leave> {
    // SAFETY (whole body): `ev` is live.
    unsafe {
        loop {
            steps(ev)?;
            wait(ev, true)?; // step 6
        }
    }
}

/// Steps 1 to 5 of an iteration, then the wait hook.
unsafe fn steps(ev: *mut mln_event_t) -> Result<(), Leave> {
    // SAFETY (whole body): `ev` is live; handlers run outside every borrow.
    unsafe {
        leave_if(ev)?;
        // Step 1: the per-iteration callback.
        let (cb, data) = with_state(ev, |st| (st.callback, st.callback_data)).ok_or(Leave)?;
        if let Some(cb) = cb {
            cb(ev, data);
            leave_if(ev)?;
        }
        run_timers(ev)?; // step 2
        run_active(ev)?; // step 3
        run_fd_timeouts(ev)?; // step 4
        run_timers(ev)?; // step 5: e.g. 0 ms timers set by the fd handlers above
        if let Some(hook) = cell::wait_hook() {
            hook(ev);
            leave_if(ev)?;
        }
        Ok(())
    }
}

unsafe fn leave_if(ev: *mut mln_event_t) -> Result<(), Leave> {
    // SAFETY: `ev` is live.
    if unsafe { cell::must_leave(ev) } {
        Err(Leave)
    } else {
        Ok(())
    }
}

/// Expired timers, earliest first, break checked after each (spec §6 steps 2 and 5). The
/// timer is gone before its handler runs, so the handler may cancel it harmlessly. Only
/// timers set before the step began run in it (`limit`).
unsafe fn run_timers(ev: *mut mln_event_t) -> Result<(), Leave> {
    let now = now_ns();
    let mut limit = None;
    loop {
        // SAFETY: `ev` is live.
        let next = unsafe {
            with_state(ev, |st| {
                let limit = *limit.get_or_insert(st.seq);
                st.pop_due_timer(now, limit)
            })
        };
        let Some(t) = next.ok_or(Leave)? else {
            return Ok(());
        };
        if let Some(h) = t.h {
            // SAFETY: a C handler given to `timer_set`, called with its own data.
            unsafe { h(ev, t.data) };
        }
        // SAFETY: `ev` is live.
        unsafe { leave_if(ev) }?;
    }
}

/// The first direction of `fired` at or after `DIRS[from]`.
fn next_dir(fired: u32, from: usize) -> Option<usize> {
    (from..DIRS.len()).find(|&i| fired & DIRS[i] != 0)
}

/// Active descriptors in report order (spec §6 step 3): the pending fd timeout goes, then
/// RECV, SEND, ERROR handlers for the directions that fired. Before each handler, a CLR
/// (generation gone or changed) skips the rest; a break puts the rest back in the queue for
/// the next `dispatch`. One borrow takes a descriptor and its first handler, one more each
/// further direction.
unsafe fn run_active(ev: *mut mln_event_t) -> Result<(), Leave> {
    // SAFETY (whole body): `ev` is live; `is_break` reads one field through the raw
    // pointer, inside a borrow of the state, which it does not touch.
    unsafe {
        loop {
            let first = with_state(ev, |st| {
                let (fd, gen, fired) = st.next_active()?;
                let step = next_dir(fired, 0)
                    .map(|i| (i, st.handler_for(fd, gen, fired, i, cell::is_break(ev))));
                Some((fd, gen, fired, step))
            });
            let Some((fd, gen, fired, mut step)) = first.ok_or(Leave)? else {
                return Ok(());
            };
            while let Some((i, next)) = step {
                match next {
                    Next::Call(call) => {
                        if let Some(h) = call.h {
                            // A C handler given to `fd_set` for this direction.
                            h(ev, fd, call.data);
                        }
                    }
                    Next::Gone => break,
                    Next::Leave => return Err(Leave),
                }
                step = match next_dir(fired, i + 1) {
                    Some(j) => Some((
                        j,
                        with_state(ev, |st| {
                            st.handler_for(fd, gen, fired, j, cell::is_break(ev))
                        })
                        .ok_or(Leave)?,
                    )),
                    None => None,
                };
            }
            leave_if(ev)?;
        }
    }
}

/// Expired fd timeouts (spec §6 step 4): each fires once; the fd stays registered.
unsafe fn run_fd_timeouts(ev: *mut mln_event_t) -> Result<(), Leave> {
    let now = now_ns();
    let mut limit = None;
    loop {
        // SAFETY: `ev` is live.
        let next = unsafe {
            with_state(ev, |st| {
                let limit = *limit.get_or_insert(st.seq);
                st.pop_due_fd_timeout(now, limit)
            })
        };
        let Some((fd, call)) = next.ok_or(Leave)? else {
            return Ok(());
        };
        if let Some(h) = call.h {
            // SAFETY: the C handler given to `fd_timeout_handler_set`.
            unsafe { h(ev, fd, call.data) };
        }
        // SAFETY: `ev` is live.
        unsafe { leave_if(ev) }?;
    }
}

/// The events buffer of the wait in progress (see `wait`); never read (`#[used]` keeps the
/// compiler from dropping a global that is only written).
#[used]
static WAITING_WITH: AtomicPtr<EpollEvent> = AtomicPtr::new(core::ptr::null_mut());

/// Step 6: block until the next deadline or an event (`block`; otherwise only look), then
/// queue what fired. The wait
/// holds no borrow: the events buffer is taken out of the state for it, and the epoll
/// instance never changes while the loop lives.
///
/// nix's `Epoll::wait` (a slice and a timeout) is the same `epoll_wait` call as the raw
/// one; its out-of-line wrapper costs about 10 instructions per iteration (callgrind),
/// nothing next to the system call, and interleaved A/B runs of the loop and of the IPC
/// benchmark showed no difference beyond the machine's noise.
unsafe fn wait(ev: *mut mln_event_t, block: bool) -> Result<usize, Leave> {
    // SAFETY: `ev` is live.
    let (timeout, mut events) = unsafe {
        with_state(ev, |st| {
            let ms = if block { st.wait_timeout_ms() } else { 0 };
            (ms, std::mem::take(&mut st.events))
        })
    }
    .ok_or(Leave)?;
    // SAFETY: `ev` is live and stays allocated while dispatching; the reference goes at the
    // end of this function.
    let epoll = unsafe { cell::epoll(ev) }.ok_or(Leave)?;
    let timeout = EpollTimeout::try_from(timeout).unwrap_or(EpollTimeout::NONE);
    let wait_into = |buf: &mut [EpollEvent]| match epoll.wait(buf, timeout) {
        Ok(n) => n,
        Err(Errno::EINTR) => 0,
        Err(e) => {
            // Only if someone closed our epoll descriptor; sleep instead of spinning.
            crate::log::error(format_args!("mln_event_dispatch: epoll_wait: {e}"));
            let ms = timeout.as_millis().map_or(100, |ms| ms.min(100));
            std::thread::sleep(Duration::from_millis(ms.into()));
            0
        }
    };
    if events.is_empty() {
        // Nested in a signal handler that interrupted this loop's own wait, whose buffer
        // is out: a small one of our own, and the state's slot stays empty for that wait.
        let mut spare = [EpollEvent::empty(); SPARE_EVENTS];
        let n = wait_into(&mut spare);
        // SAFETY: `ev` is live.
        return unsafe { with_state(ev, |st| st.take_events(&spare[..n])) }
            .map(|()| n)
            .ok_or(Leave);
    }
    // While the buffer is out of the state, a global names it: a process killed during the
    // wait (SIGTERM's default action) still has a pointer to it where a leak checker looks
    // (valgrind reported it as lost: the only copy was in a register of the wait).
    WAITING_WITH.store(events.as_mut_ptr(), Ordering::Relaxed);
    let n = wait_into(&mut events);
    WAITING_WITH.store(core::ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: `ev` is live; the buffer goes back.
    unsafe {
        with_state(ev, |st| {
            st.take_events(&events[..n]);
            st.events = events;
        })
    }
    .map(|()| n)
    .ok_or(Leave)
}
