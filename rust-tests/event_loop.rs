//! The standalone event loop through its C API (`mln_ipc::capi::event`), with real pipes,
//! socketpairs and eventfds. Readiness is signalled by descriptors and timers, never by
//! sleeping; each test has a guard timer that breaks the loop and fails the test instead of
//! hanging if the behaviour under test never happens.
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

// ---------------------------------------------------------------------------------------

unsafe extern "C" fn log_timer(ev: *mut mln_event_t, data: *mut c_void) {
    let (c, tag) = *data.cast::<(*mut Ctx, &str)>();
    let c = &mut *c;
    c.log.push(tag.to_string());
    if tag == "last" {
        set_break(ev);
    }
}

#[test]
fn timers_fire_in_deadline_order_and_cancel_works() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let cp: *mut Ctx = &mut c;
    let mut tags: Vec<(*mut Ctx, &str)> = ["30", "10", "20", "0", "cancelled", "last"]
        .iter()
        .map(|t| (cp, *t))
        .collect();
    let ms = [30u32, 10, 20, 0, 5, 50];
    // SAFETY: live loop; `tags` outlives the dispatch.
    unsafe {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                mln_event_timer_set(
                    ev,
                    ms[i],
                    (&mut tags[i] as *mut (*mut Ctx, &str)).cast(),
                    Some(log_timer),
                )
            })
            .collect();
        assert!(handles.iter().all(|h| !h.is_null()));
        mln_event_timer_cancel(ev, handles[4]);
        mln_event_timer_cancel(ev, ptr::null_mut());
        mln_event_dispatch(ev);
        assert_eq!(c.log, ["0", "10", "20", "30", "last"]);
        // Handles of fired or cancelled timers are harmless (Melon: double free).
        mln_event_timer_cancel(ev, handles[0]);
        mln_event_timer_cancel(ev, handles[4]);
        mln_event_free(ev);
    }
}

unsafe extern "C" fn on_recv_read_and_break(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.recv += 1;
    assert_eq!(read_some(fd), 1);
    set_break(ev);
}

#[test]
fn recv_fires_when_data_arrives() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (r, w) = pipe();
    // SAFETY: live loop, open descriptors, `c` outlives the dispatch.
    unsafe {
        arm_guard(ev, &mut c);
        assert_eq!(
            mln_event_fd_set(
                ev,
                r,
                M_EV_RECV,
                -1,
                vp(&mut c),
                Some(on_recv_read_and_break)
            ),
            0
        );
        write1(w);
        mln_event_dispatch(ev);
        assert!(!c.guard_fired);
        assert_eq!(c.recv, 1);
        mln_event_free(ev);
    }
    close(r);
    close(w);
}

unsafe extern "C" fn count_recv(_: *mut mln_event_t, _: c_int, data: *mut c_void) {
    ctx(data).recv += 1;
}
unsafe extern "C" fn count_send(_: *mut mln_event_t, _: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.send += 1;
    c.log.push("send".into());
}

#[test]
fn oneshot_fires_once_while_level_stays_ready() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (r, w) = pipe();
    write1(w); // never read: level-triggered interest would fire every iteration
               // SAFETY: as above.
    unsafe {
        arm_guard(ev, &mut c);
        assert_eq!(
            mln_event_fd_set(
                ev,
                r,
                M_EV_RECV | M_EV_ONESHOT,
                -1,
                vp(&mut c),
                Some(count_recv)
            ),
            0
        );
        let sp = add_spinner(ev, &mut c, 20);
        mln_event_dispatch(ev);
        assert!(!c.guard_fired);
        assert_eq!(c.recv, 1);
        assert!(c.spins >= 18);
        // Re-set, it fires once more.
        (*ev).is_break = 0;
        c.iterations = 0;
        assert_eq!(
            mln_event_fd_set(
                ev,
                r,
                M_EV_RECV | M_EV_ONESHOT,
                -1,
                vp(&mut c),
                Some(count_recv)
            ),
            0
        );
        mln_event_dispatch(ev);
        assert_eq!(c.recv, 2);
        mln_event_free(ev);
        close(sp);
    }
    close(r);
    close(w);
}

unsafe extern "C" fn log_recv(_: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.recv += 1;
    c.log.push("recv".into());
    read_some(fd);
}

#[test]
fn append_keeps_other_direction_and_replace_drops_it() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (a, b) = socketpair();
    // SAFETY: as above.
    unsafe {
        arm_guard(ev, &mut c);
        assert_eq!(
            mln_event_fd_set(ev, a, M_EV_RECV, -1, vp(&mut c), Some(log_recv)),
            0
        );
        assert_eq!(
            mln_event_fd_set(
                ev,
                a,
                M_EV_SEND | M_EV_APPEND,
                M_EV_UNMODIFIED,
                vp(&mut c),
                Some(count_send)
            ),
            0
        );
        write1(b);
        let sp = add_spinner(ev, &mut c, 4);
        mln_event_dispatch(ev);
        assert!(!c.guard_fired);
        // Iteration 2 handles what the first wait reported: RECV before SEND.
        assert_eq!(c.log[..2], ["recv", "send"]);
        assert_eq!(c.recv, 1);
        assert_eq!(c.send, 2); // SEND is persistent and the socket stays writable

        // A replace with SEND alone drops RECV.
        (*ev).is_break = 0;
        c.iterations = 0;
        c.break_after_iterations = 4;
        assert_eq!(
            mln_event_fd_set(ev, a, M_EV_SEND, -1, vp(&mut c), Some(count_send)),
            0
        );
        write1(b);
        mln_event_dispatch(ev);
        assert_eq!(c.recv, 1);
        assert_eq!(c.send, 5);
        mln_event_free(ev);
        close(sp);
    }
    close(a);
    close(b);
}

#[test]
fn nonblock_block_flags() {
    let _s = serial();
    let ev = new_loop();
    let (a, b) = socketpair();
    let n = ptr::null_mut();
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            mln_event_fd_set(ev, a, M_EV_RECV | M_EV_NONBLOCK, -1, n, Some(count_recv)),
            0
        );
        assert!(nonblocking(a));
        assert_eq!(
            mln_event_fd_set(ev, a, M_EV_SEND | M_EV_APPEND, -1, n, Some(count_send)),
            0
        );
        assert!(
            nonblocking(a),
            "APPEND without NONBLOCK/BLOCK leaves the mode"
        );
        assert_eq!(
            mln_event_fd_set(
                ev,
                a,
                M_EV_SEND | M_EV_APPEND | M_EV_BLOCK,
                -1,
                n,
                Some(count_send)
            ),
            0
        );
        assert!(!nonblocking(a));
        assert_eq!(
            mln_event_fd_set(
                ev,
                a,
                M_EV_SEND | M_EV_APPEND | M_EV_NONBLOCK,
                -1,
                n,
                Some(count_send)
            ),
            0
        );
        assert!(nonblocking(a));
        assert_eq!(
            mln_event_fd_set(ev, a, M_EV_RECV, -1, n, Some(count_recv)),
            0
        );
        assert!(!nonblocking(a), "a replace without NONBLOCK clears it");
        // New registration with APPEND but no NONBLOCK: cleared as well.
        libc::fcntl(b, libc::F_SETFL, libc::O_NONBLOCK);
        assert_eq!(
            mln_event_fd_set(ev, b, M_EV_RECV | M_EV_APPEND, -1, n, Some(count_recv)),
            0
        );
        assert!(!nonblocking(b));
        // A new descriptor that is not open is refused.
        close(b);
        assert_eq!(mln_event_fd_set(ev, b, M_EV_CLR, -1, n, None), 0);
        assert_eq!(
            mln_event_fd_set(ev, b, M_EV_RECV, -1, n, Some(count_recv)),
            -1
        );
        mln_event_free(ev);
    }
    close(a);
}

unsafe extern "C" fn clr_self(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    ctx(data).recv += 1;
    assert_eq!(
        mln_event_fd_set(ev, fd, M_EV_CLR, -1, ptr::null_mut(), None),
        0
    );
}

#[test]
fn clr_silences_descriptor_and_skips_remaining_handlers() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (r, w) = pipe();
    let (a, b) = socketpair();
    write1(w);
    write1(b);
    // SAFETY: as above.
    unsafe {
        arm_guard(ev, &mut c);
        // Cleared before dispatch: never fires.
        assert_eq!(
            mln_event_fd_set(ev, r, M_EV_RECV, -1, vp(&mut c), Some(count_send)),
            0
        );
        assert_eq!(
            mln_event_fd_set(ev, r, M_EV_CLR, -1, ptr::null_mut(), None),
            0
        );
        assert_eq!(
            mln_event_fd_set(ev, r, M_EV_CLR, -1, ptr::null_mut(), None),
            0
        );
        // RECV handler clears its fd: the SEND handler that fired with it must not run.
        assert_eq!(
            mln_event_fd_set(ev, a, M_EV_RECV | M_EV_SEND, -1, vp(&mut c), Some(clr_self)),
            0
        );
        assert_eq!(
            mln_event_fd_set(
                ev,
                a,
                M_EV_SEND | M_EV_APPEND,
                -1,
                vp(&mut c),
                Some(count_send)
            ),
            0
        );
        let sp = add_spinner(ev, &mut c, 10);
        mln_event_dispatch(ev);
        assert!(!c.guard_fired);
        assert_eq!(c.recv, 1);
        assert_eq!(c.send, 0);
        mln_event_free(ev);
        close(sp);
    }
    for fd in [r, w, a, b] {
        close(fd);
    }
}

#[test]
fn clr_of_closed_descriptor_succeeds() {
    let _s = serial();
    let ev = new_loop();
    let (r, w) = pipe();
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            mln_event_fd_set(ev, r, M_EV_RECV, -1, ptr::null_mut(), Some(count_recv)),
            0
        );
        close(r);
        assert_eq!(
            mln_event_fd_set(ev, r, M_EV_CLR, -1, ptr::null_mut(), None),
            0
        );
        mln_event_free(ev);
    }
    close(w);
}

unsafe extern "C" fn on_timeout(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.timeouts += 1;
    c.fds.push(fd);
    set_break(ev);
}
unsafe extern "C" fn break_timer(ev: *mut mln_event_t, data: *mut c_void) {
    ctx(data).log.push("break".into());
    set_break(ev);
}

#[test]
fn fd_timeout_fires_once_unless_activated() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (r, w) = pipe();
    let (r2, w2) = pipe();
    let (r3, w3) = pipe();
    // SAFETY: as above.
    unsafe {
        arm_guard(ev, &mut c);
        // Idle fd with a 20 ms timeout: the timeout handler runs with its fd.
        assert_eq!(
            mln_event_fd_set(ev, r, M_EV_RECV, 20, vp(&mut c), Some(count_recv)),
            0
        );
        mln_event_fd_timeout_handler_set(ev, r, vp(&mut c), Some(on_timeout));
        // Activated before its deadline: the timeout is gone.
        assert_eq!(
            mln_event_fd_set(ev, r2, M_EV_RECV, 40, vp(&mut c), Some(log_recv)),
            0
        );
        mln_event_fd_timeout_handler_set(ev, r2, vp(&mut c), Some(on_timeout));
        write1(w2);
        // Timeout removed by M_EV_UNLIMITED, then kept by M_EV_UNMODIFIED.
        assert_eq!(
            mln_event_fd_set(ev, r3, M_EV_RECV, 5, vp(&mut c), Some(count_recv)),
            0
        );
        mln_event_fd_timeout_handler_set(ev, r3, vp(&mut c), Some(on_timeout));
        assert_eq!(
            mln_event_fd_set(
                ev,
                r3,
                M_EV_RECV | M_EV_APPEND,
                M_EV_UNLIMITED,
                vp(&mut c),
                Some(count_recv)
            ),
            0
        );
        assert_eq!(
            mln_event_fd_set(
                ev,
                r3,
                M_EV_RECV,
                M_EV_UNMODIFIED,
                vp(&mut c),
                Some(count_recv)
            ),
            0
        );
        mln_event_dispatch(ev);
        assert!(!c.guard_fired);
        assert_eq!(c.timeouts, 1);
        assert_eq!(c.fds, [r]);
        assert_eq!(c.recv, 1); // r2's activation
                               // Fires once only: nothing more within 60 ms, and r is still registered.
        (*ev).is_break = 0;
        mln_event_timer_set(ev, 60, vp(&mut c), Some(break_timer));
        mln_event_dispatch(ev);
        assert_eq!(c.timeouts, 1);
        (*ev).is_break = 0;
        write1(w);
        mln_event_fd_set(
            ev,
            r,
            M_EV_RECV | M_EV_APPEND,
            M_EV_UNMODIFIED,
            vp(&mut c),
            Some(on_recv_read_and_break),
        );
        mln_event_dispatch(ev);
        assert!(!c.guard_fired);
        mln_event_free(ev);
    }
    for fd in [r, w, r2, w2, r3, w3] {
        close(fd);
    }
}

#[test]
fn callback_runs_once_per_iteration_before_handlers() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    // SAFETY: as above.
    unsafe {
        arm_guard(ev, &mut c);
        let sp = add_spinner(ev, &mut c, 10);
        mln_event_dispatch(ev);
        // Handlers of what a wait reported run in the next iteration, after the callback.
        assert_eq!(c.iterations, 10);
        assert_eq!(c.spins, 8); // iterations 2..=9

        // NULL removes the callback.
        mln_event_callback_set(ev, None, ptr::null_mut());
        (*ev).is_break = 0;
        mln_event_timer_set(ev, 1, vp(&mut c), Some(break_timer));
        mln_event_dispatch(ev);
        assert_eq!(c.iterations, 10);
        mln_event_free(ev);
        close(sp);
    }
}

unsafe extern "C" fn break_in_recv(ev: *mut mln_event_t, _: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.recv += 1;
    set_break(ev);
}

#[test]
fn break_leaves_dispatch_and_is_not_reset() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (a, b) = socketpair();
    write1(b);
    // SAFETY: as above.
    unsafe {
        arm_guard(ev, &mut c);
        let sp = add_spinner(ev, &mut c, 0);
        // RECV breaks: the SEND handler that fired with it is not run in this dispatch.
        assert_eq!(
            mln_event_fd_set(
                ev,
                a,
                M_EV_RECV | M_EV_ONESHOT,
                -1,
                vp(&mut c),
                Some(break_in_recv)
            ),
            0
        );
        assert_eq!(
            mln_event_fd_set(
                ev,
                a,
                M_EV_SEND | M_EV_ONESHOT | M_EV_APPEND,
                -1,
                vp(&mut c),
                Some(count_send)
            ),
            0
        );
        mln_event_dispatch(ev);
        assert_eq!((c.recv, c.send), (1, 0));
        assert_eq!((*ev).is_break, 1);
        let it = c.iterations;
        mln_event_dispatch(ev); // break still set: returns at once
        assert_eq!(c.iterations, it);
        // After a reset, the pending one-shot SEND (already reported) still runs.
        (*ev).is_break = 0;
        c.break_after_iterations = it + 2;
        mln_event_dispatch(ev);
        assert_eq!(c.send, 1);
        assert!(!c.guard_fired);
        mln_event_free(ev);
        close(sp);
    }
    close(a);
    close(b);
}

unsafe extern "C" fn new_fd_recv(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.log.push(format!("new {fd}"));
    assert_eq!(read_some(fd), 1);
    set_break(ev);
}

unsafe extern "C" fn clr_close_reuse(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.recv += 1;
    // Close first, then CLR (DEL on a closed fd fails and must be ignored).
    close(fd);
    assert_eq!(
        mln_event_fd_set(ev, fd, M_EV_CLR, -1, ptr::null_mut(), None),
        0
    );
    let (r, w) = pipe();
    assert_eq!(r, fd, "the lowest free number is reused");
    c.aux = w;
    assert_eq!(
        mln_event_fd_set(ev, r, M_EV_RECV, -1, data, Some(new_fd_recv)),
        0
    );
    write1(w);
}

#[test]
fn handler_closes_own_fd_and_same_number_is_reused() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (a, b) = socketpair();
    write1(b);
    // SAFETY: as above.
    unsafe {
        arm_guard(ev, &mut c);
        assert_eq!(
            mln_event_fd_set(ev, a, M_EV_RECV, -1, vp(&mut c), Some(clr_close_reuse)),
            0
        );
        // SEND fires together with RECV but must not run on the new descriptor.
        assert_eq!(
            mln_event_fd_set(
                ev,
                a,
                M_EV_SEND | M_EV_APPEND,
                -1,
                vp(&mut c),
                Some(count_send)
            ),
            0
        );
        mln_event_dispatch(ev);
        assert!(!c.guard_fired);
        assert_eq!(c.recv, 1);
        assert_eq!(c.send, 0);
        assert_eq!(c.log, [format!("new {a}")]);
        mln_event_free(ev);
    }
    close(a);
    close(b);
    close(c.aux);
}

unsafe extern "C" fn d10_recv(_: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.recv += 1;
    while read_some(fd) > 0 {}
    match c.recv {
        // More data while SEND is still blocked by the full buffer: RECV must fire again.
        1 => write1(c.aux),
        // Now let the peer drain: SEND becomes possible and must fire.
        2 => while read_some(c.aux) > 0 {},
        _ => {}
    }
}
unsafe extern "C" fn d10_send(ev: *mut mln_event_t, _: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.send += 1;
    set_break(ev);
}

/// Spec D10: persistent RECV plus an APPENDed one-shot SEND on one fd; Melon stalls when
/// only the RECV side fires.
#[test]
fn d10_persistent_recv_with_oneshot_send_never_stalls() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (a, b) = socketpair();
    // SAFETY: as above.
    unsafe {
        libc::fcntl(b, libc::F_SETFL, libc::O_NONBLOCK);
        c.aux = b;
        arm_guard(ev, &mut c);
        assert_eq!(
            mln_event_fd_set(
                ev,
                a,
                M_EV_RECV | M_EV_NONBLOCK,
                -1,
                vp(&mut c),
                Some(d10_recv)
            ),
            0
        );
        // Fill a's send buffer so that SEND cannot fire yet.
        let chunk = [0u8; 65536];
        while libc::write(a, chunk.as_ptr().cast(), chunk.len()) > 0 {}
        assert_eq!(
            mln_event_fd_set(
                ev,
                a,
                M_EV_SEND | M_EV_ONESHOT | M_EV_APPEND,
                -1,
                vp(&mut c),
                Some(d10_send)
            ),
            0
        );
        write1(b);
        mln_event_dispatch(ev);
        assert!(!c.guard_fired, "stalled: recv {} send {}", c.recv, c.send);
        assert!(c.recv >= 2);
        assert_eq!(c.send, 1);
        mln_event_free(ev);
    }
    close(a);
    close(b);
}

unsafe extern "C" fn flush_timer(_: *mut mln_event_t, data: *mut c_void) {
    let c = ctx(data);
    c.log.push(format!("flush at iteration {}", c.iterations));
}
unsafe extern "C" fn recv_sets_zero_timer(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    read_some(fd);
    c.log.push(format!("recv at iteration {}", c.iterations));
    assert!(!mln_event_timer_set(ev, 0, data, Some(flush_timer)).is_null());
}

#[test]
fn zero_timer_from_fd_handler_runs_in_same_iteration() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (r, w) = pipe();
    write1(w);
    // SAFETY: as above.
    unsafe {
        arm_guard(ev, &mut c);
        assert_eq!(
            mln_event_fd_set(ev, r, M_EV_RECV, -1, vp(&mut c), Some(recv_sets_zero_timer)),
            0
        );
        let sp = add_spinner(ev, &mut c, 3);
        mln_event_dispatch(ev);
        assert_eq!(c.log, ["recv at iteration 2", "flush at iteration 2"]);
        mln_event_free(ev);
        close(sp);
    }
    close(r);
    close(w);
}

unsafe extern "C" fn counted_timer(ev: *mut mln_event_t, data: *mut c_void) {
    let (c, i) = *data.cast::<(*mut Ctx, usize)>();
    let c = &mut *c;
    c.counts[i] += 1;
    c.total += 1;
    if c.total == c.break_after_iterations {
        set_break(ev);
    }
}

#[test]
fn hundred_thousand_timers() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    const N: usize = 100_000;
    c.counts = vec![0; N];
    let cp: *mut Ctx = &mut c;
    let mut datas: Vec<(*mut Ctx, usize)> = (0..N).map(|i| (cp, i)).collect();
    // SAFETY: as above; `datas` outlives the dispatch.
    unsafe {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let p = (&mut datas[i] as *mut (*mut Ctx, usize)).cast();
                mln_event_timer_set(ev, (i % 50) as u32, p, Some(counted_timer))
            })
            .collect();
        for h in handles.iter().step_by(3) {
            mln_event_timer_cancel(ev, *h);
        }
        let cancelled = N.div_ceil(3);
        (*cp).break_after_iterations = (N - cancelled) as u32;
        arm_guard(ev, &mut *cp);
        mln_event_dispatch(ev);
        let c = &*cp;
        assert!(!c.guard_fired);
        for (i, n) in c.counts.iter().enumerate() {
            assert_eq!(*n, u32::from(i % 3 != 0), "timer {i}");
        }
        mln_event_free(ev);
    }
}

unsafe extern "C" fn count_fd(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.counts[fd as usize] += 1;
    c.total += 1;
    if c.total as usize == c.fds.len() {
        set_break(ev);
    }
}

#[test]
fn ten_thousand_descriptors() {
    let _s = serial();
    const N: usize = 10_000;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer; raising the soft limit up to the hard one is allowed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(
        lim.rlim_cur as usize > N + 100,
        "RLIMIT_NOFILE too low for this test"
    );
    let ev = new_loop();
    let mut c = Ctx::default();
    c.fds = (0..N).map(|_| eventfd_ready()).collect();
    c.counts = vec![0; *c.fds.iter().max().unwrap() as usize + 1];
    // SAFETY: as above.
    unsafe {
        for &fd in &c.fds.clone() {
            assert_eq!(
                mln_event_fd_set(
                    ev,
                    fd,
                    M_EV_RECV | M_EV_ONESHOT,
                    -1,
                    vp(&mut c),
                    Some(count_fd)
                ),
                0
            );
        }
        arm_guard(ev, &mut c);
        mln_event_dispatch(ev);
        assert!(!c.guard_fired);
        assert!(c.fds.iter().all(|&fd| c.counts[fd as usize] == 1));
        for &fd in &c.fds {
            assert_eq!(
                mln_event_fd_set(ev, fd, M_EV_CLR, -1, ptr::null_mut(), None),
                0
            );
            close(fd);
        }
        mln_event_free(ev);
    }
}

unsafe extern "C" fn must_not_fire(_: *mut mln_event_t, data: *mut c_void) {
    ctx(data).log.push("overflowed".into());
}
unsafe extern "C" fn fd_must_not_time_out(_: *mut mln_event_t, _: c_int, data: *mut c_void) {
    ctx(data).log.push("fd overflowed".into());
}

#[test]
fn large_timeouts_do_not_overflow() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (r, w) = pipe();
    let (r2, w2) = pipe();
    // SAFETY: as above.
    unsafe {
        // Melon's 32-bit `msec * 1000` wraps just above these values and fires at once.
        for ms in [4_294_968u32, 8_589_935, u32::MAX] {
            assert!(!mln_event_timer_set(ev, ms, vp(&mut c), Some(must_not_fire)).is_null());
        }
        for (fd, ms) in [(r, 2_147_484), (r2, c_int::MAX)] {
            assert_eq!(
                mln_event_fd_set(ev, fd, M_EV_RECV, ms, vp(&mut c), Some(count_recv)),
                0
            );
            mln_event_fd_timeout_handler_set(ev, fd, vp(&mut c), Some(fd_must_not_time_out));
        }
        mln_event_timer_set(ev, 30, vp(&mut c), Some(break_timer));
        mln_event_dispatch(ev);
        assert_eq!(c.log, ["break"]);
        mln_event_free(ev);
    }
    for fd in [r, w, r2, w2] {
        close(fd);
    }
}

unsafe extern "C" fn free_own_loop(ev: *mut mln_event_t, _: c_int, data: *mut c_void) {
    ctx(data).recv += 1;
    mln_event_free(ev);
}

#[test]
fn free_from_inside_dispatch_returns() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let sp = eventfd_ready();
    // SAFETY: as above; `ev` is not used after the dispatch.
    unsafe {
        assert_eq!(
            mln_event_fd_set(ev, sp, M_EV_RECV, -1, vp(&mut c), Some(free_own_loop)),
            0
        );
        mln_event_dispatch(ev);
    }
    assert_eq!(c.recv, 1);
    close(sp);
}

unsafe extern "C" fn cancel_self(ev: *mut mln_event_t, data: *mut c_void) {
    let c = ctx(data);
    c.total += 1;
    mln_event_timer_cancel(ev, c.handle as *mut mln_event_timer_t);
    set_break(ev);
}

#[test]
fn timer_cancelling_itself_is_harmless() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    // SAFETY: as above.
    unsafe {
        let t = mln_event_timer_set(ev, 0, vp(&mut c), Some(cancel_self));
        c.handle = t as usize;
        mln_event_dispatch(ev);
        assert_eq!(c.total, 1);
        mln_event_free(ev);
    }
}

/// After `fork`, a child that frees its copy of the loop must not touch the epoll interest
/// set it shares with the parent.
#[test]
fn child_free_after_fork_keeps_parent_registrations() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    let (r, w) = pipe();
    // SAFETY: as above; the child only frees the loop and exits.
    unsafe {
        arm_guard(ev, &mut c);
        assert_eq!(
            mln_event_fd_set(
                ev,
                r,
                M_EV_RECV,
                -1,
                vp(&mut c),
                Some(on_recv_read_and_break)
            ),
            0
        );
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            mln_event_free(ev);
            libc::_exit(0);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert_eq!(status, 0);
        write1(w);
        mln_event_dispatch(ev);
        assert!(!c.guard_fired);
        assert_eq!(c.recv, 1);
        mln_event_free(ev);
    }
    close(r);
    close(w);
}
