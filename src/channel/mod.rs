//! One end of a socketpair: the descriptor, a send queue ([`tx`]) and a receive buffer
//! ([`rx`]). Knows the wire codec and a descriptor, not which process it is in nor which
//! event loop watches it.
//!
//! All I/O uses `MSG_DONTWAIT` (and `MSG_NOSIGNAL` on send), so it never blocks whatever
//! O_NONBLOCK state someone left on the descriptor (Melon's cached blocking flag made a
//! full socket buffer fatal, spec D1); EAGAIN is backpressure, never an error.
//!
//! The two system calls here are the hot path of every message and are made through
//! `libc` directly: nix's `sendmsg` builds control-message buffers we do not use, and its
//! `recv` would be the same call; both are wrapped once below.

pub(crate) mod rx;
pub(crate) mod tx;

pub(crate) use rx::{Next, Pin, Read, Rx};
pub(crate) use tx::{Flushed, Refused, Tx};

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// One socketpair end with its queues.
pub(crate) struct Channel {
    pub fd: OwnedFd,
    pub rx: Rx,
    pub tx: Tx,
}

impl Channel {
    pub(crate) fn new(fd: OwnedFd, max_message: usize, queue_limit: usize) -> Self {
        Channel {
            fd,
            rx: Rx::new(max_message),
            tx: Tx::new(queue_limit),
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Closes the descriptor and returns the buffers (their memory stays where it is).
    pub(crate) fn into_buffers(self) -> (Rx, Tx) {
        let Channel { fd, rx, tx } = self;
        drop(fd);
        (rx, tx)
    }
}

/// Outcome of one system call.
pub(crate) enum IoResult {
    Done(usize),
    WouldBlock,
    Failed(io::Error),
}

/// `sendmsg` of `iov` without blocking and without SIGPIPE; EINTR is retried. One buffer
/// goes through `send` instead, which costs the kernel less (no message header to import).
pub(crate) fn send_iov(fd: RawFd, iov: &[IoSlice<'_>]) -> IoResult {
    if let [one] = iov {
        return send_one(fd, one);
    }
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec (guaranteed by std on Unix).
    msg.msg_iov = iov.as_ptr().cast_mut().cast();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: `msg` points at `iov.len()` valid iovecs that outlive the call.
    retrying(|| unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) })
}

fn send_one(fd: RawFd, buf: &[u8]) -> IoResult {
    // SAFETY: `buf` is valid for `buf.len()` readable bytes.
    retrying(|| unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
}

/// Frees a buffer of the queues (a spare send chunk, a receive buffer) for good, its whole
/// pages given back to the kernel first. The allocator keeps a freed block for reuse, and
/// keeps it resident: blocks of this size come from the middle of its heap, which it only
/// shrinks from the top, so without this a peer's burst would stay in the process's
/// memory after its queue drained (issue 20).
#[cold]
pub(crate) fn release(buf: Vec<u8>) {
    let cap = buf.capacity();
    if cap == 0 {
        return;
    }
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    };
    let at = buf.as_ptr() as usize;
    let lo = at.next_multiple_of(page);
    let hi = (at + cap) / page * page;
    if hi > lo {
        crate::sys::keeping_errno(|| {
            // SAFETY: `lo..hi` lies inside the allocation `buf` owns, whose contents are
            // never read again (it is freed right after). MADV_DONTNEED only drops the
            // pages: anonymous memory reads back as zeros, the allocator's own data sits
            // outside the block. A failure (locked pages) leaves them as they were.
            unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED) };
        });
    }
    drop(buf);
}

/// `recv` into `buf` without blocking; EINTR is retried.
pub(crate) fn recv_into(fd: RawFd, buf: &mut [u8]) -> IoResult {
    // SAFETY: `buf` is valid for `buf.len()` writable bytes.
    retrying(|| unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) })
}

/// Runs a `send`/`recv`-like call (a byte count or -1 with errno) until it is not
/// interrupted, and sorts its outcome.
/// errno is left as it was (a failure is reported in the result), so that a send that
/// succeeds leaves the caller's errno alone even when one of its writes met a full socket.
#[inline]
fn retrying(mut call: impl FnMut() -> isize) -> IoResult {
    crate::sys::keeping_errno(|| loop {
        let n = call();
        if n >= 0 {
            return IoResult::Done(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return IoResult::WouldBlock,
            _ => return IoResult::Failed(e),
        }
    })
}
