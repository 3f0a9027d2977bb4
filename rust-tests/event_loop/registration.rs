//! Registration: O_NONBLOCK flags, CLR (also of closed descriptors and from a handler), reuse of a closed number.

use super::*;

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
