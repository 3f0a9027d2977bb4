//! Process-wide settings of the extensions: the maximum message size and the queue limit
//! (set together under one lock), and the standalone build's worker count. Atomics: any
//! thread may read them.

use std::sync::atomic::{AtomicUsize, Ordering};

static MAX_MESSAGE: AtomicUsize = AtomicUsize::new(crate::wire::DEFAULT_MAX_MESSAGE);
/// Default per-peer queue limit: 256 MiB.
pub(crate) const DEFAULT_QUEUE_LIMIT: usize = 256 << 20;
static QUEUE_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_QUEUE_LIMIT);
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
static WORKER_NUM: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// `mln_ipc_max_message_set`: the largest `length` field (type + payload) accepted and
/// sent. At least 4 and at most `u32::MAX`; not above a non-zero queue limit.
pub(crate) fn set_max_message(max: usize) -> bool {
    if !(crate::wire::TYPE_LEN..=u32::MAX as usize).contains(&max) {
        return false;
    }
    // The pair (maximum, limit) changes under one lock, so two threads setting one each
    // cannot both pass their check against the other's old value.
    let _pair = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    let limit = QUEUE_LIMIT.load(Ordering::Relaxed);
    if limit != 0 && max > limit {
        return false;
    }
    MAX_MESSAGE.store(max, Ordering::Relaxed);
    true
}

/// Taken by the two setters of the (maximum message, queue limit) pair; readers read the
/// atomics. Never taken on the send path, nor by a signal handler's call (the setters are
/// not for signal handlers).
static SETTINGS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[inline]
pub(crate) fn max_message() -> usize {
    MAX_MESSAGE.load(Ordering::Relaxed)
}

/// `mln_ipc_queue_limit_set`: 0 = unlimited; otherwise at least the maximum message size
/// (an empty queue always takes one frame, so a maximal frame is never refused for good).
pub(crate) fn set_queue_limit(bytes: usize) -> bool {
    let _pair = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    if bytes != 0 && bytes < max_message() {
        return false;
    }
    QUEUE_LIMIT.store(bytes, Ordering::Relaxed);
    true
}

#[inline]
pub(crate) fn queue_limit() -> usize {
    QUEUE_LIMIT.load(Ordering::Relaxed)
}

#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn set_worker_num(n: u32) {
    WORKER_NUM.store(n, Ordering::Relaxed);
}

#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn worker_num() -> u32 {
    WORKER_NUM.load(Ordering::Relaxed)
}

/// Default per-peer limit of descriptors queued and not yet written.
pub(crate) const DEFAULT_FDS_LIMIT: usize = 1024;
static FDS_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_FDS_LIMIT);

/// `mln_ipc_fds_limit_set`: 0 = unlimited.
pub(crate) fn set_fds_limit(n: usize) {
    FDS_LIMIT.store(n, Ordering::Relaxed);
}

#[inline]
pub(crate) fn fds_limit() -> usize {
    FDS_LIMIT.load(Ordering::Relaxed)
}

/// Forks refused while other threads run (the Rust API without `allow_threads`): a lock
/// another thread holds at the fork stays locked for ever in the child.
static SINGLE_THREADED_FORKS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn set_single_threaded_forks(on: bool) {
    SINGLE_THREADED_FORKS.store(on, Ordering::Relaxed);
}

pub(crate) fn single_threaded_forks() -> bool {
    SINGLE_THREADED_FORKS.load(Ordering::Relaxed)
}

/// Called in a worker just before the core ends it because its master is gone (the Rust
/// API drops its closures there). Set once per process, by the loop thread.
static EXIT_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn set_exit_hook(h: fn()) {
    let _ = EXIT_HOOK.set(h);
}

pub(crate) fn exit_hook() -> Option<fn()> {
    EXIT_HOOK.get().copied()
}

/// `mln_fork_server_set`: `mln_fork` (standalone build) starts a fork server after the
/// workers (`fork::start_fork_server`).
static FORK_SERVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn set_fork_server(on: bool) {
    FORK_SERVER.store(on, Ordering::Relaxed);
}

#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn fork_server() -> bool {
    FORK_SERVER.load(Ordering::Relaxed)
}
