//! A worker that was not forked by its master: a program executed by `mln_fork_spawn` (or
//! any process handed one end of a socketpair) takes the descriptor it was given as its
//! master connection, and is then in the state a forked worker is in after its handshake
//! (`fork::become_child` and `in_child`): a worker, the connection `Live`, the handler
//! tables as registered in this process, the size limits applied.
//!
//! The exec'd program owes no handshake: the forked child writes the handshake byte
//! before it executes the program (`fork::in_child`), so the master reads frames only
//! from the program.
//!
//! A forked worker whose master is gone exits with status 127 (`supervise::master_gone`).
//! A process that adopted its connection may ask for the loop to end instead: dispatch
//! stops, the connection is taken off the loop, the loop is broken, and [`master_lost`]
//! says so to the code that ran the loop (the Rust API's `Program::run` then returns).
//! (The melon build has no face that adopts yet: the C API has no such function.)
#![cfg_attr(not(feature = "standalone"), allow(dead_code))]

use super::handlers;
use super::peer::Phase;
use super::state::{conn_new, Chan, Peer, PROC};
use crate::abi::*;
use crate::channel::Channel;
use crate::log;
use crate::reactor;
use crate::sys::syscall;
use core::ffi::c_int;
use core::ptr::null_mut;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// This process adopted its master connection asking for the loop to end (not the process)
/// when the master is gone.
static END_LOOP_WHEN_GONE: AtomicBool = AtomicBool::new(false);
/// The master of such a process is gone (its loop was ended for that).
static LOST: AtomicBool = AtomicBool::new(false);

/// Whether `fd` can be a master connection: an open stream socket of the Unix domain.
/// The error says what it is not (EBADF: not open; ENOTSOCK: not a socket; EPROTOTYPE: not
/// a stream socket; EAFNOSUPPORT: not of the Unix domain).
pub(crate) fn check_channel(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: an all-zero `stat` is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    syscall!(fstat(raw, &mut st))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::from_raw_os_error(libc::ENOTSOCK));
    }
    if sockopt(raw, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(io::Error::from_raw_os_error(libc::EPROTOTYPE));
    }
    if sockopt(raw, libc::SO_DOMAIN)? != libc::AF_UNIX {
        return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
    }
    Ok(())
}

fn sockopt(fd: c_int, name: c_int) -> io::Result<c_int> {
    let mut v: c_int = 0;
    let mut len = core::mem::size_of::<c_int>() as libc::socklen_t;
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        name,
        (&mut v as *mut c_int).cast(),
        &mut len
    ))?;
    Ok(v)
}

/// Makes this process a worker whose master connection is `fd` (phase `Live`), as a
/// forked worker is after its handshake: the registry's handlers installed (what
/// `mln_fork_prepare` does), the current maximum message size and queue limit applied to
/// the channel. `fd` is checked ([`check_channel`]) and made close-on-exec (a program's own
/// children must not hold its master connection open) and non-blocking.
/// `end_loop_when_gone`: when the master is gone, end the loop instead of exiting with
/// status 127 (see [`master_lost`]).
///
/// Refused (EBUSY, nothing changed, `fd` closed) in a process that is already a worker, or
/// a master with children (live, dying, or whose events are not delivered yet).
/// The loop is set up afterwards as in a forked worker (`mln_fork_worker_events_set`).
pub(crate) fn adopt_master(fd: OwnedFd, end_loop_when_gone: bool) -> io::Result<()> {
    check_channel(fd.as_fd())?;
    let raw = fd.as_raw_fd();
    syscall!(fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC))?;
    let fl = syscall!(fcntl(raw, libc::F_GETFL))?;
    syscall!(fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK))?;
    let adopted = PROC.with(|p| {
        let busy = p.is_worker
            || p.master().chan.is_some()
            || !p.head.is_null()
            || !p.dying.is_empty()
            || !p.events.is_empty()
            || !p.restarts.is_empty();
        if busy {
            return false;
        }
        p.is_worker = true;
        // A master's own SIGCHLD rule does not apply: this process forked none of ours.
        p.keep_sigchld = true;
        let m = p.master();
        m.chan = Some(Chan::new(
            Channel::new(fd, super::max_message(), super::queue_limit()),
            Phase::Live,
        ));
        m.conn = conn_new(raw);
        p.publish();
        true
    });
    if !adopted {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    END_LOOP_WHEN_GONE.store(end_loop_when_gone, Ordering::Relaxed);
    LOST.store(false, Ordering::Relaxed);
    handlers::reinstall_registry();
    // Melon build: `master_conn` names the connection, as in a forked worker.
    #[cfg(not(feature = "standalone"))]
    if !crate::melon::conn::master_attach(raw) {
        log::error(format_args!("mln_tcp_conn_init: no memory"));
    }
    Ok(())
}

/// Whether the master of this process (which adopted its connection asking for the loop
/// to end) is gone.
pub(crate) fn master_lost() -> bool {
    LOST.load(Ordering::Relaxed)
}

/// The master is gone (`supervise::master_gone`, from a receive pass on loop `ev`): in a
/// process that asked for it, stop dispatching, take the connection off its loop (it is
/// closed by the orderly end, `shutdown`, which also counts what it still had queued) and
/// end `ev`; `true` then. `false`: the caller applies the forked worker's rule.
pub(crate) fn end_loop_instead(ev: *mut mln_event_t, why: &str) -> bool {
    if !END_LOOP_WHEN_GONE.load(Ordering::Relaxed) {
        return false;
    }
    log::info(format_args!(
        "connection to the master closed ({why}; the master stopped or died): ending the loop"
    ));
    PROC.with(|p| {
        p.dispatch_stopped = true;
        p.dirty.retain(|&d| d != Peer::Master);
        p.writable_due.retain(|&d| d != Peer::Master);
        if let Some(ch) = p.master().chan.as_mut() {
            // Nothing is written any more; an outer receive pass of it (a handler that ran
            // the loop) still holds it, so it is not freed here.
            ch.phase.advance(Phase::Failing);
            if !ch.ev.is_null() {
                // SAFETY: the channel's loop is live (it is running this pass).
                unsafe { reactor::fd_clear(ch.ev, ch.ch.raw()) };
                ch.ev = null_mut();
            }
        }
    });
    LOST.store(true, Ordering::Relaxed);
    // SAFETY: `ev` is the live loop running this receive pass.
    unsafe { reactor::break_set(ev) };
    true
}

/// In a new child after fork: it is a forked worker, whose master's end is the usual rule.
pub(crate) fn after_fork() {
    END_LOOP_WHEN_GONE.store(false, Ordering::Relaxed);
    LOST.store(false, Ordering::Relaxed);
}
