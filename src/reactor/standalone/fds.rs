//! Descriptor records (a table indexed by fd, with generations), keeping epoll's interest
//! set in step with them, fd timeouts, and turning epoll's reports into the active queue.
//!
//! Raw libc, not nix, for `epoll_ctl` and `fcntl`: nix's `Epoll::{add, modify, delete}`
//! and `fcntl` take `AsFd`, and a user's descriptor is a bare number that we do not own and
//! that may already be closed (`M_EV_CLR` after `close` is supported; so is `fd_set` on a
//! number whose file the user replaced). Making a `BorrowedFd` of it would need
//! `BorrowedFd::borrow_raw`, an `unsafe` promise that it stays open, which we cannot keep;
//! the kernel answers EBADF for a closed number, and these calls handle that.

use super::state::{deadline_after_ms, State, HEAP_SLACK};
use crate::abi::{
    ev_fd_handler, M_EV_APPEND, M_EV_BLOCK, M_EV_ERROR, M_EV_NONBLOCK, M_EV_ONESHOT, M_EV_RECV,
    M_EV_RSE_MASK, M_EV_SEND, M_EV_UNLIMITED, M_EV_UNMODIFIED,
};
use crate::sys::syscall;
use core::ffi::{c_int, c_void};
use core::ptr;
use nix::sys::epoll::EpollEvent;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;

/// The directions in the order their handlers run (spec §6, step 3).
pub(super) const DIRS: [u32; 3] = [M_EV_RECV, M_EV_SEND, M_EV_ERROR];

/// A handler with its user data.
#[derive(Clone, Copy)]
pub(super) struct FdCall {
    pub(super) h: ev_fd_handler,
    pub(super) data: *mut c_void,
}

impl FdCall {
    const NONE: FdCall = FdCall {
        h: None,
        data: ptr::null_mut(),
    };
}

/// One registered descriptor (Melon's `mln_event_fd_t`, Appendix A, re-thought).
pub(super) struct FdRec {
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
pub(super) struct FdSlot {
    /// Bumped each time a record is created for this fd number.
    gen: u32,
    rec: Option<Box<FdRec>>,
}

/// What `run_active` does next for one direction of an active descriptor.
pub(super) enum Next {
    /// Run this handler (no handler: nothing to run).
    Call(FdCall),
    /// The descriptor was cleared or replaced by a handler: skip its other directions.
    Gone,
    /// A break was set: the directions left are queued again for the next `dispatch`.
    Leave,
}

/// Epoll interest for a direction set (spec §2: RECV→EPOLLIN, SEND→EPOLLOUT,
/// ERROR→EPOLLERR). Always level-triggered.
pub(super) fn epoll_mask(dirs: u32) -> u32 {
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
pub(super) fn fired_dirs(events: u32, dirs: u32) -> u32 {
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

fn fd_is_open(fd: c_int) -> bool {
    // Raw libc: see the module docs.
    syscall!(fcntl(fd, libc::F_GETFD)).is_ok()
}

/// Sets or clears O_NONBLOCK; errors are ignored as in Melon (the descriptor may not be
/// one that supports it, or may already be closed).
fn set_nonblock(fd: c_int, on: bool) {
    // Raw libc: see the module docs.
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

/// Makes epoll's interest match `rec.dirs`. An empty set is removed from epoll rather
/// than kept with no events, because epoll reports ERR/HUP regardless of interest.
/// MOD falls back to ADD (the user closed and reopened the number) and ADD to MOD (a
/// registration survived a failed DEL); remaining errors are ignored as in Melon.
/// `muted`: directions the loop holds back from epoll for now (`State::muted`).
fn sync_epoll(epfd: c_int, fd: c_int, gen: u32, rec: &mut FdRec, muted: u32) {
    let want = epoll_mask(rec.dirs & !muted);
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
    // Raw libc: see the module docs. `e` is a valid epoll_event for the call's duration.
    let ctl = |op: c_int, e: &mut libc::epoll_event| -> io::Result<c_int> {
        syscall!(epoll_ctl(epfd, op, fd, e))
    };
    let first = if rec.in_epoll {
        libc::EPOLL_CTL_MOD
    } else {
        libc::EPOLL_CTL_ADD
    };
    let r = match ctl(first, &mut e) {
        Err(err) if first == libc::EPOLL_CTL_MOD && err.raw_os_error() == Some(libc::ENOENT) => {
            ctl(libc::EPOLL_CTL_ADD, &mut e)
        }
        Err(err) if first == libc::EPOLL_CTL_ADD && err.raw_os_error() == Some(libc::EEXIST) => {
            ctl(libc::EPOLL_CTL_MOD, &mut e)
        }
        r => r,
    };
    rec.in_epoll = r.is_ok();
    if let Err(err) = r {
        crate::log::debug(format_args!("mln_event_fd_set: epoll_ctl fd {fd}: {err}"));
    }
}

impl State {
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

    /// `flag == M_EV_CLR`: forget the descriptor. Its queued activation and timeout heap
    /// entry become stale by generation; nothing of it runs any more, even in the round
    /// that is being dispatched (spec §6).
    pub(super) fn clear_fd(&mut self, fd: c_int) {
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
        sync_epoll(epfd, fd, 0, &mut rec, 0);
    }

    /// Registers or changes `fd` (`fd >= 0`, `flag` masked, not `M_EV_CLR`); `Err` for a
    /// new descriptor that is not open, or without memory.
    pub(super) fn set_fd(
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

        let (epfd, muted) = (self.epfd, self.muted);
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
            sync_epoll(epfd, fd, gen, rec, muted);
        }
        Ok(())
    }

    /// `mln_event_fd_timeout_handler_set` for a registered descriptor.
    pub(super) fn set_timeout_handler(&mut self, fd: c_int, call: FdCall) {
        let Ok(idx) = usize::try_from(fd) else {
            return;
        };
        if let Some(rec) = self.fds.get_mut(idx).and_then(|s| s.rec.as_deref_mut()) {
            rec.timeout = call;
        }
    }

    pub(super) fn fd_timeout_valid(&self, e: &(u64, u64, u32, u32)) -> bool {
        let &(_, seq, fd, gen) = e;
        self.rec(fd as c_int, gen)
            .is_some_and(|r| r.deadline.is_some() && r.timeout_seq == seq)
    }

    fn compact_fd_timeouts(&mut self) {
        if self.fd_timeouts.len() > 2 * self.live_fd_timeouts + HEAP_SLACK {
            let mut v = std::mem::take(&mut self.fd_timeouts).into_vec();
            v.retain(|Reverse(e)| self.fd_timeout_valid(e));
            self.fd_timeouts = BinaryHeap::from(v);
        }
    }

    /// The next fd timeout due at `now` and set before this step began (`limit`).
    pub(super) fn pop_due_fd_timeout(&mut self, now: u64, limit: u64) -> Option<(c_int, FdCall)> {
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

    /// The next active descriptor still registered: `(fd, generation, fired directions)`.
    /// Its activation and pending fd timeout are consumed (an activation cancels the
    /// timeout).
    pub(super) fn next_active(&mut self) -> Option<(c_int, u32, u32)> {
        loop {
            let (fd, gen) = self.active.pop_front()?;
            let Some(rec) = self.rec_mut(fd, gen) else {
                continue;
            };
            let fired = rec.active;
            rec.active = 0;
            rec.in_active = false;
            if rec.deadline.take().is_some() {
                self.live_fd_timeouts -= 1;
            }
            return Some((fd, gen, fired));
        }
    }

    /// The handler of direction `DIRS[i]` of an active descriptor, checked just before it
    /// runs: a CLR or replace by an earlier handler (generation gone) skips the rest; a
    /// break (`brk`) puts the directions from this one on back at the head of the queue.
    pub(super) fn handler_for(
        &mut self,
        fd: c_int,
        gen: u32,
        fired: u32,
        i: usize,
        brk: bool,
    ) -> Next {
        let Some(rec) = self.rec_mut(fd, gen) else {
            return Next::Gone;
        };
        if brk {
            let rest = fired & !(DIRS[i] - 1);
            rec.active |= rest;
            if !rec.in_active {
                rec.in_active = true;
                self.active.push_front((fd, gen));
            }
            return Next::Leave;
        }
        Next::Call(rec.calls[i])
    }

    /// Holds the directions `dirs` of every descriptor back from epoll (0: none), and
    /// re-arms every registered descriptor accordingly; registrations are kept.
    pub(super) fn set_muted(&mut self, dirs: u32) {
        if dirs == self.muted {
            return;
        }
        self.muted = dirs;
        let epfd = self.epfd;
        for (fd, slot) in self.fds.iter_mut().enumerate() {
            let gen = slot.gen;
            if let Some(rec) = slot.rec.as_deref_mut() {
                sync_epoll(epfd, fd as c_int, gen, rec, dirs);
            }
        }
    }

    /// Records what epoll reported (spec §6 step 6): one-shot directions that fired are
    /// removed now and epoll re-armed with what remains; the handlers run in step 3 of the
    /// next iteration.
    pub(super) fn take_events(&mut self, events: &[EpollEvent]) {
        let (epfd, muted) = (self.epfd, self.muted);
        for e in events {
            let (events, data) = (e.events().bits() as u32, e.data());
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
            let fired = fired_dirs(events, rec.dirs & !muted);
            if fired == 0 {
                continue;
            }
            let shot = fired & rec.oneshot;
            if shot != 0 {
                rec.dirs &= !shot;
                rec.oneshot &= !shot;
                sync_epoll(epfd, fd, gen, rec, muted);
            }
            rec.active |= fired;
            if !rec.in_active {
                rec.in_active = true;
                self.active.push_back((fd, gen));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
