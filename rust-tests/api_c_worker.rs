//! A Rust master (safe API) with C-API handlers in the same processes: a C worker handler
//! registered with `mln_ipc_handler_register`, and a C master handler that calls
//! `mln_ipc_master_send_prepare` inside a process started by `Builder::run`. The handlers
//! are `extern "C"` functions written in Rust, as a C program would write them in C.
//!
//! This is the one Rust API test that uses `unsafe`: calling the C functions and reading
//! their raw arguments needs it. Everything on the Rust side goes through the safe API.

mod common;

use core::ffi::c_void;
use mln_ipc::abi::{mln_event_t, mln_fork_t, mln_u32_t};
use mln_ipc::api::{Builder, Master, Worker, WorkerId};
use mln_ipc::capi::fork::{mln_ipc_master_send_prepare, mln_ipc_worker_send_prepare};
use mln_ipc::capi::ipc::mln_ipc_handler_register;
use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};

const HELLO: u32 = 4501; // Rust worker -> C master handler
const PING: u32 = 4502; // C master handler / Rust master -> C worker handler
const PONG: u32 = 4503; // C worker handler -> Rust master
const ROUNDS: usize = 5;

/// The pid the C master handler saw in its `f_ptr`.
static C_SAW_PID: AtomicI32 = AtomicI32::new(0);

/// C master handler for HELLO: answers with a PING through the C API.
unsafe extern "C" fn c_master_hello(
    ev: *mut mln_event_t,
    f_ptr: *mut c_void,
    _buf: *mut c_void,
    _len: mln_u32_t,
    _udata: *mut *mut c_void,
) {
    let f = f_ptr.cast::<mln_fork_t>();
    // SAFETY: in a master handler `f_ptr` is the sending child's `mln_fork_t`.
    C_SAW_PID.store(unsafe { (*f).pid }, Ordering::SeqCst);
    let mut msg = *b"abc";
    // SAFETY: `ev` and `f` as given to the handler; `msg` holds 3 readable bytes.
    let r = unsafe { mln_ipc_master_send_prepare(ev, PING, msg.as_mut_ptr().cast(), 3, f) };
    assert_eq!(r, 0);
}

/// C worker handler for PING: replies PONG with the payload reversed and, after it, a
/// counter kept in its `udata` slot (state across messages, the C way).
unsafe extern "C" fn c_worker_ping(
    ev: *mut mln_event_t,
    _f_ptr: *mut c_void,
    buf: *mut c_void,
    len: mln_u32_t,
    udata: *mut *mut c_void,
) {
    // SAFETY: `buf` holds `len` bytes during the call; `udata` is this type's slot.
    unsafe {
        let mut reply: Vec<u8> = core::slice::from_raw_parts(buf.cast::<u8>(), len as usize)
            .iter()
            .rev()
            .copied()
            .collect();
        let n = *udata as usize + 1;
        *udata = n as *mut c_void;
        reply.push(n as u8);
        let r = mln_ipc_worker_send_prepare(ev, PONG, reply.as_mut_ptr().cast(), reply.len());
        assert_eq!(r, 0);
    }
}

fn c_worker() {
    // SAFETY: plain registration of valid handler functions; data pointers are unused
    // (the worker's slot starts as NULL = a count of 0).
    let cb = unsafe {
        mln_ipc_handler_register(
            PING,
            None,
            Some(c_worker_ping),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    assert!(!cb.is_null());
    // SAFETY: as above.
    let cb = unsafe {
        mln_ipc_handler_register(
            HELLO,
            Some(c_master_hello),
            None,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    assert!(!cb.is_null());

    let pongs = Rc::new(RefCell::new(Vec::<Vec<u8>>::new()));
    let p = pongs.clone();
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| {
            w.send(HELLO, b"hi").expect("hello");
        })
        .on_master(PONG, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            assert_eq!(from.pid() as i32, C_SAW_PID.load(Ordering::SeqCst));
            assert!(m.as_raw_fork(from).is_some());
            p.borrow_mut().push(b.to_vec());
            if p.borrow().len() == ROUNDS {
                m.stop();
            } else {
                m.send_to(from, PING, b"xyz").expect("ping");
            }
        })
        .run()
        .expect("run");
    let got = pongs.borrow();
    assert_eq!(got.len(), ROUNDS);
    assert_eq!(got[0], b"cba\x01");
    for (i, g) in got.iter().enumerate().skip(1) {
        assert_eq!(g.as_slice(), [b'z', b'y', b'x', i as u8 + 1]);
    }
}

fn main() -> ExitCode {
    common::main(&[("rust_master_c_worker_handler", c_worker)])
}
