//! `mln_ipc.h`: handler registration (spec §3.1).

use crate::abi::{ipc_handler, mln_ipc_cb_t, mln_size_t, mln_u32_t};
use crate::capi::guard;
use crate::process::{self, with_handlers};
use core::ffi::{c_int, c_void};

/// Records handlers for message type `type`: `master_handler` runs in the master for frames
/// from workers, `worker_handler` in workers for frames from the master, each with its
/// data as the initial `*udata_ptr`. Takes effect in the tables when
/// `mln_ipc_set_process_handlers` runs (done by `mln_fork_prepare`, so register before
/// `mln_framework_init` or inside `global_init`). A later registration of a type overrides
/// an earlier one. One NULL handler: frames of that type are dropped on that side.
///
/// Returns the registry entry (owned by the library until `mln_ipc_handler_unregister`), or
/// NULL when both handlers are NULL. Thread-safe. Types 0..1024 are reserved for Melon.
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
            return core::ptr::null_mut();
        }
        with_handlers(|hs| {
            hs.registry.register(
                r#type,
                master_handler,
                worker_handler,
                master_data,
                worker_data,
            )
        })
    })
}

/// Removes a registration made by `mln_ipc_handler_register` and frees it. Handlers
/// already installed in a running process keep firing (Melon's configuration reload relies
/// on it); the removal matters for the next `mln_fork_prepare` /
/// `mln_ipc_set_process_handlers`. NULL, or an entry already unregistered: no-op.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_handler_unregister(cb: *mut mln_ipc_cb_t) {
    guard("mln_ipc_handler_unregister", || {
        if !cb.is_null() {
            with_handlers(|hs| hs.registry.unregister(cb));
        }
    })
}

/// Installs every registration into this process's master and worker tables, oldest first
/// (so the newest registration of a type wins; handlers set explicitly with
/// `mln_fork_*_ipc_handler_set` are kept). Returns 0. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_set_process_handlers() -> c_int {
    guard(
        "mln_ipc_set_process_handlers",
        process::set_process_handlers,
    )
}

/// Extension (not in Melon): sets the largest frame accepted and sent, counted as Melon's
/// length field (4 + payload bytes). Default 64 MiB. A peer announcing a longer frame is
/// a protocol error: nothing reaches a handler, the connection is closed and handled as
/// the peer's death. A send of a longer payload returns -1. Returns 0, or -1 if `max` is
/// below 4 or above 4294967295.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_max_message_set(max: mln_size_t) -> c_int {
    guard("mln_ipc_max_message_set", || {
        if process::set_max_message(max) {
            0
        } else {
            -1
        }
    })
}
