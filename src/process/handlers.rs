//! The registry and the two handler tables of this process, behind a mutex: the
//! thread-safe part of the process state. Registration and `mln_fork_*_ipc_handler_set`
//! may come from any thread; the mutex is never held while a handler runs, and `fork` is
//! done while holding it (atfork pattern: taken just before, released on both sides), so a
//! child never inherits it half-updated.

use crate::abi::{ipc_handler, mln_ipc_cb_t};
use crate::registry::{Found, Handlers, Origin, Side};
use core::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

static HANDLERS: Mutex<Option<Handlers>> = Mutex::new(None);
/// Bumped on every table change; lets a channel cache its last lookup.
static TABLE_GEN: AtomicU64 = AtomicU64::new(1);

/// Runs `f` on the handler state (created on first use). A poisoned lock is recovered:
/// the state is plain data and every mutation completes before it can panic.
pub(crate) fn with_handlers<R>(f: impl FnOnce(&mut Handlers) -> R) -> R {
    let mut g = lock();
    let r = f(g.get_or_insert_with(Handlers::default));
    TABLE_GEN.fetch_add(1, Ordering::Release);
    r
}

/// The handler lock, as held across a fork.
pub(crate) type Guard = MutexGuard<'static, Option<Handlers>>;

pub(crate) fn lock() -> Guard {
    HANDLERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// In a new child, while the forking thread still holds the lock: the master table goes
/// (as in Melon), the worker table stays.
pub(crate) fn after_fork_in_child(g: &mut Guard) {
    if let Some(hs) = g.as_mut() {
        hs.master.clear();
    }
    TABLE_GEN.fetch_add(1, Ordering::Release);
}

/// `mln_fork_{master,worker}_ipc_handler_set`.
pub(crate) fn handler_set(side: Side, ty: u32, h: ipc_handler, data: *mut c_void) {
    with_handlers(|hs| {
        hs.table(side).install(ty, h, data, Origin::Explicit);
    })
}

/// The data of the handler installed for `ty` on `side`, if one is (the Rust API finds its
/// own closures by it, to serve requests with them).
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn handler_data(side: Side, ty: u32) -> Option<*mut c_void> {
    let mut g = lock();
    let found = g.as_mut()?.table(side).lookup(ty)?;
    found.handler?;
    // SAFETY: the slot is the table entry's, read while the lock is held.
    Some(unsafe { *found.slot })
}

/// `mln_ipc_handler_register`.
pub(crate) fn register(
    ty: u32,
    master: ipc_handler,
    worker: ipc_handler,
    master_data: *mut c_void,
    worker_data: *mut c_void,
) -> *mut mln_ipc_cb_t {
    with_handlers(|hs| {
        hs.registry
            .register(ty, master, worker, master_data, worker_data)
    })
}

/// `mln_ipc_handler_unregister`.
pub(crate) fn unregister(cb: *mut mln_ipc_cb_t) {
    with_handlers(|hs| hs.registry.unregister(cb));
}

/// `mln_ipc_set_process_handlers`.
pub(crate) fn install_registry() {
    with_handlers(|hs| hs.install_registry());
}

/// What `mln_fork_prepare` does to the tables.
pub(crate) fn reinstall_registry() {
    with_handlers(|hs| hs.reinstall_registry());
}

/// One cached lookup per channel: the last type seen and its handler.
#[derive(Clone, Copy)]
pub(crate) struct Cache {
    gen: u64,
    ty: u32,
    found: Option<Found>,
}

impl Cache {
    pub(crate) const EMPTY: Cache = Cache {
        gen: 0,
        ty: 0,
        found: None,
    };

    /// Runs once per received frame: the hit is inlined into the dispatch loop, the miss
    /// (lock and table walk) is kept out of it.
    #[inline]
    pub(crate) fn lookup(&mut self, side: Side, ty: u32) -> Option<Found> {
        let gen = TABLE_GEN.load(Ordering::Acquire);
        if self.gen != gen || self.ty != ty {
            self.refill(side, ty, gen);
        }
        self.found
    }

    #[cold]
    #[inline(never)]
    fn refill(&mut self, side: Side, ty: u32, gen: u64) {
        let found = lock().as_mut().and_then(|hs| hs.table(side).lookup(ty));
        *self = Cache { gen, ty, found };
    }
}
