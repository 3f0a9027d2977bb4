//! Who is who: [`WorkerId`], and the master's table of live children taken from the
//! core's child identity (`process::children()`: slot, pid, record).
//!
//! The table is rebuilt only when the core's child list changed (its generation counter
//! moved: a start, a death, a restart), so a send to a `WorkerId` and the identity of the
//! sender of a received frame are O(1) and allocate nothing, whatever the number of
//! workers.

use crate::abi::mln_fork_t;
use crate::process;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

/// One child process as the master sees it: a stable index and the current pid.
///
/// Indices: the workers started by [`Builder::workers`](super::Builder::workers) are
/// `0..n` in start order; the programs of [`Builder::spawn`](super::Builder::spawn)
/// follow, in call order. A restarted child takes the index of the child it replaces. A
/// `WorkerId` names one process: after a restart the index is the same, the pid and so
/// the `WorkerId` differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId {
    index: usize,
    pid: u32,
}

impl WorkerId {
    pub(super) fn new(index: usize, pid: u32) -> WorkerId {
        WorkerId { index, pid }
    }

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

#[derive(Clone, Copy)]
struct Live {
    id: WorkerId,
    fork: *mut mln_fork_t,
}

/// The live children, as of the core's list generation `gen`.
#[derive(Default)]
struct Table {
    gen: u64,
    /// By index (the core's supervision slot).
    by_index: Vec<Option<Live>>,
    /// By record address (the `f_ptr` of a received frame).
    by_fork: HashMap<usize, WorkerId>,
}

impl Table {
    fn rebuild(&mut self, gen: u64) {
        self.gen = gen;
        self.by_index.clear();
        self.by_fork.clear();
        for c in process::children() {
            let id = WorkerId {
                index: c.slot as usize,
                pid: c.pid as u32,
            };
            // A child being stopped is gone to the program (not listed, no sends), but
            // the messages it still sends are its own.
            self.by_fork.insert(c.fork as usize, id);
            if c.stopping || c.gone {
                continue;
            }
            if self.by_index.len() <= id.index {
                self.by_index.resize(id.index + 1, None);
            }
            self.by_index[id.index] = Some(Live { id, fork: c.fork });
        }
    }
}

thread_local! {
    // The loop thread's (see `run`: only the thread that claimed the process gets here).
    static TABLE: RefCell<Table> = RefCell::default();
}

fn with_table<R>(f: impl FnOnce(&Table) -> R) -> R {
    let gen = process::children_generation();
    TABLE.with_borrow_mut(|t| {
        if t.gen != gen {
            t.rebuild(gen);
        }
        f(t)
    })
}

/// The record of live child `w` (the same process: index and pid match), not being
/// stopped.
pub(super) fn fork_of(w: WorkerId) -> Option<*mut mln_fork_t> {
    with_table(|t| match t.by_index.get(w.index) {
        Some(Some(l)) if l.id == w => Some(l.fork),
        _ => None,
    })
}

/// The identity of live child record `f`.
pub(super) fn id_of(f: *const mln_fork_t) -> Option<WorkerId> {
    with_table(|t| t.by_fork.get(&(f as usize)).copied())
}

/// The live child with index `index`, and its record.
pub(super) fn at(index: usize) -> Option<(WorkerId, *mut mln_fork_t)> {
    with_table(|t| {
        t.by_index
            .get(index)
            .copied()
            .flatten()
            .map(|l| (l.id, l.fork))
    })
}

/// One past the highest index in use (the bound for walking [`at`]).
pub(super) fn index_bound() -> usize {
    with_table(|t| t.by_index.len())
}

/// The live children in index order.
pub(super) fn live() -> Vec<WorkerId> {
    with_table(|t| t.by_index.iter().flatten().map(|l| l.id).collect())
}

/// The record of child `w` if it is still open, being stopped or not (the sender of a
/// frame being handled).
pub(super) fn open_fork_of(w: WorkerId) -> Option<*mut mln_fork_t> {
    with_table(|t| {
        t.by_fork
            .iter()
            .find(|(_, id)| **id == w)
            .map(|(f, _)| *f as *mut mln_fork_t)
    })
}
