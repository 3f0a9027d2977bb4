//! The process's global state and its records: the worker list, the master connection,
//! settings. One struct ([`Proc`]) behind one scoped cell ([`Global`]).
//!
//! # Access
//! [`PROC`]`.with(|p| ...)` lends `&mut Proc` for the duration of the closure and refuses
//! (panics in [`Global::with`], `None` from [`Global::try_with`]) a second borrow while one
//! is live. No user code ever runs inside a borrow: handlers, iterate callbacks and the
//! resource-clear handler are called between borrows. So the only way to meet a live borrow
//! is a signal handler that interrupted the library on this thread: the send path uses
//! `try_with` and parks the frame instead (see `crate::sigsafe`).
//!
//! The state belongs to the thread that runs the process's event loop; other threads must
//! not call the process functions (the handler tables, in `handlers`, are the thread-safe
//! part).
//!
//! # Records and identity
//! A child is a [`Child`] record whose first field is its `mln_fork_t`, so the pointer C
//! code holds is the record's address. A record is never reused for another process: when
//! its child dies it becomes a tombstone (its channel and buffers are released, `pid` and
//! the rest of `mln_fork_t` stay readable) and is kept among the last [`GRAVEYARD`] dead
//! records before its memory goes back to the allocator, so a stale pointer is recognised
//! (not in the live set) instead of naming the replacement.

use super::global::Global;
use super::handlers::Cache;
use super::liveset::LiveSet;
use super::peer::Phase;
use crate::abi::*;
use crate::channel::Channel;
use core::ffi::{c_char, c_void};
use core::ptr::null_mut;
use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::Instant;

/// Dead records kept before their memory is released (about 160 bytes each).
pub(crate) const GRAVEYARD: usize = 4096;

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

/// A channel and where it is registered.
pub(crate) struct Chan {
    pub ch: Channel,
    pub cache: Cache,
    /// The loop carrying this channel's RECV interest (NULL: none). Flushes, the SEND
    /// interest and restarts use this loop only, never a loop merely passed to a send.
    pub ev: *mut mln_event_t,
    /// A SEND interest is armed on `ev` (the queue met a full socket).
    pub send_armed: bool,
    /// Listed in `Proc::dirty`: frames queued and no flush under way.
    pub dirty: bool,
    /// Where the peer is in its life (see `peer`).
    pub phase: Phase,
    /// A pacing wait saw the peer take nothing: do not wait for it again until it reads.
    pub stalled: bool,
    /// Receive passes of this channel in progress (nested dispatch makes it > 1).
    pub busy: u32,
    /// Why the close asked for while `busy` (phase `Closing`) was asked (the first reason
    /// given), for the log line when the outermost pass ends.
    pub pending_why: Option<String>,
    /// A send was refused for lack of room: the writable callback is due once it drains.
    pub refused: bool,
    /// The program asked for this channel's close (`mln_fork_socketpair_close_handler`):
    /// the child's end is not a death for the restart backoff.
    pub requested: bool,
    /// A graceful stop was asked (`mln_fork_stop`, a rolling restart retiring it): to the
    /// program the child is gone (sends refused with ESRCH, not listed), while the channel
    /// goes on writing what was queued before and reading what the child still sends
    /// (see `peer`).
    pub stopping: bool,
    /// The kernel dropped descriptors this peer sent (logged once per peer).
    pub fds_dropped: bool,
    pub frames_received: u64,
    pub bytes_received: u64,
    /// Time sends to this peer spent waiting for it (pacing, `flush`).
    pub paced_ns: u64,
    /// Frames of a type this side has no handler for (dropped).
    pub unhandled: u64,
    /// Frames a typed handler of the Rust API could not decode (dropped).
    #[cfg_attr(not(feature = "standalone"), allow(dead_code))]
    pub undecoded: u64,
}

impl Chan {
    pub(crate) fn new(ch: Channel, phase: Phase) -> Self {
        Chan {
            ch,
            cache: Cache::EMPTY,
            ev: null_mut(),
            send_armed: false,
            dirty: false,
            phase,
            stalled: false,
            busy: 0,
            pending_why: None,
            refused: false,
            requested: false,
            stopping: false,
            fds_dropped: false,
            frames_received: 0,
            bytes_received: 0,
            paced_ns: 0,
            unhandled: 0,
            undecoded: 0,
        }
    }
}

/// `execv` arguments owned by melon-ipc (D11: the caller's array is copied, never freed).
pub(crate) struct ExecArgs {
    pub strings: Vec<CString>,
    /// `strings` as pointers, then two NULLs: the slot for the descriptor number and the
    /// terminator. `mln_fork_t::args` points here.
    pub ptrs: Vec<*mut c_char>,
}

impl ExecArgs {
    pub(crate) fn new(strings: Vec<CString>) -> Self {
        let mut ptrs: Vec<*mut c_char> = strings.iter().map(|s| s.as_ptr().cast_mut()).collect();
        ptrs.extend([null_mut(), null_mut()]);
        ExecArgs { strings, ptrs }
    }
    pub(crate) fn copy(&self) -> Self {
        Self::new(self.strings.clone())
    }
    pub(crate) fn name(&self) -> String {
        self.strings
            .first()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// What a child is, kept across restarts of its slot.
pub(crate) struct Plan {
    pub etype: proc_exec_type,
    pub stype: proc_state_type,
    pub args: Option<ExecArgs>,
    /// Supervision slot: a replacement takes the slot of the child it replaces.
    pub slot: u32,
    /// Deaths in a row that came soon after a start (restart backoff, D7).
    pub quick_deaths: u32,
    /// Restarts of this slot so far.
    pub restarts: u64,
    /// When the slot's recent restarts happened, within the restart policy's period.
    pub recent: VecDeque<Instant>,
    /// Descriptors queued to the slot's dead processes and closed unsent.
    pub fds_lost: u64,
}

impl Plan {
    pub(crate) fn copy(&self) -> Plan {
        Plan {
            etype: self.etype,
            stype: self.stype,
            args: self.args.as_ref().map(ExecArgs::copy),
            slot: self.slot,
            quick_deaths: self.quick_deaths,
            restarts: self.restarts,
            recent: self.recent.clone(),
            fds_lost: self.fds_lost,
        }
    }
}

/// The parts of a live child; dropped at its death.
pub(crate) struct Live {
    pub chan: Chan,
    pub plan: Plan,
    pub started: Instant,
    /// The kernel's start time of the process (clock ticks since boot), to make sure a pid
    /// still names our child before signalling it.
    pub start_ticks: Option<u64>,
    /// Phase `Handshake`: the deadline timer on the channel's loop (NULL: none).
    pub handshake_timer: *mut mln_event_timer_t,
    /// A graceful stop under way (`Chan::stopping`).
    pub stop: Option<Stop>,
    /// Its loop runs (the worker's ready frame came).
    pub ready: bool,
    /// A rolling restart's replacement that is not ready yet: not restarted if it dies.
    pub replacing: bool,
    /// The library SIGKILLed it while live (an aborted rolling replacement).
    pub killed: bool,
}

/// A graceful stop of a child (`mln_fork_stop`).
pub(crate) struct Stop {
    /// SIGTERM then; SIGKILL a second later.
    pub deadline: Instant,
    /// The loop the stop was asked on (its timers run there if the child has none).
    pub ev: *mut mln_event_t,
    /// Its quit frame is queued and its deadline timer armed (from the loop).
    pub armed: bool,
    /// The deadline timer (NULL: none).
    pub timer: *mut mln_event_timer_t,
    /// SIGTERM was sent.
    pub termed: bool,
    /// SIGKILL was sent.
    pub killed: bool,
    /// Readable once the process exits, watched on the stop's loop: a worker that exited
    /// while a process it forked still holds its end of the channel (no end of stream)
    /// is seen gone at once, not at the deadline.
    pub exit_fd: Option<super::pids::Pidfd>,
}

impl Live {
    /// Cancels the handshake deadline (the phase leaves `Handshake`, or the child ends).
    pub(crate) fn cancel_timers(&mut self) {
        self.cancel_handshake();
        let t = self
            .stop
            .as_mut()
            .map_or(null_mut(), |s| std::mem::replace(&mut s.timer, null_mut()));
        let ev = self.stop_loop();
        if !t.is_null() && !ev.is_null() {
            // SAFETY: the stop timer is pending on that loop (live: forgotten when freed,
            // and then the timer went with it).
            unsafe { crate::reactor::timer_cancel(ev, t) };
        }
        let exit_fd = self.stop.as_mut().and_then(|s| s.exit_fd.take());
        if let Some(fd) = exit_fd.as_ref().and_then(|f| f.raw()) {
            if !ev.is_null() {
                // SAFETY: registered on that loop (live, as above).
                unsafe { crate::reactor::fd_clear(ev, fd) };
            }
        }
    }

    /// The loop the stop's timers run on: the channel's, else the one the stop was asked on.
    pub(crate) fn stop_loop(&self) -> *mut mln_event_t {
        if !self.chan.ev.is_null() {
            return self.chan.ev;
        }
        self.stop.as_ref().map_or(null_mut(), |s| s.ev)
    }

    pub(crate) fn cancel_handshake(&mut self) {
        let t = std::mem::replace(&mut self.handshake_timer, null_mut());
        if !t.is_null() && !self.chan.ev.is_null() {
            // SAFETY: the timer is pending on the channel's loop (live: forgotten when
            // freed, and then the timer went with it).
            unsafe { crate::reactor::timer_cancel(self.chan.ev, t) };
        }
    }
}

/// One child as the master sees it. `f` first: the `*mut mln_fork_t` handed to C is also
/// a `*mut Child`.
#[repr(C)]
pub(crate) struct Child {
    pub f: mln_fork_t,
    /// Unique in this process, never reused.
    pub id: u64,
    /// `None` once dead: a tombstone kept for identity.
    pub live: Option<Box<Live>>,
    /// Queued events and ends that will name this record (`f` of an EXITED event): while
    /// non-zero its memory is not released (see `Proc::bury`).
    pub pins: u32,
}

/// The worker's connection to its master. `conn` first: `mln_fork_master_connection_get`
/// returns it, and worker handlers get it as `f_ptr` (standalone build; the melon build
/// uses Melon's exported `master_conn`).
#[repr(C)]
pub(crate) struct MasterConn {
    pub conn: mln_tcp_conn_t,
    pub chan: Option<Chan>,
}

/// Which channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Peer {
    Child(*mut Child),
    Master,
}

impl Peer {
    /// The `data` of the loop registrations of this channel.
    pub(crate) fn data(self) -> *mut c_void {
        match self {
            Peer::Child(c) => c.cast(),
            Peer::Master => null_mut(),
        }
    }
}

/// How logs name a peer: `child <pid>` or `the master`.
impl core::fmt::Display for Peer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            // SAFETY: a peer is named while its record is allocated (live, or a tombstone,
            // which is never freed while a borrow of the process state is held).
            Peer::Child(c) => write!(f, "child {}", unsafe { (*c).f.pid }),
            Peer::Master => f.write_str("the master"),
        }
    }
}

pub(crate) fn conn_new(fd: i32) -> mln_tcp_conn_t {
    mln_tcp_conn_t::unset(fd)
}

// ---------------------------------------------------------------------------------------
// The process state
// ---------------------------------------------------------------------------------------

/// A restart waiting for its timer (backoff, or "after the current callback").
pub(crate) struct PendingRestart {
    pub ev: *mut mln_event_t,
    pub timer: *mut mln_event_timer_t,
    pub plan: Plan,
}

/// What is said about a child's end: who it was, why its channel closed, and how many
/// frames queued to it were lost.
pub(crate) struct Ending {
    pub who: String,
    pub why: String,
    pub lost: usize,
    /// The record (a tombstone, pinned until its EXITED event is delivered).
    pub record: *mut Child,
    pub slot: u32,
    pub pid: i32,
    /// Restarts of its slot before it.
    pub restarts: u64,
    /// The program asked it to end (a stop, or `mln_fork_socketpair_close_handler`).
    pub asked: bool,
    /// A graceful stop's deadline (SIGTERM then), if one was asked.
    pub term_at: Option<Instant>,
    /// SIGTERM / SIGKILL already sent while it was live.
    pub termed: bool,
    pub killed: bool,
}

/// How the log names a child: `child <pid> (worker <slot>)`, slots counted from 0 as the
/// Rust API's `WorkerId::index`, or `child <pid> (program '<name>')`.
pub(crate) fn label(pid: i32, plan: &Plan) -> String {
    match &plan.args {
        Some(a) => format!("child {pid} (program '{}')", a.name()),
        None => format!("child {pid} (worker {})", plan.slot),
    }
}

/// A closed child whose process has not been seen gone yet (see `supervise`).
pub(crate) struct Dying {
    pub pid: i32,
    pub pidfd: Option<super::pids::Pidfd>,
    pub ev: *mut mln_event_t,
    pub timer: *mut mln_event_timer_t,
    /// Without a pidfd: when the current wait (grace, or after SIGKILL) ends.
    pub deadline: Instant,
    /// SIGTERM / SIGKILL sent: `end.termed`, `end.killed`.
    pub end: Ending,
    /// What to restart once it is gone (supervised children).
    pub plan: Option<Plan>,
}

pub(crate) struct Proc {
    pub head: *mut Child,
    pub tail: *mut Child,
    pub live: LiveSet,
    pub graveyard: VecDeque<*mut Child>,
    pub master: *mut MasterConn,
    pub is_worker: bool,
    /// Bumped in a new child after fork: code that was running before the fork and resumes
    /// in the child (a handler that called `mln_fork_restart`) sees that the records it
    /// held belong to the parent.
    pub epoch: u64,
    pub clr: clr_handler,
    pub clr_data: *mut c_void,
    pub restarts: Vec<*mut PendingRestart>,
    pub dying: Vec<*mut Dying>,
    /// Channels with queued frames and no flush under way.
    pub dirty: Vec<Peer>,
    /// Loops watching this process's wake-up descriptor.
    pub wake_loops: Vec<*mut mln_event_t>,
    /// User callbacks (handlers, iterate callbacks) currently running, nested.
    pub callbacks: u32,
    pub next_id: u64,
    pub next_slot: u32,
    /// Peers that drained after a refused send: their writable callback is due.
    pub writable_due: Vec<Peer>,
    /// In a new child: the parent's loops (an exec'd program must not inherit their
    /// descriptors, melon build).
    pub parent_loops: Vec<*mut mln_event_t>,
    /// Set by `stop_dispatch` (the Rust API's `stop`): no handler, writable callback or
    /// restart runs any more in this process; cleared in a new child.
    pub dispatch_stopped: bool,
    /// Peers whose queue went over its limit when frames parked by signal handlers were
    /// queued (see `crate::sigsafe::set_overfull`).
    pub overfull: Vec<Peer>,
    /// `prepare` left SIGCHLD's disposition alone (the Rust API): children keep it too.
    pub keep_sigchld: bool,
    /// In a child forked inside a user callback: the parent's records and buffers that
    /// callback may still hold (`buf`, `f_ptr`, `f->args`), their descriptors closed; kept
    /// until the outermost callback has returned (`Proc::release_inherited`).
    pub inherited: Vec<Inherited>,
    /// This process is a child the library restarted from its parent's loop (supervision),
    /// and has not started its worker routine yet (`take_restarted`).
    pub restarted: bool,
    /// Child events not delivered yet, oldest first (see `lifecycle`).
    pub events: VecDeque<Event>,
    /// Events are being delivered (an outer delivery owns the queue).
    pub delivering: bool,
    /// Tombstones out of the graveyard that pinned events still name.
    pub held_tombs: Vec<*mut Child>,
    /// Stops asked and not yet armed from the loop (`lifecycle::arm_stops`).
    pub stops_due: bool,
    /// A stop of every child was asked: the loop cancels the pending restarts too.
    pub stop_all: bool,
    /// Set around the fork of a rolling replacement: the new worker says when its loop
    /// runs (the ready frame).
    pub announce_ready: bool,
    /// The rolling restart under way.
    pub rolling: Option<Box<Rolling>>,
    /// Worker side: a graceful stop's quit handler said to exit once the queue to the
    /// master is written.
    pub quit_exit: bool,
    /// Worker side: the ready frame was queued (once per process).
    pub ready_sent: bool,
}

/// A rolling restart's replacement that is not ready yet.
pub(crate) struct Replacement {
    pub new: *mut Child,
    pub new_id: u64,
    pub slot: u32,
}

/// A child event waiting for delivery; `f` is pinned (or NULL).
pub(crate) struct Event {
    pub e: mln_ipc_child_event_t,
    pub f: *mut Child,
}

/// A rolling restart (`mln_fork_rolling_restart`).
pub(crate) struct Rolling {
    pub ev: *mut mln_event_t,
    pub batch: u32,
    pub ready_timeout: std::time::Duration,
    pub deadline_ms: u32,
    /// Old workers not replaced yet, oldest first (record, id).
    pub todo: VecDeque<(*mut Child, u64)>,
    /// Replacements of the current batch not ready yet.
    pub current: Vec<Replacement>,
    /// Ids of the children whose EXITED must come before ROLLING_DONE (old workers being
    /// stopped, replacements being killed).
    pub waiting: Vec<u64>,
    /// The step timer (NULL: none pending).
    pub timer: *mut mln_event_timer_t,
    /// When the current batch must be ready.
    pub ready_by: Option<Instant>,
    /// A replacement died or missed its deadline: abort at the next step.
    pub failed: bool,
    /// The run is over (0 done, -1 aborted): ROLLING_DONE once `waiting` is empty.
    pub outcome: Option<i32>,
}

/// What a new child keeps of its parent's state until no callback can hold it (the
/// fields are never read: they are kept alive).
#[allow(dead_code)]
pub(crate) enum Inherited {
    /// A record (a tombstone now: `mln_fork_t` readable).
    Record(Box<Child>),
    /// The plan of a record, which its `f->args` points into.
    Plan(Plan),
    /// A channel's buffers, where a handler's `buf` points.
    Buffers(Box<(crate::channel::Rx, crate::channel::Tx)>),
}

impl Proc {
    const fn new() -> Self {
        Proc {
            head: null_mut(),
            tail: null_mut(),
            live: LiveSet::new(),
            graveyard: VecDeque::new(),
            master: null_mut(),
            is_worker: false,
            epoch: 0,
            clr: None,
            clr_data: null_mut(),
            restarts: Vec::new(),
            dying: Vec::new(),
            dirty: Vec::new(),
            wake_loops: Vec::new(),
            callbacks: 0,
            next_id: 1,
            next_slot: 0,
            writable_due: Vec::new(),
            parent_loops: Vec::new(),
            dispatch_stopped: false,
            overfull: Vec::new(),
            keep_sigchld: false,
            inherited: Vec::new(),
            restarted: false,
            events: VecDeque::new(),
            delivering: false,
            held_tombs: Vec::new(),
            stops_due: false,
            stop_all: false,
            announce_ready: false,
            rolling: None,
            quit_exit: false,
            ready_sent: false,
        }
    }

    /// Releases what a child kept of its parent's state (see `inherited`) once no user
    /// callback runs: none of ours (`callbacks`), and no loop runs inside another. Called
    /// before each wait of a standalone loop and when a worker's loop is set up.
    pub(crate) fn release_inherited(&mut self) {
        if !self.inherited.is_empty()
            && self.callbacks == 0
            && crate::reactor::dispatching().unwrap_or(0) <= 1
        {
            self.inherited.clear();
        }
    }

    /// The master record (created on first use, never freed).
    pub(crate) fn master(&mut self) -> &mut MasterConn {
        if self.master.is_null() {
            self.master = Box::into_raw(Box::new(MasterConn {
                conn: conn_new(-1),
                chan: None,
            }));
        }
        // SAFETY: a leaked box, never freed; reached only through this borrow.
        unsafe { &mut *self.master }
    }

    /// The live child whose `mln_fork_t` is at `f`.
    #[inline]
    pub(crate) fn find(&self, f: *const mln_fork_t) -> Option<*mut Child> {
        self.live
            .contains(f as usize)
            .then_some(f.cast_mut().cast())
    }

    /// Empties the live set (a new child forgets its parent's children).
    pub(crate) fn clear_live(&mut self) {
        self.live.clear();
    }

    /// `f` if it is a live child that no one has asked to close or stop. A close asked for
    /// while the child's frames are being dispatched takes effect when that pass ends, a
    /// graceful stop when the child exits; to the program the child is gone at once (sends,
    /// stats and walks no longer see it).
    #[inline]
    pub(crate) fn find_open(&self, f: *const mln_fork_t) -> Option<*mut Child> {
        let c = self.find(f)?;
        // SAFETY: a live record (in the live set).
        let live = unsafe { (*c).live.as_ref() }?;
        (live.chan.phase != Phase::Closing && !live.chan.stopping).then_some(c)
    }

    /// The phase of live child `c`'s channel.
    #[inline]
    pub(crate) fn chan_phase(&self, c: *mut Child) -> Option<Phase> {
        if !self.live.contains(c as usize) {
            return None;
        }
        // SAFETY: a live record (in the live set).
        unsafe { (*c).live.as_ref().map(|l| l.chan.phase) }
    }

    /// The channel of `peer`, if it is live.
    #[inline]
    pub(crate) fn chan(&mut self, peer: Peer) -> Option<&mut Chan> {
        match peer {
            Peer::Child(c) => {
                if !self.live.contains(c as usize) {
                    return None;
                }
                // SAFETY: a live record (in the live set), reached through this borrow.
                unsafe { (*c).live.as_mut().map(|l| &mut l.chan) }
            }
            Peer::Master => self.master().chan.as_mut(),
        }
    }

    /// The live parts of child `c` (a live record).
    pub(crate) fn live_of(&mut self, c: *mut Child) -> Option<&mut Live> {
        if !self.live.contains(c as usize) {
            return None;
        }
        // SAFETY: as in `chan`.
        unsafe { (*c).live.as_deref_mut() }
    }

    /// The live children, oldest first.
    pub(crate) fn children(&self) -> Vec<*mut Child> {
        let mut v = Vec::with_capacity(self.live.len());
        let mut c = self.head;
        while !c.is_null() {
            v.push(c);
            // SAFETY: list members are live records.
            c = unsafe { (*c).f.next.cast() };
        }
        v
    }

    pub(crate) fn append(&mut self, c: *mut Child) {
        // SAFETY: `c` is a fresh record; `tail` a live member or NULL.
        unsafe {
            (*c).f.prev = self.tail.cast();
            (*c).f.next = null_mut();
            if self.tail.is_null() {
                self.head = c;
            } else {
                (*self.tail).f.next = c.cast();
            }
        }
        self.tail = c;
        self.live.insert(c as usize);
        self.publish();
    }

    /// Unlinks `c` and makes it a tombstone; returns its live parts.
    pub(crate) fn bury(&mut self, c: *mut Child) -> Option<Box<Live>> {
        if !self.live.remove(c as usize) {
            return None;
        }
        // SAFETY: `c` was a live member; its neighbours are live members or NULL.
        let live = unsafe {
            let prev: *mut Child = (*c).f.prev.cast();
            let next: *mut Child = (*c).f.next.cast();
            if prev.is_null() {
                self.head = next;
            } else {
                (*prev).f.next = next.cast();
            }
            if next.is_null() {
                self.tail = prev;
            } else {
                (*next).f.prev = prev.cast();
            }
            (*c).f.prev = null_mut();
            (*c).f.next = null_mut();
            (*c).f.args = null_mut();
            (*c).f.n_args = 0;
            // Melon build: its Melon connection's pool goes with it.
            #[cfg(not(feature = "standalone"))]
            crate::melon::conn::destroy(&mut (*c).f.conn);
            (*c).f.conn.sockfd = -1;
            (*c).live.take()
        };
        self.graveyard.push_back(c);
        if self.graveyard.len() > GRAVEYARD {
            let old = self.graveyard.pop_front().expect("non-empty");
            // SAFETY: a tombstone we own, out of every list but this one.
            if unsafe { (*old).pins } > 0 {
                // Named by an event not delivered yet: released when it is (`unpin`).
                self.held_tombs.push(old);
            } else {
                // SAFETY: as above; freed once.
                drop(unsafe { Box::from_raw(old) });
            }
        }
        self.publish();
        live
    }

    /// Keeps record `c` allocated until [`Proc::unpin`] (an event will name it).
    pub(crate) fn pin(&mut self, c: *mut Child) {
        if !c.is_null() {
            // SAFETY: a record (live or a tombstone), allocated: pinned ones are never freed.
            unsafe { (*c).pins += 1 };
        }
    }

    /// Undoes one [`Proc::pin`]; a tombstone evicted from the graveyard meanwhile is freed
    /// with its last pin.
    pub(crate) fn unpin(&mut self, c: *mut Child) {
        if c.is_null() {
            return;
        }
        // SAFETY: pinned, so allocated.
        let left = unsafe {
            (*c).pins = (*c).pins.saturating_sub(1);
            (*c).pins
        };
        if left == 0 {
            if let Some(i) = self.held_tombs.iter().position(|&t| t == c) {
                self.held_tombs.swap_remove(i);
                // SAFETY: a tombstone we own, out of every list now; freed once.
                drop(unsafe { Box::from_raw(c) });
            }
        }
    }

    /// Queues a child event for the master's loop; `f` (if any) stays allocated until it
    /// is delivered. The loop is woken when the queue was empty.
    pub(crate) fn push_event(&mut self, e: mln_ipc_child_event_t, f: *mut Child) {
        self.pin(f);
        let was_empty = self.events.is_empty();
        self.events.push_back(Event { e, f });
        if was_empty {
            crate::sigsafe::kick();
        }
    }

    /// A STARTED event for live child `c`.
    pub(crate) fn push_started(&mut self, c: *mut Child) {
        // SAFETY: a live record.
        let pid = unsafe { (*c).f.pid };
        let Some(live) = self.live_of(c) else { return };
        let e = mln_ipc_child_event_t {
            r#type: M_IPC_CHILD_STARTED,
            slot: live.plan.slot,
            pid,
            restarts: live.plan.restarts.min(u32::MAX as u64) as u32,
            restart_in_ms: -1,
            ..Default::default()
        };
        self.push_event(e, c);
    }

    /// Mirrors the list where readers outside a borrow find it: the snapshot for
    /// `mln_fork_iterate` in a signal handler, and (melon build) Melon's data symbols.
    pub(crate) fn publish(&mut self) {
        CHILDREN_GEN.fetch_add(1, Ordering::Release);
        let snap = Box::into_raw(Box::new(self.children()));
        let old = SNAPSHOT.swap(snap, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: published by us; readers run on this thread only and never across
            // this point (a signal handler finishes before the code it interrupted goes
            // on, and normal-context readers copy it inside a borrow).
            drop(unsafe { Box::from_raw(old) });
        }
        #[cfg(not(feature = "standalone"))]
        crate::melon::globals::publish(self.head.cast(), self.tail.cast(), self.clr, self.clr_data);
    }
}

/// Bumped whenever the list may have changed (every `Proc::publish`): a face that caches
/// what it derived from the list (the Rust API's worker table) rebuilds only when this
/// moved.
static CHILDREN_GEN: AtomicU64 = AtomicU64::new(1);

/// Moves the list's generation counter without publishing (a child stopped: the faces'
/// caches must drop it; allocation-free, for `lifecycle::stop`).
#[inline]
pub(crate) fn bump_generation() {
    CHILDREN_GEN.fetch_add(1, Ordering::Release);
}

/// The current value of the list's generation counter (readable outside a borrow).
#[inline]
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn children_generation() -> u64 {
    CHILDREN_GEN.load(Ordering::Acquire)
}

/// The live children as last published (see `Proc::publish`).
pub(crate) static SNAPSHOT: AtomicPtr<Vec<*mut Child>> = AtomicPtr::new(null_mut());

/// Runs `f` on the last published list without a borrow: only for a signal handler that
/// interrupted a borrow (nothing can publish until it returns).
pub(crate) fn with_published<R>(f: impl FnOnce(&[*mut Child]) -> R) -> R {
    let p = SNAPSHOT.load(Ordering::Acquire);
    if p.is_null() {
        return f(&[]);
    }
    // SAFETY: see `Proc::publish`: not freed while this (same-thread, interrupting) reader
    // runs.
    f(unsafe { &*p })
}

pub(crate) static PROC: Global<Proc> = Global::new(Proc::new());
