//! The standalone event loop: our own epoll loop behind Melon's `mln_event` semantics
//! (spec §6), exported to C as `mln_event_*` by `capi::event`.
//!
//! What is Melon's: the flag vocabulary and its replace/APPEND/CLR rules, the O_NONBLOCK
//! handling, fd timeouts with `M_EV_UNLIMITED`/`M_EV_UNMODIFIED`, one-shot directions, the
//! order of work inside one dispatch iteration, RECV→SEND→ERROR per descriptor, and leaving
//! only through `is_break`. What is deliberately ours (DECISIONS.md, spec §8):
//!
//! * a monotonic clock and 64-bit deadline arithmetic (D15);
//! * no fixed sleeps: `epoll_wait` blocks exactly until the next deadline or an event;
//! * one-shot is tracked per direction and epoll is always re-armed with the remaining
//!   interest (level-triggered, no `EPOLLONESHOT`), so a persistent RECV next to a one-shot
//!   SEND never stalls (D10);
//! * no locks at all (D9): a loop is single-threaded, see "Thread rules" below;
//! * handlers may do anything to any descriptor, timer or to the loop itself without
//!   use-after-free: descriptor records live in a table indexed by fd and carry a
//!   generation that epoll events and the active queue repeat, so a stale event for a
//!   cleared or reused descriptor is ignored; timer handles are (slot, generation) tokens,
//!   so cancelling a fired timer is a harmless no-op; `free` called from inside `dispatch`
//!   is deferred until the outermost `dispatch` returns.
//!
//! Thread rules: a loop belongs to one thread at a time. Every call on a loop (including
//! the ones handlers make) must come from the thread that runs its `dispatch`, or from any
//! single thread while nobody dispatches it. None of these functions is async-signal-safe;
//! a signal handler may only set `is_break` (an interrupted `epoll_wait` re-checks it).
//!
//! Fork: a child inherits the parent's epoll *instance*; changing it from the child would
//! change the parent's interest set. So `free` never calls `epoll_ctl`; it closes the epoll
//! descriptor and frees memory, and never closes user descriptors.

use crate::abi::{
    dispatch_callback, ev_fd_handler, ev_tm_handler, mln_event_s, mln_event_t, mln_event_timer_t,
    M_EV_APPEND, M_EV_BLOCK, M_EV_CLR, M_EV_EPOLL_SIZE, M_EV_ERROR, M_EV_FD_MASK, M_EV_NONBLOCK,
    M_EV_ONESHOT, M_EV_RECV, M_EV_RSE_MASK, M_EV_SEND, M_EV_UNLIMITED, M_EV_UNMODIFIED,
};
use crate::sys::syscall;
use core::ffi::{c_int, c_void};
use core::ptr::{self, addr_of, addr_of_mut};
use std::alloc::{alloc, dealloc, Layout};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;

/// The directions in the order their handlers run (spec §6, step 3).
const DIRS: [u32; 3] = [M_EV_RECV, M_EV_SEND, M_EV_ERROR];
const NS_PER_MS: u64 = 1_000_000;
/// Stale (cancelled/replaced) heap entries tolerated beyond twice the live ones before the
/// heap is rebuilt; keeps lazy cancellation O(1) amortised and memory bounded.
const HEAP_SLACK: usize = 1024;

/// A handler with its user data.
#[derive(Clone, Copy)]
struct FdCall {
    h: ev_fd_handler,
    data: *mut c_void,
}

impl FdCall {
    const NONE: FdCall = FdCall {
        h: None,
        data: ptr::null_mut(),
    };
}

/// One registered descriptor (Melon's `mln_event_fd_t`, Appendix A, re-thought).
struct FdRec {
    /// Registered directions (`M_EV_RECV | M_EV_SEND | M_EV_ERROR`).
    dirs: u32,
    /// The subset of `dirs` that is removed after firing once.
    oneshot: u32,
    /// RECV, SEND, ERROR handlers. A replace disables directions but keeps the pointers,
    /// which matters only for directions that already fired this round (spec §6).
    calls: [FdCall; 3],
    timeout: FdCall,
    /// Pending fd-timeout deadline (monotonic ns) and the sequence number of its heap entry.
    deadline: Option<u64>,
    timeout_seq: u64,
    /// Whether epoll currently holds this descriptor with our data.
    in_epoll: bool,
    /// Directions reported by epoll and not yet handled; `in_active` = queued.
    active: u32,
    in_active: bool,
}

impl FdRec {
    fn new() -> FdRec {
        FdRec {
            dirs: 0,
            oneshot: 0,
            calls: [FdCall::NONE; 3],
            timeout: FdCall::NONE,
            deadline: None,
            timeout_seq: 0,
            in_epoll: false,
            active: 0,
            in_active: false,
        }
    }
}

#[derive(Default)]
struct FdSlot {
    /// Bumped each time a record is created for this fd number.
    gen: u32,
    rec: Option<Box<FdRec>>,
}

struct TimerRec {
    h: ev_tm_handler,
    data: *mut c_void,
}

#[derive(Default)]
struct TimerSlot {
    gen: u32,
    rec: Option<TimerRec>,
}

/// `(deadline ns, sequence, index, generation)`, smallest first. The index is the fd for
/// fd timeouts and the timer slot for timers. Ties run in the order they were set.
type HeapEntry = Reverse<(u64, u64, u32, u32)>;

struct State {
    epfd: c_int,
    fds: Vec<FdSlot>,
    active: VecDeque<(c_int, u32)>,
    fd_timeouts: BinaryHeap<HeapEntry>,
    live_fd_timeouts: usize,
    timers: Vec<TimerSlot>,
    free_timers: Vec<u32>,
    timer_heap: BinaryHeap<HeapEntry>,
    live_timers: usize,
    seq: u64,
    callback: dispatch_callback,
    callback_data: *mut c_void,
    /// Nesting depth of `dispatch` on this loop, and whether `free` was called inside it.
    depth: u32,
    freed: bool,
    events: Vec<libc::epoll_event>,
}

/// The allocation behind a `*mut mln_event_t`: Melon's public struct first, so the C
/// macros reach `is_break` at offset 136, then our private state.
#[repr(C)]
struct Loop {
    ev: mln_event_t,
    st: State,
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

fn deadline_after_ms(ms: u64) -> u64 {
    now_ns().saturating_add(ms.saturating_mul(NS_PER_MS))
}

/// Epoll interest for a direction set (spec §2: RECV→EPOLLIN, SEND→EPOLLOUT,
/// ERROR→EPOLLERR). Always level-triggered.
fn epoll_mask(dirs: u32) -> u32 {
    let mut m = 0;
    if dirs & M_EV_RECV != 0 {
        m |= libc::EPOLLIN as u32;
    }
    if dirs & M_EV_SEND != 0 {
        m |= libc::EPOLLOUT as u32;
    }
    if dirs & M_EV_ERROR != 0 {
        m |= libc::EPOLLERR as u32;
    }
    m
}

/// Which registered directions an epoll report fires. EPOLLHUP counts as readable (a pipe
/// whose writer is gone reports HUP without IN). Epoll reports ERR/HUP whatever the
/// interest; one that maps to no registered direction wakes every registered direction so
/// the handler meets the condition in its read/write, where Melon would spin unseen.
fn fired_dirs(events: u32, dirs: u32) -> u32 {
    let mut f = 0;
    if events & (libc::EPOLLIN | libc::EPOLLHUP) as u32 != 0 {
        f |= M_EV_RECV;
    }
    if events & libc::EPOLLOUT as u32 != 0 {
        f |= M_EV_SEND;
    }
    if events & libc::EPOLLERR as u32 != 0 {
        f |= M_EV_ERROR;
    }
    f &= dirs;
    if f == 0 && events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
        f = dirs;
    }
    f
}

fn epoll_data(fd: c_int, gen: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(fd as u32)
}

fn timer_handle(idx: u32, gen: u32) -> *mut mln_event_timer_t {
    // A token, never dereferenced: slot + 1 keeps it non-NULL.
    ((u64::from(gen) << 32) | (u64::from(idx) + 1)) as usize as *mut mln_event_timer_t
}

fn timer_token(t: *mut mln_event_timer_t) -> Option<(usize, u32)> {
    let v = t as usize as u64;
    let low = v & 0xffff_ffff;
    if low == 0 {
        return None;
    }
    Some(((low - 1) as usize, (v >> 32) as u32))
}

fn fd_is_open(fd: c_int) -> bool {
    syscall!(fcntl(fd, libc::F_GETFD)).is_ok()
}

/// Sets or clears O_NONBLOCK; errors are ignored as in Melon (the descriptor may not be
/// one that supports it, or may already be closed).
fn set_nonblock(fd: c_int, on: bool) {
    if let Ok(fl) = syscall!(fcntl(fd, libc::F_GETFL)) {
        let want = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        if want != fl {
            let _ = syscall!(fcntl(fd, libc::F_SETFL, want));
        }
    }
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn rec(&self, fd: c_int, gen: u32) -> Option<&FdRec> {
        let slot = self.fds.get(usize::try_from(fd).ok()?)?;
        if slot.gen != gen {
            return None;
        }
        slot.rec.as_deref()
    }

    fn rec_mut(&mut self, fd: c_int, gen: u32) -> Option<&mut FdRec> {
        let slot = self.fds.get_mut(usize::try_from(fd).ok()?)?;
        if slot.gen != gen {
            return None;
        }
        slot.rec.as_deref_mut()
    }

    /// Makes epoll's interest match `rec.dirs`. An empty set is removed from epoll rather
    /// than kept with no events, because epoll reports ERR/HUP regardless of interest.
    /// MOD falls back to ADD (the user closed and reopened the number) and ADD to MOD (a
    /// registration survived a failed DEL); remaining errors are ignored as in Melon.
    fn sync_epoll(epfd: c_int, fd: c_int, gen: u32, rec: &mut FdRec) {
        let want = epoll_mask(rec.dirs);
        if want == 0 {
            if rec.in_epoll {
                // A CLR'd or emptied descriptor may already be closed: ignore the error.
                let _ = syscall!(epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, ptr::null_mut()));
                rec.in_epoll = false;
            }
            return;
        }
        let mut e = libc::epoll_event {
            events: want,
            u64: epoll_data(fd, gen),
        };
        let ctl = |op: c_int, e: &mut libc::epoll_event| -> io::Result<c_int> {
            syscall!(epoll_ctl(epfd, op, fd, e))
        };
        let first = if rec.in_epoll {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        let r = match ctl(first, &mut e) {
            Err(err)
                if first == libc::EPOLL_CTL_MOD && err.raw_os_error() == Some(libc::ENOENT) =>
            {
                ctl(libc::EPOLL_CTL_ADD, &mut e)
            }
            Err(err)
                if first == libc::EPOLL_CTL_ADD && err.raw_os_error() == Some(libc::EEXIST) =>
            {
                ctl(libc::EPOLL_CTL_MOD, &mut e)
            }
            r => r,
        };
        rec.in_epoll = r.is_ok();
        if let Err(err) = r {
            crate::log::debug(format_args!("mln_event_fd_set: epoll_ctl fd {fd}: {err}"));
        }
    }

    /// `flag == M_EV_CLR`: forget the descriptor. Its queued activation and timeout heap
    /// entry become stale by generation; nothing of it runs any more, even in the round
    /// that is being dispatched (spec §6).
    fn clear_fd(&mut self, fd: c_int) {
        let epfd = self.epfd;
        let Some(slot) = self.fds.get_mut(fd as usize) else {
            return;
        };
        let Some(mut rec) = slot.rec.take() else {
            return;
        };
        if rec.deadline.take().is_some() {
            self.live_fd_timeouts -= 1;
        }
        rec.dirs = 0;
        Self::sync_epoll(epfd, fd, 0, &mut rec);
    }

    fn set_fd(
        &mut self,
        fd: c_int,
        flag: u32,
        timeout_ms: c_int,
        data: *mut c_void,
        h: ev_fd_handler,
    ) -> Result<(), ()> {
        let idx = fd as usize;
        let dirs = flag & M_EV_RSE_MASK;
        let exists = self.fds.get(idx).is_some_and(|s| s.rec.is_some());
        if !exists && !fd_is_open(fd) {
            // Melon would register a descriptor that can never fire and return 0.
            crate::log::debug(format_args!("mln_event_fd_set: fd {fd} is not open"));
            return Err(());
        }
        if idx >= self.fds.len() {
            self.fds
                .try_reserve(idx + 1 - self.fds.len())
                .map_err(|_| ())?;
            self.fds.resize_with(idx + 1, FdSlot::default);
        }
        if timeout_ms != M_EV_UNLIMITED && timeout_ms != M_EV_UNMODIFIED {
            self.fd_timeouts.try_reserve(1).map_err(|_| ())?;
        }
        self.active.try_reserve(1).map_err(|_| ())?;

        let slot = &mut self.fds[idx];
        let resync = match slot.rec.as_deref_mut() {
            None => {
                // New descriptor: O_NONBLOCK is set or cleared whatever APPEND says.
                set_nonblock(fd, flag & M_EV_NONBLOCK != 0);
                slot.gen = slot.gen.wrapping_add(1);
                slot.rec = Some(Box::new(FdRec::new()));
                true
            }
            Some(rec) if flag & M_EV_APPEND == 0 => {
                // Replace: BLOCK is implicit, every direction and one-shot mark goes.
                set_nonblock(fd, flag & M_EV_NONBLOCK != 0);
                rec.dirs = 0;
                rec.oneshot = 0;
                true
            }
            Some(_) => {
                if flag & M_EV_NONBLOCK != 0 {
                    set_nonblock(fd, true);
                } else if flag & M_EV_BLOCK != 0 {
                    set_nonblock(fd, false);
                }
                false
            }
        };
        let gen = slot.gen;

        match timeout_ms {
            M_EV_UNMODIFIED => {}
            M_EV_UNLIMITED => {
                if let Some(rec) = self.rec_mut(fd, gen) {
                    if rec.deadline.take().is_some() {
                        self.live_fd_timeouts -= 1;
                    }
                }
            }
            t => {
                // Any other negative value is already due, as Melon's arithmetic makes it.
                let deadline = deadline_after_ms(u64::try_from(t).unwrap_or(0));
                let seq = self.next_seq();
                let rec = self.fds[idx].rec.as_deref_mut().expect("created above");
                if rec.deadline.replace(deadline).is_none() {
                    self.live_fd_timeouts += 1;
                }
                rec.timeout_seq = seq;
                self.fd_timeouts
                    .push(Reverse((deadline, seq, fd as u32, gen)));
                self.compact_fd_timeouts();
            }
        }

        let epfd = self.epfd;
        let rec = self.fds[idx].rec.as_deref_mut().expect("created above");
        for (i, d) in DIRS.iter().enumerate() {
            if dirs & d == 0 {
                continue;
            }
            rec.dirs |= d;
            rec.calls[i] = FdCall { h, data };
            if flag & M_EV_ONESHOT != 0 {
                rec.oneshot |= d;
            } else {
                rec.oneshot &= !d;
            }
        }
        // Melon sends nothing to epoll when no direction is given; a replace that leaves no
        // direction is the exception here: the descriptor leaves epoll instead of keeping a
        // stale interest whose events nobody would handle.
        if dirs != 0 || resync {
            Self::sync_epoll(epfd, fd, gen, rec);
        }
        Ok(())
    }

    fn fd_timeout_valid(&self, e: &(u64, u64, u32, u32)) -> bool {
        let &(_, seq, fd, gen) = e;
        self.rec(fd as c_int, gen)
            .is_some_and(|r| r.deadline.is_some() && r.timeout_seq == seq)
    }

    fn timer_valid(&self, e: &(u64, u64, u32, u32)) -> bool {
        let &(_, _, idx, gen) = e;
        self.timers
            .get(idx as usize)
            .is_some_and(|s| s.gen == gen && s.rec.is_some())
    }

    fn compact_fd_timeouts(&mut self) {
        if self.fd_timeouts.len() > 2 * self.live_fd_timeouts + HEAP_SLACK {
            let mut v = std::mem::take(&mut self.fd_timeouts).into_vec();
            v.retain(|Reverse(e)| self.fd_timeout_valid(e));
            self.fd_timeouts = BinaryHeap::from(v);
        }
    }

    fn compact_timers(&mut self) {
        if self.timer_heap.len() > 2 * self.live_timers + HEAP_SLACK {
            let mut v = std::mem::take(&mut self.timer_heap).into_vec();
            v.retain(|Reverse(e)| self.timer_valid(e));
            self.timer_heap = BinaryHeap::from(v);
        }
    }

    fn add_timer(&mut self, msec: u32, data: *mut c_void, h: ev_tm_handler) -> Option<(u32, u32)> {
        self.timer_heap.try_reserve(1).ok()?;
        let idx = match self.free_timers.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.timers.len())
                    .ok()
                    .filter(|&i| i < u32::MAX)?;
                self.timers.try_reserve(1).ok()?;
                self.free_timers.try_reserve(1).ok()?;
                self.timers.push(TimerSlot::default());
                i
            }
        };
        let slot = &mut self.timers[idx as usize];
        slot.gen = slot.gen.wrapping_add(1);
        slot.rec = Some(TimerRec { h, data });
        let gen = slot.gen;
        let deadline = deadline_after_ms(u64::from(msec));
        let seq = self.next_seq();
        self.timer_heap.push(Reverse((deadline, seq, idx, gen)));
        self.live_timers += 1;
        self.compact_timers();
        Some((idx, gen))
    }

    fn remove_timer(&mut self, idx: usize, gen: u32) -> Option<TimerRec> {
        let slot = self.timers.get_mut(idx)?;
        if slot.gen != gen {
            return None;
        }
        let rec = slot.rec.take()?;
        self.live_timers -= 1;
        // Reserved when the slot was created, so this never allocates.
        self.free_timers.push(idx as u32);
        Some(rec)
    }

    /// The next timer due at `now` that was set before this step began (`limit`), so a
    /// 0 ms timer set by a timer handler waits for the next step instead of starving fds.
    fn pop_due_timer(&mut self, now: u64, limit: u64) -> Option<TimerRec> {
        loop {
            let &Reverse((deadline, seq, idx, gen)) = self.timer_heap.peek()?;
            if deadline > now || seq > limit {
                return None;
            }
            self.timer_heap.pop();
            if let Some(rec) = self.remove_timer(idx as usize, gen) {
                return Some(rec);
            }
        }
    }

    fn pop_due_fd_timeout(&mut self, now: u64, limit: u64) -> Option<(c_int, FdCall)> {
        loop {
            let &Reverse((deadline, seq, fd, gen)) = self.fd_timeouts.peek()?;
            if deadline > now || seq > limit {
                return None;
            }
            self.fd_timeouts.pop();
            let fd = fd as c_int;
            if let Some(rec) = self.rec_mut(fd, gen) {
                if rec.deadline.is_some() && rec.timeout_seq == seq {
                    rec.deadline = None;
                    let call = rec.timeout;
                    self.live_fd_timeouts -= 1;
                    return Some((fd, call));
                }
            }
        }
    }

    /// Milliseconds `epoll_wait` may block: until the earliest live deadline, rounded up so
    /// that we never wake before it; -1 when nothing is pending.
    fn wait_timeout_ms(&mut self) -> c_int {
        if !self.active.is_empty() {
            return 0;
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
        let next = [self.timer_heap.peek(), self.fd_timeouts.peek()]
            .into_iter()
            .flatten()
            .map(|Reverse(e)| e.0)
            .min();
        let Some(deadline) = next else {
            return -1;
        };
        let now = now_ns();
        if deadline <= now {
            return 0;
        }
        let ms = (deadline - now).div_ceil(NS_PER_MS);
        c_int::try_from(ms).unwrap_or(c_int::MAX)
    }

    /// Records what epoll reported (spec §6 step 6): one-shot directions that fired are
    /// removed now and epoll re-armed with what remains; the handlers run in step 3 of the
    /// next iteration.
    fn take_events(&mut self, n: usize) {
        let epfd = self.epfd;
        for i in 0..n {
            let e = self.events[i];
            let (events, data) = (e.events, e.u64);
            let fd = data as u32 as c_int;
            let gen = (data >> 32) as u32;
            let Some(slot) = self.fds.get_mut(fd as usize) else {
                continue;
            };
            if slot.gen != gen {
                continue;
            }
            let Some(rec) = slot.rec.as_deref_mut() else {
                continue;
            };
            let fired = fired_dirs(events, rec.dirs);
            if fired == 0 {
                continue;
            }
            let shot = fired & rec.oneshot;
            if shot != 0 {
                rec.dirs &= !shot;
                rec.oneshot &= !shot;
                Self::sync_epoll(epfd, fd, gen, rec);
            }
            rec.active |= fired;
            if !rec.in_active {
                rec.in_active = true;
                self.active.push_back((fd, gen));
            }
        }
    }
}

/// Why a dispatch step stopped early.
struct Leave;

/// The private state of a loop, or `None` for NULL.
///
/// # Safety
/// `ev` is NULL or was returned by [`new`] and is not deallocated yet.
unsafe fn raw_state(ev: *mut mln_event_t) -> Option<*mut State> {
    if ev.is_null() {
        return None;
    }
    // SAFETY: `ev` is the first field of a live `Loop` (repr(C)), so the cast is exact;
    // `addr_of_mut!` creates no reference.
    Some(unsafe { addr_of_mut!((*ev.cast::<Loop>()).st) })
}

/// A short-lived `&mut State` for a live, not freed loop.
///
/// # Safety
/// As [`raw_state`], and the caller must drop the reference before calling any user
/// handler (which may re-enter this module and take its own).
unsafe fn state<'a>(ev: *mut mln_event_t) -> Option<&'a mut State> {
    // SAFETY: per the contract; the loop is single-threaded and no other reference to the
    // state is alive, because none is ever held across a handler call.
    let st = unsafe { &mut *raw_state(ev)? };
    if st.freed {
        None
    } else {
        Some(st)
    }
}

/// Bit 0 of `is_break`. Read through the raw pointer every time: C sets it with a plain
/// store from handlers (`mln_event_break_set`), possibly from a signal handler.
unsafe fn is_break(ev: *mut mln_event_t) -> bool {
    // SAFETY: `ev` is a live loop; `is_break` is a plain u32 at offset 136.
    unsafe { ptr::read_volatile(addr_of!((*ev).is_break)) & 1 != 0 }
}

/// Whether dispatch must return now: break set, or the loop was freed by a handler.
unsafe fn must_leave(ev: *mut mln_event_t) -> bool {
    // SAFETY: `ev` is live (deallocation is deferred while dispatch runs); reading one
    // field through the raw pointer creates no reference.
    unsafe { is_break(ev) || raw_state(ev).is_some_and(|st| (*st).freed) }
}

/// `mln_event_new`: a new loop with `is_break` 0, or NULL if the epoll descriptor or the
/// memory cannot be had. The epoll descriptor is close-on-exec.
pub fn new() -> *mut mln_event_t {
    let Ok(epfd) = syscall!(epoll_create1(libc::EPOLL_CLOEXEC)) else {
        return ptr::null_mut();
    };
    let mut events = Vec::new();
    if events.try_reserve_exact(M_EV_EPOLL_SIZE as usize).is_err() {
        // SAFETY: `epfd` was just created by us and is not shared.
        unsafe { libc::close(epfd) };
        return ptr::null_mut();
    }
    events.resize(
        M_EV_EPOLL_SIZE as usize,
        libc::epoll_event { events: 0, u64: 0 },
    );
    let layout = Layout::new::<Loop>();
    // SAFETY: `Loop` has a non-zero size.
    let p = unsafe { alloc(layout) }.cast::<Loop>();
    if p.is_null() {
        // SAFETY: as above.
        unsafe { libc::close(epfd) };
        return ptr::null_mut();
    }
    let lp = Loop {
        ev: mln_event_s {
            _private0: [0; 17],
            is_break: 0,
            _private1: [0; 1],
            _private2: [0; 8],
        },
        st: State {
            epfd,
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
            depth: 0,
            freed: false,
            events,
        },
    };
    // SAFETY: `p` is a fresh allocation with `Loop`'s layout.
    unsafe { p.write(lp) };
    p.cast::<mln_event_t>()
}

/// Closes the epoll descriptor and releases the memory.
///
/// # Safety
/// `ev` was returned by [`new`], nobody dispatches it and it is not used afterwards.
unsafe fn destroy(ev: *mut mln_event_t) {
    let p = ev.cast::<Loop>();
    // SAFETY: per the contract `p` is a live `Loop` allocated by `new` with this layout.
    unsafe {
        if (*p).st.epfd >= 0 {
            libc::close((*p).st.epfd);
        }
        ptr::drop_in_place(p);
        dealloc(p.cast::<u8>(), Layout::new::<Loop>());
    }
}

/// `mln_event_free`: releases the loop. NULL is a no-op. Never calls `epoll_ctl` (after
/// `fork` the epoll instance is shared with the parent) and never closes user descriptors.
/// Called from inside the loop's own `dispatch` (Melon: use-after-free), the loop stops
/// running handlers, `dispatch` returns, and the memory goes when the outermost `dispatch`
/// has returned.
pub unsafe fn free(ev: *mut mln_event_t) {
    if ev.is_null() {
        return;
    }
    if let Some(h) = *FREE_HOOK.lock().unwrap_or_else(|p| p.into_inner()) {
        h(ev);
    }
    // SAFETY: caller contract: NULL or a loop from `new` not yet freed.
    let Some(st) = (unsafe { state(ev) }) else {
        return;
    };
    if st.depth > 0 {
        if st.epfd >= 0 {
            // SAFETY: our own epoll descriptor; closing it without EPOLL_CTL_DEL is what
            // keeps a forked child from touching the parent's interest set.
            unsafe { libc::close(st.epfd) };
            st.epfd = -1;
        }
        st.freed = true;
        return;
    }
    // SAFETY: not dispatching, and the caller gives the loop up.
    unsafe { destroy(ev) };
}

static FREE_HOOK: std::sync::Mutex<Option<fn(*mut mln_event_t)>> = std::sync::Mutex::new(None);

/// Sets the function `free` calls first, with the loop being freed.
pub fn set_free_hook(h: fn(*mut mln_event_t)) {
    *FREE_HOOK.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
}

/// How many `dispatch` calls of `ev` are running.
pub unsafe fn depth(ev: *mut mln_event_t) -> u32 {
    // SAFETY: caller contract.
    unsafe { state(ev) }.map_or(0, |st| st.depth)
}

/// `mln_event_fd_set` (spec §6): register, change (`M_EV_APPEND` or replace) or clear
/// (`flag == M_EV_CLR` exactly) interest in `fd`. Returns 0, or -1 for a NULL loop, a
/// negative or not-open new fd, or memory exhaustion. Bits outside `M_EV_FD_MASK` are
/// ignored. Clearing an unknown or already closed fd returns 0.
pub unsafe fn fd_set(
    ev: *mut mln_event_t,
    fd: c_int,
    flag: u32,
    timeout_ms: c_int,
    data: *mut c_void,
    h: ev_fd_handler,
) -> c_int {
    // SAFETY: caller contract: `ev` is NULL or a live loop.
    let Some(st) = (unsafe { state(ev) }) else {
        return -1;
    };
    if fd < 0 {
        return -1;
    }
    let flag = flag & M_EV_FD_MASK;
    if flag == M_EV_CLR {
        st.clear_fd(fd);
        return 0;
    }
    match st.set_fd(fd, flag, timeout_ms, data, h) {
        Ok(()) => 0,
        Err(()) => -1,
    }
}

/// `mln_event_fd_timeout_handler_set`: the handler run once when the fd's timeout expires
/// before any activation. No-op for an unregistered fd or a NULL loop.
pub unsafe fn fd_timeout_handler_set(
    ev: *mut mln_event_t,
    fd: c_int,
    data: *mut c_void,
    h: ev_fd_handler,
) {
    // SAFETY: caller contract.
    let Some(st) = (unsafe { state(ev) }) else {
        return;
    };
    let Ok(idx) = usize::try_from(fd) else {
        return;
    };
    if let Some(rec) = st.fds.get_mut(idx).and_then(|s| s.rec.as_deref_mut()) {
        rec.timeout = FdCall { h, data };
    }
}

/// `mln_event_timer_set`: a one-shot timer `msec` ms from now (monotonic, no overflow).
/// Returns a handle valid until the timer fires or is cancelled, or NULL (NULL loop,
/// memory). A NULL handler makes a timer that fires silently.
pub unsafe fn timer_set(
    ev: *mut mln_event_t,
    msec: u32,
    data: *mut c_void,
    h: ev_tm_handler,
) -> *mut mln_event_timer_t {
    // SAFETY: caller contract.
    let Some(st) = (unsafe { state(ev) }) else {
        return ptr::null_mut();
    };
    match st.add_timer(msec, data, h) {
        Some((idx, gen)) => timer_handle(idx, gen),
        None => ptr::null_mut(),
    }
}

/// `mln_event_timer_cancel`: cancels a pending timer. NULL, or a handle that already fired
/// or was cancelled (Melon: double free), is a no-op.
pub unsafe fn timer_cancel(ev: *mut mln_event_t, t: *mut mln_event_timer_t) {
    // SAFETY: caller contract.
    let Some(st) = (unsafe { state(ev) }) else {
        return;
    };
    if let Some((idx, gen)) = timer_token(t) {
        if st.remove_timer(idx, gen).is_some() {
            st.compact_timers();
        }
    }
}

/// `mln_event_callback_set`: `cb(ev, data)` runs at the top of every iteration; NULL
/// disables it.
pub unsafe fn callback_set(ev: *mut mln_event_t, cb: dispatch_callback, data: *mut c_void) {
    // SAFETY: caller contract.
    if let Some(st) = unsafe { state(ev) } {
        st.callback = cb;
        st.callback_data = data;
    }
}

/// `mln_event_dispatch`: runs the loop until `is_break` is set (it is never reset here).
/// NULL is a no-op.
pub unsafe fn dispatch(ev: *mut mln_event_t) {
    // SAFETY: caller contract.
    let Some(st) = (unsafe { state(ev) }) else {
        return;
    };
    st.depth += 1;
    // SAFETY: `ev` is live for the whole run: `free` defers deallocation while depth > 0.
    let _ = unsafe { run(ev) };
    // SAFETY: still allocated (see above); the state is re-derived after the handlers.
    unsafe {
        let st = raw_state(ev).expect("non-null");
        (*st).depth -= 1;
        if (*st).freed && (*st).depth == 0 {
            destroy(ev);
        }
    }
}

/// One `Err(Leave)` return = dispatch returns now.
unsafe fn run(ev: *mut mln_event_t) -> Result<(), Leave> {
    // SAFETY (whole body): `ev` is live; every `state(ev)` reference is dropped before a
    // handler is called.
    unsafe {
        loop {
            leave_if(ev)?;
            // Step 1: the per-iteration callback.
            let (cb, data) = {
                let st = state(ev).ok_or(Leave)?;
                (st.callback, st.callback_data)
            };
            if let Some(cb) = cb {
                cb(ev, data);
                leave_if(ev)?;
            }
            run_timers(ev)?; // step 2
            run_active(ev)?; // step 3
            run_fd_timeouts(ev)?; // step 4
            run_timers(ev)?; // step 5: e.g. 0 ms timers set by the fd handlers above
            wait(ev); // step 6
        }
    }
}

unsafe fn leave_if(ev: *mut mln_event_t) -> Result<(), Leave> {
    // SAFETY: `ev` is live.
    if unsafe { must_leave(ev) } {
        Err(Leave)
    } else {
        Ok(())
    }
}

/// Expired timers, earliest first, break checked after each (spec §6 steps 2 and 5). The
/// timer is gone before its handler runs, so the handler may cancel it harmlessly.
unsafe fn run_timers(ev: *mut mln_event_t) -> Result<(), Leave> {
    let (now, limit) = {
        // SAFETY: `ev` is live; reference dropped at the end of the block.
        let st = unsafe { state(ev) }.ok_or(Leave)?;
        (now_ns(), st.seq)
    };
    loop {
        // SAFETY: as above.
        let Some(t) = (unsafe { state(ev) }.ok_or(Leave)?).pop_due_timer(now, limit) else {
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

/// Active descriptors in report order (spec §6 step 3): the pending fd timeout goes, then
/// RECV, SEND, ERROR handlers for the directions that fired. Before each handler, a CLR
/// (generation gone or changed) skips the rest; a break puts the rest back in the queue for
/// the next `dispatch`.
unsafe fn run_active(ev: *mut mln_event_t) -> Result<(), Leave> {
    loop {
        let (fd, gen, fired) = {
            // SAFETY: `ev` is live; reference dropped at the end of the block.
            let st = unsafe { state(ev) }.ok_or(Leave)?;
            let Some((fd, gen)) = st.active.pop_front() else {
                return Ok(());
            };
            let Some(rec) = st.rec_mut(fd, gen) else {
                continue;
            };
            let fired = rec.active;
            rec.active = 0;
            rec.in_active = false;
            if rec.deadline.take().is_some() {
                st.live_fd_timeouts -= 1;
            }
            (fd, gen, fired)
        };
        for (i, d) in DIRS.iter().enumerate() {
            if fired & d == 0 {
                continue;
            }
            let call = {
                // SAFETY: as above.
                let st = unsafe { state(ev) }.ok_or(Leave)?;
                let Some(rec) = st.rec_mut(fd, gen) else {
                    break;
                };
                // SAFETY: `ev` is live.
                if unsafe { is_break(ev) } {
                    let rest = fired & !(*d - 1);
                    rec.active |= rest;
                    if !rec.in_active {
                        rec.in_active = true;
                        st.active.push_front((fd, gen));
                    }
                    return Err(Leave);
                }
                rec.calls[i]
            };
            if let Some(h) = call.h {
                // SAFETY: a C handler given to `fd_set` for this direction.
                unsafe { h(ev, fd, call.data) };
            }
        }
        // SAFETY: `ev` is live.
        unsafe { leave_if(ev) }?;
    }
}

/// Expired fd timeouts (spec §6 step 4): each fires once; the fd stays registered.
unsafe fn run_fd_timeouts(ev: *mut mln_event_t) -> Result<(), Leave> {
    let (now, limit) = {
        // SAFETY: `ev` is live; reference dropped at the end of the block.
        let st = unsafe { state(ev) }.ok_or(Leave)?;
        (now_ns(), st.seq)
    };
    loop {
        // SAFETY: as above.
        let Some((fd, call)) = (unsafe { state(ev) }.ok_or(Leave)?).pop_due_fd_timeout(now, limit)
        else {
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

/// Step 6: block until the next deadline or an event, then queue what fired.
unsafe fn wait(ev: *mut mln_event_t) {
    // SAFETY: `ev` is live; no handler runs in this function.
    let Some(st) = (unsafe { state(ev) }) else {
        return;
    };
    let timeout = st.wait_timeout_ms();
    let cap = st.events.len() as c_int;
    let (epfd, events) = (st.epfd, st.events.as_mut_ptr());
    // Blocking here is outside the library's critical state: a signal handler that sends
    // now may use the ordinary path (see `sigsafe`); it may add timers or interests, but
    // the event buffer is not resized by anything but `take_events`.
    let r = syscall!(epoll_wait(epfd, events, cap, timeout));
    // SAFETY: `ev` is live; re-derived after the wait.
    let Some(st) = (unsafe { state(ev) }) else {
        return;
    };
    match r {
        Ok(n) => st.take_events(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) => {
            // Only if someone closed our epoll descriptor; sleep instead of spinning.
            crate::log::error(format_args!("mln_event_dispatch: epoll_wait: {e}"));
            let ms = if timeout < 0 { 100 } else { timeout.min(100) };
            // SAFETY: poll with no descriptors is a plain sleep.
            unsafe { libc::poll(ptr::null_mut(), 0, ms) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_layout_puts_event_first() {
        assert_eq!(core::mem::offset_of!(Loop, ev), 0);
    }

    #[test]
    fn timer_handles_round_trip_and_are_non_null() {
        for &(i, g) in &[(0u32, 1u32), (5, 0), (u32::MAX - 1, u32::MAX)] {
            let h = timer_handle(i, g);
            assert!(!h.is_null());
            assert_eq!(timer_token(h), Some((i as usize, g)));
        }
        assert_eq!(timer_token(ptr::null_mut()), None);
    }

    #[test]
    fn flag_to_epoll_mapping() {
        assert_eq!(epoll_mask(M_EV_RECV), libc::EPOLLIN as u32);
        assert_eq!(epoll_mask(M_EV_SEND), libc::EPOLLOUT as u32);
        assert_eq!(epoll_mask(M_EV_ERROR), libc::EPOLLERR as u32);
        assert_eq!(epoll_mask(0), 0);
    }

    #[test]
    fn fired_directions() {
        let inn = libc::EPOLLIN as u32;
        let out = libc::EPOLLOUT as u32;
        let hup = libc::EPOLLHUP as u32;
        let err = libc::EPOLLERR as u32;
        assert_eq!(fired_dirs(inn | out, M_EV_RECV), M_EV_RECV);
        assert_eq!(fired_dirs(inn | out, M_EV_RSE_MASK), M_EV_RECV | M_EV_SEND);
        assert_eq!(fired_dirs(hup, M_EV_RECV), M_EV_RECV);
        assert_eq!(fired_dirs(err, M_EV_SEND), M_EV_SEND);
        assert_eq!(fired_dirs(err, M_EV_SEND | M_EV_ERROR), M_EV_ERROR);
        assert_eq!(fired_dirs(out, M_EV_RECV), 0);
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

    #[test]
    fn wait_timeout_rounds_up_and_ignores_cancelled() {
        let ev = new();
        // SAFETY: `ev` is a fresh loop, used by this thread only.
        unsafe {
            let st = state(ev).unwrap();
            assert_eq!(st.wait_timeout_ms(), -1);
            let (i, g) = st.add_timer(2_000_000_000, ptr::null_mut(), None).unwrap();
            let ms = st.wait_timeout_ms();
            assert!((1_999_000_000..=2_000_000_000).contains(&ms), "{ms}");
            let (i2, g2) = st.add_timer(u32::MAX, ptr::null_mut(), None).unwrap();
            st.remove_timer(i as usize, g).unwrap();
            assert_eq!(st.wait_timeout_ms(), c_int::MAX);
            let (i, g) = (i2, g2);
            st.remove_timer(i as usize, g).unwrap();
            assert_eq!(st.wait_timeout_ms(), -1);
            st.add_timer(0, ptr::null_mut(), None).unwrap();
            assert_eq!(st.wait_timeout_ms(), 0);
            free(ev);
        }
    }

    #[test]
    fn cancelled_timers_do_not_accumulate() {
        let ev = new();
        // SAFETY: as above.
        unsafe {
            let st = state(ev).unwrap();
            for _ in 0..100_000 {
                let (i, g) = st.add_timer(60_000, ptr::null_mut(), None).unwrap();
                st.remove_timer(i as usize, g).unwrap();
                st.compact_timers();
            }
            assert!(
                st.timer_heap.len() <= 2 * HEAP_SLACK + 2,
                "{}",
                st.timer_heap.len()
            );
            assert_eq!(st.timers.len(), 1);
            free(ev);
        }
    }
}
