//! Rust closures as the core's handlers: one trampoline for both sides, the writable
//! callback, and the panic boundary every piece of user code runs behind.
//!
//! A handler closure is wrapped, at `run`, into a closure of one shape (loop, the core's
//! `f_ptr`, payload) that builds its side's context ([`Master`] with the sender's
//! [`WorkerId`], or [`Worker`]); the wrapped closure is leaked into an [`Entry`] that is
//! the handler's data slot in the core's tables (which never free an entry), and freed by
//! [`drop_all`] once `run` ends, after it is taken out of the tables.

use super::context::{Master, Worker};
use super::identity::{self, WorkerId};
use crate::abi::{mln_event_t, mln_fork_t};
use crate::log;
use crate::process;
use crate::registry::Side;
use core::ffi::c_void;
use core::ptr::null_mut;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub(super) type MasterFn = dyn FnMut(&mut Master, WorkerId, &[u8]);
pub(super) type WorkerFn = dyn FnMut(&mut Worker, &[u8]);
pub(super) type MasterWritableFn = dyn FnMut(&mut Master, WorkerId);
pub(super) type WorkerWritableFn = dyn FnMut(&mut Worker);

/// A handler of either side, as the trampoline calls it: the loop, the core's `f_ptr`
/// (the sender's record in the master), the payload.
pub(super) type RawFn = dyn FnMut(*mut mln_event_t, *mut c_void, &[u8]);

/// What a table entry's data slot points at (leaked: the core's tables never free an entry;
/// [`drop_all`] frees it at the end of `run`).
struct Entry {
    side: &'static str,
    ty: u32,
    /// Set while the closure runs: a handler that runs the loop itself must not be
    /// re-entered (the closure is borrowed mutably once).
    running: bool,
    f: Box<RawFn>,
}

/// Installs `f` as the master handler for `ty` (as `mln_fork_master_ipc_handler_set`).
pub(super) fn install_master(ty: u32, mut f: Box<MasterFn>) {
    let raw: Box<RawFn> =
        Box::new(
            move |ev, f_ptr, data| match identity::id_of(f_ptr.cast::<mln_fork_t>()) {
                Some(from) => f(&mut Master::new(ev), from, data),
                None => log::error(format_args!(
                    "master handler for type {ty}: the sender is not a live child; dropped"
                )),
            },
        );
    install(Side::Master, "master", ty, raw);
}

/// Installs `f` as the worker handler for `ty`.
pub(super) fn install_worker(ty: u32, mut f: Box<WorkerFn>) {
    let raw: Box<RawFn> = Box::new(move |ev, _, data| f(&mut Worker::new(ev), data));
    install(Side::Worker, "worker", ty, raw);
}

/// Installs `f` as the handler for `ty` on `side` as the trampoline calls it, without a
/// context (the async face's receive path: it builds none per frame).
#[cfg(feature = "tokio")]
pub(super) fn install_raw(side: Side, ty: u32, f: Box<RawFn>) {
    let name = match side {
        Side::Master => "master",
        Side::Worker => "worker",
    };
    install(side, name, ty, f);
}

fn install(side: Side, name: &'static str, ty: u32, f: Box<RawFn>) {
    let e = Box::into_raw(Box::new(Entry {
        side: name,
        ty,
        running: false,
        f,
    }));
    OURS.with_borrow_mut(|o| o.insert(e as usize));
    process::handler_set(side, ty, Some(trampoline), e.cast());
    INSTALLED.with_borrow_mut(|v| v.push((side, e)));
}

thread_local! {
    /// The entries and the writable callbacks installed by this process's `run` (the loop
    /// thread's), for [`drop_all`].
    static INSTALLED: RefCell<Vec<(Side, *mut Entry)>> = const { RefCell::new(Vec::new()) };
    static WRITABLE: Cell<*mut Writable> = const { Cell::new(null_mut()) };
}

/// Drops the closures `run` installed once no loop runs them any more: all of them at the
/// end of the master's `run`; in a worker before it exits (`side` Worker), its own side's
/// (the master's handlers there are copies of the master's state it never ran: leaked, so
/// their destructors do not run twice, in both processes). Each is removed from the core's
/// table first; one still running (the loop was left from inside it: a worker's exit in a
/// nested loop) is leaked instead. A destructor that panics is caught and logged.
pub(super) fn drop_all(only: Option<Side>) {
    let entries = INSTALLED.with_borrow_mut(std::mem::take);
    for (side, e) in entries {
        // SAFETY: leaked by `install`, never freed elsewhere; taken out of the list once.
        let (ty, running) = unsafe { ((*e).ty, (*e).running) };
        if only.is_some_and(|s| s != side) || running {
            continue;
        }
        process::handler_set(side, ty, None, null_mut());
        OURS.with_borrow_mut(|o| o.remove(&(e as usize)));
        // SAFETY: no longer in the core's table, not running: nothing refers to it.
        let entry = unsafe { Box::from_raw(e) };
        let name = entry.side;
        guarded(
            format_args!("dropping the {name} handler for type {ty}"),
            || drop(entry),
        );
    }
    let w = WRITABLE.replace(null_mut());
    // SAFETY: leaked by `install_writable`, taken once; `running` says whether a callback
    // is on the stack.
    if !w.is_null() && !unsafe { (*w).running } {
        process::set_writable_handler(None, null_mut());
        // SAFETY: removed from the core; nothing else refers to it.
        let mut w = unsafe { Box::from_raw(w) };
        let (master, worker) = (w.master.take(), w.worker.take());
        if only == Some(Side::Worker) {
            std::mem::forget(master);
        } else {
            guarded(
                format_args!("dropping the master writable callback"),
                || drop(master),
            );
        }
        guarded(
            format_args!("dropping the worker writable callback"),
            || drop(worker),
        );
    }
}

thread_local! {
    /// The addresses of the installed entries (the loop thread's; a worker inherits them
    /// with the tables): a handler's data is one of these only if it is one of ours.
    static OURS: RefCell<HashSet<usize>> = RefCell::default();
}

/// What [`serve`] did.
pub(super) enum Served {
    /// No Rust handler is installed for the type on that side (none, or a C one).
    NoHandler,
    /// The handler ran and returned.
    Returned,
    /// The handler panicked (caught and logged).
    Panicked,
    /// The handler is running already (it runs the loop itself) and was not re-entered.
    Busy,
}

/// Runs the Rust handler installed for `ty` on `side` with `data`, as a frame of type
/// `ty` from `f_ptr` would (a request of `call`).
pub(super) fn serve(
    side: Side,
    ty: u32,
    ev: *mut mln_event_t,
    f_ptr: *mut c_void,
    data: &[u8],
) -> Served {
    let Some(e) = process::handler_data(side, ty) else {
        return Served::NoHandler;
    };
    if !OURS.with_borrow(|o| o.contains(&(e as usize))) {
        return Served::NoHandler;
    }
    // SAFETY: one of our leaked entries (listed in `OURS` by `install`).
    match unsafe { run_entry(e.cast(), ev, f_ptr, data) } {
        None => Served::Busy,
        Some(true) => Served::Returned,
        Some(false) => Served::Panicked,
    }
}

/// # Safety
/// `buf` is NULL or points at `len` readable bytes that stay valid during the call.
pub(super) unsafe fn payload<'a>(buf: *mut c_void, len: u32) -> &'a [u8] {
    if buf.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: per the contract (the core hands a pointer into its receive buffer).
    unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) }
}

/// The `ipc_handler` every Rust handler (either side) is installed with; `*udata` is its
/// [`Entry`].
unsafe extern "C" fn trampoline(
    ev: *mut mln_event_t,
    f_ptr: *mut c_void,
    buf: *mut c_void,
    len: u32,
    udata: *mut *mut c_void,
) {
    if udata.is_null() {
        return;
    }
    // SAFETY: installed by `install` with a leaked `Entry` as the data.
    let entry = unsafe { *udata }.cast::<Entry>();
    if entry.is_null() {
        return;
    }
    // SAFETY: the entry is leaked, so live; the payload is valid during this call.
    unsafe { run_entry(entry, ev, f_ptr, payload(buf, len)) };
}

/// Runs an entry's closure behind the panic boundary: `None` if it is running already
/// (not re-entered), else whether it returned (`false`: it panicked).
///
/// # Safety
/// `entry` is a live (leaked) [`Entry`].
unsafe fn run_entry(
    entry: *mut Entry,
    ev: *mut mln_event_t,
    f_ptr: *mut c_void,
    data: &[u8],
) -> Option<bool> {
    // SAFETY: per the contract; `running` refuses re-entry, so the closure is borrowed
    // mutably once.
    unsafe {
        let (side, ty) = ((*entry).side, (*entry).ty);
        if (*entry).running {
            log::error(format_args!(
                "{side} handler for type {ty} re-entered; message dropped"
            ));
            return None;
        }
        (*entry).running = true;
        let f = &mut (*entry).f;
        let done = guarded(format_args!("{side} handler for type {ty}"), || {
            f(ev, f_ptr, data)
        });
        (*entry).running = false;
        Some(done)
    }
}

/// The writable callbacks of both sides (leaked; see [`install_writable`]).
struct Writable {
    master: Option<Box<MasterWritableFn>>,
    worker: Option<Box<WorkerWritableFn>>,
    running: bool,
}

/// Installs the process's writable handler (`mln_ipc_writable_handler_set`), replacing
/// any other; the workers inherit it.
pub(super) fn install_writable(
    master: Option<Box<MasterWritableFn>>,
    worker: Option<Box<WorkerWritableFn>>,
) {
    let w = Box::into_raw(Box::new(Writable {
        master,
        worker,
        running: false,
    }));
    process::set_writable_handler(Some(writable_trampoline), w.cast());
    WRITABLE.set(w);
}

unsafe extern "C" fn writable_trampoline(
    ev: *mut mln_event_t,
    f: *mut mln_fork_t,
    data: *mut c_void,
) {
    let w = data.cast::<Writable>();
    if w.is_null() {
        return;
    }
    // SAFETY: installed by `install_writable` with a leaked `Writable`; `running` refuses
    // re-entry as in `trampoline`.
    unsafe {
        if (*w).running {
            return;
        }
        (*w).running = true;
        if f.is_null() {
            if let Some(cb) = (*w).worker.as_mut() {
                guarded(format_args!("worker writable callback"), || {
                    cb(&mut Worker::new(ev))
                });
            }
        } else if let (Some(cb), Some(to)) = ((*w).master.as_mut(), identity::id_of(f)) {
            guarded(format_args!("master writable callback for {to}"), || {
                cb(&mut Master::new(ev), to)
            });
        }
        (*w).running = false;
    }
}

/// Runs user code at the panic boundary: a panic never unwinds into the C loop nor out of
/// `run`. It is logged with its message, and its payload dropped here, behind a second
/// boundary: a payload whose `Drop` panics is a second panic, caught too (and that one's
/// payload is leaked rather than dropped). Returns whether `f` completed.
pub(super) fn guarded(what: fmt::Arguments<'_>, f: impl FnOnce()) -> bool {
    guarded_with(what, f).is_ok()
}

/// [`guarded`], giving the panic's message (empty when its payload is not a string).
pub(super) fn guarded_with(what: fmt::Arguments<'_>, f: impl FnOnce()) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => Ok(()),
        Err(payload) => {
            let text = message(&*payload);
            log::error(format_args!(
                "{what} panicked{}; the panic was caught",
                if text.is_empty() {
                    String::new()
                } else {
                    format!(" ({text})")
                }
            ));
            drop_payload(payload);
            Err(text)
        }
    }
}

/// A caught panic's message (empty when its payload is not a string); the payload is
/// dropped behind the boundary, as [`guarded`] does.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(super) fn panic_message(p: Box<dyn Any + Send>) -> String {
    let text = message(&*p);
    drop_payload(p);
    text
}

fn message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        String::new()
    }
}

fn drop_payload(p: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(p))) {
        log::error(format_args!(
            "the panic payload's destructor panicked too; that payload is leaked"
        ));
        std::mem::forget(again);
    }
}
