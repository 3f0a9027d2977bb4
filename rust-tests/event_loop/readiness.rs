//! Readiness: RECV/SEND handlers, one-shot, APPEND versus replace, D10.

use super::*;

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
