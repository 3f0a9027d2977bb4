//! Processes: the worker list, fork / spawn / restart with the fork handshake,
//! supervision with restart backoff, the master connection, and message dispatch
//! (spec §3.2, §4; DECISIONS.md).
//!
//! # Global state and threads
//! Melon's API has no context argument, so the process keeps global state, in two places:
//! * [`HANDLERS`]: the registry and both handler tables, behind a mutex. Registration and
//!   `mln_fork_*_ipc_handler_set` are thread-safe. The mutex is never held while a handler
//!   runs. `fork` is done while holding it, so a child never inherits it half-updated; the
//!   forking thread (the only thread in the child) releases it in both processes.
//! * [`PROC`]: everything else (worker list, master connection, settings). It is owned by
//!   the thread that drives the event loop: the process functions (fork, send, events_set,
//!   iterate, the fd handlers) must be called from that thread or from a signal handler
//!   running on it. Nothing here takes a lock, so a signal handler that sends cannot
//!   deadlock against the dispatcher (Melon's D9).
//!
//! # After fork, in the child
//! The child closes the master-side descriptors of its siblings and frees their records,
//! drops pending restarts, empties the master handler table (as Melon does), keeps the
//! worker table with whatever data slots the parent had, runs the resource-clear handler,
//! and takes the new socketpair end as its master connection. Nothing in the inherited
//! event loop is re-registered: the loop's epoll instance is shared with the parent until
//! the child leaves it (see `mln_fork_restart`).
//!
//! Files: this one holds the global state, the process records and the worker list;
//! `fork` forks and execs; `events` registers channels with the event loop; `send` queues
//! and flushes; `recv` reads and dispatches; `supervise` handles deaths and restarts with
//! backoff; `api_hooks` serves the safe Rust API.

use crate::abi::*;
use crate::channel::{Flow, Flushed, RecvEnd, Rx, Tx};
use crate::log;
use crate::reactor;
use crate::registry::{Found, Handlers, Origin, Side};
use crate::sys::{retry_eintr, syscall};
use crate::wire;

mod api_hooks;
mod events;
mod fork;
mod recv;
mod send;
mod supervise;

use events::*;
use fork::*;
use send::*;
use supervise::*;

#[cfg(feature = "standalone")]
pub(crate) use api_hooks::{fork_worker_checked, shutdown, spawn_checked};
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use core::ptr::{self, null_mut};
pub(crate) use events::{iterate, master_events_set, worker_events_set};
#[cfg(feature = "standalone")]
pub(crate) use fork::fork_workers;
pub(crate) use fork::{restart, spawn, Forked};
pub(crate) use recv::{child_readable, master_readable};
pub(crate) use send::{send_to_child, send_to_master, SendError};
use std::collections::HashSet;
use std::ffi::CString;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
pub(crate) use supervise::close_child;

// ---------------------------------------------------------------------------------------
// Handler tables
// ---------------------------------------------------------------------------------------

/// The registry and the two per-process tables.
pub(crate) static HANDLERS: Mutex<Option<Handlers>> = Mutex::new(None);
/// Bumped on every table change; lets a channel cache its last lookup.
static TABLE_GEN: AtomicU64 = AtomicU64::new(1);

/// Runs `f` on the handler state (created on first use). A poisoned lock is recovered:
/// the state is plain data and every mutation completes before it can panic.
pub(crate) fn with_handlers<R>(f: impl FnOnce(&mut Handlers) -> R) -> R {
    let mut g = lock_handlers();
    let r = f(g.get_or_insert_with(Handlers::default));
    TABLE_GEN.fetch_add(1, Ordering::Release);
    r
}

fn lock_handlers() -> MutexGuard<'static, Option<Handlers>> {
    HANDLERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// `mln_fork_{master,worker}_ipc_handler_set`.
pub(crate) fn handler_set(side: Side, ty: u32, h: ipc_handler, data: *mut c_void) {
    with_handlers(|hs| {
        hs.table(side).install(ty, h, data, Origin::Explicit);
    })
}

/// One cached lookup per channel: the last type seen and its handler.
#[derive(Clone, Copy)]
struct Cache {
    gen: u64,
    ty: u32,
    found: Option<Found>,
}

impl Cache {
    const EMPTY: Cache = Cache {
        gen: 0,
        ty: 0,
        found: None,
    };

    /// Runs once per received frame: the hit is inlined into the dispatch loop, the miss
    /// (lock and table walk) is kept out of it.
    #[inline]
    fn lookup(&mut self, side: Side, ty: u32) -> Option<Found> {
        let gen = TABLE_GEN.load(Ordering::Acquire);
        if self.gen != gen || self.ty != ty {
            self.refill(side, ty, gen);
        }
        self.found
    }

    #[cold]
    #[inline(never)]
    fn refill(&mut self, side: Side, ty: u32, gen: u64) {
        let found = lock_handlers()
            .as_mut()
            .and_then(|hs| hs.table(side).lookup(ty));
        *self = Cache { gen, ty, found };
    }
}

// ---------------------------------------------------------------------------------------
// Settings (extensions)
// ---------------------------------------------------------------------------------------

static MAX_MESSAGE: AtomicUsize = AtomicUsize::new(wire::DEFAULT_MAX_MESSAGE);
// Used by the standalone framework / mln_fork; the melon build reads Melon's conf.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
static WORKER_NUM: AtomicU32 = AtomicU32::new(1);

/// `mln_ipc_max_message_set`: the largest `length` field (type + payload) accepted and
/// sent. At least 4 and at most `u32::MAX`.
pub(crate) fn set_max_message(max: usize) -> bool {
    if !(wire::TYPE_LEN..=u32::MAX as usize).contains(&max) {
        return false;
    }
    MAX_MESSAGE.store(max, Ordering::Relaxed);
    true
}

pub(crate) fn max_message() -> usize {
    MAX_MESSAGE.load(Ordering::Relaxed)
}

// Used by the standalone framework / mln_fork; the melon build reads Melon's conf.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn set_worker_num(n: u32) {
    WORKER_NUM.store(n, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------
// Process records
// ---------------------------------------------------------------------------------------

/// A channel plus where it is registered.
struct Chan {
    fd: c_int,
    rx: Rx,
    tx: Tx,
    cache: Cache,
    /// The loop on which RECV is registered (by events_set or a restart), or NULL.
    recv_ev: *mut mln_event_t,
    /// The loop on which a SEND interest is armed (the queue met a full socket), or NULL.
    send_ev: *mut mln_event_t,
    /// A pending zero-delay flush timer and its loop.
    flush_ev: *mut mln_event_t,
    flush_timer: *mut mln_event_timer_t,
}

impl Chan {
    fn new(fd: c_int) -> Self {
        Chan {
            fd,
            rx: Rx::new(max_message()),
            tx: Tx::default(),
            cache: Cache::EMPTY,
            recv_ev: null_mut(),
            send_ev: null_mut(),
            flush_ev: null_mut(),
            flush_timer: null_mut(),
        }
    }
}

/// `execv` arguments owned by melon-ipc (D11: the caller's array is copied, never freed).
struct ExecArgs {
    strings: Vec<CString>,
    /// `strings` as pointers, then two NULLs: the slot for the descriptor number and the
    /// terminator. `mln_fork_t::args` points here.
    ptrs: Vec<*mut c_char>,
}

impl ExecArgs {
    fn new(strings: Vec<CString>) -> Self {
        let mut ptrs: Vec<*mut c_char> = strings.iter().map(|s| s.as_ptr().cast_mut()).collect();
        ptrs.extend([null_mut(), null_mut()]);
        ExecArgs { strings, ptrs }
    }
    fn copy(&self) -> Self {
        Self::new(self.strings.clone())
    }
}

/// One child as the master sees it. `f` comes first so that `*mut mln_fork_t` handed to C
/// is also a `*mut Child`.
#[repr(C)]
pub(crate) struct Child {
    f: mln_fork_t,
    chan: Chan,
    pidfd: c_int,
    started: Instant,
    /// Deaths in a row that came soon after a start (restart backoff, D7).
    quick_deaths: u32,
    args: Option<ExecArgs>,
    /// Frames of this child are being dispatched; closing must wait.
    busy: u32,
    close_pending: bool,
}

/// Melon build: a child's `conn` is a Melon connection with a pool of its own.
#[cfg(not(feature = "standalone"))]
impl Drop for Child {
    fn drop(&mut self) {
        crate::melon::conn::destroy(&mut self.f.conn);
    }
}

/// The worker's connection to its master. `conn` first: `mln_fork_master_connection_get`
/// returns it, and worker handlers get it as `f_ptr`.
#[repr(C)]
struct MasterConn {
    conn: mln_tcp_conn_t,
    chan: Chan,
}

/// A restart waiting out its backoff delay.
struct PendingRestart {
    ev: *mut mln_event_t,
    timer: *mut mln_event_timer_t,
    etype: proc_exec_type,
    args: Option<ExecArgs>,
    quick_deaths: u32,
}

struct Proc {
    head: *mut Child,
    tail: *mut Child,
    master: *mut MasterConn,
    is_worker: bool,
    clr: clr_handler,
    clr_data: *mut c_void,
    restarts: Vec<*mut PendingRestart>,
    /// Addresses of the children in the list: checking a `mln_fork_t *` given by the user
    /// (every send) is O(1), not a walk of the list.
    live: HashSet<usize, BuildHasherDefault<AddrHasher>>,
}

/// Hashes child addresses (distinct multiples of the allocation alignment).
#[derive(Default)]
struct AddrHasher(u64);
impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

struct ProcCell(UnsafeCell<Proc>);
// SAFETY: `Proc` is only touched from the thread that drives the process's event loop (or
// a signal handler on it), as documented in the module header; the cell is never shared
// across threads in practice, but a static needs `Sync`.
unsafe impl Sync for ProcCell {}

static PROC: ProcCell = ProcCell(UnsafeCell::new(Proc {
    head: null_mut(),
    tail: null_mut(),
    master: null_mut(),
    is_worker: false,
    clr: None,
    clr_data: null_mut(),
    restarts: Vec::new(),
    live: HashSet::with_hasher(BuildHasherDefault::new()),
}));

/// The process state. Callers keep the borrow short: never across a call into C or into
/// a function that itself calls `proc()`.
#[allow(clippy::mut_from_ref)]
fn proc() -> &'static mut Proc {
    // SAFETY: single-threaded access per the module contract; borrows are kept short so
    // two `&mut` never overlap in use.
    unsafe { &mut *PROC.0.get() }
}

fn master() -> *mut MasterConn {
    let p = proc();
    if p.master.is_null() {
        p.master = Box::into_raw(Box::new(MasterConn {
            conn: conn_new(-1),
            chan: Chan::new(-1),
        }));
    }
    p.master
}

fn conn_new(fd: c_int) -> mln_tcp_conn_t {
    mln_tcp_conn_t {
        pool: null_mut(),
        rcv_head: null_mut(),
        rcv_tail: null_mut(),
        snd_head: null_mut(),
        snd_tail: null_mut(),
        sent_head: null_mut(),
        sent_tail: null_mut(),
        sockfd: fd,
        nonblock: 0,
    }
}

/// `mln_fork_master_connection_get`.
pub(crate) fn master_connection() -> *mut mln_tcp_conn_t {
    // Melon build: Melon's exported `master_conn` (spec §1.13), a genuine Melon connection.
    #[cfg(not(feature = "standalone"))]
    return crate::capi::globals::master_conn_ptr();
    // SAFETY: `master()` returns a live, never-freed record.
    #[cfg(feature = "standalone")]
    unsafe {
        ptr::addr_of_mut!((*master()).conn)
    }
}

/// Is `f` a child in our list?
pub(crate) fn find_child(f: *const mln_fork_t) -> Option<*mut Child> {
    proc()
        .live
        .contains(&(f as usize))
        .then_some(f.cast_mut().cast())
}

fn list_append(c: *mut Child) {
    let p = proc();
    // SAFETY: `c` is a fresh box; `p.tail` a live member or NULL.
    unsafe {
        (*c).f.prev = p.tail.cast();
        (*c).f.next = null_mut();
        if p.tail.is_null() {
            p.head = c;
        } else {
            (*p.tail).f.next = c.cast();
        }
    }
    p.tail = c;
    p.live.insert(c as usize);
    publish();
}

fn list_remove(c: *mut Child) {
    let p = proc();
    // SAFETY: `c` is a live member; its neighbours are live members or NULL.
    unsafe {
        let prev: *mut Child = (*c).f.prev.cast();
        let next: *mut Child = (*c).f.next.cast();
        if prev.is_null() {
            p.head = next;
        } else {
            (*prev).f.next = next.cast();
        }
        if next.is_null() {
            p.tail = prev;
        } else {
            (*next).f.prev = prev.cast();
        }
        (*c).f.prev = null_mut();
        (*c).f.next = null_mut();
    }
    p.live.remove(&(c as usize));
    publish();
}

/// Melon build: mirrors the worker list and the resource-clear handler into Melon's
/// exported data symbols (spec §1.13, `capi::globals`). No-op in the standalone build.
fn publish() {
    #[cfg(not(feature = "standalone"))]
    {
        let p = proc();
        crate::capi::globals::publish(p.head.cast(), p.tail.cast(), p.clr, p.clr_data);
    }
}

/// Removes `ch` from every loop it is registered on, forgets its flush timer and closes its
/// descriptor. Not for a freshly forked child: its loop's epoll set is still the parent's.
fn unregister_and_close(ch: &Chan) {
    for lp in [ch.recv_ev, ch.send_ev] {
        if !lp.is_null() {
            // SAFETY: a loop we registered on (still live: callers run on it or before it
            // is freed); a CLR inside that fd's own handler is allowed.
            unsafe { reactor::fd_set(lp, ch.fd, M_EV_CLR, M_EV_UNLIMITED, null_mut(), None) };
        }
    }
    forget_flush(ch);
    close_fd(ch.fd);
}

fn close_fd(fd: c_int) {
    if fd >= 0 {
        // SAFETY: closing a descriptor we own; errors (EINTR included) leave it closed.
        unsafe { libc::close(fd) };
    }
}

// ---------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------

/// `mln_fork_prepare`: idempotent, leaves no half-built state (D14).
pub(crate) fn prepare() -> c_int {
    // SAFETY: setting dispositions of SIGCHLD/SIGPIPE has no memory-safety preconditions.
    unsafe {
        if libc::signal(libc::SIGCHLD, libc::SIG_IGN) == libc::SIG_ERR
            || libc::signal(libc::SIGPIPE, libc::SIG_IGN) == libc::SIG_ERR
        {
            log::error(format_args!(
                "mln_fork_prepare: signal(): {}",
                io::Error::last_os_error()
            ));
            return -1;
        }
    }
    master();
    #[cfg(not(feature = "standalone"))]
    crate::melon::conn::master_prepare();
    with_handlers(|hs| hs.reinstall_registry());
    0
}

/// `mln_ipc_set_process_handlers`.
pub(crate) fn set_process_handlers() -> c_int {
    with_handlers(|hs| hs.install_registry());
    0
}

/// `mln_fork_resource_clear_handler_set`.
pub(crate) fn set_clear_handler(h: clr_handler, data: *mut c_void) {
    let p = proc();
    p.clr = h;
    p.clr_data = data;
    publish();
}

pub(crate) fn is_worker() -> bool {
    proc().is_worker
}
