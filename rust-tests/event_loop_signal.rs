//! Signal handlers calling into a running loop. A SIGALRM at up to 20 kHz (setitimer)
//! interrupts a loop that never blocks (an always-ready descriptor) while normal-context
//! handlers set and cancel thousands of timers and churn descriptor registrations; each
//! signal sets a timer, cancels an earlier one of its own, re-registers or clears a
//! descriptor, and changes the per-iteration callback, all on the same loop.
//!
//! Checked: no crash or corruption; a call is refused exactly when the signal interrupted
//! the loop's own bookkeeping (`is_busy`), and some calls succeed; every timer that normal
//! code set fires exactly once unless normal code cancelled it (then never); every timer a
//! signal handler set fires exactly once, or at most once if it tried to cancel it; the
//! loop is usable afterwards.
//!
//! No test harness (`harness = false`): the scenario runs in a fresh single-threaded process
//! (see `common`), so the timer's signal is delivered to the loop's thread. Nothing here
//! allocates while a signal may arrive, except the loop itself inside its own (busy)
//! bookkeeping, where signal-context calls are refused: so the loop's allocations from
//! signal context never interrupt `malloc`.
#![cfg(feature = "standalone")]

mod common;

use core::ffi::{c_int, c_void};
use core::ptr;
use mln_ipc::abi::*;
use mln_ipc::capi::event::*;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};

/// Timers set from normal context, in batches of `BATCH` per pump.
const NORMAL: usize = 8_000;
const BATCH: usize = 16;
/// Signals to handle before stopping (each sets at most one timer).
const SIGNALS: u32 = 4_000;
const SIG_SLOTS: usize = SIGNALS as usize;
/// Longest delay of any timer in the storm; the final timer waits longer.
const MAX_DELAY_MS: u32 = 3;

static EV: AtomicPtr<mln_event_t> = AtomicPtr::new(ptr::null_mut());
static STOP: AtomicBool = AtomicBool::new(false);
/// The descriptor the signal handler re-registers (an eventfd it also writes to).
static SIG_FD: AtomicU32 = AtomicU32::new(0);

#[allow(clippy::declare_interior_mutable_const)]
const Z8: AtomicU8 = AtomicU8::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZU: AtomicUsize = AtomicUsize::new(0);

/// Normal-context timers: fired count, and whether normal code cancelled it.
static NORMAL_FIRED: [AtomicU8; NORMAL] = [Z8; NORMAL];
static NORMAL_CANCELLED: [AtomicU8; NORMAL] = [Z8; NORMAL];
static NORMAL_SET: AtomicUsize = AtomicUsize::new(0);

/// Signal-context timers, one slot per signal: 0 none, 1 set, 2 set and a cancel tried.
static SIG_STATE: [AtomicU8; SIG_SLOTS] = [Z8; SIG_SLOTS];
static SIG_HANDLE: [AtomicUsize; SIG_SLOTS] = [ZU; SIG_SLOTS];
static SIG_FIRED: [AtomicU8; SIG_SLOTS] = [Z8; SIG_SLOTS];

static SIGNALS_SEEN: AtomicU32 = AtomicU32::new(0);
static TIMER_OK: AtomicU32 = AtomicU32::new(0);
static TIMER_REFUSED: AtomicU32 = AtomicU32::new(0);
static FD_OK: AtomicU32 = AtomicU32::new(0);
static FD_REFUSED: AtomicU32 = AtomicU32::new(0);
/// A call whose outcome disagreed with `is_busy` (refused while not busy, or the reverse).
static MISMATCH: AtomicU32 = AtomicU32::new(0);
static SIG_FD_READS: AtomicU32 = AtomicU32::new(0);
static CALLBACKS: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn normal_timer(_: *mut mln_event_t, data: *mut c_void) {
    NORMAL_FIRED[data as usize].fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C" fn sig_timer(_: *mut mln_event_t, data: *mut c_void) {
    SIG_FIRED[data as usize].fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C" fn sig_fd_ready(_: *mut mln_event_t, fd: c_int, _: *mut c_void) {
    let mut v = 0u64;
    // SAFETY: 8 bytes into a valid u64 from a non-blocking eventfd.
    if unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) } == 8 {
        SIG_FD_READS.fetch_add(1, Ordering::Relaxed);
    }
}

static FINAL_READY: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn final_ready(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    // SAFETY: forwarded from the loop.
    unsafe { sig_fd_ready(ev, fd, data) };
    FINAL_READY.store(true, Ordering::Relaxed);
    // SAFETY: the loop being dispatched.
    unsafe { (*ev).is_break = 1 };
}

unsafe extern "C" fn count_callback(_: *mut mln_event_t, _: *mut c_void) {
    CALLBACKS.fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C" fn spin(_: *mut mln_event_t, _: c_int, _: *mut c_void) {}

fn busy(ev: *mut mln_event_t) -> bool {
    // SAFETY: the live loop.
    unsafe { mln_ipc::reactor::is_busy(ev) }
}

extern "C" fn on_alarm(_: c_int) {
    if STOP.load(Ordering::Relaxed) {
        return;
    }
    let ev = EV.load(Ordering::Relaxed);
    let k = SIGNALS_SEEN.fetch_add(1, Ordering::Relaxed) as usize;
    if k >= SIG_SLOTS {
        return;
    }
    let refused_now = busy(ev);
    let fd = SIG_FD.load(Ordering::Relaxed) as c_int;
    // SAFETY: the live loop (freed only after the storm); every call is one that a signal
    // handler may make on its thread's loop.
    unsafe {
        let t = mln_event_timer_set(
            ev,
            k as u32 % (MAX_DELAY_MS + 1),
            k as *mut c_void,
            Some(sig_timer),
        );
        if t.is_null() {
            TIMER_REFUSED.fetch_add(1, Ordering::Relaxed);
        } else {
            SIG_HANDLE[k].store(t as usize, Ordering::Relaxed);
            SIG_STATE[k].store(1, Ordering::Relaxed);
            TIMER_OK.fetch_add(1, Ordering::Relaxed);
        }
        if t.is_null() != refused_now {
            MISMATCH.fetch_add(1, Ordering::Relaxed);
        }
        // Cancel an earlier timer of ours (it may have fired already: harmless).
        if k.is_multiple_of(3) && k >= 2 && SIG_STATE[k - 2].load(Ordering::Relaxed) == 1 {
            SIG_STATE[k - 2].store(2, Ordering::Relaxed);
            let h = SIG_HANDLE[k - 2].load(Ordering::Relaxed);
            mln_event_timer_cancel(ev, h as *mut mln_event_timer_t);
        }
        // Descriptor churn: register (replace), clear, append; and make it readable.
        let flag = match k % 3 {
            0 => M_EV_RECV | M_EV_NONBLOCK,
            1 => M_EV_CLR,
            _ => M_EV_RECV | M_EV_APPEND,
        };
        let r = mln_event_fd_set(
            ev,
            fd,
            flag,
            M_EV_UNLIMITED,
            ptr::null_mut(),
            Some(sig_fd_ready),
        );
        if r == 0 {
            FD_OK.fetch_add(1, Ordering::Relaxed);
        } else {
            FD_REFUSED.fetch_add(1, Ordering::Relaxed);
        }
        // A CLR is refused only when busy; a registration also when an APPEND finds the
        // descriptor cleared (then it registers it anew: never refused for that).
        if (r != 0) != refused_now {
            MISMATCH.fetch_add(1, Ordering::Relaxed);
        }
        let one = 1u64;
        libc::write(fd, (&one as *const u64).cast(), 8);
        mln_event_fd_timeout_handler_set(ev, fd, ptr::null_mut(), None);
        if k.is_multiple_of(2) {
            mln_event_callback_set(ev, Some(count_callback), ptr::null_mut());
        } else {
            mln_event_callback_set(ev, None, ptr::null_mut());
        }
    }
}

/// Pipes whose registration normal code churns.
const PIPES: usize = 8;
static PIPE_R: [AtomicU32; PIPES] = [const { AtomicU32::new(0) }; PIPES];
static PIPE_W: [AtomicU32; PIPES] = [const { AtomicU32::new(0) }; PIPES];
static PUMPS: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" fn pipe_ready(_: *mut mln_event_t, fd: c_int, _: *mut c_void) {
    let mut b = [0u8; 64];
    // SAFETY: valid buffer; non-blocking pipe.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) };
}

/// Normal context: sets the next batch of timers (cancelling every fifth), churns the
/// pipes' registrations, and comes back 1 ms later until the storm is over.
unsafe extern "C" fn pump(ev: *mut mln_event_t, _: *mut c_void) {
    let p = PUMPS.fetch_add(1, Ordering::Relaxed) as usize;
    // SAFETY (whole body): the live loop; open pipes.
    unsafe {
        let from = NORMAL_SET.load(Ordering::Relaxed);
        let to = (from + BATCH).min(NORMAL);
        for (i, cancelled) in NORMAL_CANCELLED.iter().enumerate().take(to).skip(from) {
            let t = mln_event_timer_set(ev, (i % 4) as u32, i as *mut c_void, Some(normal_timer));
            assert!(
                !t.is_null(),
                "a timer set from normal context is never refused"
            );
            if i.is_multiple_of(5) {
                mln_event_timer_cancel(ev, t);
                cancelled.store(1, Ordering::Relaxed);
            }
        }
        NORMAL_SET.store(to, Ordering::Relaxed);
        let i = p % PIPES;
        let (r, w) = (
            PIPE_R[i].load(Ordering::Relaxed) as c_int,
            PIPE_W[i].load(Ordering::Relaxed) as c_int,
        );
        match p / PIPES % 3 {
            0 => {
                let rc = mln_event_fd_set(
                    ev,
                    r,
                    M_EV_RECV | M_EV_NONBLOCK,
                    5,
                    ptr::null_mut(),
                    Some(pipe_ready),
                );
                assert_eq!(rc, 0);
                libc::write(w, b"x".as_ptr().cast(), 1);
            }
            1 => {
                let rc = mln_event_fd_set(
                    ev,
                    w,
                    M_EV_SEND | M_EV_ONESHOT,
                    M_EV_UNLIMITED,
                    ptr::null_mut(),
                    Some(spin),
                );
                assert_eq!(rc, 0);
            }
            _ => {
                assert_eq!(
                    mln_event_fd_set(ev, r, M_EV_CLR, 0, ptr::null_mut(), None),
                    0
                );
                assert_eq!(
                    mln_event_fd_set(ev, w, M_EV_CLR, 0, ptr::null_mut(), None),
                    0
                );
            }
        }
        if NORMAL_SET.load(Ordering::Relaxed) < NORMAL
            || SIGNALS_SEEN.load(Ordering::Relaxed) < SIGNALS
        {
            assert!(!mln_event_timer_set(ev, 1, ptr::null_mut(), Some(pump)).is_null());
            return;
        }
        // Over: no more signal-context calls, then one timer later than every timer set
        // so far (deadline order: all of them fire first).
        STOP.store(true, Ordering::Relaxed);
        set_itimer(0);
        assert!(
            !mln_event_timer_set(ev, MAX_DELAY_MS + 2, ptr::null_mut(), Some(finish)).is_null()
        );
    }
}

unsafe extern "C" fn finish(ev: *mut mln_event_t, _: *mut c_void) {
    DONE.store(true, Ordering::Relaxed);
    // SAFETY: the loop being dispatched.
    unsafe { (*ev).is_break = 1 };
}

fn set_itimer(usec: i64) {
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: usec,
    };
    let it = libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: a valid itimerval; no old value wanted.
    assert_eq!(
        unsafe { libc::setitimer(libc::ITIMER_REAL, &it, ptr::null_mut()) },
        0
    );
}

fn storm() {
    let _ = mln_ipc::log::level(); // read the environment now, not in a signal handler
                                   // SAFETY: plain syscalls and the C API on a loop owned by this (only) thread.
    unsafe {
        let ev = mln_event_new();
        assert!(!ev.is_null());
        EV.store(ev, Ordering::Relaxed);
        let efd = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
        assert!(efd >= 0);
        SIG_FD.store(efd as u32, Ordering::Relaxed);
        for i in 0..PIPES {
            let mut p = [0; 2];
            assert_eq!(
                libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK),
                0
            );
            PIPE_R[i].store(p[0] as u32, Ordering::Relaxed);
            PIPE_W[i].store(p[1] as u32, Ordering::Relaxed);
        }
        // Room for every timer up front, so that no timer_set grows a table in signal
        // context (it would be safe here, but keep the scenario about the flag).
        let mut warm = Vec::new();
        for _ in 0..(NORMAL + SIG_SLOTS) {
            warm.push(mln_event_timer_set(ev, 60_000, ptr::null_mut(), None));
        }
        for t in warm {
            mln_event_timer_cancel(ev, t);
        }
        // Never blocks: an always-readable descriptor keeps the loop iterating.
        let spinner = libc::eventfd(1, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
        assert_eq!(
            mln_event_fd_set(
                ev,
                spinner,
                M_EV_RECV,
                M_EV_UNLIMITED,
                ptr::null_mut(),
                Some(spin)
            ),
            0
        );
        assert!(!mln_event_timer_set(ev, 0, ptr::null_mut(), Some(pump)).is_null());

        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_alarm as extern "C" fn(c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0; // no SA_RESTART: the wait is interrupted too
        assert_eq!(libc::sigaction(libc::SIGALRM, &sa, ptr::null_mut()), 0);
        set_itimer(50);

        mln_event_dispatch(ev);
        assert!(DONE.load(Ordering::Relaxed));
        assert_eq!(mln_ipc::reactor::depth(ev), Some(0));

        let seen = SIGNALS_SEEN.load(Ordering::Relaxed);
        let (tok, tref) = (
            TIMER_OK.load(Ordering::Relaxed),
            TIMER_REFUSED.load(Ordering::Relaxed),
        );
        let (fok, fref) = (
            FD_OK.load(Ordering::Relaxed),
            FD_REFUSED.load(Ordering::Relaxed),
        );
        eprintln!(
            "signals {seen}: timer_set ok {tok} refused {tref}; fd_set ok {fok} refused {fref}; \
             sig fd reads {}, callbacks {}",
            SIG_FD_READS.load(Ordering::Relaxed),
            CALLBACKS.load(Ordering::Relaxed)
        );
        assert!(seen >= SIGNALS);
        assert_eq!(
            MISMATCH.load(Ordering::Relaxed),
            0,
            "refused exactly when busy"
        );
        assert!(
            tok > 0 && fok > 0,
            "signal-context calls that did not interrupt bookkeeping succeed"
        );
        assert_eq!(tok + tref, SIGNALS);

        for i in 0..NORMAL {
            let want = if NORMAL_CANCELLED[i].load(Ordering::Relaxed) == 1 {
                0
            } else {
                1
            };
            assert_eq!(
                NORMAL_FIRED[i].load(Ordering::Relaxed),
                want,
                "normal timer {i}"
            );
        }
        for k in 0..SIG_SLOTS {
            let fired = SIG_FIRED[k].load(Ordering::Relaxed);
            match SIG_STATE[k].load(Ordering::Relaxed) {
                0 => assert_eq!(fired, 0, "refused signal timer {k}"),
                1 => assert_eq!(fired, 1, "signal timer {k}"),
                _ => assert!(fired <= 1, "signal timer {k} after a cancel"),
            }
        }

        // Still consistent and usable: the signal's descriptor, registered anew from
        // normal context, fires on data (its handler breaks; the 10 s guard would fail).
        let one = 1u64;
        libc::write(efd, (&one as *const u64).cast(), 8);
        assert_eq!(
            mln_event_fd_set(
                ev,
                efd,
                M_EV_RECV,
                M_EV_UNLIMITED,
                ptr::null_mut(),
                Some(final_ready)
            ),
            0
        );
        assert_eq!(
            mln_event_fd_set(ev, spinner, M_EV_CLR, M_EV_UNLIMITED, ptr::null_mut(), None),
            0
        );
        mln_event_callback_set(ev, None, ptr::null_mut());
        DONE.store(false, Ordering::Relaxed);
        (*ev).is_break = 0;
        let guard = mln_event_timer_set(ev, 10_000, ptr::null_mut(), Some(finish));
        assert!(!guard.is_null());
        mln_event_dispatch(ev);
        assert!(
            !DONE.load(Ordering::Relaxed),
            "guard timer fired: the descriptor never did"
        );
        assert!(FINAL_READY.load(Ordering::Relaxed));
        mln_event_timer_cancel(ev, guard);
        mln_event_free(ev);
    }
}

fn main() -> ExitCode {
    common::main(&[("signal_storm", storm)])
}
