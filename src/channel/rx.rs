//! The receive side of a channel: a buffer read in large chunks and parsed in place.
//!
//! A frame is handed out as a pointer into the buffer and *pins* that buffer: until the
//! matching [`Rx::unpin`] the bytes of every pinned frame stay where they are, even if the
//! handler that got them runs the event loop and more data arrives on this channel
//! meanwhile (a nested receive then reads after them, or into a new buffer). Pins are
//! counted per buffer: a buffer left behind is freed as soon as its own frames are
//! released, so a handler that runs the loop for long while its peer streams keeps its
//! own frame's buffer and the one being read, not every buffer filled meanwhile. Memory
//! for a frame grows only with bytes that actually arrived, never with a length announced
//! by the peer (spec D3); a buffer grown for a large frame is given back once the socket
//! has nothing more and the buffer is empty.

use super::{recv_fds, FdBatch, IoResult, FDS_TYPE};
use crate::wire::{Decoder, Step};
use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::os::fd::RawFd;

/// Size of the receive buffer; one `recv` reads up to the free space in it.
pub(crate) const RX_CHUNK: usize = 256 * 1024;

/// What one read did.
#[derive(Debug)]
pub(crate) enum Read {
    /// `n` bytes arrived (see `Rx::last_read_full`).
    Data(#[allow(dead_code)] usize),
    /// Nothing to read now.
    WouldBlock,
    /// End of stream (or the peer reset the connection).
    Eof,
    /// The socket failed.
    Error(io::Error),
}

/// Which buffer a handed-out frame pins; given back to [`Rx::unpin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pin(u32);

/// The next complete frame, if any.
#[derive(Debug)]
pub(crate) enum Next {
    /// A frame; `ptr..ptr+len` is its payload, valid until `unpin(pin)`; `fds`: the
    /// descriptors that came with it, if it was announced with some.
    Frame {
        ty: u32,
        ptr: *mut u8,
        len: usize,
        pin: Pin,
        /// Boxed: rare, and this enum is returned for every frame.
        fds: Option<Box<FrameFds>>,
    },
    /// No complete frame in the buffer.
    More,
    /// The next frame announces a length above the maximum: the stream is unusable.
    TooLong(u32),
}

/// A buffer replaced while frames in it were pinned; freed with its last pin.
struct Retired {
    /// Never read: the pinned frames point into it.
    #[allow(dead_code)]
    buf: Vec<u8>,
    gen: u32,
    pins: u32,
}

/// The descriptors of one frame.
#[derive(Debug, Default)]
pub(crate) struct FrameFds {
    pub fds: Vec<OwnedFd>,
    /// Fewer than announced came (the receiver was at its descriptor limit).
    pub truncated: bool,
}

/// Batches received and not yet claimed by an announcing frame beyond which the peer is
/// breaking the protocol (a well-behaved peer's batch is claimed by the read that brings
/// it, or the next one).
const UNCLAIMED_MAX: usize = 4;

pub(crate) struct Rx {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes the frame being received needs in total (0 when unknown).
    need: usize,
    dec: Decoder,
    /// Frames handed out from `buf` and not yet released.
    pins: u32,
    /// Which buffer `buf` is (changes when a pinned buffer is replaced).
    gen: u32,
    /// Earlier buffers still holding pinned frames (as many as handlers nested in one
    /// another over a buffer change).
    retired: Vec<Retired>,
    /// The last read filled all the space offered (more may be waiting).
    full_read: bool,
    /// The last read brought descriptors.
    fds_read: bool,
    /// Descriptor batches received, in order, not yet claimed by an announcing frame.
    batches: VecDeque<FdBatch>,
    /// The descriptors announced for the next frame.
    pending: Option<Box<FrameFds>>,
    /// Descriptors received so far.
    fds_received: u64,
    /// Announced descriptors that did not come (truncated batches).
    fds_missing: u64,
}

impl Rx {
    pub(crate) fn new(max: usize) -> Self {
        Rx {
            buf: Vec::new(),
            start: 0,
            end: 0,
            need: 0,
            dec: Decoder::new(max),
            pins: 0,
            gen: 0,
            retired: Vec::new(),
            full_read: false,
            fds_read: false,
            batches: VecDeque::new(),
            pending: None,
            fds_received: 0,
            fds_missing: 0,
        }
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.dec.set_max(max);
    }

    /// Whether the last read brought descriptors (and so stopped at them, whatever the
    /// space).
    pub(crate) fn last_read_stopped_at_fds(&self) -> bool {
        self.fds_read
    }

    /// Whether the last read filled the space it was offered.
    pub(crate) fn last_read_full(&self) -> bool {
        self.full_read
    }

    /// Makes room for the next read. No frame of this buffer pinned (earlier buffers may
    /// have some): reuses it from its start when it is empty, moves the unparsed tail to
    /// the front, grows for a frame larger than the buffer (doubling, never past what the
    /// frame needs). Pinned: never moves a byte; if there is no room at the end, continues
    /// in a new buffer and leaves this one to its pins.
    fn make_room(&mut self) {
        if self.pins > 0 {
            if self.end < self.buf.len() {
                return;
            }
            let tail = self.end - self.start;
            let size = RX_CHUNK
                .max(tail * 2)
                .max(self.need.min(tail * 2 + RX_CHUNK));
            let mut v = vec![0u8; size];
            v[..tail].copy_from_slice(&self.buf[self.start..self.end]);
            self.retired.push(Retired {
                buf: std::mem::replace(&mut self.buf, v),
                gen: self.gen,
                pins: self.pins,
            });
            self.gen = self.gen.wrapping_add(1);
            self.pins = 0;
            self.start = 0;
            self.end = tail;
            return;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
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

    /// Descriptors received so far, and announced ones that never came.
    pub(crate) fn fd_counts(&self) -> (u64, u64) {
        (self.fds_received, self.fds_missing)
    }

    /// One `recvmsg` into the free space; descriptors that come with it wait for the frame
    /// that announces them.
    pub(crate) fn read(&mut self, fd: RawFd) -> Read {
        self.make_room();
        let space = self.buf.len() - self.end;
        let (r, batch) = recv_fds(fd, &mut self.buf[self.end..]);
        let had_fds = batch.is_some();
        self.fds_read = had_fds;
        if let Some(b) = batch {
            self.fds_received += b.fds.len() as u64;
            self.batches.push_back(b);
            if self.batches.len() > UNCLAIMED_MAX {
                return Read::Error(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "protocol error: descriptors that no frame announces",
                ));
            }
        }
        match r {
            IoResult::Done(0) => Read::Eof,
            IoResult::Done(n) => {
                self.end += n;
                // A read that brought descriptors stops at them (the kernel never joins
                // two batches): more may be waiting behind.
                self.full_read = n == space || had_fds;
                Read::Data(n)
            }
            IoResult::WouldBlock => {
                self.full_read = false;
                self.idle();
                Read::WouldBlock
            }
            IoResult::Failed(e) if e.raw_os_error() == Some(libc::ECONNRESET) => Read::Eof,
            IoResult::Failed(e) => Read::Error(e),
        }
    }

    /// The socket has nothing more: a buffer grown for large frames goes back once empty
    /// (the next read starts a buffer of the usual size), so a peer that was sent a burst
    /// of large frames does not keep their size for good.
    fn idle(&mut self) {
        if self.buf.len() > RX_CHUNK && self.start == self.end && self.pins == 0 {
            super::release(std::mem::take(&mut self.buf));
            self.start = 0;
            self.end = 0;
        }
    }

    /// The next complete frame in the buffer. A frame pins the buffer until `unpin`.
    #[inline(always)]
    pub(crate) fn next(&mut self) -> Next {
        loop {
            if self.start == self.end {
                return Next::More;
            }
            let input = &mut self.buf[self.start..self.end];
            return match self.dec.next(input) {
                Step::Frame {
                    ty,
                    payload,
                    consumed,
                } => {
                    if ty == FDS_TYPE {
                        // Announces the descriptors of the next frame: the channel's own.
                        let count = payload
                            .first_chunk::<4>()
                            .map_or(0, |c| u32::from_ne_bytes(*c) as usize);
                        self.start += consumed;
                        self.need = 0;
                        self.claim(count);
                        continue;
                    }
                    let len = payload.len();
                    let off = consumed - len;
                    let ptr = input[off..].as_mut_ptr();
                    self.start += consumed;
                    self.need = 0;
                    self.pins += 1;
                    Next::Frame {
                        ty,
                        ptr,
                        len,
                        pin: Pin(self.gen),
                        fds: self.pending.take(),
                    }
                }
                Step::More { consumed, need } => {
                    self.start += consumed;
                    self.need = need;
                    Next::More
                }
                Step::TooLong { length } => Next::TooLong(length),
            };
        }
    }

    /// An announcing frame of `count` descriptors: the oldest batch received is theirs
    /// (batches and announcements come in the same order). Fewer than announced (the
    /// kernel dropped some, or a peer announced what it did not send): truncated; more:
    /// the extra ones are closed.
    fn claim(&mut self, count: usize) {
        let b = self.batches.pop_front().unwrap_or(FdBatch {
            fds: Vec::new(),
            truncated: true,
        });
        let mut fds = b.fds;
        let truncated = b.truncated || fds.len() < count;
        self.fds_missing += count.saturating_sub(fds.len()) as u64;
        fds.truncate(count);
        // A second announcement before a frame (a hostile peer): the first one's go.
        self.pending = Some(Box::new(FrameFds { fds, truncated }));
    }

    /// Whether `next` would hand out a frame (or report a length that ends the stream)
    /// without another read.
    #[cfg(feature = "standalone")]
    pub(crate) fn has_frame(&self) -> bool {
        self.start < self.end
            && matches!(
                self.dec.clone().next(&self.buf[self.start..self.end]),
                Step::Frame { .. } | Step::TooLong { .. }
            )
    }

    /// Releases a frame handed out by `next`; the buffer it pinned is freed with its last
    /// pin if it is no longer the one being read.
    #[inline]
    pub(crate) fn unpin(&mut self, pin: Pin) {
        if pin.0 == self.gen {
            self.pins = self.pins.saturating_sub(1);
            return;
        }
        self.unpin_retired(pin);
    }

    #[cold]
    fn unpin_retired(&mut self, pin: Pin) {
        if let Some(i) = self.retired.iter().position(|r| r.gen == pin.0) {
            let r = &mut self.retired[i];
            r.pins -= 1;
            if r.pins == 0 {
                super::release(self.retired.swap_remove(i).buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;
    use std::os::fd::{AsRawFd, OwnedFd};

    fn pair() -> (OwnedFd, OwnedFd) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (a.into(), b.into())
    }

    fn send_all(fd: RawFd, bytes: &[u8]) {
        let mut off = 0;
        while off < bytes.len() {
            // SAFETY: valid buffer.
            let n = unsafe {
                libc::send(
                    fd,
                    bytes[off..].as_ptr().cast(),
                    bytes.len() - off,
                    libc::MSG_DONTWAIT,
                )
            };
            assert!(n > 0, "socket full in a test that should not fill it");
            off += n as usize;
        }
    }

    #[test]
    fn oversized_header_is_refused_without_allocating() {
        let (a, b) = pair();
        send_all(a.as_raw_fd(), &[0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0]);
        let mut rx = Rx::new(1024);
        assert!(matches!(rx.read(b.as_raw_fd()), Read::Data(8)));
        assert!(matches!(rx.next(), Next::TooLong(u32::MAX)));
        assert!(rx.buf.len() <= RX_CHUNK);
    }

    /// A pinned frame's bytes stay put while later reads need more room than the buffer
    /// has: the nested reads continue in a new buffer and the old one lives until unpinned.
    #[test]
    fn pinned_frame_survives_growth_and_reset() {
        let (a, b) = pair();
        let mut out = Vec::new();
        wire::encode_into(&mut out, 1, &[7u8; 100]).unwrap();
        send_all(a.as_raw_fd(), &out);
        let mut rx = Rx::new(wire::DEFAULT_MAX_MESSAGE);
        assert!(matches!(rx.read(b.as_raw_fd()), Read::Data(_)));
        let Next::Frame { ptr, len, pin, .. } = rx.next() else {
            panic!("frame expected")
        };
        // A large frame arrives in pieces while the first is pinned.
        let big = vec![9u8; 3 * RX_CHUNK];
        let mut out = Vec::new();
        wire::encode_into(&mut out, 2, &big).unwrap();
        let mut got_big = false;
        for piece in out.chunks(64 * 1024) {
            send_all(a.as_raw_fd(), piece);
            while let Read::Data(_) = rx.read(b.as_raw_fd()) {}
            if let Next::Frame {
                ty, len: l, pin, ..
            } = rx.next()
            {
                assert_eq!((ty, l), (2, big.len()));
                got_big = true;
                rx.unpin(pin);
            }
        }
        assert!(got_big);
        // SAFETY: still pinned.
        let first = unsafe { core::slice::from_raw_parts(ptr, len) };
        assert!(first.iter().all(|&x| x == 7));
        rx.unpin(pin);
        assert!(rx.retired.is_empty());
    }

    /// A handler holds its frame and runs the loop while the peer streams (a nested
    /// dispatch, issue 20): the frame's buffer stays, but every buffer whose own frames
    /// were all released is freed or reused, so memory does not grow with the stream.
    #[test]
    fn a_long_pin_keeps_only_its_own_buffer() {
        let (a, b) = pair();
        let mut out = Vec::new();
        wire::encode_into(&mut out, 0, &[5u8; 1000]).unwrap();
        send_all(a.as_raw_fd(), &out);
        let mut rx = Rx::new(wire::DEFAULT_MAX_MESSAGE);
        assert!(matches!(rx.read(b.as_raw_fd()), Read::Data(_)));
        let Next::Frame {
            ptr: outer,
            len: outer_len,
            pin: outer_pin,
            ..
        } = rx.next()
        else {
            panic!("frame expected")
        };
        // 64 MiB of 16 KiB frames, each handled (pinned then released) while the outer
        // frame stays pinned; one nested frame at a time is itself held across a read.
        let payload = vec![3u8; 16 * 1024];
        let mut frame = Vec::new();
        wire::encode_into(&mut frame, 1, &payload).unwrap();
        let mut handled = 0;
        let mut held = None;
        while handled < 4096 {
            for _ in 0..8 {
                send_all(a.as_raw_fd(), &frame);
            }
            while let Read::Data(_) = rx.read(b.as_raw_fd()) {}
            while let Next::Frame { ty, len, pin, .. } = rx.next() {
                assert_eq!((ty, len), (1, payload.len()));
                handled += 1;
                // Every 100th frame stays pinned over the next read.
                if let Some(p) = held.take() {
                    rx.unpin(p);
                }
                if handled % 100 == 0 {
                    held = Some(pin);
                } else {
                    rx.unpin(pin);
                }
            }
            let kept: usize = rx.retired.iter().map(|r| r.buf.len()).sum::<usize>() + rx.buf.len();
            assert!(
                rx.retired.len() <= 2,
                "{} buffers retired",
                rx.retired.len()
            );
            assert!(kept <= 4 * RX_CHUNK, "{kept} bytes kept");
        }
        if let Some(p) = held.take() {
            rx.unpin(p);
        }
        // SAFETY: still pinned.
        let first = unsafe { core::slice::from_raw_parts(outer, outer_len) };
        assert!(first.iter().all(|&x| x == 5));
        rx.unpin(outer_pin);
        assert!(rx.retired.is_empty());
        assert_eq!(rx.pins, 0);
    }

    /// A buffer grown for a large frame is given back once the socket has nothing more.
    #[test]
    fn a_grown_buffer_goes_back_when_idle() {
        let (a, b) = pair();
        let big = vec![1u8; 2 * RX_CHUNK];
        let mut out = Vec::new();
        wire::encode_into(&mut out, 4, &big).unwrap();
        let mut rx = Rx::new(wire::DEFAULT_MAX_MESSAGE);
        let mut got = false;
        for piece in out.chunks(64 * 1024) {
            send_all(a.as_raw_fd(), piece);
            while let Read::Data(_) = rx.read(b.as_raw_fd()) {}
            if let Next::Frame { len, pin, .. } = rx.next() {
                assert_eq!(len, big.len());
                assert!(rx.buf.len() > RX_CHUNK);
                // Pinned: kept even when the socket is empty.
                assert!(matches!(rx.read(b.as_raw_fd()), Read::WouldBlock));
                assert!(rx.buf.len() > RX_CHUNK);
                rx.unpin(pin);
                got = true;
            }
        }
        assert!(got);
        assert!(matches!(rx.read(b.as_raw_fd()), Read::WouldBlock));
        assert!(rx.buf.is_empty());
        // And the next frame starts a buffer of the usual size.
        let mut out = Vec::new();
        wire::encode_into(&mut out, 5, b"x").unwrap();
        send_all(a.as_raw_fd(), &out);
        assert!(matches!(rx.read(b.as_raw_fd()), Read::Data(9)));
        assert_eq!(rx.buf.len(), RX_CHUNK);
    }
}
