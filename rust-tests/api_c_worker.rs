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

const STOP: u32 = 4511; // Rust worker -> Rust master handler, which stops
const AFTER: u32 = 4512; // Rust worker -> C master handler, behind STOP

/// Calls of the C master handler for AFTER.
static C_AFTER_CALLS: AtomicI32 = AtomicI32::new(0);

unsafe extern "C" fn c_master_after(
    _ev: *mut mln_event_t,
    _f_ptr: *mut c_void,
    _buf: *mut c_void,
    _len: mln_u32_t,
    _udata: *mut *mut c_void,
) {
    C_AFTER_CALLS.fetch_add(1, Ordering::SeqCst);
}

/// `Master::stop` holds for C handlers too: frames behind the one whose Rust handler
/// stopped (same read, same receive pass) do not reach the C handler of their type.
fn c_handler_after_stop() {
    // SAFETY: plain registration of a valid handler function; no data.
    let cb = unsafe {
        mln_ipc_handler_register(
            AFTER,
            Some(c_master_after),
            None,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    assert!(!cb.is_null());
    let stops = Rc::new(RefCell::new(0));
    let s = stops.clone();
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| {
            // One handler, one flush: the three frames arrive together.
            w.send(STOP, []).expect("stop");
            w.send(AFTER, []).expect("after");
            w.send(AFTER, []).expect("after");
        })
        .on_master(STOP, move |m: &mut Master, _: WorkerId, _: &[u8]| {
            *s.borrow_mut() += 1;
            m.stop();
        })
        .run()
        .expect("run");
    assert_eq!(*stops.borrow(), 1);
    assert_eq!(C_AFTER_CALLS.load(Ordering::SeqCst), 0);
}

const HELLO2: u32 = 4521;
const QUIT: u32 = 4522;

/// Helper of `c_stdio_printed_once`: the master prints with C's stdio (fully buffered on
/// a pipe) without flushing, then a worker restart forks a replacement.
fn sub_c_print_then_restart() {
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| w.send(HELLO2, []).expect("hello"))
        .on_worker(QUIT, |w: &mut Worker, _: &[u8]| w.stop())
        .on_master(HELLO2, {
            let mut first = true;
            move |m: &mut Master, from: WorkerId, _: &[u8]| {
                if first {
                    first = false;
                    // SAFETY: printf with a constant format without conversions.
                    unsafe { libc::printf(c"<c-unflushed>\n".as_ptr()) };
                    m.send_to(from, QUIT, []).expect("quit");
                } else {
                    m.stop();
                }
            }
        })
        .run()
        .expect("run");
    // SAFETY: flushing C's stdio has no preconditions.
    unsafe { libc::fflush(core::ptr::null_mut()) };
}

/// What C's stdio held in the master before a worker restart is printed once.
fn c_stdio_printed_once() {
    let out = common::output_of("sub_c_print_then_restart", &[]);
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s.matches("<c-unflushed>").count(), 1, "stdout: {s:?}");
}

const BYE: u32 = 4531;

/// Registered with `atexit` in the worker: cleanup that takes a while after the channel
/// closed (a C library's, say), then says it finished.
extern "C" fn slow_cleanup() {
    std::thread::sleep(std::time::Duration::from_millis(300));
    let line = format!("<cleanup done {}>\n", std::process::id());
    // SAFETY: writing a valid buffer to stdout.
    unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
}

/// Helper of `stop_gets_to_exit`: one worker registers a slow `atexit` cleanup and stops.
fn sub_slow_cleanup() {
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| {
            // SAFETY: registering a valid function with no preconditions.
            assert_eq!(unsafe { libc::atexit(slow_cleanup) }, 0);
            w.send(HELLO2, []).expect("hello");
        })
        .on_worker(BYE, |w: &mut Worker, _: &[u8]| w.stop())
        .on_master(HELLO2, {
            let mut first = true;
            move |m: &mut Master, from: WorkerId, _: &[u8]| {
                if first {
                    first = false;
                    println!("stopping {}", from.pid());
                    m.send_to(from, BYE, []).expect("bye");
                } else {
                    m.stop();
                }
            }
        })
        .run()
        .expect("run");
}

/// `Worker::stop` closes the channel and then exits; the master waits for that exit
/// (bounded) before it starts the replacement, and does not kill a worker that is still
/// running its exit-time cleanup.
fn stop_gets_to_exit() {
    let out = common::output_of("sub_slow_cleanup", &[("MLN_IPC_LOG", "info")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let pid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stopping "))
        .expect("the stopped pid");
    assert!(
        stdout.contains(&format!("<cleanup done {pid}>")),
        "{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("SIGKILL"), "{stderr}");
    assert!(stderr.contains(" exited with status 0 ("), "{stderr}");
}

const P_HELLO: u32 = 4541; // the spawned program -> master: its pid
const W_HELLO: u32 = 4542; // a plain worker -> master

/// The spawned program (this binary with `--speak`): one frame on the descriptor named by
/// its last argument, written by hand in the wire format, then exit.
fn speak() -> ExitCode {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let fd: i32 = std::env::args()
        .next_back()
        .and_then(|a| a.parse().ok())
        .expect("descriptor argument");
    // SAFETY: the descriptor the master handed us; we own it from here on.
    let mut s = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    let mut frame = 8u32.to_ne_bytes().to_vec();
    frame.extend(P_HELLO.to_ne_bytes());
    frame.extend(std::process::id().to_le_bytes());
    s.write_all(&frame).expect("write");
    ExitCode::SUCCESS
}

/// A supervised program that exits is executed again: its replacement is the program
/// (it says hello the program's way), not a plain worker running the worker routine.
fn program_restart_execs() {
    let exe = std::env::current_exe().expect("current_exe");
    let mut pids = Vec::new();
    Builder::new()
        .workers(0)
        .spawn(&exe, ["--speak"], true)
        .on_worker_start(|w: &mut Worker| w.send(W_HELLO, []).expect("hello"))
        .on_master(W_HELLO, |_: &mut Master, from: WorkerId, _: &[u8]| {
            panic!("{from} runs the worker routine instead of the program")
        })
        .on_master(P_HELLO, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            assert_eq!(from.index(), 0);
            assert_eq!(common::u32_at(b, 0), Some(from.pid()));
            pids.push(from.pid());
            if pids.len() == 2 {
                assert_ne!(pids[0], pids[1]);
                m.stop();
            }
        })
        .run()
        .expect("run");
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--speak") {
        return speak();
    }
    common::main(&[
        ("program_restart_execs", program_restart_execs),
        ("rust_master_c_worker_handler", c_worker),
        ("c_handler_after_stop", c_handler_after_stop),
        ("sub_c_print_then_restart", sub_c_print_then_restart),
        ("c_stdio_printed_once", c_stdio_printed_once),
        ("sub_slow_cleanup", sub_slow_cleanup),
        ("stop_gets_to_exit", stop_gets_to_exit),
    ])
}
