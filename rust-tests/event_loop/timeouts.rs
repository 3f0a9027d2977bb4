//! Fd timeouts, and timeouts too large for 32-bit arithmetic.

use super::*;

unsafe extern "C" fn on_timeout(ev: *mut mln_event_t, fd: c_int, data: *mut c_void) {
    let c = ctx(data);
    c.timeouts += 1;
    c.fds.push(fd);
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
