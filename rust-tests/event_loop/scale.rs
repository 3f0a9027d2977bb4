//! Many timers and many descriptors.

use super::*;

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
