//! Descriptors through the channel (extensions, not in Melon): sending a frame with
//! descriptors, taking them in a handler, the per-peer limit. Both builds.

use crate::abi::*;
use crate::capi::fork::{payload, result};
use crate::capi::{fail, guard, guard_send, non_null};
use crate::process;
use core::ffi::{c_int, c_void};

/// The most descriptors one frame carries (the kernel's SCM_MAX_FD).
const MAX_FDS: mln_u32_t = 253;

/// The descriptors of a send, checked: NULL with `nfds` > 0, or more than 253, is EINVAL.
///
/// # Safety
/// `fds` is NULL or points at `nfds` readable ints.
unsafe fn fd_array<'a>(fds: *const c_int, nfds: mln_u32_t) -> Result<&'a [c_int], c_int> {
    if nfds > MAX_FDS || (fds.is_null() && nfds > 0) {
        return Err(libc::EINVAL);
    }
    if nfds == 0 {
        return Ok(&[]);
    }
    // SAFETY: non-NULL; the caller guarantees `nfds` readable descriptors.
    Ok(unsafe { core::slice::from_raw_parts(fds, nfds as usize) })
}

/// Extension (not in Melon): as `mln_ipc_master_send_prepare`, plus `nfds` descriptors
/// (0 <= nfds <= 253) that arrive with this frame and no other. The library duplicates
/// them at once (close-on-exec): the caller keeps and closes its own. Returns 0, or -1 with
/// errno as `mln_ipc_master_send_prepare`, or EINVAL (`fds` NULL with `nfds` > 0, `nfds` >
/// 253), EBADF (a descriptor in the array is not open), EMFILE (no descriptor left for the
/// duplicates), EAGAIN (also: the peer's descriptor limit, `mln_ipc_fds_limit_set`; or
/// called from a signal handler that interrupted the library); nothing is queued then.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_master_send_fds_prepare(
    ev: *mut mln_event_t,
    r#type: mln_u32_t,
    buf: *mut c_void,
    len: mln_size_t,
    fds: *const c_int,
    nfds: mln_u32_t,
    f_child: *mut mln_fork_t,
) -> c_int {
    guard_send("mln_ipc_master_send_fds_prepare", || {
        non_null!(ev);
        non_null!(f_child);
        // SAFETY: per the caller's contract for `buf`/`len` and `fds`/`nfds`.
        let (p, fds) = match unsafe { (payload(buf, len), fd_array(fds, nfds)) } {
            (Ok(p), Ok(f)) => (p, f),
            (Err(e), _) | (_, Err(e)) => return fail(e),
        };
        result(process::send_fds_to_child(ev, f_child, r#type, p, fds))
    })
}

/// Extension (not in Melon): as `mln_ipc_worker_send_prepare`, with descriptors as
/// `mln_ipc_master_send_fds_prepare`.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_worker_send_fds_prepare(
    ev: *mut mln_event_t,
    r#type: mln_u32_t,
    buf: *mut c_void,
    len: mln_size_t,
    fds: *const c_int,
    nfds: mln_u32_t,
) -> c_int {
    guard_send("mln_ipc_worker_send_fds_prepare", || {
        non_null!(ev);
        // SAFETY: as above.
        let (p, fds) = match unsafe { (payload(buf, len), fd_array(fds, nfds)) } {
            (Ok(p), Ok(f)) => (p, f),
            (Err(e), _) | (_, Err(e)) => return fail(e),
        };
        result(process::send_fds_to_master(ev, r#type, p, fds))
    })
}

/// Extension (not in Melon): inside a handler, how many descriptors came with the frame
/// being handled (taking some does not change it); 0 outside a handler.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_fds_count() -> mln_u32_t {
    guard_count("mln_ipc_fds_count", process::fds::count)
}

/// Extension (not in Melon): inside a handler, the descriptor that was the sender's
/// `fds[i]`, received close-on-exec; the caller owns it from now on (those not taken are
/// closed when the handler returns). -1 with ENOENT if there is no such descriptor, it was
/// taken already, or no handler runs.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_fd_take(i: mln_u32_t) -> c_int {
    guard("mln_ipc_fd_take", || match process::fds::take_raw(i) {
        Some(fd) => fd,
        None => fail(libc::ENOENT),
    })
}

/// Extension (not in Melon): inside a handler, 1 if the kernel dropped some of the frame's
/// descriptors (this process was at its descriptor limit: fewer came than were sent), 0
/// otherwise (and outside a handler).
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_fds_truncated() -> c_int {
    guard("mln_ipc_fds_truncated", || {
        c_int::from(process::fds::truncated())
    })
}

/// Extension (not in Melon): per peer, the most descriptors queued and not yet written;
/// default 1,024, 0 = unlimited. A send whose descriptors would go beyond it returns -1
/// with EAGAIN, except that a peer with none queued always takes one frame's; the writable
/// handler fires once the peer is down to half of it. Returns 0. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn mln_ipc_fds_limit_set(n: mln_u32_t) -> c_int {
    guard("mln_ipc_fds_limit_set", || {
        process::set_fds_limit(n as usize);
        0
    })
}

/// `guard` for a function whose every value is valid (a count): 0 after a panic.
fn guard_count(name: &str, f: impl FnOnce() -> u32) -> mln_u32_t {
    let mut out = 0;
    guard(name, || {
        out = f();
    });
    out
}
