//! A loop's private state (reached only through `cell::with_state`), its monotonic clock,
//! and how long `epoll_wait` may block.

use super::fds::FdSlot;
use super::timers::TimerSlot;
use crate::abi::{dispatch_callback, M_EV_EPOLL_SIZE};
use core::ffi::{c_int, c_void};
use core::ptr;
use nix::sys::epoll::{Epoll, EpollEvent};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::AsRawFd;

pub(super) const NS_PER_MS: u64 = 1_000_000;
/// Stale (cancelled/replaced) heap entries tolerated beyond twice the live ones before a
/// heap is rebuilt; keeps lazy cancellation O(1) amortised and memory bounded.
pub(super) const HEAP_SLACK: usize = 1024;

/// `(deadline ns, sequence, index, generation)`, smallest first. The index is the fd for
/// fd timeouts and the timer slot for timers. Ties run in the order they were set.
pub(super) type HeapEntry = Reverse<(u64, u64, u32, u32)>;

pub(super) struct State {
    /// The loop's epoll descriptor (owned by the loop's header, see `cell`), for
    /// `epoll_ctl`.
    pub(super) epfd: c_int,
    pub(super) fds: Vec<FdSlot>,
    pub(super) active: VecDeque<(c_int, u32)>,
    pub(super) fd_timeouts: BinaryHeap<HeapEntry>,
    pub(super) live_fd_timeouts: usize,
    pub(super) timers: Vec<TimerSlot>,
    pub(super) free_timers: Vec<u32>,
    pub(super) timer_heap: BinaryHeap<HeapEntry>,
    pub(super) live_timers: usize,
    pub(super) seq: u64,
    pub(super) callback: dispatch_callback,
    pub(super) callback_data: *mut c_void,
    /// `epoll_wait`'s buffer. Taken out for the wait (which runs without a borrow) and put
    /// back afterwards; empty while taken.
    pub(super) events: Vec<EpollEvent>,
    /// Directions held back from epoll on every descriptor (`set_muted`; 0: none).
    pub(super) muted: u32,
}

/// Monotonic nanoseconds (D15).
///
/// Raw libc, not `nix::time::clock_gettime`: this runs about three times per dispatch
/// iteration, and nix's wrapper (not inlined across the crate boundary, plus its `Result`
/// and `TimeSpec` conversion) cost about 50 instructions per iteration, a tenth of the
/// iteration's own work, in the A/B measurement of `mln_event_dispatch` under callgrind.
#[inline]
pub(super) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux (were it
    // to fail, `ts` stays 0 and every deadline is due: never late).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

pub(super) fn deadline_after_ms(ms: u64) -> u64 {
    now_ns().saturating_add(ms.saturating_mul(NS_PER_MS))
}

impl State {
    /// An empty state for the loop whose epoll instance is `epoll`; `None` without memory.
    pub(super) fn new(epoll: &Epoll) -> Option<State> {
        let mut events = Vec::new();
        events.try_reserve_exact(M_EV_EPOLL_SIZE as usize).ok()?;
        events.resize(M_EV_EPOLL_SIZE as usize, EpollEvent::empty());
        Some(State {
            epfd: epoll.0.as_raw_fd(),
            fds: Vec::new(),
            active: VecDeque::new(),
            fd_timeouts: BinaryHeap::new(),
            live_fd_timeouts: 0,
            timers: Vec::new(),
            free_timers: Vec::new(),
            timer_heap: BinaryHeap::new(),
            live_timers: 0,
            seq: 0,
            callback: None,
            callback_data: ptr::null_mut(),
            events,
            muted: 0,
        })
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Milliseconds `epoll_wait` may block: until the earliest live deadline, rounded up so
    /// that we never wake before it; -1 when nothing is pending.
    pub(super) fn wait_timeout_ms(&mut self) -> c_int {
        let Some(deadline) = self.next_deadline_ns() else {
            return -1;
        };
        let now = now_ns();
        if deadline <= now {
            return 0;
        }
        let ms = (deadline - now).div_ceil(NS_PER_MS);
        c_int::try_from(ms).unwrap_or(c_int::MAX)
    }

    /// The earliest live deadline (monotonic ns: a timer or an fd timeout), 0 when work is
    /// queued already (activations not handled yet), `None` when nothing is pending.
    pub(super) fn next_deadline_ns(&mut self) -> Option<u64> {
        if !self.active.is_empty() {
            return Some(0);
        }
        while let Some(Reverse(e)) = self.timer_heap.peek() {
            if self.timer_valid(e) {
                break;
            }
            self.timer_heap.pop();
        }
        while let Some(Reverse(e)) = self.fd_timeouts.peek() {
            if self.fd_timeout_valid(e) {
                break;
            }
            self.fd_timeouts.pop();
        }
        [self.timer_heap.peek(), self.fd_timeouts.peek()]
            .into_iter()
            .flatten()
            .map(|Reverse(e)| e.0)
            .min()
    }
}
