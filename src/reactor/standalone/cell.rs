//! A loop's allocation and the only way into its private state: a scoped borrow guarded by
//! a busy flag, like a `RefCell` that refuses instead of panicking.
//!
//! # Why a flag, and why it is sound against signal handlers
//!
//! The state is reached only through [`with_state`], which sets `busy` for exactly the
//! duration of a closure that updates the state and calls no user code; handlers, the
//! per-iteration callback and `epoll_wait` run with no borrow held. A second borrow while
//! the flag is set is refused (`None`), so two `&mut State` for one loop never exist.
//!
//! While the flag is set, the only code that can run on the loop's thread and reach the
//! loop is a signal handler that interrupted the borrow: the closure calls nothing that
//! could re-enter. The handler's call finds the flag set and refuses without touching the
//! state (each public function then returns its error value). A handler that interrupts
//! at any other point finds the flag clear, takes its own borrow and releases it before it
//! returns. The interrupted code resumes only after that (signal handlers nest strictly on
//! one thread: the handler runs to completion, or to its own interruption, before the
//! code it interrupted executes another instruction), so the two borrows never overlap.
//! That includes a signal landing between the flag's test and its set: the handler's whole
//! borrow (set, use, clear) happens in that gap, and the interrupted code then sets the
//! flag it found clear, which it still is.
//!
//! Memory ordering: the flag is an `AtomicBool` (a plain `bool` or `Cell` that a signal
//! handler writes would be a data race with the interrupted code). The protocol concerns
//! one thread only, whose accesses the CPU observes in program order, and the kernel's
//! signal delivery and return are full barriers; so the only reordering that could break
//! it is the compiler's. `compiler_fence(SeqCst)` after setting the flag and before
//! clearing it (what `std::sync::atomic::compiler_fence` documents for signal handlers on
//! the same thread) keeps every access to the state between the two. The loads and stores
//! are `Relaxed`, i.e. plain moves: the flag costs no atomic read-modify-write on the hot
//! path (a `swap` costs a locked instruction on each of the ~8 borrows of an iteration).
//! Consequence: the flag does not protect against two threads using one loop at once; the
//! thread rules forbid that, as before.
//!
//! Besides the state, the header holds `depth` (running `dispatch` calls) and `freed`
//! (`free` was called while dispatching): atomics, changed only under the borrow, readable
//! at any time; and the epoll instance, immutable from creation until the memory goes, so
//! `epoll_wait` can use it without a borrow.

use super::state::State;
use crate::abi::{mln_event_s, mln_event_t};
use core::cell::UnsafeCell;
use core::ptr::{self, addr_of};
use nix::sys::epoll::{Epoll, EpollCreateFlags};
use std::alloc::{alloc, dealloc, Layout};
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;

/// The allocation behind a `*mut mln_event_t`: Melon's public struct first, so the C
/// macros reach `is_break` at offset 136, then our header and private state.
#[repr(C)]
pub(super) struct Loop {
    ev: mln_event_t,
    busy: AtomicBool,
    freed: AtomicBool,
    depth: AtomicU32,
    epoll: Epoll,
    st: UnsafeCell<State>,
}

/// The header fields of a live loop, as shared references to the fields only (never a
/// reference to the whole `Loop`: C code writes `ev.is_break` with plain stores).
struct Parts<'a> {
    busy: &'a AtomicBool,
    freed: &'a AtomicBool,
    depth: &'a AtomicU32,
    epoll: &'a Epoll,
    st: &'a UnsafeCell<State>,
}

/// # Safety
/// `ev` is NULL or was returned by [`new_loop`] and is not deallocated yet; the references
/// are not used after the loop is deallocated.
#[inline(always)]
unsafe fn parts<'a>(ev: *mut mln_event_t) -> Option<Parts<'a>> {
    if ev.is_null() {
        return None;
    }
    let lp = ev.cast::<Loop>();
    // SAFETY: `ev` is the first field of a live `Loop` (repr(C)), so the cast is exact; the
    // references cover fields that only change through atomics or the `UnsafeCell`, or
    // never (`epoll`), while the allocation lives.
    unsafe {
        Some(Parts {
            busy: &*addr_of!((*lp).busy),
            freed: &*addr_of!((*lp).freed),
            depth: &*addr_of!((*lp).depth),
            epoll: &*addr_of!((*lp).epoll),
            st: &*addr_of!((*lp).st),
        })
    }
}

/// The busy flag while held; released on drop (also when the closure unwinds).
struct Borrow<'a>(&'a AtomicBool);

impl<'a> Borrow<'a> {
    #[inline(always)]
    fn take(flag: &'a AtomicBool) -> Option<Borrow<'a>> {
        if flag.load(Ordering::Relaxed) {
            return None;
        }
        flag.store(true, Ordering::Relaxed);
        BUSY_HERE.with(|b| b.set(b.get() + 1));
        // No access to the state moves above the set (see the module docs).
        compiler_fence(Ordering::SeqCst);
        Some(Borrow(flag))
    }
}

impl Drop for Borrow<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // No access to the state moves below the clear.
        compiler_fence(Ordering::SeqCst);
        BUSY_HERE.with(|b| b.set(b.get() - 1));
        self.0.store(false, Ordering::Relaxed);
    }
}

thread_local! {
    /// Loop states borrowed on this thread right now: nonzero only in a signal handler
    /// that interrupted a loop's bookkeeping (a borrow never calls out). Per thread, since
    /// a signal handler runs on the thread it interrupted; constant-initialised, without
    /// destructor, so reading it from a signal handler touches no lock and no allocator.
    static BUSY_HERE: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// Whether a signal handler running now interrupted the bookkeeping of a loop of this
/// thread (any loop). Costs one thread-local read.
pub(super) fn busy_here() -> bool {
    BUSY_HERE.with(|b| b.get() > 0)
}

/// Runs `f` with the only `&mut State` of a live, not freed loop. `None` (and `f` does not
/// run) for NULL, for a freed loop, or while the state is borrowed, which on the loop's
/// own thread means: called from a signal handler that interrupted the loop's bookkeeping.
/// `f` must not call user code.
///
/// # Safety
/// `ev` is NULL or a loop from [`new_loop`] that is not deallocated yet.
#[inline(always)]
pub(super) unsafe fn with_state<R>(
    ev: *mut mln_event_t,
    f: impl FnOnce(&mut State) -> R,
) -> Option<R> {
    // SAFETY: caller contract.
    let p = unsafe { parts(ev) }?;
    let _b = Borrow::take(p.busy)?;
    if p.freed.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: the flag is ours: no other reference to the state exists (see module docs).
    Some(f(unsafe { &mut *p.st.get() }))
}

/// The loop's epoll instance; usable without a borrow (never changes while the loop lives).
///
/// # Safety
/// `ev` is a live loop, and the reference is dropped before the loop can be deallocated
/// (inside `dispatch` it cannot be: deallocation waits for the outermost `dispatch`).
pub(super) unsafe fn epoll<'a>(ev: *mut mln_event_t) -> Option<&'a Epoll> {
    // SAFETY: caller contract.
    unsafe { parts(ev) }.map(|p| p.epoll)
}

/// A new loop with `is_break` 0, or NULL if the epoll descriptor or the memory cannot be
/// had. The epoll descriptor is close-on-exec.
pub(super) fn new_loop() -> *mut mln_event_t {
    let Ok(epoll) = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) else {
        return ptr::null_mut();
    };
    let Some(st) = State::new(&epoll) else {
        return ptr::null_mut();
    };
    let layout = Layout::new::<Loop>();
    // SAFETY: `Loop` has a non-zero size.
    let p = unsafe { alloc(layout) }.cast::<Loop>();
    if p.is_null() {
        return ptr::null_mut(); // `epoll` is closed by its drop
    }
    let lp = Loop {
        ev: mln_event_s {
            _private0: [0; 17],
            is_break: 0,
            _private1: [0; 1],
            _private2: [0; 8],
        },
        busy: AtomicBool::new(false),
        freed: AtomicBool::new(false),
        depth: AtomicU32::new(0),
        epoll,
        st: UnsafeCell::new(st),
    };
    // SAFETY: `p` is a fresh allocation with `Loop`'s layout.
    unsafe { p.write(lp) };
    p.cast::<mln_event_t>()
}

/// The process-wide hook run by [`destroy`]; see `set_free_hook`.
static FREE_HOOK: OnceLock<fn(*mut mln_event_t)> = OnceLock::new();

pub(super) fn set_free_hook(hook: fn(*mut mln_event_t)) -> bool {
    FREE_HOOK.set(hook).is_ok()
}

/// The process-wide hook run before each wait; see `set_wait_hook`.
static WAIT_HOOK: OnceLock<fn(*mut mln_event_t)> = OnceLock::new();

pub(super) fn set_wait_hook(hook: fn(*mut mln_event_t)) -> bool {
    WAIT_HOOK.set(hook).is_ok()
}

pub(super) fn wait_hook() -> Option<fn(*mut mln_event_t)> {
    WAIT_HOOK.get().copied()
}

/// Runs the free hook, then closes the epoll descriptor and releases the memory.
///
/// # Safety
/// `ev` is a loop from [`new_loop`], marked freed, not dispatching, with no borrow held by
/// the caller; nobody uses it after this.
unsafe fn destroy(ev: *mut mln_event_t) {
    if let Some(hook) = FREE_HOOK.get() {
        // Every call the hook makes on `ev` is refused (`freed` is set).
        hook(ev);
    }
    // SAFETY: caller contract: still allocated.
    let Some(p) = (unsafe { parts(ev) }) else {
        return;
    };
    // Taken for good: a signal handler interrupting the teardown is refused. Never busy
    // here (the caller holds no borrow, and a signal handler's borrow ends before we
    // resume); if it were, leaking beats freeing memory in use.
    let Some(b) = Borrow::take(p.busy) else {
        debug_assert!(false, "destroy: loop busy");
        return;
    };
    core::mem::forget(b);
    let lp = ev.cast::<Loop>();
    // SAFETY: `lp` is a live `Loop` allocated by `new_loop` with this layout, and nothing
    // refers to it any more (caller contract; `p`'s references are dead from here).
    unsafe {
        ptr::drop_in_place(lp);
        dealloc(lp.cast::<u8>(), Layout::new::<Loop>());
    }
    // The borrow kept for good above ends with the memory.
    compiler_fence(Ordering::SeqCst);
    BUSY_HERE.with(|b| b.set(b.get() - 1));
}

/// `free`: see `standalone::free` for the contract and the refused cases.
///
/// # Safety
/// `ev` is NULL or a loop from [`new_loop`] that is not deallocated yet, and the caller gives
/// it up.
pub(super) unsafe fn free(ev: *mut mln_event_t) {
    // SAFETY: caller contract.
    let Some(p) = (unsafe { parts(ev) }) else {
        return;
    };
    let Some(b) = Borrow::take(p.busy) else {
        // A signal handler interrupted the loop's bookkeeping. Inside `dispatch` the free
        // is deferred like a handler's (the memory goes when the outermost `dispatch`
        // returns, so the interrupted code keeps valid memory); otherwise the interrupted
        // code is a call that goes on using the loop, so nothing happens.
        if p.depth.load(Ordering::Acquire) > 0 {
            p.freed.store(true, Ordering::Release);
        }
        return;
    };
    if p.freed.swap(true, Ordering::AcqRel) {
        return; // already freed inside `dispatch`: the deferred destruction is pending
    }
    let now = p.depth.load(Ordering::Acquire) == 0;
    drop(b);
    if now {
        // SAFETY: not dispatching, freed, no borrow held; the caller gives the loop up.
        unsafe { destroy(ev) };
    }
}

/// Enters `dispatch`: `false` (do not run) for NULL, a freed loop, or a busy one.
///
/// # Safety
/// As [`with_state`].
pub(super) unsafe fn enter_dispatch(ev: *mut mln_event_t) -> bool {
    // SAFETY: caller contract.
    let Some(p) = (unsafe { parts(ev) }) else {
        return false;
    };
    let Some(_b) = Borrow::take(p.busy) else {
        return false;
    };
    if p.freed.load(Ordering::Acquire) {
        return false;
    }
    p.depth.fetch_add(1, Ordering::AcqRel);
    DISPATCHING.fetch_add(1, Ordering::AcqRel);
    true
}

/// Leaves `dispatch`; the outermost one of a loop freed meanwhile releases it. Whether it
/// did (the loop is gone).
///
/// # Safety
/// `ev` entered `dispatch` with [`enter_dispatch`] and is still allocated (deallocation
/// waits for this call).
pub(super) unsafe fn leave_dispatch(ev: *mut mln_event_t) -> bool {
    // SAFETY: caller contract.
    let Some(p) = (unsafe { parts(ev) }) else {
        return false;
    };
    // Never busy: entering took the borrow from the same context, and a signal handler's
    // borrow ends before we resume.
    let Some(b) = Borrow::take(p.busy) else {
        debug_assert!(false, "leave_dispatch: loop busy");
        return false;
    };
    // Decrement first, then read `freed`: a signal handler's `free` that lands in between
    // sees depth 0 (and, being refused, does nothing) or lands before and is seen here.
    DISPATCHING.fetch_sub(1, Ordering::AcqRel);
    let last = p.depth.fetch_sub(1, Ordering::AcqRel) == 1;
    let destroy_now = last && p.freed.load(Ordering::Acquire);
    drop(b);
    if destroy_now {
        // SAFETY: depth 0 and freed: nobody dispatches, the owner gave it up.
        unsafe { destroy(ev) };
    }
    destroy_now
}

/// `dispatch` calls running in this process, over every loop.
static DISPATCHING: AtomicU32 = AtomicU32::new(0);

/// See [`DISPATCHING`].
pub(super) fn dispatching() -> u32 {
    DISPATCHING.load(Ordering::Acquire)
}

/// Nesting depth of `dispatch` on this loop; 0 for NULL.
///
/// # Safety
/// As [`with_state`].
pub(super) unsafe fn depth(ev: *mut mln_event_t) -> u32 {
    // SAFETY: caller contract.
    unsafe { parts(ev) }.map_or(0, |p| p.depth.load(Ordering::Acquire))
}

/// Whether the state is borrowed right now (see [`with_state`]).
///
/// # Safety
/// As [`with_state`].
pub(super) unsafe fn is_busy(ev: *mut mln_event_t) -> bool {
    // SAFETY: caller contract.
    unsafe { parts(ev) }.is_some_and(|p| p.busy.load(Ordering::Acquire))
}

/// Bit 0 of `is_break`. Read through the raw pointer every time: C sets it with a plain
/// store from handlers (`mln_event_break_set`), possibly from a signal handler.
///
/// # Safety
/// `ev` is a live loop.
pub(super) unsafe fn is_break(ev: *mut mln_event_t) -> bool {
    // SAFETY: `ev` is a live loop; `is_break` is a plain u32 at offset 136.
    unsafe { ptr::read_volatile(addr_of!((*ev).is_break)) & 1 != 0 }
}

/// Whether dispatch must return now: break set, or the loop was freed meanwhile.
///
/// # Safety
/// `ev` is a live loop (inside `dispatch`, deallocation is deferred).
pub(super) unsafe fn must_leave(ev: *mut mln_event_t) -> bool {
    // SAFETY: caller contract.
    unsafe { is_break(ev) || parts(ev).is_some_and(|p| p.freed.load(Ordering::Acquire)) }
}

/// Where Melon's struct sits in the allocation (must be 0 for the C macros).
#[cfg(test)]
pub(super) fn event_offset() -> usize {
    core::mem::offset_of!(Loop, ev)
}
