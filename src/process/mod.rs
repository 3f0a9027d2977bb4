//! Processes: the worker list, fork / spawn / restart with the fork handshake, supervision
//! with restart backoff, the master connection, sending and message dispatch (spec §3.2,
//! §4; DECISIONS.md). The C face (`capi`) and the Rust face (`api`) both call the
//! functions re-exported here; nothing here knows either face.
//!
//! Files, in layers: each calls only files below it (`rust-tests/structure.rs` checks
//! it); the layers below `callbacks` register the loop entry points through [`ENTRIES`],
//! filled here.
//! * `callbacks`: every function registered on a loop, behind a panic boundary (top);
//! * `recv`: receive passes and dispatch to handlers; the handshake byte of a starting
//!   child;
//! * `lifecycle`: child events, graceful stops, rolling restarts, the worker's quit and
//!   ready (extensions);
//! * `shutdown`: the orderly end (the Rust API's `run`, the standalone framework);
//! * `supervise`: deaths, making sure a child is gone, restarts with backoff, the
//!   handshake's deadline and completion, a stop's deadline;
//! * `ending`: how a child ended, the restart policy, a rolling restart's ends;
//! * `fork`: socketpair, fork, handshake, the child's clean-up, exec; starts the fork
//!   server;
//! * `forkserver`: the fork server (a zygote forked before any thread exists, which makes
//!   the master's children for it) and the master's requests to it;
//! * `adopt`: a worker not forked by its master (an exec'd program) takes the descriptor
//!   it was given as its master connection;
//! * `events`: registration with loops, `mln_fork_iterate`;
//! * `flush`: the send path (queue, flush, SEND interest, pacing), writable callbacks;
//! * `settings`: the extensions' process-wide settings; `global`: the scoped cell the
//!   state lives in;
//! * `state`: the global state ([`state::PROC`], one scoped borrow at a time), child
//!   records and identity, settings, what a forked child keeps of its parent;
//! * `peer`: a peer's life, the one state machine every part reads; `pids`: children as
//!   processes; `handlers`: the registry and the handler tables (the thread-safe part)
//!   (bottom).

mod adopt;
mod callbacks;
mod ending;
mod events;
pub(crate) mod fds;
mod flush;
mod fork;
mod forkserver;
mod global;
mod handlers;
mod lifecycle;
mod liveset;
#[cfg(not(feature = "standalone"))]
pub(crate) mod melon_conf;
mod peer;
mod pids;
mod recv;
mod send_fds;
mod settings;
mod shutdown;
mod state;
mod supervise;

use crate::abi::*;
use crate::log;
use core::ffi::{c_int, c_void};
use std::io;

pub(crate) use callbacks::{on_child_readable, on_master_readable};
pub(crate) use ending::set_restart_policy;
pub(crate) use events::{iterate, master_events_set, worker_events_set};
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use flush::set_pacing;
pub(crate) use flush::set_writable_handler;
pub(crate) use flush::{send_to_child, send_to_master, SendError};
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use fork::flush_stdio;
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use fork::my_slot;
#[cfg(feature = "tokio")]
pub(crate) use fork::start_fork_server;
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use fork::{fork_core, fork_workers, new_plan, spawn_plan_checked, Forked};
pub(crate) use fork::{restart, spawn};
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use handlers::handler_data;
pub(crate) use handlers::{handler_set, install_registry, register, unregister};
pub(crate) use lifecycle::{rolling_restart, set_event_handler, set_quit_handler, stop};
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use pids::thread_count;
pub(crate) use send_fds::{send_fds_to_child, send_fds_to_master};
pub(crate) use settings::set_fds_limit;
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use settings::set_worker_num;
pub(crate) use settings::{max_message, queue_limit, set_max_message, set_queue_limit};
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use settings::{set_exit_hook, set_fork_server, set_single_threaded_forks};
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use shutdown::{children, shutdown};
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use state::children_generation;
#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use state::ExecArgs;

#[cfg_attr(not(feature = "standalone"), allow(unused_imports))]
pub(crate) use adopt::{adopt_master, check_channel, master_lost};

use state::{Peer, PROC};

/// The core's loop entry points (`callbacks`), as the layers below it register them on
/// loops. The table is filled where the modules are put together (`process/mod.rs`), so
/// no file below `callbacks` names it (the calls go one way: loop callbacks on top, state
/// at the bottom).
pub(crate) struct Entries {
    pub child_readable: unsafe extern "C" fn(*mut mln_event_t, c_int, *mut c_void),
    pub master_readable: unsafe extern "C" fn(*mut mln_event_t, c_int, *mut c_void),
    pub send_ready: unsafe extern "C" fn(*mut mln_event_t, c_int, *mut c_void),
    pub wake_ready: unsafe extern "C" fn(*mut mln_event_t, c_int, *mut c_void),
    pub exit_ready: unsafe extern "C" fn(*mut mln_event_t, c_int, *mut c_void),
    pub restart_fired: unsafe extern "C" fn(*mut mln_event_t, *mut c_void),
    pub exit_timeout: unsafe extern "C" fn(*mut mln_event_t, *mut c_void),
    pub exit_poll: unsafe extern "C" fn(*mut mln_event_t, *mut c_void),
    pub handshake_expired: unsafe extern "C" fn(*mut mln_event_t, *mut c_void),
    pub rolling_step: unsafe extern "C" fn(*mut mln_event_t, *mut c_void),
    pub stop_deadline: unsafe extern "C" fn(*mut mln_event_t, *mut c_void),
    pub ready_fired: unsafe extern "C" fn(*mut mln_event_t, *mut c_void),
    pub stop_exited: unsafe extern "C" fn(*mut mln_event_t, c_int, *mut c_void),
    #[cfg(feature = "standalone")]
    pub before_wait: fn(*mut mln_event_t),
    #[cfg(feature = "standalone")]
    pub loop_freed: fn(*mut mln_event_t),
}

/// The loop entry points as the layers below `callbacks` register them (see [`Entries`]):
/// the one place that ties them to `callbacks`.
pub(crate) static ENTRIES: Entries = Entries {
    child_readable: callbacks::child_readable,
    master_readable: callbacks::master_readable,
    send_ready: callbacks::send_ready,
    wake_ready: callbacks::wake_ready,
    exit_ready: callbacks::exit_ready,
    restart_fired: callbacks::restart_fired,
    exit_timeout: callbacks::exit_timeout,
    exit_poll: callbacks::exit_poll,
    handshake_expired: callbacks::handshake_expired,
    rolling_step: callbacks::rolling_step,
    stop_deadline: callbacks::stop_deadline,
    ready_fired: callbacks::ready_fired,
    stop_exited: callbacks::stop_exited,
    #[cfg(feature = "standalone")]
    before_wait: callbacks::before_wait,
    #[cfg(feature = "standalone")]
    loop_freed: callbacks::loop_freed,
};

/// `mln_fork_prepare`: idempotent, leaves no half-built state (D14). SIGCHLD is ignored,
/// as in Melon (the kernel reaps the program's other children); plain workers are forked
/// so that the kernel does not, and the core reaps them with their status (`pids::fork`).
pub(crate) fn prepare() -> c_int {
    prepare_with(true)
}

/// `prepare` that leaves SIGCHLD's disposition alone (the Rust API): the core then reaps
/// its own children (by pid, `waitpid(pid, WNOHANG)` once their pidfd says they are
/// gone), and whatever else the program forks stays the program's to wait for.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn prepare_keep_sigchld() -> c_int {
    prepare_with(false)
}

fn prepare_with(ignore_sigchld: bool) -> c_int {
    // SAFETY: setting dispositions of SIGCHLD/SIGPIPE has no memory-safety preconditions.
    unsafe {
        if (ignore_sigchld && libc::signal(libc::SIGCHLD, libc::SIG_IGN) == libc::SIG_ERR)
            || libc::signal(libc::SIGPIPE, libc::SIG_IGN) == libc::SIG_ERR
        {
            log::error(format_args!(
                "mln_fork_prepare: signal(): {}",
                io::Error::last_os_error()
            ));
            return -1;
        }
    }
    PROC.with(|p| {
        p.master();
        p.keep_sigchld = !ignore_sigchld;
    });
    #[cfg(not(feature = "standalone"))]
    if !crate::melon::conn::master_prepare() {
        log::error(format_args!("mln_tcp_conn_init: no memory"));
    }
    handlers::reinstall_registry();
    if crate::sigsafe::wake_fd() < 0 {
        log::warn(format_args!(
            "no eventfd: sends from signal handlers that interrupt the library will be refused"
        ));
    }
    0
}

/// `mln_fork_resource_clear_handler_set`.
pub(crate) fn set_clear_handler(h: clr_handler, data: *mut c_void) {
    PROC.with(|p| {
        p.clr = h;
        p.clr_data = data;
        p.publish();
    })
}

/// Stops dispatch in this process (the Rust API's `stop`): no IPC handler (C or Rust),
/// writable callback or restart runs any more; frames not yet dispatched stay unread.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn stop_dispatch() {
    PROC.with(|p| p.dispatch_stopped = true)
}

#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn is_worker() -> bool {
    PROC.with(|p| p.is_worker)
}

/// Whether this process was restarted by the library from its parent's loop and has not
/// run its worker routine yet; clears it. A worker's own supervised child that is
/// restarted leaves the worker's loop this way, and then runs the worker routine too.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn take_restarted() -> bool {
    PROC.with(|p| std::mem::take(&mut p.restarted))
}

/// `mln_fork_master_connection_get`.
pub(crate) fn master_connection() -> *mut mln_tcp_conn_t {
    // Melon build: Melon's exported `master_conn` (spec §1.13), a genuine Melon connection.
    #[cfg(not(feature = "standalone"))]
    return crate::melon::globals::master_conn_ptr();
    #[cfg(feature = "standalone")]
    PROC.with(|p| core::ptr::addr_of_mut!(p.master().conn))
}

/// Whether this process has children that are live, whose end is not handled yet, or
/// whose events are not delivered yet.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn has_children() -> bool {
    PROC.with(|p| !p.head.is_null() || !p.dying.is_empty() || !p.events.is_empty())
}

/// `mln_fork_socketpair_close_handler`: a no-op for anything but a live child.
pub(crate) fn close_by_request(ev: *mut mln_event_t, f: *mut mln_fork_t) {
    let Some(c) = PROC.with(|p| {
        let c = p.find(f)?;
        if let Some(ch) = p.chan(state::Peer::Child(c)) {
            ch.requested = true;
        }
        Some(c)
    }) else {
        return;
    };
    supervise::close_child(ev, c, "closed by request");
}

/// `mln_ipc_stats_get`: a live child's counters, or (NULL) the master connection's in a
/// worker.
pub(crate) fn stats(f: *const mln_fork_t) -> Option<mln_ipc_stats_t> {
    PROC.with(|p| {
        let (peer, restarts, fds_lost) = if f.is_null() {
            if !p.is_worker {
                return None;
            }
            (Peer::Master, 0, 0)
        } else {
            let c = p.find_open(f)?;
            let plan = &p.live_of(c)?.plan;
            (Peer::Child(c), plan.restarts, plan.fds_lost)
        };
        let ch = p.chan(peer)?;
        let tx = ch.ch.tx.stats();
        Some(mln_ipc_stats_t {
            frames_sent: tx.frames_sent,
            bytes_sent: tx.bytes_sent,
            frames_received: ch.frames_received,
            bytes_received: ch.bytes_received,
            queued_frames: ch.ch.tx.queued_frames() as u64,
            queued_bytes: ch.ch.tx.queued_bytes() as u64,
            queue_peak_bytes: tx.queue_peak_bytes,
            sends_refused: tx.sends_refused,
            restarts,
            paced_ns: ch.paced_ns,
            fds_sent: tx.fds_sent,
            fds_received: ch.ch.rx.fd_counts().0,
            fds_lost,
        })
    })
}

/// The counters of a connection the C stats struct does not carry (its layout is fixed).
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DropCounts {
    /// Frames of a type nobody handles on this side.
    pub unhandled: u64,
    /// Frames a typed handler could not decode ([`note_undecoded`]).
    pub undecoded: u64,
}

/// The drop counters of the channel to child `f` (NULL: the master connection, in a
/// worker); `None` when there is no such open channel.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn drop_counts(f: *const mln_fork_t) -> Option<DropCounts> {
    PROC.with(|p| {
        let peer = if f.is_null() {
            if !p.is_worker {
                return None;
            }
            Peer::Master
        } else {
            Peer::Child(p.find_open(f)?)
        };
        let ch = p.chan(peer)?;
        Some(DropCounts {
            unhandled: ch.unhandled,
            undecoded: ch.undecoded,
        })
    })
}

/// Counts a frame from child `f` (NULL: from the master, in a worker) that a typed
/// handler could not decode.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn note_undecoded(f: *const mln_fork_t) {
    PROC.with(|p| {
        let peer = if f.is_null() {
            Peer::Master
        } else {
            match p.find_open(f) {
                Some(c) => Peer::Child(c),
                None => return,
            }
        };
        if let Some(ch) = p.chan(peer) {
            ch.undecoded += 1;
        }
    })
}
