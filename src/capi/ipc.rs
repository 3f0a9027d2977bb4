//! `mln_ipc.h`: handler registration, and the extensions (not in Melon) for
//! sizes, backpressure and statistics.

use crate::abi::{
    ipc_handler, mln_fork_t, mln_ipc_cb_t, mln_ipc_stats_t, mln_ipc_writable_handler, mln_size_t,
    mln_u32_t,
};
use crate::capi::{fail, guard, non_null, set_errno};
use crate::process;
use core::ffi::{c_int, c_void};

/// Records handlers for message type `type`: `master_handler` runs in the master for frames
/// from workers, `worker_handler` in workers for frames from the master, each with its
/// data as the initial `*udata_ptr`. Takes effect in the tables when
/// `mln_ipc_set_process_handlers` runs (done by `mln_fork_prepare`, so register before
/// `mln_framework_init` or inside `global_init`). A later registration of a type overrides
/// an earlier one. One NULL handler: frames of that type are dropped on that side.
///
/// Returns the registry entry (owned by the library), or NULL with errno EINVAL when both
/// handlers are NULL. An entry is never handed out again, even after it is unregistered.
/// Thread-safe. Types 0..1024 are reserved for Melon.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_handler_register(
    r#type: mln_u32_t,
    master_handler: ipc_handler,
    worker_handler: ipc_handler,
    master_data: *mut c_void,
    worker_data: *mut c_void,
) -> *mut mln_ipc_cb_t {
    guard("mln_ipc_handler_register", || {
        if master_handler.is_none() && worker_handler.is_none() {
            set_errno(libc::EINVAL);
            return core::ptr::null_mut();
        }
        process::register(
            r#type,
            master_handler,
            worker_handler,
            master_data,
            worker_data,
        )
    })
}

/// Removes a registration made by `mln_ipc_handler_register`. Handlers already installed
/// in a running process keep firing (Melon's configuration reload relies on it), also
/// after `mln_ipc_set_process_handlers`, which only installs what is registered; the next
/// `mln_fork_prepare` (in a process that forks again) rebuilds the tables without it. The
/// entry's memory is kept (56 bytes) so that its address is never reissued: NULL, or an
/// entry already unregistered, is a no-op, forever. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_handler_unregister(cb: *mut mln_ipc_cb_t) {
    guard("mln_ipc_handler_unregister", || {
        if !cb.is_null() {
            process::unregister(cb);
        }
    })
}

/// Installs, for every registered type, its newest registration into this process's
/// master and worker tables (handlers set explicitly with `mln_fork_*_ipc_handler_set`
/// are kept). A registration already installed and unchanged stays as it is, with what its
/// handler stored through `udata_ptr`; so calling this at run time is cheap and keeps
/// state. Returns 0. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_set_process_handlers() -> c_int {
    guard("mln_ipc_set_process_handlers", || {
        process::install_registry();
        0
    })
}

/// Extension (not in Melon): sets the largest frame accepted and sent, counted as Melon's
/// length field (4 + payload bytes). Default 64 MiB. A peer announcing a longer frame is
/// a protocol error: nothing reaches a handler, the connection is closed and handled as
/// the peer's death. A send of a longer payload returns -1 (EMSGSIZE). Returns 0, or -1
/// with EINVAL if `max` is below 4, above 4294967295, or above a non-zero queue limit.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_max_message_set(max: mln_size_t) -> c_int {
    guard("mln_ipc_max_message_set", || {
        if process::set_max_message(max) {
            0
        } else {
            fail(libc::EINVAL)
        }
    })
}

/// Extension (not in Melon): per-peer cap on bytes queued and not yet written to the
/// socket (frame headers included), in both directions. 0 = unlimited. Default: 256 MiB.
/// A send that would go over it returns -1 with errno EAGAIN; nothing is queued and
/// nothing else changes (no close, no restart). An empty queue always takes one frame, so
/// a frame of the maximum message size is never refused for good. Returns 0, or -1 with
/// EINVAL if `bytes` is non-zero and below the maximum message size.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_queue_limit_set(bytes: mln_size_t) -> c_int {
    guard("mln_ipc_queue_limit_set", || {
        if process::set_queue_limit(bytes) {
            0
        } else {
            fail(libc::EINVAL)
        }
    })
}

/// Extension (not in Melon): sets the handler called on the loop, as `h(ev, f, data)`,
/// when a peer whose send was refused with EAGAIN has drained to half the queue limit or
/// less; `f` is the child, or NULL in a worker (the master connection). Called once per
/// refusal episode. NULL disables it. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_writable_handler_set(
    h: mln_ipc_writable_handler,
    data: *mut c_void,
) {
    guard("mln_ipc_writable_handler_set", || {
        process::set_writable_handler(h, data)
    })
}

/// Extension (not in Melon): fills `*out` with the counters of child `f`, or, with `f`
/// NULL in a worker, of its connection to the master. Returns 0, or -1 with errno EINVAL
/// (`out` NULL) or ESRCH (`f` is not a live child; NULL outside a worker).
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_stats_get(f: *mut mln_fork_t, out: *mut mln_ipc_stats_t) -> c_int {
    guard("mln_ipc_stats_get", || {
        non_null!(out);
        match process::stats(f) {
            Some(s) => {
                // SAFETY: `out` is non-NULL and points at a writable stats struct.
                unsafe { out.write(s) };
                0
            }
            None => fail(libc::ESRCH),
        }
    })
}
