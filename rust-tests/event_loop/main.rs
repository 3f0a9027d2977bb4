//! The standalone event loop through its C API (`mln_ipc::capi::event`), with real pipes,
//! socketpairs and eventfds. Readiness is signalled by descriptors and timers, never by
//! sleeping; each test has a guard timer that breaks the loop and fails the test instead of
//! hanging if the behaviour under test never happens.
//!
//! This file holds the shared helpers and handlers; the tests are in the modules below,
//! one concern each. Signal handlers calling into a running loop are tested separately,
//! in a single-threaded process: `rust-tests/event_loop_signal.rs`.
#![cfg(feature = "standalone")]

use core::ffi::{c_int, c_void};
use core::ptr;
use mln_ipc::abi::*;
use mln_ipc::capi::event::*;
use std::sync::Mutex;

/// Tests that depend on descriptor numbers (reuse of a closed fd's number) must not race
/// with other tests opening descriptors, so every test holds this lock.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Ctx {
    log: Vec<String>,
    recv: u32,
    send: u32,
    timeouts: u32,
    iterations: u32,
    spins: u32,
    break_after_iterations: u32,
    guard_fired: bool,
    fds: Vec<c_int>,
    counts: Vec<u32>,
    total: u32,
    aux: c_int,
    handle: usize,
}

fn ctx<'a>(data: *mut c_void) -> &'a mut Ctx {
    // SAFETY: every test passes a `*mut Ctx` that outlives its dispatch.
    unsafe { &mut *data.cast::<Ctx>() }
}

fn vp(c: &mut Ctx) -> *mut c_void {
    (c as *mut Ctx).cast()
}

fn set_break(ev: *mut mln_event_t) {
    // SAFETY: what the C macro `mln_event_break_set` does.
    unsafe { (*ev).is_break = 1 };
}

fn pipe() -> (c_int, c_int) {
    let mut p = [0; 2];
    // SAFETY: valid out-array.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (p[0], p[1])
}

fn socketpair() -> (c_int, c_int) {
    let mut p = [0; 2];
    // SAFETY: valid out-array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            p.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    (p[0], p[1])
}

fn eventfd_ready() -> c_int {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::eventfd(1, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    fd
}

fn write1(fd: c_int) {
    // SAFETY: one byte from a valid buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}

fn read_some(fd: c_int) -> isize {
    let mut b = [0u8; 65536];
    // SAFETY: valid buffer of the given length.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) }
}

fn close(fd: c_int) {
    // SAFETY: test-owned descriptor.
    unsafe { libc::close(fd) };
}

fn nonblocking(fd: c_int) -> bool {
    // SAFETY: plain fcntl.
    unsafe { libc::fcntl(fd, libc::F_GETFL) & libc::O_NONBLOCK != 0 }
}

fn new_loop() -> *mut mln_event_t {
    // SAFETY: no preconditions.
    let ev = unsafe { mln_event_new() };
    assert!(!ev.is_null());
    ev
}

unsafe extern "C" fn guard_timer(ev: *mut mln_event_t, data: *mut c_void) {
    ctx(data).guard_fired = true;
    set_break(ev);
}

/// Breaks the loop after 10 s: only reached when a test's behaviour never happened.
fn arm_guard(ev: *mut mln_event_t, c: &mut Ctx) -> *mut mln_event_timer_t {
    // SAFETY: live loop.
    let t = unsafe { mln_event_timer_set(ev, 10_000, vp(c), Some(guard_timer)) };
    assert!(!t.is_null());
    t
}

unsafe extern "C" fn count_iterations(ev: *mut mln_event_t, data: *mut c_void) {
    let c = ctx(data);
    c.iterations += 1;
    if c.break_after_iterations != 0 && c.iterations >= c.break_after_iterations {
        set_break(ev);
    }
}

unsafe extern "C" fn spin(_: *mut mln_event_t, _: c_int, data: *mut c_void) {
    ctx(data).spins += 1;
}

/// An always-readable descriptor with a persistent RECV: keeps the loop iterating without
/// timing, so "did not fire" can be checked after a number of iterations.
fn add_spinner(ev: *mut mln_event_t, c: &mut Ctx, iterations: u32) -> c_int {
    let fd = eventfd_ready();
    c.break_after_iterations = iterations;
    // SAFETY: live loop, open fd.
    unsafe {
        assert_eq!(
            mln_event_fd_set(ev, fd, M_EV_RECV, -1, vp(c), Some(spin)),
            0
        );
        mln_event_callback_set(ev, Some(count_iterations), vp(c));
    }
    fd
}

// Handlers shared by several test modules.

unsafe extern "C" fn on_recv_read_and_break(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.recv += 1;
    assert_eq!(read_some(fd), 1);
    set_break(ev);
}

unsafe extern "C" fn count_recv(_: *mut mln_event_t, _: c_int, data: *mut c_void) {
    ctx(data).recv += 1;
}

unsafe extern "C" fn count_send(_: *mut mln_event_t, _: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.send += 1;
    c.log.push("send".into());
}

unsafe extern "C" fn log_recv(_: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.recv += 1;
    c.log.push("recv".into());
    read_some(fd);
}

unsafe extern "C" fn break_timer(ev: *mut mln_event_t, data: *mut c_void) {
    ctx(data).log.push("break".into());
    set_break(ev);
}

mod lifecycle;
mod readiness;
mod registration;
mod scale;
mod timeouts;
mod timers;
