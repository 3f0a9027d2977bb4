//! Handler registration. Pure logic: no I/O, no `unsafe`.
//!
//! Two structures, as in Melon:
//! * the **registry**: what `mln_ipc_handler_register` records (`mln_ipc_cb_t` entries in
//!   registration order). It affects dispatch only when installed into the tables
//!   (`mln_ipc_set_process_handlers`, run by `mln_fork_prepare`).
//! * the **tables**: per process, one for the master side and one for the worker side,
//!   type -> installed handler. An installed entry is an `mln_ipc_handler_t` at a stable
//!   address: its `data` field is the `udata_ptr` slot handed to the handler.
//!
//! Where Melon's code and documentation disagree we follow the documentation: a later
//! registration overrides an earlier one (installing walks oldest to newest), and an
//! explicitly set handler (`mln_fork_*_ipc_handler_set`) survives `mln_fork_prepare` and
//! takes precedence over registry entries of the same type.
//!
//! Replaced entries are retired, not freed: a handler may be running with a `udata_ptr`
//! into the entry it replaces. Retired entries live until the process exits (32 bytes per
//! replacement). Installing an unchanged registration again (a later
//! `mln_ipc_set_process_handlers`) keeps the installed entry, so what its handler stored
//! through `udata_ptr` survives and nothing is retired.
//!
//! Unregistered entries are kept too (56 bytes each), as tombstones: their addresses are
//! never handed out again, so a stale handle is recognised and a second unregister of it
//! is a no-op forever.

use crate::abi::{ipc_handler, mln_ipc_cb_t, mln_ipc_handler_t};
use core::ffi::c_void;
use core::ptr::null_mut;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Registration order is kept; `mln_ipc_cb_t::next/prev` mirror it for C readers.
#[derive(Default)]
pub struct Registry {
    // Boxed: C holds pointers to the entries, which must not move when the Vec grows.
    #[allow(clippy::vec_box)]
    entries: Vec<Box<mln_ipc_cb_t>>,
    /// Unregistered entries, never freed, so their addresses are never reissued.
    #[allow(clippy::vec_box)]
    tombstones: Vec<Box<mln_ipc_cb_t>>,
    /// Bumped by every register and unregister.
    gen: u64,
}

// SAFETY (of the auto-trait claim, not of any unsafe code): the raw pointers inside are
// opaque user values and links between our own boxes; they are never dereferenced here.
unsafe impl Send for Registry {}

impl Registry {
    /// Records a registration and returns its stable address (owned by the registry).
    pub fn register(
        &mut self,
        ty: u32,
        master_handler: ipc_handler,
        worker_handler: ipc_handler,
        master_data: *mut c_void,
        worker_data: *mut c_void,
    ) -> *mut mln_ipc_cb_t {
        self.gen += 1;
        let mut e = Box::new(mln_ipc_cb_t {
            next: null_mut(),
            prev: null_mut(),
            master_handler,
            worker_handler,
            master_data,
            worker_data,
            r#type: ty,
        });
        let p: *mut mln_ipc_cb_t = &mut *e;
        if let Some(last) = self.entries.last_mut() {
            last.next = p;
            e.prev = &mut **last;
        }
        self.entries.push(e);
        p
    }

    /// Removes a registration. `false` (and nothing changed) for a pointer that is not a
    /// live registration: NULL, already unregistered (its address is never reused), or
    /// never ours.
    pub fn unregister(&mut self, cb: *const mln_ipc_cb_t) -> bool {
        let Some(i) = self.entries.iter().position(|e| core::ptr::eq(&**e, cb)) else {
            return false;
        };
        self.gen += 1;
        let mut dead = self.entries.remove(i);
        dead.next = null_mut();
        dead.prev = null_mut();
        self.tombstones.push(dead);
        self.relink(i);
        true
    }

    fn relink(&mut self, from: usize) {
        let n = self.entries.len();
        for i in from.saturating_sub(1)..n {
            let next = match self.entries.get_mut(i + 1) {
                Some(e) => &mut **e as *mut mln_ipc_cb_t,
                None => null_mut(),
            };
            let prev = match i.checked_sub(1).and_then(|j| self.entries.get_mut(j)) {
                Some(e) => &mut **e as *mut mln_ipc_cb_t,
                None => null_mut(),
            };
            self.entries[i].next = next;
            self.entries[i].prev = prev;
        }
    }

    /// Registrations, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &mln_ipc_cb_t> {
        self.entries.iter().map(|b| &**b)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Which side of a table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Master,
    Worker,
}

/// Where an installed entry came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// `mln_fork_*_ipc_handler_set`: survives `mln_fork_prepare`, beats the registry.
    Explicit,
    /// Installed from the registry.
    Registry,
}

/// A found handler: the function and the address of its data slot (`udata_ptr`).
#[derive(Clone, Copy, Debug)]
pub struct Found {
    pub handler: ipc_handler,
    pub slot: *mut *mut c_void,
}

/// Fibonacci hashing for u32 keys: message types are small integers chosen by users.
#[derive(Default)]
pub struct TypeHasher(u64);
impl Hasher for TypeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

struct Installed {
    entry: Box<mln_ipc_handler_t>,
    origin: Origin,
    /// The registration it was installed from (its address), for registry installs.
    source: usize,
}

/// One per-process table (master side or worker side).
#[derive(Default)]
pub struct Table {
    map: HashMap<u32, Installed, BuildHasherDefault<TypeHasher>>,
    // Boxed: handlers may hold `udata_ptr` into a retired entry.
    #[allow(clippy::vec_box)]
    retired: Vec<Box<mln_ipc_handler_t>>,
    /// The registry generation the table's registry entries follow: installed (`.0`) and
    /// with stale types removed too (`.1`). `None` after `clear`.
    synced: Option<(u64, bool)>,
}

impl Table {
    /// Installs `handler` for `ty`. A registry install does not displace an explicit one.
    /// Returns whether the table changed.
    pub fn install(
        &mut self,
        ty: u32,
        handler: ipc_handler,
        data: *mut c_void,
        origin: Origin,
    ) -> bool {
        self.install_from(ty, handler, data, origin, 0)
    }

    /// `install`, remembering the registration (`source`, its address) a registry install
    /// comes from. Installing the same registration again, unchanged, keeps the entry and
    /// its data slot.
    fn install_from(
        &mut self,
        ty: u32,
        handler: ipc_handler,
        data: *mut c_void,
        origin: Origin,
        source: usize,
    ) -> bool {
        match self.map.get(&ty) {
            Some(i) if origin == Origin::Registry && i.origin == Origin::Explicit => {
                return false;
            }
            Some(i)
                if origin == Origin::Registry
                    && i.origin == Origin::Registry
                    && i.source == source
                    && i.entry.handler.map(|f| f as usize) == handler.map(|f| f as usize) =>
            {
                return false;
            }
            _ => {}
        }
        let entry = Box::new(mln_ipc_handler_t {
            handler,
            data,
            r#type: ty,
            next: null_mut(),
        });
        if let Some(old) = self.map.insert(
            ty,
            Installed {
                entry,
                origin,
                source,
            },
        ) {
            self.retired.push(old.entry);
        }
        true
    }

    /// Removes the registry-installed entries whose type is not in `keep`.
    fn remove_registry_entries_except(&mut self, keep: &HashMap<u32, usize>) {
        let retired = &mut self.retired;
        self.map.retain(|ty, i| {
            let stay = i.origin == Origin::Explicit || keep.contains_key(ty);
            if !stay {
                retired.push(core::mem::replace(&mut i.entry, Box::new(empty_entry())));
            }
            stay
        });
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        for (_, i) in self.map.drain() {
            self.retired.push(i.entry);
        }
        self.synced = None;
    }

    /// The handler for `ty`, if one is installed (its handler may be NULL: drop the frame).
    pub fn lookup(&mut self, ty: u32) -> Option<Found> {
        self.map.get_mut(&ty).map(|i| Found {
            handler: i.entry.handler,
            slot: &mut i.entry.data,
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn empty_entry() -> mln_ipc_handler_t {
    mln_ipc_handler_t {
        handler: None,
        data: null_mut(),
        r#type: 0,
        next: null_mut(),
    }
}

/// The registry plus both tables of one process.
#[derive(Default)]
pub struct Handlers {
    pub registry: Registry,
    pub master: Table,
    pub worker: Table,
}

// SAFETY (auto-trait claim only): as for `Registry`; the tables' raw pointers are opaque
// user data and are never dereferenced by this module.
unsafe impl Send for Handlers {}

impl Handlers {
    pub fn table(&mut self, side: Side) -> &mut Table {
        match side {
            Side::Master => &mut self.master,
            Side::Worker => &mut self.worker,
        }
    }

    /// The newest registration of each type: (type -> index into the registry).
    fn winners(&self) -> HashMap<u32, usize> {
        let mut w = HashMap::new();
        for (i, cb) in self.registry.entries.iter().enumerate() {
            w.insert(cb.r#type, i);
        }
        w
    }

    /// `mln_ipc_set_process_handlers`: installs, for each type, the newest registration
    /// (a later registration overrides an earlier one). Explicit entries are kept, and so
    /// is an entry already installed from the same, unchanged registration (with what its
    /// handler stored in its data slot).
    pub fn install_registry(&mut self) {
        let gen = self.registry.gen;
        let done = |t: &Table| t.synced.is_some_and(|(g, _)| g == gen);
        if done(&self.master) && done(&self.worker) {
            return;
        }
        self.install_winners();
        for t in [&mut self.master, &mut self.worker] {
            if !done(t) {
                t.synced = Some((gen, false));
            }
        }
    }

    fn install_winners(&mut self) -> HashMap<u32, usize> {
        let winners = self.winners();
        let mut sources = HashMap::with_capacity(winners.len());
        for (&ty, &i) in winners.iter() {
            let cb = &self.registry.entries[i];
            let source = &**cb as *const mln_ipc_cb_t as usize;
            sources.insert(ty, source);
            let (mh, md, wh, wd) = (
                cb.master_handler,
                cb.master_data,
                cb.worker_handler,
                cb.worker_data,
            );
            self.master
                .install_from(ty, mh, md, Origin::Registry, source);
            self.worker
                .install_from(ty, wh, wd, Origin::Registry, source);
        }
        sources
    }

    /// What `mln_fork_prepare` does to the tables: registry-installed entries follow the
    /// current registry (an unregister before prepare restores the previous registration
    /// of that type, or removes the type), and calling prepare twice changes nothing.
    pub fn reinstall_registry(&mut self) {
        let gen = self.registry.gen;
        let done = |t: &Table| t.synced == Some((gen, true));
        if done(&self.master) && done(&self.worker) {
            return;
        }
        let keep = self.install_winners();
        self.master.remove_registry_entries_except(&keep);
        self.worker.remove_registry_entries_except(&keep);
        self.master.synced = Some((gen, true));
        self.worker.synced = Some((gen, true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn ha(
        _: *mut crate::abi::mln_event_t,
        _: *mut c_void,
        _: *mut c_void,
        _: u32,
        _: *mut *mut c_void,
    ) {
    }
    unsafe extern "C" fn hb(
        _: *mut crate::abi::mln_event_t,
        _: *mut c_void,
        _: *mut c_void,
        _: u32,
        _: *mut *mut c_void,
    ) {
    }

    /// Which entry was found, told by its data: function pointers cannot tell entries
    /// apart (identical functions may be merged by the optimiser, and under Miri two casts
    /// of one function may give different addresses).
    fn is(f: Option<Found>, tag: usize) -> bool {
        // SAFETY: a found slot points into a live table entry.
        f.is_some_and(|f| f.handler.is_some() && unsafe { *f.slot } as usize == tag)
    }

    fn tag(t: usize) -> *mut c_void {
        core::ptr::without_provenance_mut(t)
    }

    #[test]
    fn newest_registration_wins_and_unregister_restores() {
        let mut h = Handlers::default();
        let a = h.registry.register(7, Some(ha), Some(ha), tag(1), tag(1));
        let b = h.registry.register(7, Some(hb), Some(hb), tag(2), tag(2));
        h.reinstall_registry();
        assert!(is(h.worker.lookup(7), 2));
        assert!(h.registry.unregister(b));
        assert!(!h.registry.unregister(b), "second unregister is refused");
        // Unregister does not uninstall ...
        assert!(is(h.worker.lookup(7), 2));
        // ... but a fresh prepare sees only A.
        h.reinstall_registry();
        assert!(is(h.master.lookup(7), 1));
        assert!(h.registry.unregister(a));
        assert!(h.registry.is_empty());
    }

    #[test]
    fn explicit_beats_registry_and_survives_prepare() {
        let mut h = Handlers::default();
        h.worker.install(5, Some(ha), tag(1), Origin::Explicit);
        h.registry.register(5, Some(hb), Some(hb), tag(2), tag(2));
        h.reinstall_registry();
        assert!(is(h.worker.lookup(5), 1));
        assert!(is(h.master.lookup(5), 2));
    }

    #[test]
    fn slot_persists_and_is_stable() {
        let mut t = Table::default();
        t.install(3, Some(ha), tag(0x100), Origin::Explicit);
        let s1 = t.lookup(3).unwrap().slot;
        let s2 = t.lookup(3).unwrap().slot;
        assert_eq!(s1, s2);
        assert!(t.lookup(4).is_none());
    }

    #[test]
    fn links_follow_registration_order() {
        let mut r = Registry::default();
        let a = r.register(1, None, None, null_mut(), null_mut());
        let b = r.register(2, None, None, null_mut(), null_mut());
        let c = r.register(3, None, None, null_mut(), null_mut());
        let links: Vec<_> = r.iter().map(|e| (e.prev, e.next)).collect();
        assert_eq!(links, vec![(null_mut(), b), (a, c), (b, null_mut())]);
        assert!(r.unregister(b));
        let links: Vec<_> = r.iter().map(|e| (e.prev, e.next)).collect();
        assert_eq!(links, vec![(null_mut(), c), (a, null_mut())]);
    }
}
