//! The C API driven by arbitrary call sequences in one process (no fork: libFuzzer runs
//! many inputs per process). Each input byte pair is one call: register, unregister, handler
//! set, install, prepare, and sends of arbitrary lengths (NULL buffers and unframeable
//! lengths included) to a child that does not exist and in a process that is not a worker.
//! Every return value must be the documented one; nothing may panic or crash. Delivery to a
//! live worker is covered by rust-tests/capi_props.rs.
#![no_main]

use core::ffi::c_void;
use core::ptr::null_mut;
use libfuzzer_sys::fuzz_target;
use mln_ipc::abi::*;
use mln_ipc::capi::fork::*;
use mln_ipc::capi::ipc::*;
use std::sync::Mutex;

unsafe extern "C" fn h(
    _: *mut mln_event_t,
    _: *mut c_void,
    _: *mut c_void,
    _: u32,
    _: *mut *mut c_void,
) {
}

fn hd(present: bool) -> ipc_handler {
    if present {
        Some(h)
    } else {
        None
    }
}

/// Registrations still live, across inputs (addresses, as usize).
static LIVE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fuzz_target!(|data: &[u8]| {
    let mut live = LIVE.lock().unwrap();
    let mut buf = [0u8; 64];
    let mut fake: mln_fork_t = unsafe { core::mem::zeroed() };
    let ev = 0x10 as *mut mln_event_t; // never dereferenced: every send here is refused first
    for op in data.chunks(2) {
        let (a, b) = (op[0], op.get(1).copied().unwrap_or(0));
        let ty = 63000 + u32::from(b % 8);
        // SAFETY (whole block): C API calls with valid or deliberately invalid arguments.
        unsafe {
            match a % 9 {
                0 => {
                    let (m, w) = (b & 0x40 != 0, b & 0x80 != 0);
                    let cb = mln_ipc_handler_register(ty, hd(m), hd(w), null_mut(), null_mut());
                    assert_eq!(cb.is_null(), !m && !w);
                    if !cb.is_null() {
                        live.push(cb as usize);
                    }
                }
                1 => {
                    if live.is_empty() {
                        mln_ipc_handler_unregister(null_mut());
                    } else {
                        let i = usize::from(b) % live.len();
                        mln_ipc_handler_unregister(live.swap_remove(i) as *mut mln_ipc_cb_t);
                    }
                }
                2 => {
                    let r = mln_fork_master_ipc_handler_set(ty, hd(b & 0x80 != 0), null_mut());
                    assert_eq!(r, if b & 0x80 != 0 { 0 } else { -1 });
                }
                3 => {
                    let r = mln_fork_worker_ipc_handler_set(ty, hd(b & 0x80 != 0), null_mut());
                    assert_eq!(r, if b & 0x80 != 0 { 0 } else { -1 });
                }
                4 => assert_eq!(mln_ipc_set_process_handlers(), 0),
                5 => assert_eq!(mln_fork_prepare(), 0),
                6 => {
                    // Lengths: small, around 2^32, or anything; NULL or tiny buffers.
                    let len = match b % 4 {
                        0 => usize::from(b),
                        1 => u32::MAX as usize - usize::from(b % 8),
                        2 => usize::MAX - usize::from(b),
                        _ => 1usize << (b % 64),
                    };
                    let p = if b & 1 == 0 { null_mut() } else { buf.as_mut_ptr().cast() };
                    // No live child: always refused, and the buffer is never read.
                    assert_eq!(mln_ipc_master_send_prepare(ev, 1, p, len, &mut fake), -1);
                    assert_eq!(mln_ipc_master_send_prepare(ev, 1, p, len, null_mut()), -1);
                    assert_eq!(mln_ipc_master_send_prepare(null_mut(), 1, p, len, &mut fake), -1);
                }
                7 => {
                    // Not a worker: refused.
                    let p = buf.as_mut_ptr().cast();
                    assert_eq!(mln_ipc_worker_send_prepare(ev, ty, p, usize::from(b)), -1);
                }
                _ => {
                    let max = match b % 4 {
                        0 => usize::from(b),
                        1 => 64 << 20,
                        2 => u32::MAX as usize + usize::from(b),
                        _ => 4,
                    };
                    let ok = (4..=u32::MAX as usize).contains(&max);
                    assert_eq!(mln_ipc_max_message_set(max), if ok { 0 } else { -1 });
                }
            }
        }
    }
});
