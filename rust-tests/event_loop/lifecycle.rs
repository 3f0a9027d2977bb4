//! The loop itself: the per-iteration callback, break, free from inside dispatch, fork,
//! the dispatch depth and the free hook.

use super::*;

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

fn depth_of(ev: *mut mln_event_t) -> u32 {
    // SAFETY: a live loop of this thread.
    unsafe { mln_ipc::reactor::depth(ev) }.expect("the standalone loop knows its depth")
}

unsafe extern "C" fn inner_depth(ev: *mut mln_event_t, data: *mut c_void) {
    ctx(data).counts.push(depth_of(ev));
    set_break(ev);
}

unsafe extern "C" fn outer_depth(ev: *mut mln_event_t, data: *mut c_void) {
    let c = ctx(data);
    c.counts.push(depth_of(ev));
    assert!(!mln_event_timer_set(ev, 0, data, Some(inner_depth)).is_null());
    mln_event_dispatch(ev); // nested: runs `inner_depth`, which breaks both
    c.counts.push(depth_of(ev));
}

#[test]
fn depth_counts_nested_dispatches() {
    let _s = serial();
    let ev = new_loop();
    let mut c = Ctx::default();
    assert_eq!(depth_of(ev), 0);
    // SAFETY: as above.
    unsafe {
        arm_guard(ev, &mut c);
        assert!(!mln_event_timer_set(ev, 0, vp(&mut c), Some(outer_depth)).is_null());
        mln_event_dispatch(ev);
        assert!(!c.guard_fired);
        assert_eq!(c.counts, [1, 2, 1]);
        assert_eq!(depth_of(ev), 0);
        // A broken loop's dispatch returns at once and leaves the depth as it was.
        mln_event_dispatch(ev);
        assert_eq!(depth_of(ev), 0);
        mln_event_free(ev);
        // SAFETY: NULL is accepted.
        assert_eq!(mln_ipc::reactor::depth(ptr::null_mut()), Some(0));
    }
}

thread_local! {
    /// The loops the free hook saw on this thread (each test runs on its own thread).
    static FREED: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn record_free(ev: *mut mln_event_t) {
    FREED.with_borrow_mut(|v| v.push(ev as usize));
}

fn freed() -> Vec<usize> {
    FREED.with_borrow(|v| v.clone())
}

unsafe extern "C" fn free_in_handler(ev: *mut mln_event_t, data: *mut c_void) {
    let c = ctx(data);
    mln_event_free(ev);
    // Deferred: the memory (and so the hook) waits for the outermost dispatch.
    c.total = freed().len() as u32;
}

unsafe extern "C" fn nested_then_free(ev: *mut mln_event_t, data: *mut c_void) {
    let c = ctx(data);
    assert!(!mln_event_timer_set(ev, 0, data, Some(free_in_handler)).is_null());
    mln_event_dispatch(ev); // the nested dispatch frees the loop and returns
    c.aux = freed().len() as c_int; // the outer dispatch still runs: not yet
}

#[test]
fn free_hook_runs_once_per_free_including_deferred_ones() {
    let _s = serial();
    // The one hook of this test process (no other test sets one).
    assert!(mln_ipc::reactor::set_free_hook(record_free));
    assert!(!mln_ipc::reactor::set_free_hook(record_free), "set once");
    FREED.with_borrow_mut(|v| v.clear());
    // SAFETY: live loops of this thread, none used after it is freed.
    unsafe {
        // A plain free.
        let ev = new_loop();
        mln_event_free(ev);
        assert_eq!(freed(), [ev as usize]);
        mln_event_free(ptr::null_mut());
        assert_eq!(freed().len(), 1);

        // A free from a handler: when dispatch returns.
        let ev = new_loop();
        let mut c = Ctx {
            total: u32::MAX,
            ..Ctx::default()
        };
        assert!(!mln_event_timer_set(ev, 0, vp(&mut c), Some(free_in_handler)).is_null());
        mln_event_dispatch(ev);
        assert_eq!(c.total, 1, "not called inside the handler");
        assert_eq!(freed()[1..], [ev as usize]);

        // A free from a nested dispatch: when the outermost one returns.
        let ev = new_loop();
        let mut c = Ctx {
            aux: -1,
            ..Ctx::default()
        };
        assert!(!mln_event_timer_set(ev, 0, vp(&mut c), Some(nested_then_free)).is_null());
        mln_event_dispatch(ev);
        assert_eq!(c.total, 2, "not called inside the nested dispatch");
        assert_eq!(c.aux, 2, "nor after it, inside the outer one");
        assert_eq!(freed()[2..], [ev as usize]);
    }
}
