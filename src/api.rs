//! The safe Rust API: master/worker processes exchanging typed frames, without `unsafe`,
//! C callbacks or global-state ceremony.
//!
//! It is a thin face over the same core as the C API (`mln_fork_*`, `mln_ipc_*`): the
//! same handler tables, the same processes, the same wire format
//! (`[u32 len = 4 + payload][u32 type][payload]`, host byte order). A Rust master talks to
//! C workers and the other way round, and C handlers registered with
//! [`mln_ipc_handler_register`](crate::capi::ipc::mln_ipc_handler_register) keep working
//! beside Rust ones.
//!
//! # Shape
//! A [`Builder`] collects handlers (closures, per message type and side), the number of
//! workers and the programs to spawn; [`Builder::run`] forks the workers and runs the event
//! loop of each process. Handlers get a context, [`Master`] or [`Worker`], to send
//! messages, set timers and stop; payloads are borrowed straight from the receive buffer.
//!
//! ```no_run
//! use mln_ipc::api::{Builder, Master, Worker, WorkerId};
//!
//! const PING: u32 = 2000;
//! const PONG: u32 = 2001;
//!
//! Builder::new()
//!     .workers(2)
//!     .on_master_start(|m: &mut Master| {
//!         m.broadcast(PING, b"hello").expect("broadcast");
//!     })
//!     .on_worker(PING, |w: &mut Worker, payload: &[u8]| {
//!         let _ = w.send(PONG, payload);
//!     })
//!     .on_master(PONG, {
//!         let mut pongs = 0;
//!         move |m: &mut Master, from: WorkerId, _payload: &[u8]| {
//!             println!("pong from worker {} (pid {})", from.index(), from.pid());
//!             pongs += 1;
//!             if pongs == 2 {
//!                 m.stop();
//!             }
//!         }
//!     })
//!     .run()
//!     .expect("run");
//! ```
//!
//! # Rules
//! * **Processes.** [`Builder::run`] may be called once per process. It returns only in the
//!   master. A worker runs its loop until it calls [`Worker::stop`] (it then exits with
//!   status 0) or its master is gone (it exits with status 127, the core's rule). Workers
//!   are supervised: one that dies is restarted, with backoff when it keeps dying.
//! * **Threads.** Everything runs on the thread that called [`Builder::run`]: handlers,
//!   timers and start callbacks run there, one at a time; no context type is `Send`, and
//!   closures need not be `Send` either. Nothing in this module may be called from another
//!   thread or from a signal handler.
//! * **Fork.** `run` forks. `fork` copies only the calling thread: a lock held by any
//!   other thread stays locked forever in the child. So `run` refuses to start while other
//!   threads exist ([`Error::ThreadsRunning`]) unless [`Builder::allow_threads`] says you
//!   accept the hazard. A worker is a copy of the master at the moment of the fork: it
//!   inherits every open file and socket (the core's own descriptors are close-on-exec and
//!   a worker closes its siblings' channels), the closures' captured state as it was, and
//!   unflushed stdio buffers (`run` flushes Rust's stdout and stderr before forking).
//!   Spawned programs ([`Builder::spawn`]) are exec'd and inherit only their channel.
//! * **Handlers** may send, set and cancel timers, stop, and call the C API on the raw
//!   handles ([`Master::as_raw_event_loop`], [`Master::as_raw_fork`]); they must not block
//!   for long (the whole process waits) and must not call [`Builder::run`]. A handler that
//!   panics is stopped at the boundary: the panic is logged (`MLN_IPC_LOG`), that message
//!   is dropped, and the loop goes on with the handler's state as the panic left it.
//! * **Ownership.** Closures are owned by the library for the rest of the process's life
//!   (the handler tables never free an entry; a worker keeps its copy of the master's).
//!   Sending copies the payload into the channel's queue: it is written after the current
//!   handler returns, in order, exactly once, unless the peer dies first.
//!
//! The API is built for the standalone build (our event loop); the `melon` build does not
//! have it yet.

use crate::abi::{
    mln_event_t, mln_event_timer_t, mln_fork_t, M_PET_DFL, M_PET_EXE, M_PST_DFL, M_PST_SUP,
};
use crate::log;
use crate::process::{self, Forked, SendError};
use crate::reactor::{self, standalone as ev_loop};
use crate::registry::Side;
use crate::wire;
use core::ffi::{c_void, CStr};
use core::marker::PhantomData;
use core::ptr::null_mut;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use std::fmt;
use std::io::{self, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the end of [`Builder::run`] (and a stopping worker) keeps writing frames that
/// are still queued before it closes the channels anyway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Everything that can go wrong in this API. Bad input never panics: it gives one of
/// these.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed (socketpair, fork, the fork handshake, signal dispositions, a
    /// program to spawn that cannot be executed, ...); the OS error is inside.
    Io(io::Error),
    /// The payload is longer than the largest payload a frame may carry (`max` bytes:
    /// the maximum message size minus the 4-byte type; see [`Builder::max_message`]).
    /// Nothing was queued.
    MessageTooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload accepted.
        max: usize,
    },
    /// The peer is gone: the worker died (a restarted worker has a new [`WorkerId`]), or
    /// this process has no master. Nothing was queued.
    PeerGone,
    /// An argument was refused; the text says which and why.
    InvalidArgument(&'static str),
    /// The peer's send queue is at its limit (see `mln_ipc_queue_limit_set`); nothing was
    /// queued. Try again once it drained.
    QueueFull,
    /// [`Builder::run`] was already called in this process (or this process is a worker).
    AlreadyStarted,
    /// Other threads are running, so forking is unsafe; see [`Builder::allow_threads`].
    ThreadsRunning {
        /// How many threads this process has (including the caller).
        threads: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::MessageTooLarge { len, max } => {
                write!(
                    f,
                    "payload of {len} bytes exceeds the maximum of {max} bytes"
                )
            }
            Error::PeerGone => f.write_str("the peer process is gone"),
            Error::QueueFull => f.write_str("the peer's send queue is full"),
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::AlreadyStarted => f.write_str("Builder::run was already called in this process"),
            Error::ThreadsRunning { threads } => write!(
                f,
                "{threads} threads are running; forking now is unsafe (see Builder::allow_threads)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

fn send_error(e: SendError, len: usize) -> Error {
    match e {
        SendError::TooLarge => Error::MessageTooLarge {
            len,
            max: max_payload(),
        },
        SendError::NoPeer => Error::PeerGone,
        SendError::QueueFull | SendError::Busy => Error::QueueFull,
        SendError::NoMemory => Error::Io(io::Error::from(io::ErrorKind::OutOfMemory)),
    }
}

fn max_payload() -> usize {
    process::max_message().saturating_sub(wire::TYPE_LEN)
}

fn check_len(len: usize) -> Result<(), Error> {
    if len > max_payload() {
        return Err(Error::MessageTooLarge {
            len,
            max: max_payload(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Typed messages
// ---------------------------------------------------------------------------------------

/// A Rust type carried as the payload of frames of one message type. The wire format does
/// not change: `encode` gives the payload bytes, `decode` reads them back. Register
/// handlers per type with [`Builder::on_master_message`] / [`Builder::on_worker_message`]
/// and send with [`Master::send_message_to`], [`Master::broadcast_message`] and
/// [`Worker::send_message`].
///
/// ```
/// use mln_ipc::api::Message;
///
/// struct Square(u32);
/// impl Message for Square {
///     const TYPE: u32 = 3000;
///     fn encode(&self) -> Vec<u8> {
///         self.0.to_le_bytes().to_vec()
///     }
///     fn decode(bytes: &[u8]) -> Option<Self> {
///         Some(Square(u32::from_le_bytes(bytes.try_into().ok()?)))
///     }
/// }
/// assert_eq!(Square::decode(&Square(7).encode()).map(|s| s.0), Some(7));
/// ```
pub trait Message: Sized {
    /// The frame type. Types 0..=1024 are reserved for Melon.
    const TYPE: u32;
    /// The payload bytes for `self`.
    fn encode(&self) -> Vec<u8>;
    /// The value carried by `bytes`, or `None` when they do not decode; such a frame is
    /// dropped (and logged at warn level).
    fn decode(bytes: &[u8]) -> Option<Self>;
}

// ---------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------

/// One child process as the master sees it: a stable index and the current pid.
///
/// Indices: the workers started by [`Builder::workers`] are `0..n` in start order; the
/// programs of [`Builder::spawn`] follow, in call order. A restarted child takes the index
/// of the child it replaces (when several children of the same kind died at once, their
/// replacements take the freed indices in an unspecified order). A `WorkerId` names one
/// process: after a restart the index is the same, the pid and so the `WorkerId` differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkerId {
    index: usize,
    pid: u32,
}

impl WorkerId {
    /// The stable index (see the type's documentation).
    pub fn index(&self) -> usize {
        self.index
    }
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {} (pid {})", self.index, self.pid)
    }
}

/// A pending timer, to cancel it with [`Master::cancel`] / [`Worker::cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

// ---------------------------------------------------------------------------------------
// Per-process state of this module
// ---------------------------------------------------------------------------------------

struct TimerRec {
    ev: *mut mln_event_t,
    handle: *mut mln_event_timer_t,
    run: Box<dyn FnOnce(*mut mln_event_t)>,
}

/// Thread-local because everything runs on the loop thread; after `fork` the child's only
/// thread is the one that forked, so the child sees the parent's values (see `into_worker`
/// for what it does with them).
#[derive(Default)]
struct State {
    timers: HashMap<u64, TimerRec>,
    next_timer: u64,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
    /// Set by `stop`: no handler or timer runs any more in this process.
    static STOPPED: Cell<bool> = const { Cell::new(false) };
}

static STARTED: AtomicBool = AtomicBool::new(false);

fn id_of(c: &process::ChildInfo) -> WorkerId {
    WorkerId {
        index: c.slot as usize,
        pid: c.pid as u32,
    }
}

/// The identity of child `f` (a live child of the core).
fn worker_id(f: *mut mln_fork_t) -> WorkerId {
    process::children()
        .iter()
        .find(|c| c.fork == f)
        .map(id_of)
        .unwrap_or(WorkerId {
            index: usize::MAX,
            pid: 0,
        })
}

/// The live children in index order.
fn live_children() -> Vec<(WorkerId, *mut mln_fork_t)> {
    let mut v: Vec<_> = process::children()
        .iter()
        .map(|c| (id_of(c), c.fork))
        .collect();
    v.sort_by_key(|(w, _)| w.index);
    v
}

fn set_timer(
    ev: *mut mln_event_t,
    delay: Duration,
    run: Box<dyn FnOnce(*mut mln_event_t)>,
) -> Result<TimerId, Error> {
    unsafe extern "C" fn fired(ev: *mut mln_event_t, data: *mut c_void) {
        let id = data as usize as u64;
        let Some(rec) = STATE.with_borrow_mut(|st| st.timers.remove(&id)) else {
            return;
        };
        if STOPPED.get() {
            return;
        }
        guarded("timer", || (rec.run)(ev));
    }
    // Round up: a timer never fires early.
    let ms = delay.as_nanos().div_ceil(1_000_000).min(u32::MAX as u128) as u32;
    let id = STATE.with_borrow_mut(|st| {
        st.next_timer += 1;
        st.next_timer
    });
    // SAFETY: `ev` is the live loop of this process (contexts exist only while it runs).
    let handle = unsafe { reactor::timer_set(ev, ms, id as usize as *mut c_void, Some(fired)) };
    if handle.is_null() {
        return Err(Error::Io(io::Error::from(io::ErrorKind::OutOfMemory)));
    }
    STATE.with_borrow_mut(|st| st.timers.insert(id, TimerRec { ev, handle, run }));
    Ok(TimerId(id))
}

fn cancel_timer(t: TimerId) -> bool {
    match STATE.with_borrow_mut(|st| st.timers.remove(&t.0)) {
        Some(rec) => {
            // SAFETY: the timer is pending on its live loop (it is removed when it fires).
            unsafe { reactor::timer_cancel(rec.ev, rec.handle) };
            true
        }
        None => false,
    }
}

fn stop(ev: *mut mln_event_t) {
    STOPPED.set(true);
    // SAFETY: `ev` is the live loop of this process.
    unsafe { reactor::break_set(ev) };
}

/// Runs user code at the panic boundary: a panic never unwinds into the C loop.
fn guarded(what: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        log::error(format_args!(
            "{what} panicked; the panic was caught and the loop goes on"
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Contexts
// ---------------------------------------------------------------------------------------

/// The master's side of the conversation, given to master handlers, master timers and
/// [`Builder::on_master_start`]. Only ever borrowed: it lives as long as the call it was
/// given to, on the loop thread (not `Send`).
pub struct Master {
    ev: *mut mln_event_t,
    _not_send: PhantomData<*mut ()>,
}

impl Master {
    fn new(ev: *mut mln_event_t) -> Self {
        Master {
            ev,
            _not_send: PhantomData,
        }
    }

    /// The live children (workers, then spawned programs) in index order.
    pub fn workers(&self) -> Vec<WorkerId> {
        live_children().into_iter().map(|(w, _)| w).collect()
    }

    /// The live child with stable index `index`, if any.
    pub fn worker(&self, index: usize) -> Option<WorkerId> {
        live_children()
            .into_iter()
            .map(|(w, _)| w)
            .find(|w| w.index == index)
    }

    /// Queues a message of type `ty` for `to` (the payload is copied). It is written after
    /// the current handler returns and reaches `to`'s worker handler for `ty` in order.
    /// Errors: [`Error::PeerGone`] if that process is gone (also when it was restarted:
    /// ask [`Master::worker`] for the new one), [`Error::MessageTooLarge`].
    pub fn send_to(
        &mut self,
        to: WorkerId,
        ty: u32,
        payload: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        let payload = payload.as_ref();
        check_len(payload.len())?;
        let f = live_children()
            .into_iter()
            .find(|(w, _)| *w == to)
            .map(|(_, f)| f)
            .ok_or(Error::PeerGone)?;
        process::send_to_child(self.ev, f, ty, payload).map_err(|e| send_error(e, payload.len()))
    }

    /// Queues a message of type `ty` for every live child; returns how many. Either every
    /// child gets it or (on error) none.
    pub fn broadcast(&mut self, ty: u32, payload: impl AsRef<[u8]>) -> Result<usize, Error> {
        let payload = payload.as_ref();
        check_len(payload.len())?;
        let children = live_children();
        for (_, f) in &children {
            process::send_to_child(self.ev, *f, ty, payload)
                .map_err(|e| send_error(e, payload.len()))?;
        }
        Ok(children.len())
    }

    /// [`Master::send_to`] for a typed message.
    pub fn send_message_to<M: Message>(&mut self, to: WorkerId, msg: &M) -> Result<(), Error> {
        self.send_to(to, M::TYPE, msg.encode())
    }

    /// [`Master::broadcast`] for a typed message.
    pub fn broadcast_message<M: Message>(&mut self, msg: &M) -> Result<usize, Error> {
        self.broadcast(M::TYPE, msg.encode())
    }

    /// Runs `f` once, `delay` from now (monotonic clock, rounded up to milliseconds, at
    /// most about 49 days), on the loop thread. The closure is dropped unrun if the timer
    /// is cancelled; it is also dropped when `run` returns, and leaked (never run, never
    /// dropped) in a worker forked before it fired.
    pub fn after(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut Master) + 'static,
    ) -> Result<TimerId, Error> {
        set_timer(self.ev, delay, Box::new(move |ev| f(&mut Master::new(ev))))
    }

    /// Cancels a pending timer: `true` if it was pending (its closure is dropped), `false`
    /// if it already ran or was cancelled.
    pub fn cancel(&mut self, timer: TimerId) -> bool {
        cancel_timer(timer)
    }

    /// Ends the master's loop once the current handler returns; no other handler or timer
    /// runs afterwards in this process. [`Builder::run`] then writes what is still queued
    /// (at most [`DRAIN_LIMIT`]), closes every channel (the workers exit with status 127;
    /// none is restarted) and returns `Ok(())`.
    pub fn stop(&mut self) {
        stop(self.ev)
    }

    /// The master's event loop as Melon's `mln_event_t *`, for the C API
    /// (`mln_ipc_master_send_prepare`, `mln_event_timer_set`, ...). Valid while `run`
    /// runs; use it only on the loop thread.
    pub fn as_raw_event_loop(&self) -> *mut mln_event_t {
        self.ev
    }

    /// The core's `mln_fork_t *` of a live child (the `f_ptr` C master handlers get), for
    /// the C API; `None` if that process is gone. Valid until the loop handles its death.
    pub fn as_raw_fork(&self, worker: WorkerId) -> Option<*mut mln_fork_t> {
        live_children()
            .into_iter()
            .find(|(w, _)| *w == worker)
            .map(|(_, f)| f)
    }
}

/// A worker's side of the conversation, given to worker handlers, worker timers and
/// [`Builder::on_worker_start`]. Its peer is always the master. Only ever borrowed, on the
/// loop thread (not `Send`).
pub struct Worker {
    ev: *mut mln_event_t,
    _not_send: PhantomData<*mut ()>,
}

impl Worker {
    fn new(ev: *mut mln_event_t) -> Self {
        Worker {
            ev,
            _not_send: PhantomData,
        }
    }

    /// Queues a message of type `ty` for the master (the payload is copied); it is written
    /// after the current handler returns and reaches the master's handler for `ty` in
    /// order. Errors: [`Error::MessageTooLarge`], [`Error::PeerGone`] (no master).
    pub fn send(&mut self, ty: u32, payload: impl AsRef<[u8]>) -> Result<(), Error> {
        let payload = payload.as_ref();
        check_len(payload.len())?;
        process::send_to_master(self.ev, ty, payload).map_err(|e| send_error(e, payload.len()))
    }

    /// [`Worker::send`] for a typed message.
    pub fn send_message<M: Message>(&mut self, msg: &M) -> Result<(), Error> {
        self.send(M::TYPE, msg.encode())
    }

    /// This process's id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Runs `f` once, `delay` from now; as [`Master::after`].
    pub fn after(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut Worker) + 'static,
    ) -> Result<TimerId, Error> {
        set_timer(self.ev, delay, Box::new(move |ev| f(&mut Worker::new(ev))))
    }

    /// Cancels a pending timer; as [`Master::cancel`].
    pub fn cancel(&mut self, timer: TimerId) -> bool {
        cancel_timer(timer)
    }

    /// Ends this worker once the current handler returns: no other handler or timer runs,
    /// what is queued for the master is written (at most [`DRAIN_LIMIT`]) and the process
    /// exits with status 0. Workers are supervised, so the master starts a replacement.
    pub fn stop(&mut self) {
        stop(self.ev)
    }

    /// The worker's event loop as Melon's `mln_event_t *`, for the C API
    /// (`mln_ipc_worker_send_prepare`, ...). Valid while the worker runs; loop thread only.
    pub fn as_raw_event_loop(&self) -> *mut mln_event_t {
        self.ev
    }
}

// ---------------------------------------------------------------------------------------
// Handlers and their trampolines
// ---------------------------------------------------------------------------------------

type MasterFn = dyn FnMut(&mut Master, WorkerId, &[u8]);
type WorkerFn = dyn FnMut(&mut Worker, &[u8]);
type MasterStartFn = dyn FnOnce(&mut Master);
type WorkerStartFn = dyn FnMut(&mut Worker);

/// What a table entry's data slot points at (leaked: the tables never free an entry).
struct Entry<F: ?Sized> {
    ty: u32,
    running: bool,
    f: Box<F>,
}

/// # Safety
/// `buf` is NULL or points at `len` readable bytes that stay valid during the call.
unsafe fn payload<'a>(buf: *mut c_void, len: u32) -> &'a [u8] {
    if buf.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: per the contract (the core hands a pointer into its receive buffer).
    unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) }
}

/// The `ipc_handler` every Rust master handler is installed with; `*udata` is its entry.
unsafe extern "C" fn master_trampoline(
    ev: *mut mln_event_t,
    f_ptr: *mut c_void,
    buf: *mut c_void,
    len: u32,
    udata: *mut *mut c_void,
) {
    if STOPPED.get() || udata.is_null() {
        return;
    }
    // SAFETY: installed by `Builder::run` with a leaked `Entry<MasterFn>` as the data.
    let entry = unsafe { *udata }.cast::<Entry<MasterFn>>();
    if entry.is_null() || f_ptr.is_null() {
        return;
    }
    // SAFETY: the entry is leaked, so live; `running` refuses re-entry, so the closure is
    // borrowed mutably once. The payload is valid during this call.
    unsafe {
        if (*entry).running {
            log::error(format_args!(
                "master handler for type {} re-entered; message dropped",
                (*entry).ty
            ));
            return;
        }
        let from = worker_id(f_ptr.cast());
        let data = payload(buf, len);
        (*entry).running = true;
        let f = &mut (*entry).f;
        let r = catch_unwind(AssertUnwindSafe(|| f(&mut Master::new(ev), from, data)));
        (*entry).running = false;
        if r.is_err() {
            log::error(format_args!(
                "master handler for type {} panicked on a message from {from}; message dropped",
                (*entry).ty
            ));
        }
    }
}

/// The `ipc_handler` every Rust worker handler is installed with.
unsafe extern "C" fn worker_trampoline(
    ev: *mut mln_event_t,
    _f_ptr: *mut c_void,
    buf: *mut c_void,
    len: u32,
    udata: *mut *mut c_void,
) {
    if STOPPED.get() || udata.is_null() {
        return;
    }
    // SAFETY: installed by `Builder::run` with a leaked `Entry<WorkerFn>` as the data.
    let entry = unsafe { *udata }.cast::<Entry<WorkerFn>>();
    if entry.is_null() {
        return;
    }
    // SAFETY: as in `master_trampoline`.
    unsafe {
        if (*entry).running {
            log::error(format_args!(
                "worker handler for type {} re-entered; message dropped",
                (*entry).ty
            ));
            return;
        }
        let data = payload(buf, len);
        (*entry).running = true;
        let f = &mut (*entry).f;
        let r = catch_unwind(AssertUnwindSafe(|| f(&mut Worker::new(ev), data)));
        (*entry).running = false;
        if r.is_err() {
            log::error(format_args!(
                "worker handler for type {} panicked; message dropped",
                (*entry).ty
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------

/// Configures and starts the processes: handlers per message type and side, the number of
/// workers, programs to spawn. Methods chain; a bad argument is reported by
/// [`Builder::run`] (the first one wins).
///
/// Handler closures are `'static` and `FnMut`: they keep their captured state across
/// messages, per process (each worker has its own copy, taken at its fork). They need not
/// be `Send`. Registering a type twice on the same side keeps the later closure. A Rust
/// handler takes precedence over a C handler registered with `mln_ipc_handler_register`
/// for the same type and side (Rust handlers are installed like
/// `mln_fork_*_ipc_handler_set`); C handlers of other types, or of the other side, keep
/// working.
#[must_use = "a Builder does nothing until run() is called"]
pub struct Builder {
    workers: u32,
    master: Vec<(u32, Box<MasterFn>)>,
    worker: Vec<(u32, Box<WorkerFn>)>,
    master_start: Option<Box<MasterStartFn>>,
    worker_start: Option<Box<WorkerStartFn>>,
    programs: Vec<(Vec<CString>, bool)>,
    max_message: Option<usize>,
    allow_threads: bool,
    error: Option<Error>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field(
                "master_types",
                &self.master.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .field(
                "worker_types",
                &self.worker.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .field("programs", &self.programs)
            .field("max_message", &self.max_message)
            .field("allow_threads", &self.allow_threads)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// One worker, no handlers, no programs.
    pub fn new() -> Self {
        Builder {
            workers: 1,
            master: Vec::new(),
            worker: Vec::new(),
            master_start: None,
            worker_start: None,
            programs: Vec::new(),
            max_message: None,
            allow_threads: false,
            error: None,
        }
    }

    fn fail(mut self, e: Error) -> Self {
        self.error.get_or_insert(e);
        self
    }

    /// How many supervised workers to fork (default 1; 0 is allowed).
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = n;
        self
    }

    /// Handles frames of type `ty` arriving in the master: `f(master, from, payload)`;
    /// `payload` is borrowed from the receive buffer for the duration of the call.
    pub fn on_master(
        mut self,
        ty: u32,
        f: impl FnMut(&mut Master, WorkerId, &[u8]) + 'static,
    ) -> Self {
        self.master.retain(|(t, _)| *t != ty);
        self.master.push((ty, Box::new(f)));
        self
    }

    /// Handles frames of type `ty` arriving in a worker (from the master):
    /// `f(worker, payload)`.
    pub fn on_worker(mut self, ty: u32, f: impl FnMut(&mut Worker, &[u8]) + 'static) -> Self {
        self.worker.retain(|(t, _)| *t != ty);
        self.worker.push((ty, Box::new(f)));
        self
    }

    /// [`Builder::on_master`] for frames of `M::TYPE`, decoded to `M` (a frame that does
    /// not decode is dropped and logged).
    pub fn on_master_message<M: Message + 'static>(
        self,
        mut f: impl FnMut(&mut Master, WorkerId, M) + 'static,
    ) -> Self {
        self.on_master(M::TYPE, move |m, from, bytes| match M::decode(bytes) {
            Some(msg) => f(m, from, msg),
            None => log::warn(format_args!(
                "type {}: {} bytes from {from} do not decode; dropped",
                M::TYPE,
                bytes.len()
            )),
        })
    }

    /// [`Builder::on_worker`] for frames of `M::TYPE`, decoded to `M`.
    pub fn on_worker_message<M: Message + 'static>(
        self,
        mut f: impl FnMut(&mut Worker, M) + 'static,
    ) -> Self {
        self.on_worker(M::TYPE, move |w, bytes| match M::decode(bytes) {
            Some(msg) => f(w, msg),
            None => log::warn(format_args!(
                "type {}: {} bytes from the master do not decode; dropped",
                M::TYPE,
                bytes.len()
            )),
        })
    }

    /// Runs once in the master after the workers are forked, before its loop starts
    /// (Melon's `master_process`). Messages sent here are written once the loop runs.
    pub fn on_master_start(mut self, f: impl FnOnce(&mut Master) + 'static) -> Self {
        self.master_start = Some(Box::new(f));
        self
    }

    /// Runs once in each worker (also in each restarted one) before its loop starts
    /// (Melon's `worker_process`).
    pub fn on_worker_start(mut self, f: impl FnMut(&mut Worker) + 'static) -> Self {
        self.worker_start = Some(Box::new(f));
        self
    }

    /// Also forks and executes `program` with `args` (as `mln_fork_spawn`): the program
    /// gets one more argument, the decimal number of its socketpair descriptor, which is
    /// the only descriptor of ours it inherits, and speaks the wire format on it.
    /// `supervised`: restart it when it dies. `program` must be a path to an executable
    /// file (no `PATH` search); `run` checks that before forking.
    pub fn spawn<I, S>(mut self, program: impl AsRef<Path>, args: I, supervised: bool) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        use std::os::unix::ffi::OsStrExt;
        let prog = program.as_ref().as_os_str().as_bytes();
        if prog.is_empty() {
            return self.fail(Error::InvalidArgument("spawn: empty program path"));
        }
        let mut v = Vec::new();
        let Ok(p) = CString::new(prog) else {
            return self.fail(Error::InvalidArgument(
                "spawn: NUL byte in the program path",
            ));
        };
        v.push(p);
        for a in args {
            let Ok(a) = CString::new(a.as_ref()) else {
                return self.fail(Error::InvalidArgument("spawn: NUL byte in an argument"));
            };
            v.push(a);
        }
        self.programs.push((v, supervised));
        self
    }

    /// The largest message accepted and sent, counted as the frame's length field (4 +
    /// payload bytes); default 64 MiB. Must be 4..=4294967295. Applies to the whole process
    /// (C API included), as `mln_ipc_max_message_set`.
    pub fn max_message(mut self, max: usize) -> Self {
        self.max_message = Some(max);
        self
    }

    /// Starts even if other threads are running. Forking then copies only the calling
    /// thread: a lock another thread holds (a logger's, an allocator arena's, a `Mutex` of
    /// yours) stays locked forever in the workers, and memory those threads were changing
    /// may be half-updated. Use it only when you know the other threads cannot hold such
    /// state (the core's own lock is safe).
    pub fn allow_threads(mut self, yes: bool) -> Self {
        self.allow_threads = yes;
        self
    }

    /// Forks the workers and the programs, and runs this process's event loop.
    ///
    /// **In the master** it returns `Ok(())` after [`Master::stop`], once queued frames are
    /// written and every channel is closed (workers then exit with status 127), or an error
    /// before any loop ran: [`Error::AlreadyStarted`], [`Error::ThreadsRunning`],
    /// [`Error::InvalidArgument`] (from a builder method), [`Error::Io`] (signal
    /// dispositions, a program that is not an executable file, socketpair/fork/handshake
    /// failure; children already started are closed again).
    ///
    /// **In a worker** it never returns: the worker runs [`Builder::on_worker_start`] and
    /// its loop, and exits with status 0 after [`Worker::stop`], or 127 when the master is
    /// gone (the core's rule).
    ///
    /// Before forking it flushes Rust's stdout and stderr, so nothing buffered is printed
    /// twice.
    pub fn run(self) -> Result<(), Error> {
        let Builder {
            workers,
            master,
            worker,
            master_start,
            mut worker_start,
            programs,
            max_message,
            allow_threads,
            error,
        } = self;
        if let Some(e) = error {
            return Err(e);
        }
        if process::is_worker() || STARTED.load(Ordering::Acquire) {
            return Err(Error::AlreadyStarted);
        }
        if !allow_threads {
            let threads = thread_count();
            if threads > 1 {
                return Err(Error::ThreadsRunning { threads });
            }
        }
        if let Some(m) = max_message {
            if !process::set_max_message(m) {
                return Err(Error::InvalidArgument(
                    "max_message must be between 4 and 4294967295",
                ));
            }
        }
        for (args, _) in &programs {
            check_executable(&args[0])?;
        }
        if STARTED.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyStarted);
        }
        for (ty, f) in master {
            let e = Box::into_raw(Box::new(Entry {
                ty,
                running: false,
                f,
            }));
            process::handler_set(Side::Master, ty, Some(master_trampoline), e.cast());
        }
        for (ty, f) in worker {
            let e = Box::into_raw(Box::new(Entry {
                ty,
                running: false,
                f,
            }));
            process::handler_set(Side::Worker, ty, Some(worker_trampoline), e.cast());
        }
        if process::prepare() < 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        for _ in 0..workers {
            match process::fork_core(null_mut(), process::new_plan(M_PET_DFL, M_PST_SUP, None)) {
                Ok(Forked::Parent) => {}
                Ok(Forked::Child) => worker_main(worker_start.as_deref_mut()),
                Err(e) => return Err(abort_start(e)),
            }
        }
        for (args, supervised) in programs {
            let stype = if supervised { M_PST_SUP } else { M_PST_DFL };
            if let Err(e) = process::spawn_plan(
                process::new_plan(M_PET_EXE, stype, Some(process::ExecArgs::new(args))),
                null_mut(),
            ) {
                return Err(abort_start(e));
            }
        }
        let ev = ev_loop::new();
        if ev.is_null() {
            return Err(abort_start(io::Error::other("cannot create an event loop")));
        }
        process::master_events_set(ev);
        if let Some(f) = master_start {
            guarded("on_master_start", || f(&mut Master::new(ev)));
        }
        // SAFETY: `ev` is the live loop created above, dispatched on this thread.
        unsafe { ev_loop::dispatch(ev) };
        if process::is_worker() {
            // A worker restarted inside the master's loop left it (spec §5): drop the
            // master's loop and state, and become that worker.
            into_worker(ev);
            worker_main(worker_start.as_deref_mut());
        }
        let lost = undelivered(&process::shutdown(
            Instant::now() + DRAIN_LIMIT,
            DRAIN_LIMIT,
        ));
        if lost > 0 {
            log::warn(format_args!(
                "{lost} queued message(s) not delivered at stop"
            ));
        }
        // Drop the closures of timers that never fired (their handles die with the loop).
        let timers = STATE.with_borrow_mut(|st| std::mem::take(&mut st.timers));
        drop(timers);
        // SAFETY: not dispatching any more; nothing refers to the loop after this.
        unsafe { ev_loop::free(ev) };
        Ok(())
    }
}

fn undelivered(s: &process::Shutdown) -> usize {
    s.undelivered.iter().map(|(_, n)| n).sum()
}

/// Closes the children started so far, and gives the error back.
fn abort_start(e: io::Error) -> Error {
    process::shutdown(Instant::now(), Duration::from_secs(1));
    Error::Io(e)
}

/// In a worker forked inside the master's loop: forget what belonged to the master.
fn into_worker(master_ev: *mut mln_event_t) {
    STOPPED.set(false);
    STATE.with_borrow_mut(|st| {
        // The master's pending timers: their handles belong to the master's loop and
        // their closures to the master; leaked, neither run nor dropped in this process.
        std::mem::forget(std::mem::take(&mut st.timers));
    });
    // SAFETY: our copy of the master's loop; `free` never touches the epoll interest set
    // (shared with the master) nor any descriptor but its own epoll descriptor.
    unsafe { ev_loop::free(master_ev) };
}

/// A worker's life after the fork; never returns.
fn worker_main(start: Option<&mut WorkerStartFn>) -> ! {
    let ev = ev_loop::new();
    if ev.is_null() {
        log::error(format_args!("worker: cannot create an event loop"));
        std::process::exit(1);
    }
    process::worker_events_set(ev);
    if let Some(f) = start {
        guarded("on_worker_start", || f(&mut Worker::new(ev)));
    }
    // SAFETY: the live loop created above, dispatched on this thread.
    unsafe { ev_loop::dispatch(ev) };
    let lost = undelivered(&process::shutdown(
        Instant::now() + DRAIN_LIMIT,
        DRAIN_LIMIT,
    ));
    if lost > 0 {
        log::warn(format_args!(
            "{lost} queued message(s) not delivered at stop"
        ));
    }
    std::process::exit(0)
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

fn check_executable(program: &CStr) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let path = Path::new(std::ffi::OsStr::from_bytes(program.to_bytes()));
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not an executable file", path.display()),
        )));
    }
    Ok(())
}
