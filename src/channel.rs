//! One end of a socketpair: a send queue that coalesces every queued frame into as few
//! writes as the kernel allows, and a receive buffer read in large chunks and parsed in
//! place. Knows the wire codec and a descriptor, not which process it is in.
//!
//! All I/O uses `MSG_DONTWAIT` (and `MSG_NOSIGNAL` on send), so it never blocks whatever
//! O_NONBLOCK state someone left on the descriptor (Melon's cached blocking flag made a
//! full socket buffer fatal, spec D1); EAGAIN is backpressure, never an error.

use crate::sys::retry_eintr;
use crate::wire::{self, Decoder, Step};
use core::ptr;
use std::io;
use std::os::fd::RawFd;

/// Receive buffer size: one `recv` reads up to this much.
pub(crate) const RX_CHUNK: usize = 256 * 1024;
/// A receive buffer grown for a large frame is shrunk back once empty above this size.
const RX_KEEP: usize = 4 * 1024 * 1024;
/// A drained send queue whose allocation exceeds this is shrunk back to `TX_KEEP`.
const TX_SHRINK_ABOVE: usize = 8 * 1024 * 1024;
const TX_KEEP: usize = 256 * 1024;
/// At most this many reads per readiness notification, so one busy peer cannot starve
/// the others sharing the loop.
const MAX_READS_PER_EVENT: usize = 8;

/// What a receive pass ended with.
#[derive(Debug)]
pub(crate) enum RecvEnd {
    /// Nothing more to read now.
    Drained,
    /// The frame callback asked to stop (its peer is being closed).
    Stopped,
    /// End of stream; every complete frame received before it was delivered.
    Eof,
    /// A frame announced a length above the maximum (spec D3 fix): protocol error.
    TooLong(u32),
    /// The socket failed.
    Error(io::Error),
}

/// Whether the frame callback wants more frames.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// The receive side.
pub(crate) struct Rx {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes the frame being received needs in total (0 when unknown).
    need: usize,
    dec: Decoder,
}

impl Rx {
    pub(crate) fn new(max: usize) -> Self {
        Rx {
            buf: Vec::new(),
            start: 0,
            end: 0,
            need: 0,
            dec: Decoder::new(max),
        }
    }

    /// Makes room for the next read, growing only when the buffer is full of bytes that
    /// arrived (a frame larger than the buffer), never to a size announced by the peer.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > RX_KEEP {
                self.buf = Vec::new();
            }
        }
        if self.buf.is_empty() {
            self.buf = vec![0; RX_CHUNK];
        }
        if self.start > 0 && (self.end == self.buf.len() || self.start >= self.buf.len() / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let target = (self.buf.len() * 2).min(self.need.max(self.buf.len() + 1));
            self.buf.resize(target, 0);
        }
    }

    /// Reads what the socket has (up to a few chunks) and hands every complete frame to
    /// `on_frame(type, payload)`. The payload is a slice of the receive buffer, valid only
    /// during the call.
    pub(crate) fn receive(
        &mut self,
        fd: RawFd,
        max: usize,
        mut on_frame: impl FnMut(u32, &mut [u8]) -> Flow,
    ) -> RecvEnd {
        self.dec.set_max(max);
        for _ in 0..MAX_READS_PER_EVENT {
            self.make_room();
            let space = self.buf.len() - self.end;
            let dst = &mut self.buf[self.end..];
            let r = retry_eintr(|| {
                // SAFETY: `dst` is a valid writable buffer of `dst.len()` bytes.
                let n = unsafe {
                    libc::recv(fd, dst.as_mut_ptr().cast(), dst.len(), libc::MSG_DONTWAIT)
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            let n = match r {
                Ok(0) => return RecvEnd::Eof,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return RecvEnd::Drained,
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return RecvEnd::Eof,
                Err(e) => return RecvEnd::Error(e),
            };
            self.end += n;
            if let Some(end) = self.parse(&mut on_frame) {
                return end;
            }
            if n < space {
                return RecvEnd::Drained;
            }
        }
        RecvEnd::Drained
    }

    fn parse(&mut self, on_frame: &mut impl FnMut(u32, &mut [u8]) -> Flow) -> Option<RecvEnd> {
        loop {
            let input = &mut self.buf[self.start..self.end];
            match self.dec.next(input) {
                Step::Frame {
                    ty,
                    payload,
                    consumed,
                } => {
                    let off = consumed - payload.len();
                    let len = payload.len();
                    self.start += consumed;
                    self.need = 0;
                    let flow = on_frame(ty, &mut input[off..off + len]);
                    if flow == Flow::Stop {
                        return Some(RecvEnd::Stopped);
                    }
                }
                Step::More { consumed, need } => {
                    self.start += consumed;
                    self.need = need;
                    return None;
                }
                Step::TooLong { length } => return Some(RecvEnd::TooLong(length)),
            }
        }
    }
}

/// What a flush ended with.
#[derive(Debug)]
pub(crate) enum Flushed {
    /// The queue is empty.
    Drained,
    /// The socket is full; the rest waits for writability.
    Blocked,
    /// The socket failed (peer gone).
    Error(io::Error),
}

/// The send side: queued frames, contiguous, starting at a frame boundary.
#[derive(Default)]
pub(crate) struct Tx {
    buf: Vec<u8>,
    /// Bytes of `buf` already written to the socket.
    sent: usize,
    /// A frame boundary at or before `sent`: the start of the first frame not completely
    /// sent, as far as it was last looked for. Advanced incrementally, so each queued frame
    /// header is read at most once however often a full socket makes us compact.
    bound: usize,
}

impl Tx {
    /// Queues one frame. `None` (nothing queued) when it cannot be framed.
    #[inline]
    pub(crate) fn push(&mut self, ty: u32, payload: &[u8]) -> Option<()> {
        let h = wire::encode_header(ty, payload.len())?;
        let total = wire::HEADER_LEN + payload.len();
        // Runs once per message: one capacity check and two plain copies, instead of
        // `encode_into`'s three capacity checks.
        self.buf.reserve(total);
        let at = self.buf.len();
        // SAFETY: `reserve` made room for `total` bytes after `at`; both copies stay inside
        // it, the sources do not overlap our buffer (`payload` is the caller's), and all
        // `total` bytes are initialised before `set_len`.
        unsafe {
            let dst = self.buf.as_mut_ptr().add(at);
            ptr::copy_nonoverlapping(h.as_ptr(), dst, wire::HEADER_LEN);
            ptr::copy_nonoverlapping(payload.as_ptr(), dst.add(wire::HEADER_LEN), payload.len());
            self.buf.set_len(at + total);
        }
        Some(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sent == self.buf.len()
    }

    /// Writes as much of the queue as the socket takes.
    pub(crate) fn flush(&mut self, fd: RawFd) -> Flushed {
        while self.sent < self.buf.len() {
            let src = &self.buf[self.sent..];
            let r = retry_eintr(|| {
                // SAFETY: `src` is a valid readable buffer of `src.len()` bytes.
                let n = unsafe {
                    libc::send(
                        fd,
                        src.as_ptr().cast(),
                        src.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.compact();
                    return Flushed::Blocked;
                }
                Err(e) => return Flushed::Error(e),
            }
        }
        self.buf.clear();
        self.sent = 0;
        self.bound = 0;
        if self.buf.capacity() > TX_SHRINK_ABOVE {
            self.buf.shrink_to(TX_KEEP);
        }
        Flushed::Drained
    }

    /// Moves `bound` up to the last frame boundary at or before `sent`.
    fn advance_bound(&mut self) {
        self.bound += wire::boundary_before(&self.buf[self.bound..], self.sent - self.bound);
    }

    /// Drops the fully sent frames at the front once they are a large part of the queue,
    /// keeping the queue's start on a frame boundary.
    fn compact(&mut self) {
        if self.sent < TX_KEEP || self.sent < self.buf.len() / 2 {
            return;
        }
        self.advance_bound();
        let b = self.bound;
        self.buf.drain(..b);
        self.sent -= b;
        self.bound = 0;
    }

    /// Frames not (completely) delivered: what is lost if the peer is gone now.
    pub(crate) fn undelivered(&self) -> usize {
        let b = self.bound + wire::boundary_before(&self.buf[self.bound..], self.sent - self.bound);
        wire::count_frames(&self.buf[b..]).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};

    fn pair() -> (OwnedFd, OwnedFd) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (a.into(), b.into())
    }

    #[test]
    fn queue_survives_full_socket_and_delivers_in_order() {
        let (a, b) = pair();
        let mut tx = Tx::default();
        let payload = vec![7u8; 1000];
        for i in 0..5000u32 {
            tx.push(i, &payload).unwrap();
        }
        let mut rx = Rx::new(wire::DEFAULT_MAX_MESSAGE);
        let mut next = 0u32;
        let mut blocked = false;
        loop {
            match tx.flush(a.as_raw_fd()) {
                Flushed::Drained => break,
                Flushed::Blocked => blocked = true,
                Flushed::Error(e) => panic!("{e}"),
            }
            assert!(tx.undelivered() > 0);
            let end = rx.receive(b.as_raw_fd(), wire::DEFAULT_MAX_MESSAGE, |ty, p| {
                assert_eq!((ty, p.len()), (next, 1000));
                next += 1;
                Flow::Continue
            });
            assert!(matches!(end, RecvEnd::Drained), "{end:?}");
        }
        assert!(blocked, "5 MB must exceed the socket buffer");
        assert_eq!(tx.undelivered(), 0);
        drop(a);
        // Whatever is still buffered is delivered before the end of stream is reported.
        loop {
            let end = rx.receive(b.as_raw_fd(), wire::DEFAULT_MAX_MESSAGE, |ty, _| {
                assert_eq!(ty, next);
                next += 1;
                Flow::Continue
            });
            match end {
                RecvEnd::Drained => continue,
                RecvEnd::Eof => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(next, 5000);
    }

    #[test]
    fn oversized_header_is_refused_without_allocating() {
        let (a, b) = pair();
        let hdr: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0];
        // SAFETY: valid buffer.
        assert_eq!(
            unsafe { libc::send(a.as_raw_fd(), hdr.as_ptr().cast(), 8, 0) },
            8
        );
        let mut rx = Rx::new(1024);
        let end = rx.receive(b.as_raw_fd(), 1024, |_, _| panic!("no frame expected"));
        assert!(matches!(end, RecvEnd::TooLong(u32::MAX)), "{end:?}");
        assert!(rx.buf.len() <= RX_CHUNK);
    }
}
