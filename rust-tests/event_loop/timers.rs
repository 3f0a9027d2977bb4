//! Timers: order, cancellation, 0 ms timers set by handlers.

use super::*;

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
