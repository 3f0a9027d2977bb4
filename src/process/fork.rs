//! Forking: socketpair, fork and handshake (spec §4.5), the child's clean-up after fork
//! (§4.6), plain workers, and exec'd programs.
//!
//! # After fork, in the child
//! The child closes the master-side descriptors of its siblings and releases their
//! records, forgets pending restarts, exit watches, flush timers and loops (they belong to
//! the parent's loop, which the child only leaves), empties the master handler table (as
//! Melon does), keeps the worker table with whatever data slots the parent had, gets a
//! wake-up descriptor of its own, runs the resource-clear handler, and takes the new
//! socketpair end as its master connection. Nothing in the inherited event loop is
//! touched: its epoll instance is shared with the parent until the child leaves it.
//!
//! # One path, two ways to make the child
//! A fork is: make the child, then the child side ([`child_side`]) in the child and the
//! parent side ([`parent_side`]: listing, handshake) in the parent. The child is made by
//! this process's own fork ([`fork_here`]), or, once this process has started a fork
//! server ([`start_fork_server`]), by the server (`forkserver`): the new process is then a
//! copy of the server, runs the same child side, and comes back from
//! `start_fork_server`.

use super::forkserver;
use super::handlers;
use super::peer::{Phase, HANDSHAKE_DEADLINE};
use super::pids::start_ticks_of;
use super::state::{conn_new, Chan, Child, ExecArgs, Inherited, Live, Peer, Plan, Proc, PROC};
use crate::abi::*;
use crate::channel::Channel;
use crate::log;
use crate::sys::retry_eintr;
use core::ptr::null_mut;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// Where a fork left us.
pub(crate) enum Forked {
    Parent,
    Child,
}

/// A plan for a new child of its own slot.
pub(crate) fn new_plan(
    etype: proc_exec_type,
    stype: proc_state_type,
    args: Option<ExecArgs>,
) -> Plan {
    let slot = PROC.with(|p| {
        let s = p.next_slot;
        p.next_slot += 1;
        s
    });
    Plan {
        etype,
        stype,
        args,
        slot,
        quick_deaths: 0,
        restarts: 0,
        recent: Default::default(),
        fds_lost: 0,
    }
}

/// Flushes C's and Rust's stdio, so a child does not print what the parent had buffered.
pub(crate) fn flush_stdio() {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: fflush(NULL) flushes every C output stream; no preconditions.
    unsafe { libc::fflush(null_mut()) };
}

/// This process's supervision slot, when it is a child forked by the library (`NO_SLOT`
/// otherwise): the Rust API's `Worker::index`.
static MY_SLOT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(NO_SLOT);
const NO_SLOT: u64 = u64::MAX;

/// This process's slot in its master's list, if the library forked it.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn my_slot() -> Option<u32> {
    let s = MY_SLOT.load(std::sync::atomic::Ordering::Relaxed);
    (s != NO_SLOT).then_some(s as u32)
}

/// Socketpair, fork, handshake (spec §4.5). In the parent the child is appended to the
/// list and, if `ev` is given, registered there for receiving. The child is made here, or
/// by the fork server when this process has one (`forkserver`): either way it runs
/// [`child_side`], and the parent lists it with [`parent_side`].
pub(crate) fn fork_core(ev: *mut mln_event_t, plan: Plan) -> io::Result<Forked> {
    fork_reporting(ev, plan, None)
}

/// [`fork_core`]; `report`: the descriptor a program's child reports a failed `execv` on.
fn fork_reporting(
    ev: *mut mln_event_t,
    plan: Plan,
    report: Option<&OwnedFd>,
) -> io::Result<Forked> {
    let (pid, mine) = if forkserver::active() {
        // Forked by the server, which has one thread: no check of ours applies.
        let announce_ready = PROC.with(|p| p.announce_ready);
        forkserver::request(&forkserver::Request {
            slot: plan.slot,
            announce_ready,
            exec: plan.args.as_ref(),
            report: report.map(|r| r.as_raw_fd()),
        })?
    } else {
        refuse_beside_threads(&plan)?;
        match fork_here(ev, &plan)? {
            Some(made) => made,
            None => return Ok(Forked::Child),
        }
    };
    parent_side(ev, plan, pid, mine)
}

/// The refusal of forks while other threads run (`set_single_threaded_forks`).
fn refuse_beside_threads(plan: &Plan) -> io::Result<()> {
    if !super::settings::single_threaded_forks() {
        return Ok(());
    }
    let threads = super::pids::thread_count();
    if threads <= 1 {
        return Ok(());
    }
    let what = match &plan.args {
        Some(a) => format!("program '{}'", a.name()),
        None => format!("worker {}", plan.slot),
    };
    log::error(format_args!(
        "fork of {what} refused: {threads} threads run in this process, and a lock one of \
         them holds would stay locked for ever in the child (the Rust API's \
         Builder::allow_threads opts out)"
    ));
    Err(io::Error::from_raw_os_error(libc::EDEADLK))
}

/// Socketpair and fork in this process: in the parent the child's pid and the parent's
/// end; `None` in the child (which ran [`child_side`]).
fn fork_here(ev: *mut mln_event_t, plan: &Plan) -> io::Result<Option<(i32, OwnedFd)>> {
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    flush_stdio();
    // Holding the handler lock across fork() keeps another thread from leaving it locked
    // mid-update in the child; the forking thread releases it on both sides.
    let guard = handlers::lock();
    // SAFETY: the child only runs this thread's code (the program is single-threaded
    // there, see README "Threads and signals"). `pids::fork` keeps a plain worker's exit
    // status where SIGCHLD is ignored.
    let r = unsafe { super::pids::fork(plan.args.is_some()) };
    match r {
        Err(e) => {
            drop(guard);
            Err(e.into())
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(mine);
            child_side(theirs, ev, plan.slot, guard);
            Ok(None)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(guard);
            drop(theirs);
            Ok(Some((child.as_raw(), mine)))
        }
    }
}

/// The child's side of a new child of `slot`, made by this process's fork or by the fork
/// server's clone: `guard` is the handler lock held across it.
fn child_side(theirs: OwnedFd, ev: *mut mln_event_t, slot: u32, mut guard: handlers::Guard) {
    MY_SLOT.store(u64::from(slot), std::sync::atomic::Ordering::Relaxed);
    handlers::after_fork_in_child(&mut guard);
    drop(guard);
    in_child(theirs, ev);
}

/// The parent's side of a new child `pid` of `plan` (`mine`: the parent's end): listed,
/// and either registered on `ev` in phase `Handshake` or, with no loop, its handshake
/// waited for here.
fn parent_side(ev: *mut mln_event_t, plan: Plan, pid: i32, mine: OwnedFd) -> io::Result<Forked> {
    let start_ticks = start_ticks_of(pid);
    if !ev.is_null() {
        // From the loop (the loop never blocks on a peer): the child is listed at once, in
        // phase `Handshake`; its first byte, read by the loop, completes the handshake
        // (`recv`), and a deadline closes it if that never comes.
        let watched =
            PROC.with(|p| add_child(p, ev, mine, pid, start_ticks, plan, Phase::Handshake));
        if !watched {
            // Nothing could ever read its handshake: the start fails.
            let e = io::Error::last_os_error();
            discard(PROC.with(|p| p.tail));
            return Err(e);
        }
        return Ok(Forked::Parent);
    }
    // No loop to wait from (the initial start of the workers): wait here. The child writes
    // one byte once its post-fork clean-up is done; EOF means it died first: fail instead
    // of spinning (D5).
    let mut mine = UnixStream::from(mine);
    let mut byte = [0u8; 1];
    let failed = match retry_eintr(|| mine.read(&mut byte)) {
        Ok(1) => None,
        Ok(_) => Some(io::Error::other("child exited before the fork handshake")),
        Err(e) => Some(e),
    };
    if let Some(e) = failed {
        // The child closed its end (or died): make sure it is gone, and reap it.
        super::pids::kill_and_reap(pid);
        return Err(e);
    }
    log::info(format_args!("{} started", super::state::label(pid, &plan)));
    PROC.with(|p| {
        add_child(
            p,
            ev,
            OwnedFd::from(mine),
            pid,
            start_ticks,
            plan,
            Phase::Live,
        );
        // Delivered once a loop of the master runs.
        let c = p.tail;
        p.push_started(c);
    });
    Ok(Forked::Parent)
}

/// EDEADLK (logged) when a fork server cannot start: other threads run in this process.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
fn server_possible() -> io::Result<()> {
    let threads = super::pids::thread_count();
    if threads > 1 {
        log::error(format_args!(
            "the fork server cannot start: {threads} threads run in this process"
        ));
        return Err(io::Error::from_raw_os_error(libc::EDEADLK));
    }
    Ok(())
}

/// Starts this process's fork server (`forkserver`), unless one runs: from then on its
/// forks are the server's. To be called before any other thread exists (EDEADLK
/// otherwise): the server is a copy of the process as it is now, and so is every child it
/// makes. `Forked::Parent` here; `Forked::Child` in a new plain worker the server made
/// later (a program's child executes its program instead, and never returns).
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn start_fork_server() -> io::Result<Forked> {
    if forkserver::running() {
        return Ok(Forked::Parent);
    }
    server_possible()?;
    let (master_end, server_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    flush_stdio();
    let master = std::process::id() as i32;
    let guard = handlers::lock();
    // SAFETY: one thread (checked above). `pids::fork` gives the server the exit signal a
    // worker of ours gets, and so the server's children (`pids::fork_for_parent`).
    let r = unsafe { super::pids::fork(false) };
    drop(guard);
    match r {
        Err(e) => Err(e.into()),
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(server_end);
            forkserver::started(master_end, child.as_raw())?;
            log::info(format_args!("fork server {child} started"));
            Ok(Forked::Parent)
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(master_end);
            // Nothing of the master's stays open here: its children's sockets, pidfds, the
            // wake-up descriptor.
            PROC.with(forget_parent);
            crate::sigsafe::after_fork();
            let s = forkserver::serve(server_end, master);
            // A new child of the master, made by the server.
            PROC.with(|p| p.announce_ready = s.announce_ready);
            child_side(s.theirs, null_mut(), s.slot, s.guard);
            match s.exec {
                Some(a) => exec_reporting(a, s.report),
                None => Ok(Forked::Child),
            }
        }
    }
}

fn add_child(
    p: &mut Proc,
    ev: *mut mln_event_t,
    fd: OwnedFd,
    pid: i32,
    start_ticks: Option<u64>,
    plan: Plan,
    phase: Phase,
) -> bool {
    let raw = fd.as_raw_fd();
    #[allow(unused_mut)]
    let mut f = mln_fork_t {
        prev: null_mut(),
        next: null_mut(),
        args: null_mut(),
        conn: conn_new(raw),
        pid,
        n_args: 0,
        state: STATE_IDLE,
        msg_len: 0,
        msg_type: 0,
        error_bytes: 0,
        msg_content: null_mut(),
        msg_buf_size: 0,
        etype: plan.etype,
        stype: plan.stype,
    };
    // Melon build: a genuine Melon connection (spec §7), released when the child dies.
    #[cfg(not(feature = "standalone"))]
    if !crate::melon::conn::init(&mut f.conn) {
        log::error(format_args!("mln_tcp_conn_init: no memory"));
    }
    let id = p.next_id;
    p.next_id += 1;
    let chan = Chan::new(
        Channel::new(fd, super::max_message(), super::queue_limit()),
        phase,
    );
    let c = Box::into_raw(Box::new(Child {
        f,
        id,
        live: Some(Box::new(Live {
            chan,
            plan,
            started: Instant::now(),
            start_ticks,
            handshake_timer: null_mut(),
            stop: None,
            ready: false,
            replacing: false,
            killed: false,
        })),
        pins: 0,
    }));
    // SAFETY: a fresh record; `args` lives in its `Live`, released (and the pointer
    // cleared) only when the record is buried.
    unsafe {
        if let Some(a) = (*c).live.as_mut().and_then(|l| l.plan.args.as_mut()) {
            (*c).f.args = a.ptrs.as_mut_ptr();
            (*c).f.n_args = a.strings.len() as u32;
        }
    }
    p.append(c);
    if ev.is_null() {
        return true;
    }
    super::events::watch_wake(p, ev);
    if !super::events::register(p, ev, Peer::Child(c)) {
        log::error(format_args!(
            "cannot watch child {pid}: event registration failed: {}",
            io::Error::last_os_error()
        ));
        return false;
    }
    if phase == Phase::Handshake {
        arm_handshake(p, ev, c);
    }
    true
}

/// Arms the handshake deadline of child `c`, just started from loop `ev` (phase
/// `Handshake`). Without a timer the child has no deadline (logged).
fn arm_handshake(p: &mut Proc, ev: *mut mln_event_t, c: *mut Child) {
    let ms = HANDSHAKE_DEADLINE.as_millis() as u32;
    // SAFETY: `ev` is a live loop; the callback looks the record up before using it.
    let t = unsafe {
        crate::reactor::timer_set(ev, ms, c.cast(), Some(super::ENTRIES.handshake_expired))
    };
    if t.is_null() {
        log::error(format_args!(
            "cannot set the fork handshake deadline of {}",
            Peer::Child(c)
        ));
    }
    if let Some(live) = p.live_of(c) {
        live.handshake_timer = t;
    }
}

/// The child's side after fork (spec §4.6).
fn in_child(theirs: OwnedFd, ev: *mut mln_event_t) {
    let fd = theirs.as_raw_fd();
    let (clr, data, keep_sigchld) = PROC.with(|p| {
        p.parent_loops = p.wake_loops.clone();
        if !ev.is_null() && !p.parent_loops.contains(&ev) {
            p.parent_loops.push(ev);
        }
        become_child(p, theirs);
        (p.clr, p.clr_data, p.keep_sigchld)
    });
    if let Some(h) = clr {
        // SAFETY: user callback with the user's data, as Melon calls it.
        unsafe { h(data) };
    }
    // Melon build: `master_conn` names our end (after the clear handler, as in Melon).
    #[cfg(not(feature = "standalone"))]
    if !crate::melon::conn::master_attach(fd) {
        log::error(format_args!("mln_tcp_conn_init: no memory"));
    }
    if !keep_sigchld {
        // The master ignores SIGCHLD (Melon's rule); a worker starts with the default.
        // SAFETY: restoring the default disposition has no preconditions.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    }
    let byte = [b' '];
    // SAFETY: writing one byte from a valid buffer to our own descriptor (a fresh socket:
    // its buffer has room).
    let w = retry_eintr(|| crate::sys::syscall!(write(fd, byte.as_ptr().cast(), 1)));
    if w.is_err() {
        // SAFETY: leaving the child without running the parent's atexit handlers.
        unsafe { libc::_exit(1) };
    }
    // What the clear handler sent was held behind the handshake byte: it goes now, through
    // the dirty list (which its sends joined), so that the channel is clean for the next
    // send to schedule a flush.
    PROC.with(|p| {
        if let Some(ch) = p.chan(Peer::Master) {
            ch.phase.advance(Phase::Live);
        }
        super::flush::flush_dirty(p);
    });
}

fn become_child(p: &mut Proc, fd: OwnedFd) {
    forget_parent(p);
    p.epoch += 1;
    p.is_worker = true;
    let raw = fd.as_raw_fd();
    // A worker that forks inside its own handler: that handler's `buf` points into the old
    // master connection's buffers.
    if let Some(old) = p.master().chan.take() {
        keep_buffers(p, old);
    }
    let m = p.master();
    // Held until the handshake byte is written (`in_child`).
    m.chan = Some(Chan::new(
        Channel::new(fd, super::max_message(), super::queue_limit()),
        Phase::Held,
    ));
    m.conn = conn_new(raw);
    crate::sigsafe::after_fork();
    super::adopt::after_fork();
    p.publish();
}

/// In a new process (a child, or the fork server): the parent's children, restarts,
/// events and loops are not ours.
fn forget_parent(p: &mut Proc) {
    // The siblings' descriptors close now; their records and buffers are kept until no
    // callback can hold them: if this fork happened inside a user callback (a handler, an
    // iterate callback), the rest of that callback runs here with the `buf`, `f_ptr` and
    // `mln_fork_t *` it was given (`Proc::release_inherited`).
    let mut c = p.head;
    while !c.is_null() {
        // SAFETY: inherited list members are boxes we own; each is taken once.
        let mut b = unsafe { Box::from_raw(c) };
        c = b.f.next.cast();
        #[cfg(not(feature = "standalone"))]
        crate::melon::conn::destroy(&mut b.f.conn);
        if let Some(live) = b.live.take() {
            let Live { chan, plan, .. } = *live;
            keep_buffers(p, chan);
            p.inherited.push(Inherited::Plan(plan));
        }
        p.inherited.push(Inherited::Record(b));
    }
    p.head = null_mut();
    p.tail = null_mut();
    p.clear_live();
    for t in p.graveyard.drain(..) {
        // SAFETY: tombstones we own.
        p.inherited
            .push(Inherited::Record(unsafe { Box::from_raw(t) }));
    }
    // Records tied to the parent's loop: their timers may still fire in our copy of that
    // loop, and find nothing (each callback looks its record up first).
    for r in p.restarts.drain(..) {
        // SAFETY: listed records are ours.
        drop(unsafe { Box::from_raw(r) });
    }
    for d in p.dying.drain(..) {
        // SAFETY: listed records are ours; their pidfds close.
        drop(unsafe { Box::from_raw(d) });
    }
    p.dirty.clear();
    p.wake_loops.clear();
    p.writable_due.clear();
    // The parent's events, stops and rolling restart (their records are kept above).
    p.events.clear();
    p.delivering = false;
    for t in p.held_tombs.drain(..) {
        // SAFETY: tombstones we own.
        p.inherited
            .push(Inherited::Record(unsafe { Box::from_raw(t) }));
    }
    p.stops_due = false;
    p.stop_all = false;
    p.rolling = None;
    p.quit_exit = false;
    p.ready_sent = false;
    p.dispatch_stopped = false;
    p.overfull.clear();
    // `callbacks` stays: the callbacks running when the fork happened go on here, and each
    // counts itself out when it returns.
}

/// Closes `chan`'s descriptor and keeps its buffers (where a running handler's `buf` may
/// point) in `Proc::inherited`.
fn keep_buffers(p: &mut Proc, chan: Chan) {
    let (rx, tx) = chan.ch.into_buffers();
    p.inherited.push(Inherited::Buffers(Box::new((rx, tx))));
}

/// `mln_fork_restart`: a supervised plain worker. 1 parent, 0 child, -1 error.
pub(crate) fn restart(ev: *mut mln_event_t) -> io::Result<Forked> {
    fork_core(ev, new_plan(M_PET_DFL, M_PST_SUP, None)).inspect_err(|e| {
        log::error(format_args!("fork: {e}"));
    })
}

/// `mln_fork`: the standalone build starts `mln_fork_worker_num_set` workers.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn fork_workers() -> io::Result<Forked> {
    let server = super::settings::fork_server();
    if server && !forkserver::running() {
        // Before any fork: workers forked beside other threads would copy the locks they
        // hold, which is what the server is for, and the caller, told that `mln_fork`
        // failed, would not know it has workers.
        server_possible().inspect_err(|e| log::error(format_args!("fork server: {e}")))?;
    }
    let n = super::settings::worker_num();
    for _ in 0..n {
        if let Forked::Child = restart(null_mut())? {
            return Ok(Forked::Child);
        }
    }
    if server {
        // A new child the server makes later comes back from here, as these did.
        return start_fork_server().inspect_err(|e| {
            log::error(format_args!("fork server: {e}"));
        });
    }
    Ok(Forked::Parent)
}

/// `mln_fork_spawn`: 0 in the parent, -1 on failure; the child execs and never returns.
pub(crate) fn spawn(
    stype: proc_state_type,
    args: Vec<CString>,
    ev: *mut mln_event_t,
) -> io::Result<()> {
    let args = ExecArgs::new(args);
    spawn_plan(new_plan(M_PET_EXE, stype, Some(args)), ev).inspect_err(|e| {
        log::error(format_args!("spawn: {e}"));
    })
}

/// Starts a child for `plan`: a plain worker (`Forked::Child` in the new worker), or an
/// exec'd program (never returns in the child).
pub(crate) fn start(ev: *mut mln_event_t, plan: Plan) -> io::Result<Forked> {
    if plan.args.is_some() {
        spawn_plan(plan, ev)?;
        Ok(Forked::Parent)
    } else {
        fork_core(ev, plan)
    }
}

/// Forks and execs the program of `plan`. Never returns in the child.
pub(crate) fn spawn_plan(plan: Plan, ev: *mut mln_event_t) -> io::Result<()> {
    spawn_with(plan, ev, false)
}

/// [`spawn_plan`] that also waits until the program is executing: an `execv` the kernel
/// refuses (ENOEXEC, EACCES, ...) is this function's error, and the child is discarded
/// (closed and reaped, not restarted). The child reports a failed `execv` through a
/// close-on-exec pipe: end of file means the exec happened. (Restarts of the program do
/// not report; a failure there is logged and the slot backs off.)
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn spawn_plan_checked(plan: Plan, ev: *mut mln_event_t) -> io::Result<()> {
    spawn_with(plan, ev, true)
}

fn spawn_with(plan: Plan, ev: *mut mln_event_t, checked: bool) -> io::Result<()> {
    let exec = plan
        .args
        .as_ref()
        .map(ExecArgs::copy)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let report = if checked {
        let mut fds = [0; 2];
        crate::sys::syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
        // SAFETY: two fresh descriptors we own.
        Some(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    } else {
        None
    };
    match fork_reporting(ev, plan, report.as_ref().map(|(_, w)| w))? {
        Forked::Child => exec_reporting(exec, report.map(|(_, w)| w)),
        Forked::Parent => {
            let Some((r, w)) = report else { return Ok(()) };
            drop(w);
            let mut errno = [0u8; 4];
            if read_full(&r, &mut errno) < errno.len() {
                return Ok(());
            }
            let c = PROC.with(|p| p.tail);
            discard(c);
            Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
        }
    }
}

/// Reads into `buf` until it is full or end of file; how many bytes were read.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        let r = retry_eintr(|| {
            crate::sys::syscall!(read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()))
        });
        match r {
            Ok(n) if n > 0 => got += n as usize,
            _ => break,
        }
    }
    got
}

/// Closes the just-started child `c` whose program could not be executed, without a
/// restart, and waits for its process (it exits right after its report).
fn discard(c: *mut Child) {
    // SAFETY: `c` is the record `fork_core` just appended (live).
    let pid = unsafe { (*c).f.pid };
    let live = PROC.with(|p| {
        p.dirty.retain(|&d| d != Peer::Child(c));
        let mut live = p.bury(c);
        if let Some(l) = live.as_mut() {
            l.cancel_handshake();
        }
        live
    });
    if let Some(live) = live {
        if !live.chan.ev.is_null() {
            // SAFETY: the channel's loop is live.
            unsafe { crate::reactor::fd_clear(live.chan.ev, live.chan.ch.raw()) };
        }
    }
    super::pids::kill_and_reap(pid);
}

/// In a spawned child: hand the socketpair end to the program as its last argument and
/// execute it; if `execv` fails, write its errno to `report` (if any) and exit.
fn exec_reporting(mut a: ExecArgs, report: Option<OwnedFd>) -> ! {
    let fd = PROC.with(|p| p.master().chan.as_ref().map(|c| c.ch.raw()).unwrap_or(-1));
    // The one descriptor an exec'd program inherits (D12/D13): clear its CLOEXEC, make it
    // blocking, and give the program default dispositions for the signals the master
    // ignores.
    // SAFETY: plain syscalls on our own descriptor and signal dispositions.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, 0);
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    let fd_arg = CString::new(fd.to_string()).unwrap_or_default();
    let n = a.strings.len();
    a.ptrs[n] = fd_arg.as_ptr().cast_mut();
    #[cfg(not(feature = "standalone"))]
    crate::melon::before_exec(&PROC.with(|p| std::mem::take(&mut p.parent_loops)));
    // SAFETY: `ptrs` is a NULL-terminated array of valid C strings that outlive the call.
    unsafe { libc::execv(a.ptrs[0], a.ptrs.as_ptr().cast()) };
    let e = io::Error::last_os_error();
    log::error(format_args!("execv '{}': {e}", a.name()));
    if let Some(w) = report {
        let errno = e.raw_os_error().unwrap_or(libc::ENOEXEC).to_ne_bytes();
        // SAFETY: writing 4 bytes from a valid buffer to our own descriptor.
        let _ = unsafe { libc::write(w.as_raw_fd(), errno.as_ptr().cast(), errno.len()) };
    }
    // SAFETY: leaving the child without running the parent's atexit handlers.
    unsafe { libc::_exit(1) }
}
