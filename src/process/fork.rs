//! Forking: socketpair, fork and handshake (spec §4.5), the child's clean-up after fork
//! (§4.6), plain workers, and exec'd programs.

use super::*;

/// Where a fork left us.
pub(crate) enum Forked {
    Parent,
    Child,
}

/// Socketpair, fork, handshake (spec §4.5). In the parent the child is appended to the
/// list and, if `ev` is given, its descriptor registered for receiving.
pub(super) fn fork_core(
    ev: *mut mln_event_t,
    etype: proc_exec_type,
    stype: proc_state_type,
    args: Option<ExecArgs>,
    quick_deaths: u32,
) -> io::Result<Forked> {
    let mut fds = [-1 as c_int; 2];
    syscall!(socketpair(
        libc::AF_UNIX,
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    let [mine, theirs] = fds;
    // Holding the handler lock across fork() keeps another thread from leaving it locked
    // mid-update in the child; the forking thread releases it on both sides.
    let mut guard = lock_handlers();
    // SAFETY: fork has no preconditions; the child only runs async-signal-safe-enough code
    // of this thread (the program is single-threaded there).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        drop(guard);
        close_fd(mine);
        close_fd(theirs);
        return Err(e);
    }
    if pid == 0 {
        if let Some(hs) = guard.as_mut() {
            hs.master.clear();
        }
        TABLE_GEN.fetch_add(1, Ordering::Release);
        drop(guard);
        close_fd(mine);
        after_fork_in_child(theirs);
        return Ok(Forked::Child);
    }
    drop(guard);
    close_fd(theirs);
    // Handshake: the child writes one byte once its post-fork cleanup is done. EOF means
    // it died first: fail instead of spinning (D5).
    let mut byte = 0u8;
    let r = retry_eintr(|| syscall!(read(mine, ptr::addr_of_mut!(byte).cast(), 1)));
    match r {
        Ok(1) => {}
        Ok(_) => {
            close_fd(mine);
            return Err(io::Error::other("child exited before the fork handshake"));
        }
        Err(e) => {
            close_fd(mine);
            return Err(e);
        }
    }
    // A pidfd lets the master make sure a child it considers dead is gone, without the
    // pid-reuse race of kill(pid). Optional: older kernels lack it.
    // SAFETY: plain syscall; returns a new CLOEXEC descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as c_int;
    let mut f = mln_fork_t {
        prev: null_mut(),
        next: null_mut(),
        args: null_mut(),
        conn: conn_new(mine),
        pid,
        n_args: 0,
        state: STATE_IDLE,
        msg_len: 0,
        msg_type: 0,
        error_bytes: 0,
        msg_content: null_mut(),
        msg_buf_size: 0,
        etype,
        stype,
    };
    // Melon build: a genuine Melon connection (spec §7), released when the child is freed.
    #[cfg(not(feature = "standalone"))]
    crate::melon::conn::init(&mut f.conn);
    let mut args = args;
    if let Some(a) = args.as_mut() {
        f.args = a.ptrs.as_mut_ptr();
        f.n_args = a.strings.len() as u32;
    }
    let c = Box::into_raw(Box::new(Child {
        f,
        chan: Chan::new(mine),
        pidfd,
        started: Instant::now(),
        quick_deaths,
        args,
        busy: 0,
        close_pending: false,
    }));
    list_append(c);
    if !ev.is_null() {
        register_child(ev, c);
    }
    Ok(Forked::Parent)
}

pub(super) fn after_fork_in_child(fd: c_int) {
    let p = proc();
    let mut c = p.head;
    p.head = null_mut();
    p.tail = null_mut();
    p.live.clear();
    while !c.is_null() {
        // SAFETY: inherited list members are live boxes we own; each is freed once.
        let b = unsafe { Box::from_raw(c) };
        c = b.f.next.cast();
        close_fd(b.chan.fd);
        close_fd(b.pidfd);
        forget_flush(&b.chan);
    }
    for r in std::mem::take(&mut proc().restarts) {
        // SAFETY: pending records are live boxes; their timers are pending on `ev`, whose
        // memory the child still has (cancelling touches no descriptor).
        let r = unsafe { Box::from_raw(r) };
        // SAFETY: as above.
        unsafe { reactor::timer_cancel(r.ev, r.timer) };
    }
    let m = master();
    // SAFETY: the master record is live; we replace its channel wholesale.
    unsafe {
        forget_flush(&(*m).chan);
        close_fd((*m).chan.fd);
        (*m).chan = Chan::new(fd);
        (*m).conn = conn_new(fd);
    }
    proc().is_worker = true;
    crate::sigsafe::after_fork();
    let (clr, data) = (proc().clr, proc().clr_data);
    if let Some(h) = clr {
        // SAFETY: user callback with the user's data, as Melon calls it.
        crate::sigsafe::outside(|| unsafe { h(data) });
    }

    // Melon build: a wake-up eventfd of our own, and `master_conn` names our end (after the
    // clear handler, as in Melon).
    #[cfg(not(feature = "standalone"))]
    {
        crate::melon::conn::master_attach(fd);
        publish();
    }
    // SAFETY: restoring the default disposition has no preconditions.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    let byte = b' ';
    if retry_eintr(|| syscall!(write(fd, ptr::addr_of!(byte).cast(), 1))).is_err() {
        // SAFETY: leaving the child without running the parent's atexit handlers.
        unsafe { libc::_exit(1) };
    }
}

/// Cancels a pending flush timer (memory only; no descriptor is touched).
pub(super) fn forget_flush(ch: &Chan) {
    if !ch.flush_timer.is_null() {
        // SAFETY: the timer is pending on `flush_ev` (cleared when it fires).
        unsafe { reactor::timer_cancel(ch.flush_ev, ch.flush_timer) };
    }
}

/// `mln_fork_restart`: a supervised plain worker. 1 parent, 0 child, -1 error.
pub(crate) fn restart(ev: *mut mln_event_t) -> c_int {
    match fork_core(ev, M_PET_DFL, M_PST_SUP, None, 0) {
        Ok(Forked::Parent) => 1,
        Ok(Forked::Child) => 0,
        Err(e) => {
            log::error(format_args!("fork: {e}"));
            -1
        }
    }
}

/// `mln_fork`: the standalone build starts `mln_fork_worker_num_set` workers.
// Used by the standalone framework / mln_fork; the melon build reads Melon's conf.
#[cfg_attr(not(feature = "standalone"), allow(dead_code))]
pub(crate) fn fork_workers() -> c_int {
    let n = WORKER_NUM.load(Ordering::Relaxed);
    for i in 1..=n {
        log::info(format_args!("Start up worker process No.{i}"));
        match restart(null_mut()) {
            0 => return 0,
            1 => {}
            _ => return -1,
        }
    }
    1
}

/// `mln_fork_spawn`: 0 in the parent, -1 on failure; the child execs and never returns.
pub(crate) fn spawn(stype: proc_state_type, args: Vec<CString>, ev: *mut mln_event_t) -> c_int {
    log::info(format_args!(
        "Start up process '{}'",
        args[0].to_string_lossy()
    ));
    spawn_args(stype, ExecArgs::new(args), ev, 0)
}

pub(super) fn spawn_args(
    stype: proc_state_type,
    args: ExecArgs,
    ev: *mut mln_event_t,
    quick: u32,
) -> c_int {
    let exec = args.copy();
    match fork_core(ev, M_PET_EXE, stype, Some(args), quick) {
        Ok(Forked::Parent) => 0,
        Ok(Forked::Child) => exec_child(exec),
        Err(e) => {
            log::error(format_args!(
                "spawn '{}': {e}",
                exec.strings[0].to_string_lossy()
            ));
            -1
        }
    }
}

/// In a spawned child: hand the socketpair end to the program as its last argument.
pub(super) fn exec_child(mut a: ExecArgs) -> ! {
    // SAFETY: the master record is live.
    let fd = unsafe { (*master()).chan.fd };
    // The one descriptor an exec'd program inherits (D12/D13): clear its CLOEXEC, and give
    // the program default dispositions for the signals the master ignores.
    // SAFETY: plain syscalls on our own descriptor and signal dispositions.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, 0);
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    let fd_arg = CString::new(fd.to_string()).unwrap_or_default();
    let n = a.strings.len();
    a.ptrs[n] = fd_arg.as_ptr().cast_mut();
    #[cfg(not(feature = "standalone"))]
    crate::melon::before_exec();
    // SAFETY: `ptrs` is a NULL-terminated array of valid C strings that outlive the call.
    unsafe { libc::execv(a.ptrs[0], a.ptrs.as_ptr().cast()) };
    log::error(format_args!(
        "execv '{}': {}",
        a.strings[0].to_string_lossy(),
        io::Error::last_os_error()
    ));
    // SAFETY: leaving the child without running the parent's atexit handlers.
    unsafe { libc::_exit(1) }
}
