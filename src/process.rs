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

use crate::abi::*;
use crate::channel::{Flow, Flushed, RecvEnd, Rx, Tx};
use crate::log;
use crate::reactor;
use crate::registry::{Found, Handlers, Origin, Side};
use crate::sys::{retry_eintr, syscall};
use crate::wire;
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use core::ptr::{self, null_mut};
use std::ffi::CString;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    let mut c = proc().head;
    while !c.is_null() {
        if ptr::eq(c.cast::<mln_fork_t>(), f) {
            return Some(c);
        }
        // SAFETY: list members are live boxes.
        c = unsafe { (*c).f.next.cast() };
    }
    None
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

/// Where a fork left us.
pub(crate) enum Forked {
    Parent,
    Child,
}

/// Socketpair, fork, handshake (spec §4.5). In the parent the child is appended to the
/// list and, if `ev` is given, its descriptor registered for receiving.
fn fork_core(
    ev: *mut mln_event_t,
    etype: proc_exec_type,
    stype: proc_state_type,
    args: Option<ExecArgs>,
    quick_deaths: u32,
) -> io::Result<Forked> {
    let mut fds = [-1 as c_int; 2];
    syscall!(socketpair(
        libc::AF_UNIX,
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    let [mine, theirs] = fds;
    // Holding the handler lock across fork() keeps another thread from leaving it locked
    // mid-update in the child; the forking thread releases it on both sides.
    let mut guard = lock_handlers();
    // SAFETY: fork has no preconditions; the child only runs async-signal-safe-enough code
    // of this thread (the program is single-threaded there).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        drop(guard);
        close_fd(mine);
        close_fd(theirs);
        return Err(e);
    }
    if pid == 0 {
        if let Some(hs) = guard.as_mut() {
            hs.master.clear();
        }
        TABLE_GEN.fetch_add(1, Ordering::Release);
        drop(guard);
        close_fd(mine);
        after_fork_in_child(theirs);
        return Ok(Forked::Child);
    }
    drop(guard);
    close_fd(theirs);
    // Handshake: the child writes one byte once its post-fork cleanup is done. EOF means
    // it died first: fail instead of spinning (D5).
    let mut byte = 0u8;
    let r = retry_eintr(|| syscall!(read(mine, ptr::addr_of_mut!(byte).cast(), 1)));
    match r {
        Ok(1) => {}
        Ok(_) => {
            close_fd(mine);
            return Err(io::Error::other("child exited before the fork handshake"));
        }
        Err(e) => {
            close_fd(mine);
            return Err(e);
        }
    }
    // A pidfd lets the master make sure a child it considers dead is gone, without the
    // pid-reuse race of kill(pid). Optional: older kernels lack it.
    // SAFETY: plain syscall; returns a new CLOEXEC descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as c_int;
    let mut f = mln_fork_t {
        prev: null_mut(),
        next: null_mut(),
        args: null_mut(),
        conn: conn_new(mine),
        pid,
        n_args: 0,
        state: STATE_IDLE,
        msg_len: 0,
        msg_type: 0,
        error_bytes: 0,
        msg_content: null_mut(),
        msg_buf_size: 0,
        etype,
        stype,
    };
    // Melon build: a genuine Melon connection (spec §7), released when the child is freed.
    #[cfg(not(feature = "standalone"))]
    crate::melon::conn::init(&mut f.conn);
    let mut args = args;
    if let Some(a) = args.as_mut() {
        f.args = a.ptrs.as_mut_ptr();
        f.n_args = a.strings.len() as u32;
    }
    let c = Box::into_raw(Box::new(Child {
        f,
        chan: Chan::new(mine),
        pidfd,
        started: Instant::now(),
        quick_deaths,
        args,
        busy: 0,
        close_pending: false,
    }));
    list_append(c);
    if !ev.is_null() {
        register_child(ev, c);
    }
    Ok(Forked::Parent)
}

fn after_fork_in_child(fd: c_int) {
    let p = proc();
    let mut c = p.head;
    p.head = null_mut();
    p.tail = null_mut();
    while !c.is_null() {
        // SAFETY: inherited list members are live boxes we own; each is freed once.
        let b = unsafe { Box::from_raw(c) };
        c = b.f.next.cast();
        close_fd(b.chan.fd);
        close_fd(b.pidfd);
        forget_flush(&b.chan);
    }
    for r in std::mem::take(&mut proc().restarts) {
        // SAFETY: pending records are live boxes; their timers are pending on `ev`, whose
        // memory the child still has (cancelling touches no descriptor).
        let r = unsafe { Box::from_raw(r) };
        // SAFETY: as above.
        unsafe { reactor::timer_cancel(r.ev, r.timer) };
    }
    let m = master();
    // SAFETY: the master record is live; we replace its channel wholesale.
    unsafe {
        forget_flush(&(*m).chan);
        close_fd((*m).chan.fd);
        (*m).chan = Chan::new(fd);
        (*m).conn = conn_new(fd);
    }
    proc().is_worker = true;
    crate::sigsafe::after_fork();
    let (clr, data) = (proc().clr, proc().clr_data);
    if let Some(h) = clr {
        // SAFETY: user callback with the user's data, as Melon calls it.
        crate::sigsafe::outside(|| unsafe { h(data) });
    }

    // Melon build: a wake-up eventfd of our own, and `master_conn` names our end (after the
    // clear handler, as in Melon).
    #[cfg(not(feature = "standalone"))]
    {
        crate::melon::conn::master_attach(fd);
        publish();
    }
    // SAFETY: restoring the default disposition has no preconditions.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    let byte = b' ';
    if retry_eintr(|| syscall!(write(fd, ptr::addr_of!(byte).cast(), 1))).is_err() {
        // SAFETY: leaving the child without running the parent's atexit handlers.
        unsafe { libc::_exit(1) };
    }
}

/// Cancels a pending flush timer (memory only; no descriptor is touched).
fn forget_flush(ch: &Chan) {
    if !ch.flush_timer.is_null() {
        // SAFETY: the timer is pending on `flush_ev` (cleared when it fires).
        unsafe { reactor::timer_cancel(ch.flush_ev, ch.flush_timer) };
    }
}

/// `mln_fork_restart`: a supervised plain worker. 1 parent, 0 child, -1 error.
pub(crate) fn restart(ev: *mut mln_event_t) -> c_int {
    match fork_core(ev, M_PET_DFL, M_PST_SUP, None, 0) {
        Ok(Forked::Parent) => 1,
        Ok(Forked::Child) => 0,
        Err(e) => {
            log::error(format_args!("fork: {e}"));
            -1
        }
    }
}

/// `mln_fork`: the standalone build starts `mln_fork_worker_num_set` workers.
// Used by the standalone framework / mln_fork; the melon build reads Melon's conf.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn fork_workers() -> c_int {
    let n = WORKER_NUM.load(Ordering::Relaxed);
    for i in 1..=n {
        log::info(format_args!("Start up worker process No.{i}"));
        match restart(null_mut()) {
            0 => return 0,
            1 => {}
            _ => return -1,
        }
    }
    1
}

/// `mln_fork_spawn`: 0 in the parent, -1 on failure; the child execs and never returns.
pub(crate) fn spawn(stype: proc_state_type, args: Vec<CString>, ev: *mut mln_event_t) -> c_int {
    log::info(format_args!(
        "Start up process '{}'",
        args[0].to_string_lossy()
    ));
    spawn_args(stype, ExecArgs::new(args), ev, 0)
}

fn spawn_args(stype: proc_state_type, args: ExecArgs, ev: *mut mln_event_t, quick: u32) -> c_int {
    let exec = args.copy();
    match fork_core(ev, M_PET_EXE, stype, Some(args), quick) {
        Ok(Forked::Parent) => 0,
        Ok(Forked::Child) => exec_child(exec),
        Err(e) => {
            log::error(format_args!(
                "spawn '{}': {e}",
                exec.strings[0].to_string_lossy()
            ));
            -1
        }
    }
}

/// In a spawned child: hand the socketpair end to the program as its last argument.
fn exec_child(mut a: ExecArgs) -> ! {
    // SAFETY: the master record is live.
    let fd = unsafe { (*master()).chan.fd };
    // The one descriptor an exec'd program inherits (D12/D13): clear its CLOEXEC, and give
    // the program default dispositions for the signals the master ignores.
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
    crate::melon::before_exec();
    // SAFETY: `ptrs` is a NULL-terminated array of valid C strings that outlive the call.
    unsafe { libc::execv(a.ptrs[0], a.ptrs.as_ptr().cast()) };
    log::error(format_args!(
        "execv '{}': {}",
        a.strings[0].to_string_lossy(),
        io::Error::last_os_error()
    ));
    // SAFETY: leaving the child without running the parent's atexit handlers.
    unsafe { libc::_exit(1) }
}

// ---------------------------------------------------------------------------------------
// Registration with the event loop
// ---------------------------------------------------------------------------------------

fn register_child(ev: *mut mln_event_t, c: *mut Child) {
    // Melon build: sends reach the socket through the wake-up eventfd (D9).
    #[cfg(not(feature = "standalone"))]
    watch_wake_fd(ev);
    // SAFETY: `c` is a live child.
    let fd = unsafe { (*c).chan.fd };
    // SAFETY: `ev` is a live loop (caller's contract).
    let r = unsafe {
        reactor::fd_set(
            ev,
            fd,
            M_EV_RECV | M_EV_NONBLOCK,
            M_EV_UNLIMITED,
            c.cast(),
            Some(crate::capi::fork::mln_ipc_fd_handler_master),
        )
    };
    if r < 0 {
        log::error(format_args!(
            "cannot watch child {}: event registration failed",
            unsafe { (*c).f.pid }
        ));
        return;
    }
    // SAFETY: `c` is live.
    unsafe { rebind(ptr::addr_of_mut!((*c).chan), ev) };
    // SAFETY: `c` is live.
    if unsafe { !(*c).chan.tx.is_empty() } {
        schedule_flush(ev, Peer::Child(c));
    }
}

/// Watches this process's wake-up eventfd on `ev` (a replace registration: idempotent), so
/// that frames parked by signal handlers reach their queues and, in the melon build, so
/// that every send is flushed without the send path calling into Melon's loop (D9). Then
/// wakes it once, for whatever was queued before.
fn watch_wake_fd(ev: *mut mln_event_t) {
    let fd = crate::sigsafe::wake_fd();
    if fd < 0 {
        log::warn(format_args!(
            "no eventfd: sends from signal handlers that interrupt the library will be refused"
        ));
        return;
    }
    // SAFETY: `ev` is a live loop (caller's contract).
    unsafe {
        reactor::fd_set(
            ev,
            fd,
            M_EV_RECV | M_EV_NONBLOCK,
            M_EV_UNLIMITED,
            null_mut(),
            Some(wake_ready),
        )
    };
    crate::sigsafe::kick();
}

unsafe extern "C" fn wake_ready(ev: *mut mln_event_t, _fd: c_int, _data: *mut c_void) {
    crate::capi::guard("wake", || {
        drain_parked();
        #[cfg(not(feature = "standalone"))]
        flush_pending(ev);
        #[cfg(feature = "standalone")]
        let _ = ev;
    })
}

/// Queues the frames parked by signal handlers, in the order they were sent.
pub(crate) fn drain_parked() {
    let mut n = 0usize;
    crate::sigsafe::drain(|p| {
        n += 1;
        let ev: *mut mln_event_t = p.ev.cast();
        let r = if p.to.is_null() {
            send_to_master(ev, p.ty, p.payload)
        } else {
            send_to_child(ev, p.to.cast(), p.ty, p.payload)
        };
        if let Err(e) = r {
            log::warn(format_args!(
                "frame of type {} sent from a signal handler dropped: {e:?}",
                p.ty
            ));
        }
    });
    log::debug(format_args!(
        "queued {n} frame(s) parked by signal handlers"
    ));
}

/// Records that `ch` now receives on `ev` (a replace registration, so no SEND interest is
/// left). A flush timer pending on another loop is forgotten, not cancelled: that loop is
/// usually gone (the framework frees the master's loop when it ends), and a flush that
/// still fires there is harmless; without this the queue would wait for a timer that never
/// runs.
unsafe fn rebind(ch: *mut Chan, ev: *mut mln_event_t) {
    // SAFETY: caller passes a live channel.
    unsafe {
        (*ch).recv_ev = ev;
        (*ch).send_ev = null_mut();
        if (*ch).flush_ev != ev {
            (*ch).flush_ev = null_mut();
            (*ch).flush_timer = null_mut();
        }
    }
}

/// `mln_fork_master_events_set`.
pub(crate) fn master_events_set(ev: *mut mln_event_t) {
    watch_wake_fd(ev);
    let mut c = proc().head;
    while !c.is_null() {
        register_child(ev, c);
        // SAFETY: list members are live.
        c = unsafe { (*c).f.next.cast() };
    }
}

/// `mln_fork_worker_events_set`.
pub(crate) fn worker_events_set(ev: *mut mln_event_t) {
    let m = master();
    // SAFETY: the master record is live.
    let fd = unsafe { (*m).chan.fd };
    if fd < 0 {
        log::warn(format_args!(
            "mln_fork_worker_events_set: this process has no master"
        ));
        return;
    }
    watch_wake_fd(ev);
    // SAFETY: `ev` is a live loop (caller's contract).
    let r = unsafe {
        reactor::fd_set(
            ev,
            fd,
            M_EV_RECV | M_EV_NONBLOCK,
            M_EV_UNLIMITED,
            null_mut(),
            Some(crate::capi::fork::mln_ipc_fd_handler_worker),
        )
    };
    if r < 0 {
        log::error(format_args!(
            "mln_fork_worker_events_set: event registration failed"
        ));
        return;
    }
    // SAFETY: live record.
    unsafe { rebind(ptr::addr_of_mut!((*m).chan), ev) };
    // SAFETY: live record.
    if unsafe { !(*m).chan.tx.is_empty() } {
        schedule_flush(ev, Peer::Master);
    }
}

/// `mln_fork_iterate`: -1 when the handler returns a negative value.
pub(crate) fn iterate(ev: *mut mln_event_t, h: fork_iterate_handler, data: *mut c_void) -> c_int {
    let mut c = proc().head;
    while !c.is_null() {
        // Read the successor first: the handler may close this child.
        // SAFETY: list members are live until removed.
        let next: *mut Child = unsafe { (*c).f.next.cast() };
        if let Some(h) = h {
            // SAFETY: user callback with a live child.
            if crate::sigsafe::outside(|| unsafe { h(ev, c.cast(), data) }) < 0 {
                return -1;
            }
        }
        c = next;
    }
    0
}

// ---------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Peer {
    Child(*mut Child),
    Master,
}

impl Peer {
    fn chan(self) -> *mut Chan {
        match self {
            // SAFETY: callers only build `Peer::Child` from live children.
            Peer::Child(c) => unsafe { ptr::addr_of_mut!((*c).chan) },
            // SAFETY: the master record is never freed.
            Peer::Master => unsafe { ptr::addr_of_mut!((*master()).chan) },
        }
    }
    fn data(self) -> *mut c_void {
        match self {
            Peer::Child(c) => c.cast(),
            Peer::Master => null_mut(),
        }
    }
    fn recv_handler(self) -> ev_fd_handler {
        match self {
            Peer::Child(_) => Some(crate::capi::fork::mln_ipc_fd_handler_master),
            Peer::Master => Some(crate::capi::fork::mln_ipc_fd_handler_worker),
        }
    }
}

/// Why a send was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The payload cannot be framed (D4) or exceeds the maximum message size.
    TooLarge,
    /// No such child / no master.
    NoPeer,
}

/// Queues one frame to a child (`mln_ipc_master_send_prepare`).
pub(crate) fn send_to_child(
    ev: *mut mln_event_t,
    f: *const mln_fork_t,
    ty: u32,
    payload: &[u8],
) -> Result<(), SendError> {
    let c = find_child(f).ok_or(SendError::NoPeer)?;
    send(ev, Peer::Child(c), ty, payload)
}

/// Queues one frame to the master (`mln_ipc_worker_send_prepare`).
pub(crate) fn send_to_master(
    ev: *mut mln_event_t,
    ty: u32,
    payload: &[u8],
) -> Result<(), SendError> {
    // SAFETY: the master record is live.
    if !proc().is_worker || unsafe { (*master()).chan.fd } < 0 {
        return Err(SendError::NoPeer);
    }
    send(ev, Peer::Master, ty, payload)
}

fn send(ev: *mut mln_event_t, peer: Peer, ty: u32, payload: &[u8]) -> Result<(), SendError> {
    if payload.len().saturating_add(wire::TYPE_LEN) > max_message() {
        return Err(SendError::TooLarge);
    }
    let ch = peer.chan();
    // SAFETY: `ch` is a live channel; the borrow ends before any callback.
    unsafe { (*ch).tx.push(ty, payload).ok_or(SendError::TooLarge)? };
    schedule_flush(ev, peer);
    Ok(())
}

/// Arranges for the queue to be written after the current handlers return: one write for
/// everything queued meanwhile, and no write at all while a SEND interest is armed.
fn schedule_flush(ev: *mut mln_event_t, peer: Peer) {
    let ch = peer.chan();
    // SAFETY: live channel; short borrow.
    let (armed, pending) = unsafe { (!(*ch).send_ev.is_null(), !(*ch).flush_timer.is_null()) };
    if armed || pending {
        return;
    }
    // Melon build: never call into Melon's loop from the send path, which Melon's SIGUSR2
    // handler runs in signal context (D9); the eventfd's handler flushes.
    #[cfg(not(feature = "standalone"))]
    if crate::sigsafe::kick() {
        return;
    }
    let data = match peer {
        Peer::Child(c) => c.cast(),
        Peer::Master => null_mut(),
    };
    // SAFETY: `ev` is a live loop (caller's contract).
    let t = unsafe { reactor::timer_set(ev, 0, data, Some(flush_timer_fired)) };
    if t.is_null() {
        // No timer: write now instead.
        flush(ev, peer);
        return;
    }
    // SAFETY: live channel.
    unsafe {
        (*ch).flush_ev = ev;
        (*ch).flush_timer = t;
    }
}

unsafe extern "C" fn flush_timer_fired(ev: *mut mln_event_t, data: *mut c_void) {
    crate::capi::guard("flush", || {
        // A child's flush timer is cancelled before the child is freed, unless the channel
        // moved to another loop meanwhile (`rebind`): look it up rather than trust `data`.
        let peer = if data.is_null() {
            Peer::Master
        } else {
            match find_child(data.cast()) {
                Some(c) => Peer::Child(c),
                None => return,
            }
        };
        let ch = peer.chan();
        // SAFETY: a live channel.
        unsafe {
            if (*ch).flush_ev == ev {
                (*ch).flush_timer = null_mut();
                (*ch).flush_ev = null_mut();
            }
        }
        flush(ev, peer);
    })
}

/// The SEND handler armed while a queue waits for a full socket.
pub(crate) unsafe extern "C" fn send_ready(ev: *mut mln_event_t, _fd: c_int, data: *mut c_void) {
    crate::capi::guard("send_ready", || {
        let peer = if data.is_null() {
            Peer::Master
        } else {
            match find_child(data.cast()) {
                Some(c) => Peer::Child(c),
                None => return,
            }
        };
        flush(ev, peer);
    })
}

fn flush(ev: *mut mln_event_t, peer: Peer) {
    let ch = peer.chan();
    // SAFETY: live channel; the borrow ends before any callback.
    let (fd, res) = unsafe { ((*ch).fd, (*ch).tx.flush((*ch).fd)) };
    match res {
        Flushed::Drained => {
            // SAFETY: live channel.
            let (send_ev, recv_ev) = unsafe { ((*ch).send_ev, (*ch).recv_ev) };
            if send_ev.is_null() {
                return;
            }
            // SAFETY: live channel.
            unsafe { (*ch).send_ev = null_mut() };
            // Drop the SEND interest: a replace with RECV alone where RECV lives, or a
            // CLR where it was the only interest.
            // SAFETY: `send_ev` is the live loop we armed.
            unsafe {
                if send_ev == recv_ev {
                    reactor::fd_set(
                        send_ev,
                        fd,
                        M_EV_RECV | M_EV_NONBLOCK,
                        M_EV_UNLIMITED,
                        peer.data(),
                        peer.recv_handler(),
                    );
                } else {
                    reactor::fd_set(send_ev, fd, M_EV_CLR, M_EV_UNLIMITED, null_mut(), None);
                }
            }
        }
        Flushed::Blocked => {
            // SAFETY: live channel.
            if unsafe { !(*ch).send_ev.is_null() } {
                return;
            }
            // Level-triggered SEND added beside the persistent RECV: no one-shot, so
            // neither direction can stall the other (D10), in either backend.
            // SAFETY: `ev` is a live loop.
            let r = unsafe {
                reactor::fd_set(
                    ev,
                    fd,
                    M_EV_SEND | M_EV_APPEND | M_EV_NONBLOCK,
                    M_EV_UNLIMITED,
                    peer.data(),
                    Some(send_ready),
                )
            };
            if r == 0 {
                // SAFETY: live channel.
                unsafe { (*ch).send_ev = ev };
            } else {
                log::error(format_args!("cannot wait for writability on fd {fd}"));
            }
        }
        Flushed::Error(e) => match peer {
            // SAFETY: live child.
            Peer::Child(c) if unsafe { (*c).busy } == 0 => {
                drain_then_close(ev, c, &format!("send: {e}"))
            }
            _ => peer_gone(ev, peer, &format!("send: {e}")),
        },
    }
}

/// Melon build: flushes every queue that waits for a flush (non-empty, no SEND interest
/// armed, no flush timer), on the loop its channel receives on. Run by the wake-up
/// eventfd's handler (`wake_ready`), in normal context.
#[cfg(not(feature = "standalone"))]
pub(crate) fn flush_pending(ev: *mut mln_event_t) {
    fn waiting(ch: *mut Chan) -> bool {
        // SAFETY: a live channel; short borrow.
        unsafe { !(*ch).tx.is_empty() && (*ch).send_ev.is_null() && (*ch).flush_timer.is_null() }
    }
    fn loop_of(ch: *mut Chan, ev: *mut mln_event_t) -> *mut mln_event_t {
        // SAFETY: as above.
        let r = unsafe { (*ch).recv_ev };
        if r.is_null() {
            ev
        } else {
            r
        }
    }
    let mut children = Vec::new();
    let mut c = proc().head;
    while !c.is_null() {
        children.push(c);
        // SAFETY: list members are live.
        c = unsafe { (*c).f.next.cast() };
    }
    for c in children {
        // A flush may close a child, and a restart may turn us into a new worker: act only
        // on children that are still ours.
        if proc().is_worker || find_child(c.cast()).is_none() {
            continue;
        }
        let peer = Peer::Child(c);
        if waiting(peer.chan()) {
            flush(loop_of(peer.chan(), ev), peer);
        }
    }
    let peer = Peer::Master;
    // SAFETY: the master record is live.
    if proc().is_worker && unsafe { (*peer.chan()).fd } >= 0 && waiting(peer.chan()) {
        flush(loop_of(peer.chan(), ev), peer);
    }
}

/// Upper bound of receive passes when draining a child whose socket failed on send.
const DRAIN_PASSES: usize = 64;

/// A child's socket failed on send (it died, typically with frames of ours unread). What it
/// sent before is still in our receive buffer: deliver that first, so a dead worker loses
/// only what it had not sent (spec D6); `child_readable` closes it at the end of stream.
/// If it is still there after that (alive but not reading), close it now.
fn drain_then_close(ev: *mut mln_event_t, c: *mut Child, why: &str) {
    for _ in 0..DRAIN_PASSES {
        child_readable(ev, c);
        if find_child(c.cast()).is_none() {
            return;
        }
    }
    close_child(ev, c, why);
}

// ---------------------------------------------------------------------------------------
// Receiving and dispatch
// ---------------------------------------------------------------------------------------

/// The master's RECV handler body (`mln_ipc_fd_handler_master`).
pub(crate) fn child_readable(ev: *mut mln_event_t, c: *mut Child) {
    // SAFETY: `c` is a live child; `busy` keeps it alive until we are done.
    unsafe { (*c).busy += 1 };
    let end = receive(ev, Peer::Child(c));
    // SAFETY: still live (closing was deferred while busy).
    let close = unsafe {
        (*c).busy -= 1;
        (*c).busy == 0 && (*c).close_pending
    };
    match end {
        RecvEnd::Drained => {}
        RecvEnd::Stopped => {}
        RecvEnd::Eof => return peer_gone(ev, Peer::Child(c), "end of stream"),
        RecvEnd::TooLong(n) => {
            return peer_gone(
                ev,
                Peer::Child(c),
                &format!("protocol error: frame length {n} above the maximum"),
            )
        }
        RecvEnd::Error(e) => return peer_gone(ev, Peer::Child(c), &format!("recv: {e}")),
    }
    if close {
        peer_gone(ev, Peer::Child(c), "closed by a handler");
    }
}

/// The worker's RECV handler body (`mln_ipc_fd_handler_worker`).
pub(crate) fn master_readable(ev: *mut mln_event_t) {
    match receive(ev, Peer::Master) {
        RecvEnd::Drained | RecvEnd::Stopped => {}
        RecvEnd::Eof => peer_gone(ev, Peer::Master, "Master process dead!"),
        RecvEnd::TooLong(n) => peer_gone(
            ev,
            Peer::Master,
            &format!("protocol error: frame length {n} above the maximum"),
        ),
        RecvEnd::Error(e) => peer_gone(ev, Peer::Master, &format!("recv: {e}")),
    }
}

fn receive(ev: *mut mln_event_t, peer: Peer) -> RecvEnd {
    let ch = peer.chan();
    let (side, f_ptr): (Side, *mut c_void) = match peer {
        Peer::Child(c) => (Side::Master, c.cast()),
        Peer::Master => (Side::Worker, master_connection().cast()),
    };
    // SAFETY: `ch` is live for the whole call (children are kept by `busy`, the master
    // record is never freed). `rx` and `cache` are only touched here, and this function is
    // not re-entered for the same channel: a handler that calls the fd handler itself
    // would read into the same buffer, so that is refused below. `tx` (touched by sends
    // from handlers) is a different field, reached only through `ch`.
    unsafe {
        let rx = ptr::addr_of_mut!((*ch).rx);
        let cache = ptr::addr_of_mut!((*ch).cache);
        let fd = (*ch).fd;
        (*rx).receive(fd, max_message(), |ty, payload| {
            let Some(found) = (*cache).lookup(side, ty) else {
                return Flow::Continue;
            };
            let Some(h) = found.handler else {
                return Flow::Continue;
            };
            let (buf, len) = (payload.as_mut_ptr().cast(), payload.len() as u32);
            crate::sigsafe::outside(|| h(ev, f_ptr, buf, len, found.slot));
            match peer {
                Peer::Child(c) if (*c).close_pending => Flow::Stop,
                _ => Flow::Continue,
            }
        })
    }
}

/// The peer of `peer` is gone (end of stream, socket error, protocol error, or closed by
/// request). Worker: exit 127. Master: forget the child and restart it if supervised.
fn peer_gone(ev: *mut mln_event_t, peer: Peer, why: &str) {
    match peer {
        Peer::Master => {
            log::info(format_args!("{why}: exiting with status 127"));
            std::process::exit(127);
        }
        Peer::Child(c) => close_child(ev, c, why),
    }
}

/// `mln_fork_socketpair_close_handler` and every death path of a child.
pub(crate) fn close_child(ev: *mut mln_event_t, c: *mut Child, why: &str) {
    // SAFETY: `c` is a live child.
    unsafe {
        if (*c).busy > 0 {
            // Its frames are being dispatched: finish that first (child_readable calls us
            // again), so no handler's `f_ptr` or buffer dangles.
            (*c).close_pending = true;
            return;
        }
    }
    list_remove(c);
    // SAFETY: `c` was a live list member; we now own it and free it exactly once.
    let child = unsafe { Box::from_raw(c) };
    let fd = child.chan.fd;
    for lp in [child.chan.recv_ev, child.chan.send_ev] {
        if !lp.is_null() {
            // SAFETY: a loop we registered on; CLR inside its own handler is allowed.
            unsafe { reactor::fd_set(lp, fd, M_EV_CLR, M_EV_UNLIMITED, null_mut(), None) };
        }
    }
    forget_flush(&child.chan);
    let lost = child.chan.tx.undelivered();
    if lost > 0 {
        log::warn(format_args!(
            "child {} gone with {lost} queued frame(s) undelivered",
            child.f.pid
        ));
    }
    close_fd(fd);
    if child.pidfd >= 0 {
        // Make sure it is really gone: a child that merely closed its end must not live on
        // beside its replacement (D13). Harmless if it already exited.
        // SAFETY: signalling through our own pidfd.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                child.pidfd,
                libc::SIGKILL,
                ptr::null::<c_void>(),
                0,
            )
        };
        close_fd(child.pidfd);
    }
    log::info(format_args!("child {} dead ({why})", child.f.pid));
    if child.f.stype != M_PST_SUP {
        return;
    }
    // Backoff (D7): the first restart is immediate; deaths soon after a start double the
    // delay from 100 ms up to 10 s; a child that stayed up a while resets it.
    let quick = if child.started.elapsed() < STABLE_UPTIME {
        child.quick_deaths + 1
    } else {
        0
    };
    let delay = backoff_delay(quick);
    let args = child.args.as_ref().map(ExecArgs::copy);
    let etype = child.f.etype;
    drop(child);
    if delay.is_zero() || ev.is_null() {
        do_restart(ev, etype, args, quick);
    } else {
        schedule_restart(ev, etype, args, quick, delay);
    }
}

const STABLE_UPTIME: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Delay before the restart that follows the `quick`-th quick death in a row.
pub(crate) fn backoff_delay(quick: u32) -> Duration {
    if quick <= 1 {
        return Duration::ZERO;
    }
    let exp = (quick - 2).min(16);
    (BACKOFF_FIRST * (1u32 << exp)).min(BACKOFF_MAX)
}

fn do_restart(ev: *mut mln_event_t, etype: proc_exec_type, args: Option<ExecArgs>, quick: u32) {
    let retry_args = args.as_ref().map(ExecArgs::copy);
    let r = match args {
        Some(a) => {
            let name = a.strings[0].to_string_lossy().into_owned();
            let r = spawn_args(M_PST_SUP, a, ev, quick);
            if r == 0 {
                log::info(format_args!("Process {name} restart."));
            }
            r
        }
        None => match fork_core(ev, etype, M_PST_SUP, None, quick) {
            Ok(Forked::Parent) => {
                log::info(format_args!("Child process restart."));
                0
            }
            Ok(Forked::Child) => {
                // We are the new worker, still inside the master's loop: leave it; the
                // framework then runs the worker routine (spec §5).
                if !ev.is_null() {
                    // SAFETY: the loop we were dispatching.
                    unsafe { reactor::break_set(ev) };
                }
                0
            }
            Err(e) => {
                log::error(format_args!("restart: {e}"));
                -1
            }
        },
    };
    if r < 0 && !ev.is_null() && !proc().is_worker {
        // Keep supervising: try again later rather than abort (Melon aborts).
        let quick = quick.max(1) + 1;
        schedule_restart(ev, etype, retry_args, quick, backoff_delay(quick));
    }
}

fn schedule_restart(
    ev: *mut mln_event_t,
    etype: proc_exec_type,
    args: Option<ExecArgs>,
    quick: u32,
    delay: Duration,
) {
    let rec = Box::into_raw(Box::new(PendingRestart {
        ev,
        timer: null_mut(),
        etype,
        args,
        quick_deaths: quick,
    }));
    let ms = delay.as_millis().min(u32::MAX as u128) as u32;
    // SAFETY: `ev` is the live loop the death was seen on.
    let t = unsafe { reactor::timer_set(ev, ms, rec.cast(), Some(restart_timer_fired)) };
    if t.is_null() {
        // SAFETY: `rec` was never shared.
        let r = unsafe { Box::from_raw(rec) };
        log::error(format_args!(
            "cannot schedule a restart: no timer; restarting now"
        ));
        do_restart(ev, r.etype, r.args, r.quick_deaths);
        return;
    }
    // SAFETY: `rec` is live until the timer fires or is cancelled.
    unsafe { (*rec).timer = t };
    proc().restarts.push(rec);
    log::info(format_args!("restart in {} ms", ms));
}

unsafe extern "C" fn restart_timer_fired(ev: *mut mln_event_t, data: *mut c_void) {
    crate::capi::guard("restart", || {
        let rec: *mut PendingRestart = data.cast();
        let p = proc();
        let Some(i) = p.restarts.iter().position(|r| *r == rec) else {
            return;
        };
        p.restarts.swap_remove(i);
        // SAFETY: removed from the pending list, so we own it now.
        let r = unsafe { Box::from_raw(rec) };
        do_restart(ev, r.etype, r.args, r.quick_deaths);
    })
}

// ---------------------------------------------------------------------------------------
// Hooks for the safe Rust API (src/api.rs)
// ---------------------------------------------------------------------------------------

/// `mln_fork_restart` with the error as a value instead of a log line.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn fork_worker_checked(ev: *mut mln_event_t) -> io::Result<Forked> {
    fork_core(ev, M_PET_DFL, M_PST_SUP, None, 0)
}

/// `mln_fork_spawn` with the error as a value. Never returns in the child.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn spawn_checked(
    stype: proc_state_type,
    args: Vec<CString>,
    ev: *mut mln_event_t,
) -> io::Result<()> {
    let args = ExecArgs::new(args);
    let exec = args.copy();
    match fork_core(ev, M_PET_EXE, stype, Some(args), 0)? {
        Forked::Parent => Ok(()),
        Forked::Child => exec_child(exec),
    }
}

/// The end of the Rust API's `run` (called after the loop returned, so no handler runs):
/// drops pending restarts, writes what is still queued on every channel (blocking, until
/// `deadline` at the latest), then closes every channel without restarting anyone. A
/// master's workers see end of stream and exit with status 127. The loops the channels
/// were registered on must still be live. Returns the number of frames not delivered.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn shutdown(deadline: Instant) -> usize {
    for r in std::mem::take(&mut proc().restarts) {
        // SAFETY: pending records are live boxes whose timers are pending on their loop.
        let r = unsafe { Box::from_raw(r) };
        // SAFETY: as above.
        unsafe { reactor::timer_cancel(r.ev, r.timer) };
    }
    let mut lost = 0;
    let p = proc();
    let mut c = p.head;
    p.head = null_mut();
    p.tail = null_mut();
    while !c.is_null() {
        // SAFETY: list members are live boxes; unlinked above, each is freed once.
        let mut b = unsafe { Box::from_raw(c) };
        c = b.f.next.cast();
        lost += drain_and_close(&mut b.chan, deadline);
        close_fd(b.pidfd);
    }
    let m = master();
    // SAFETY: the master record is live and never freed; no handler holds its channel.
    unsafe {
        if (*m).chan.fd >= 0 {
            lost += drain_and_close(&mut (*m).chan, deadline);
            (*m).chan = Chan::new(-1);
            (*m).conn = conn_new(-1);
        }
    }
    lost
}

/// Writes what `ch` has queued (blocking until `deadline` at the latest), removes it from
/// its loops and closes it. Returns the number of frames not delivered.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
fn drain_and_close(ch: &mut Chan, deadline: Instant) -> usize {
    let lost = loop {
        match ch.tx.flush(ch.fd) {
            Flushed::Drained => break 0,
            Flushed::Error(_) => break ch.tx.undelivered(),
            Flushed::Blocked => {
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = left.as_millis().min(c_int::MAX as u128) as c_int;
                let mut pfd = libc::pollfd {
                    fd: ch.fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                if ms == 0 || retry_eintr(|| syscall!(poll(&mut pfd, 1, ms))).is_err() {
                    break ch.tx.undelivered();
                }
            }
        }
    };
    for lp in [ch.recv_ev, ch.send_ev] {
        if !lp.is_null() {
            // SAFETY: a live loop we registered on (the caller's contract).
            unsafe { reactor::fd_set(lp, ch.fd, M_EV_CLR, M_EV_UNLIMITED, null_mut(), None) };
        }
    }
    forget_flush(ch);
    close_fd(ch.fd);
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_starts_immediate() {
        assert_eq!(backoff_delay(0), Duration::ZERO);
        assert_eq!(backoff_delay(1), Duration::ZERO);
        assert_eq!(backoff_delay(2), Duration::from_millis(100));
        assert_eq!(backoff_delay(3), Duration::from_millis(200));
        assert_eq!(backoff_delay(8), Duration::from_millis(6400));
        assert_eq!(backoff_delay(9), Duration::from_secs(10));
        assert_eq!(backoff_delay(10), Duration::from_secs(10));
        assert_eq!(backoff_delay(u32::MAX), Duration::from_secs(10));
    }
}
