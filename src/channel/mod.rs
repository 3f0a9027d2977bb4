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

pub(crate) use rx::{FrameFds, Next, Pin, Read, Rx};
pub(crate) use tx::{Flushed, Refused, Tx};

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

/// The type of the frame that announces descriptors (in the range Melon reserves): its
/// payload is the count (`u32`, host order); the descriptors ride on its first byte and
/// belong to the frame that follows it. Neither the frame nor its bytes are counted in
/// the statistics, and no handler sees it.
///
/// Why a frame of its own: on a stream socket the kernel may return, in one `recvmsg`,
/// bytes written before the descriptors' `sendmsg` together with its own; the receiver
/// cannot tell from the read where they begin, but it can count announcements.
pub(crate) const FDS_TYPE: u32 = 1023;

/// The most descriptors one frame carries (the kernel's SCM_MAX_FD).
pub(crate) const MAX_FDS: usize = 253;

/// Room for one SCM_RIGHTS message of [`MAX_FDS`] descriptors (`CMSG_SPACE(253 * 4)` is
/// 1,032 bytes on 64-bit Linux), 8-byte aligned as `cmsghdr` needs.
type CmsgBuf = [u64; 130];

/// `sendmsg` of `iov` with `fds` attached (SCM_RIGHTS) to its first byte; as
/// [`send_iov`] otherwise. The kernel duplicates the descriptors into the message: the
/// caller still owns its own.
pub(crate) fn send_iov_fds(fd: RawFd, iov: &[IoSlice<'_>], fds: &[RawFd]) -> IoResult {
    if fds.is_empty() {
        return send_iov(fd, iov);
    }
    debug_assert!(fds.len() <= MAX_FDS);
    let mut cbuf = core::mem::MaybeUninit::<CmsgBuf>::uninit();
    let bytes = core::mem::size_of_val(fds);
    // SAFETY: a zeroed msghdr is valid; the control buffer is aligned and large enough
    // for one cmsghdr of `fds.len()` descriptors (checked against CMSG_SPACE), which is
    // filled in through the CMSG macros before the call.
    unsafe {
        let space = libc::CMSG_SPACE(bytes as u32) as usize;
        assert!(space <= core::mem::size_of::<CmsgBuf>());
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr().cast_mut().cast();
        msg.msg_iovlen = iov.len() as _;
        // Only the part the message uses is written (and zeroed first: padding included).
        core::ptr::write_bytes(cbuf.as_mut_ptr().cast::<u8>(), 0, space);
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(bytes as u32) as _;
        core::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), fds.len());
        retrying(|| libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL))
    }
}

/// Descriptors that came with one `recvmsg`.
#[derive(Debug, Default)]
pub(crate) struct FdBatch {
    pub fds: Vec<OwnedFd>,
    /// The kernel dropped some (MSG_CTRUNC: the receiver is at its descriptor limit).
    pub truncated: bool,
}

/// `recvmsg` into `buf` without blocking (EINTR retried); descriptors that came with the
/// bytes are received close-on-exec and returned (a batch only if any came or some were
/// dropped).
pub(crate) fn recv_fds(fd: RawFd, buf: &mut [u8]) -> (IoResult, Option<FdBatch>) {
    // Written by the kernel before it is read (`msg_controllen` says how much).
    let mut cbuf = core::mem::MaybeUninit::<CmsgBuf>::uninit();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; it points at one iovec over `buf` and at the
    // aligned control buffer, both live during the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = core::mem::size_of::<CmsgBuf>() as _;
    let r = retrying(|| {
        // Each retry starts with the whole control buffer again.
        msg.msg_controllen = core::mem::size_of::<CmsgBuf>() as _;
        // SAFETY: as above.
        unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) }
    });
    if !matches!(r, IoResult::Done(_)) {
        return (r, None);
    }
    let truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
    if msg.msg_controllen == 0 && !truncated {
        return (r, None);
    }
    let mut batch = FdBatch {
        fds: Vec::new(),
        truncated,
    };
    // SAFETY: the kernel filled `msg_controllen` bytes of the control buffer with
    // well-formed cmsghdrs, walked with the CMSG macros; SCM_RIGHTS data is an array of
    // descriptors now installed in this process, which we take ownership of.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / core::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..n {
                    let d = data.add(i).read_unaligned();
                    batch.fds.push(OwnedFd::from_raw_fd(d));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    (r, Some(batch))
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
