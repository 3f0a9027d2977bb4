//! Model-based property test of the handler registry and tables (`mln_ipc::registry`):
//! random sequences of register / unregister / handler set / install / prepare / writes
//! through `udata_ptr` compared, after every step, with a few lines of plain model code
//! that states DECISIONS.md's rules: the newest registration wins, explicit handlers beat
//! registry ones and survive prepare, unregister does not uninstall, prepare makes the
//! registry entries follow the registry, installing an unchanged registration again keeps
//! its entry, a data slot persists until its entry is replaced, and an unregistered handle
//! stays unregistered (a second unregister is refused, its address is never reissued).

use core::ffi::c_void;
use core::ptr::null_mut;
use mln_ipc::abi::{ipc_handler, mln_event_t, mln_ipc_cb_t};
use mln_ipc::registry::{Handlers, Origin, Side};
use proptest::prelude::*;
use std::collections::BTreeMap;

unsafe extern "C" fn h(
    _: *mut mln_event_t,
    _: *mut c_void,
    _: *mut c_void,
    _: u32,
    _: *mut *mut c_void,
) {
}

#[derive(Debug, Clone)]
enum Op {
    /// type, master handler?, worker handler? (data tags are allocated by the test)
    Register(u32, bool, bool),
    /// index into the live registrations (modulo their number)
    Unregister(usize),
    /// `mln_fork_{master,worker}_ipc_handler_set`
    Set(bool, u32),
    /// `mln_ipc_set_process_handlers`
    Install,
    /// `mln_fork_prepare`
    Prepare,
    /// a handler stores a value through `udata_ptr`
    Write(bool, u32),
}

fn op() -> impl Strategy<Value = Op> {
    let ty = 0u32..6;
    prop_oneof![
        4 => (ty.clone(), any::<bool>(), any::<bool>()).prop_map(|(t, m, w)| Op::Register(t, m, w)),
        2 => any::<usize>().prop_map(Op::Unregister),
        2 => (any::<bool>(), ty.clone()).prop_map(|(m, t)| Op::Set(m, t)),
        1 => Just(Op::Install),
        1 => Just(Op::Prepare),
        2 => (any::<bool>(), ty).prop_map(|(m, t)| Op::Write(m, t)),
    ]
}

/// An installed entry in the model: handler present?, data, origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    handler: bool,
    data: usize,
    explicit: bool,
    /// The registration it came from (registry installs).
    source: usize,
}

#[derive(Debug, Clone)]
struct Reg {
    cb: *mut mln_ipc_cb_t,
    ty: u32,
    m: Option<usize>,
    w: Option<usize>,
}

#[derive(Default)]
struct Model {
    regs: Vec<Reg>,
    master: BTreeMap<u32, Entry>,
    worker: BTreeMap<u32, Entry>,
}

impl Model {
    fn install(table: &mut BTreeMap<u32, Entry>, ty: u32, e: Entry) {
        if !e.explicit && table.get(&ty).is_some_and(|o| o.explicit) {
            return;
        }
        table.insert(ty, e);
    }

    /// The newest registration of each type.
    fn winners(&self) -> BTreeMap<u32, Reg> {
        let mut w = BTreeMap::new();
        for r in &self.regs {
            w.insert(r.ty, r.clone());
        }
        w
    }

    fn install_registry(&mut self) {
        for (ty, r) in self.winners() {
            for (table, d) in [(&mut self.master, r.m), (&mut self.worker, r.w)] {
                let source = r.cb as usize;
                if table
                    .get(&ty)
                    .is_some_and(|o| !o.explicit && o.source == source)
                {
                    continue; // unchanged: kept, with its data slot
                }
                let e = Entry {
                    handler: d.is_some(),
                    data: d.unwrap_or(0),
                    explicit: false,
                    source,
                };
                Self::install(table, ty, e);
            }
        }
    }

    fn prepare(&mut self) {
        let w = self.winners();
        self.master.retain(|ty, e| e.explicit || w.contains_key(ty));
        self.worker.retain(|ty, e| e.explicit || w.contains_key(ty));
        self.install_registry();
    }
}

fn hand(present: bool) -> ipc_handler {
    if present {
        Some(h)
    } else {
        None
    }
}

fn check(hs: &mut Handlers, m: &Model) -> Result<(), TestCaseError> {
    for (side, table) in [(Side::Master, &m.master), (Side::Worker, &m.worker)] {
        for ty in 0..6 {
            let got = hs.table(side).lookup(ty).map(|f| {
                // SAFETY: a found slot points into a live table entry.
                (f.handler.is_some(), unsafe { *f.slot } as usize)
            });
            let want = table.get(&ty).map(|e| (e.handler, e.data));
            prop_assert_eq!(got, want, "{:?} type {}", side, ty);
            // The slot's address is stable between lookups.
            let a = hs.table(side).lookup(ty).map(|f| f.slot);
            let b = hs.table(side).lookup(ty).map(|f| f.slot);
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(hs.table(side).len(), table.len());
    }
    // Registration order and the C-visible links.
    let entries: Vec<&mln_ipc_cb_t> = hs.registry.iter().collect();
    prop_assert_eq!(entries.len(), m.regs.len());
    for (i, (e, r)) in entries.iter().zip(&m.regs).enumerate() {
        prop_assert!(core::ptr::eq(*e, r.cb));
        prop_assert_eq!(e.r#type, r.ty);
        prop_assert_eq!(e.master_data as usize, r.m.unwrap_or(0));
        prop_assert_eq!(e.worker_data as usize, r.w.unwrap_or(0));
        let prev = if i == 0 { null_mut() } else { m.regs[i - 1].cb };
        let next = m.regs.get(i + 1).map_or(null_mut(), |r| r.cb);
        prop_assert_eq!(e.prev, prev);
        prop_assert_eq!(e.next, next);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn registry_matches_model(ops in prop::collection::vec(op(), 0..60)) {
        let mut hs = Handlers::default();
        let mut m = Model::default();
        let mut tag = 0x1000usize;
        let mut dead: Vec<*mut mln_ipc_cb_t> = Vec::new();
        for op in ops {
            match op {
                Op::Register(ty, mh, wh) => {
                    // The C layer refuses both-NULL before reaching the registry; the
                    // registry itself records whatever it is given.
                    tag += 2;
                    let (md, wd) = (mh.then_some(tag), wh.then_some(tag + 1));
                    let cb = hs.registry.register(
                        ty,
                        hand(mh),
                        hand(wh),
                        md.unwrap_or(0) as *mut c_void,
                        wd.unwrap_or(0) as *mut c_void,
                    );
                    prop_assert!(!cb.is_null());
                    prop_assert!(!dead.contains(&cb), "a dead handle was reissued");
                    m.regs.push(Reg { cb, ty, m: md, w: wd });
                }
                Op::Unregister(i) => {
                    if m.regs.is_empty() {
                        prop_assert!(!hs.registry.unregister(core::ptr::null()));
                        continue;
                    }
                    let r = m.regs.remove(i % m.regs.len());
                    prop_assert!(hs.registry.unregister(r.cb));
                    // Stale from now on: refused again, and never reissued.
                    prop_assert!(!hs.registry.unregister(r.cb));
                    dead.push(r.cb);
                }
                Op::Set(master, ty) => {
                    tag += 2;
                    let side = if master { Side::Master } else { Side::Worker };
                    prop_assert!(hs.table(side).install(ty, Some(h), tag as *mut c_void, Origin::Explicit));
                    let t = if master { &mut m.master } else { &mut m.worker };
                    Model::install(t, ty, Entry { handler: true, data: tag, explicit: true, source: 0 });
                }
                Op::Install => {
                    hs.install_registry();
                    m.install_registry();
                }
                Op::Prepare => {
                    hs.reinstall_registry();
                    m.prepare();
                }
                Op::Write(master, ty) => {
                    tag += 2;
                    let side = if master { Side::Master } else { Side::Worker };
                    if let Some(f) = hs.table(side).lookup(ty) {
                        // SAFETY: a found slot points into a live table entry.
                        unsafe { *f.slot = tag as *mut c_void };
                        let t = if master { &mut m.master } else { &mut m.worker };
                        t.get_mut(&ty).unwrap().data = tag;
                    }
                }
            }
            check(&mut hs, &m)?;
        }
    }
}
