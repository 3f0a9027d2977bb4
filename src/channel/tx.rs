//! The send side of a channel: frames queued in fixed-size chunks and written with one
//! `sendmsg` of many iovecs, never moved once queued (no front `memmove`, no reallocation
//! of the whole queue).
//!
//! * A frame whose payload is at most [`LARGE`] bytes is copied into the last chunk if it
//!   fits, otherwise into a new [`CHUNK`]-byte chunk: small frames never straddle two
//!   chunks. A larger frame continues over as many chunks as it needs (its header never
//!   straddles), so every buffer of the queue is one recyclable chunk.
//! * Written chunks are recycled (at most [`SPARE_MAX`] kept while frames are queued), so a
//!   steady stream, large frames included, allocates nothing. Once the loop has drained
//!   the queue ([`Tx::trim`]) it keeps one; the others go to the thread's pool, which the
//!   next burst to any peer takes from and which gives what it cannot keep back to the
//!   kernel.
//! * [`Tx::write_direct`] writes a frame straight from the caller's buffer when nothing is
//!   queued; only what the socket did not take is copied.
//! * Counters follow frames, not bytes: a frame counts as sent once its last byte is in
//!   the socket. `queued_bytes` counts wire bytes (headers included) not yet written; the
//!   per-peer limit applies to it.

mod fds;

use super::{send_iov, IoResult};
use crate::wire;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{OwnedFd, RawFd};

/// Size of a queue chunk.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Payloads above this may continue over several chunks.
pub(crate) const LARGE: usize = CHUNK / 4;
/// Written chunks a queue keeps for reuse while frames are queued.
const SPARE_MAX: usize = 64;
/// Written chunks a queue keeps once it has drained; the rest go to the thread's [`POOL`].
const SPARE_IDLE: usize = 1;
/// Chunks the thread's pool keeps for any queue; beyond that they go back to the kernel.
const POOL_MAX: usize = 32;
/// iovecs per `sendmsg` (the kernel's limit is 1024; 64 chunks is 4 MiB of small frames).
const IOV_PER_WRITE: usize = 64;

thread_local! {
    /// Spare chunks shared by the queues of this thread (the loop thread): what a drained
    /// queue does not keep. A burst's memory thus outlives it only up to [`POOL_MAX`] chunks,
    /// not per peer (each peer used to keep up to [`SPARE_MAX`], 4 MiB, for good:
    /// issue 20), while a queue that drains and refills in turn (a stream) takes its
    /// chunks back from here without allocating or faulting pages in again. A child after
    /// `fork` inherits the forking thread's pool, as it inherits the rest of its memory.
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty chunk from the thread's pool.
fn pool_take() -> Option<Vec<u8>> {
    // `try_borrow_mut`: a signal handler's send that interrupted a pool operation gets
    // nothing from the pool (it allocates) instead of panicking.
    POOL.try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
        .ok()
        .flatten()
}

/// Gives empty chunks to the thread's pool, or back to the kernel once it is full.
fn pool_give(bufs: impl Iterator<Item = Vec<u8>>) {
    for b in bufs {
        let kept = POOL.try_with(|p| {
            // Busy (a signal handler interrupted a pool operation): not kept.
            let Ok(mut p) = p.try_borrow_mut() else {
                return Some(b);
            };
            if p.len() < POOL_MAX && p.try_reserve(1).is_ok() {
                p.push(b);
                None
            } else {
                Some(b)
            }
        });
        match kept {
            Ok(None) => {}
            // The pool is full: freed, its pages given back first.
            Ok(Some(b)) => super::release(b),
            // The thread is being torn down: `b` went with the closure (freed).
            Err(_) => {}
        }
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `4 + payload` does not fit the 32-bit length field.
    Unframeable,
    /// Queuing it would exceed the per-peer limit.
    QueueFull,
    /// No memory for the copy.
    NoMemory,
}

/// What a write ended with.
#[derive(Debug)]
pub(crate) enum Flushed {
    /// Nothing is queued any more.
    Drained,
    /// The socket is full; the rest waits for writability.
    Blocked,
    /// The socket failed (peer gone).
    Error(io::Error),
}

/// Counters of one send side (see `mln_ipc_stats_t`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxStats {
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub queue_peak_bytes: u64,
    pub sends_refused: u64,
    /// Descriptors handed to the socket.
    pub fds_sent: u64,
}

struct Chunk {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
    /// Offset of the first frame header whose frame has not been counted as sent.
    scan: usize,
    /// `buf[..head_end]` continues a frame that started in an earlier chunk (or was
    /// partly written directly); 0: none.
    head_end: usize,
    /// That frame ends at `head_end` (else it goes on in the next chunk).
    head_completes: bool,
    /// Its payload bytes (counted when it completes).
    head_payload: usize,
    /// The program's frames that end in this chunk and are not counted as sent yet, and
    /// their payload bytes: a chunk written out whole is counted without a scan.
    ends: usize,
    ends_payload: u64,
}

impl Chunk {
    fn new(buf: Vec<u8>) -> Self {
        Chunk {
            buf,
            sent: 0,
            scan: 0,
            head_end: 0,
            head_completes: false,
            head_payload: 0,
            ends: 0,
            ends_payload: 0,
        }
    }

    /// Appends a whole frame (it fits: `room() >= h.len() + payload.len()`).
    #[inline(always)]
    fn append_frame(&mut self, h: &[u8], payload: &[u8]) {
        self.buf.extend_from_slice(h);
        self.buf.extend_from_slice(payload);
        self.ends += 1;
        self.ends_payload += payload.len() as u64;
    }

    fn room(&self) -> usize {
        CHUNK - self.buf.len()
    }
}

/// The send queue.
#[derive(Default)]
pub(crate) struct Tx {
    chunks: VecDeque<Chunk>,
    spare: Vec<Vec<u8>>,
    queued_bytes: usize,
    queued_frames: usize,
    /// Bytes queued since the last write attempt (drives opportunistic writes).
    since_attempt: usize,
    limit: usize,
    stats: TxStats,
    /// Descriptors to send, each batch with the stream offset of its frame's first byte
    /// (the announcing frame, see [`super::FDS_TYPE`]): a `sendmsg` that starts there
    /// carries them, and no `sendmsg` crosses into the next batch's frame.
    fd_batches: VecDeque<(u64, Vec<OwnedFd>)>,
    queued_fds: usize,
    /// Stream offsets: bytes put in the queue (or written directly) so far, and written.
    pushed: u64,
    written: u64,
}

impl Tx {
    /// An empty queue refusing frames that would make it hold more than `limit` unwritten
    /// bytes (0: unlimited).
    pub(crate) fn new(limit: usize) -> Self {
        Tx {
            limit,
            ..Tx::default()
        }
    }

    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Unwritten wire bytes.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Frames not completely written: what is lost if the peer goes now.
    pub(crate) fn queued_frames(&self) -> usize {
        self.queued_frames
    }

    /// The frame of `total` wire bytes just queued is refused after all (the write that
    /// followed found the peer gone): it no longer counts as queued, so it is not counted
    /// as lost at the close either. Its bytes stay behind the others; nothing is written to
    /// a gone peer any more.
    pub(crate) fn disown_last(&mut self, total: usize) {
        self.queued_frames = self.queued_frames.saturating_sub(1);
        self.queued_bytes = self.queued_bytes.saturating_sub(total);
    }

    pub(crate) fn since_attempt(&self) -> usize {
        self.since_attempt
    }

    pub(crate) fn stats(&self) -> TxStats {
        self.stats
    }

    /// A send refused above this queue (for lack of descriptors) counts here too.
    pub(crate) fn count_refused(&mut self) {
        self.stats.sends_refused += 1;
    }

    fn admit(&mut self, total: usize) -> Result<(), Refused> {
        // An empty queue always takes one frame: the limit is at least the maximum
        // message size, so no frame that may be sent at all is refused for good.
        if self.limit != 0
            && self.queued_bytes > 0
            && self.queued_bytes.saturating_add(total) > self.limit
        {
            self.stats.sends_refused += 1;
            return Err(Refused::QueueFull);
        }
        Ok(())
    }

    fn account(&mut self, bytes: usize, frames: usize) {
        self.pushed += bytes as u64;
        self.queued_bytes += bytes;
        self.queued_frames += frames;
        self.since_attempt += bytes;
        let q = self.queued_bytes as u64;
        if q > self.stats.queue_peak_bytes {
            self.stats.queue_peak_bytes = q;
        }
    }

    /// Queues one frame (copied).
    #[inline(always)]
    pub(crate) fn push(&mut self, ty: u32, payload: &[u8]) -> Result<(), Refused> {
        let h = wire::encode_header(ty, payload.len()).ok_or(Refused::Unframeable)?;
        let total = wire::HEADER_LEN + payload.len();
        self.admit(total)?;
        if payload.len() <= LARGE {
            self.small_chunk(total)?.append_frame(&h, payload);
        } else {
            self.append_spanning(&h, payload, 0)?;
        }
        self.account(total, 1);
        Ok(())
    }

    /// The chunk a small frame of `total` bytes goes to: the last one if it fits.
    #[inline(always)]
    fn small_chunk(&mut self, total: usize) -> Result<&mut Chunk, Refused> {
        if self.chunks.back().is_none_or(|c| c.room() < total) {
            self.add_chunk()?;
        }
        Ok(self.chunks.back_mut().expect("a chunk was just ensured"))
    }

    /// A new last chunk (once per 64 KiB queued: kept out of the per-frame path).
    #[inline(never)]
    fn add_chunk(&mut self) -> Result<(), Refused> {
        let buf = match self.spare.pop() {
            Some(b) => b,
            None => self.take_buffers(1)?.pop().expect("one buffer"),
        };
        if self.chunks.len() == self.chunks.capacity() {
            self.chunks.try_reserve(1).map_err(|_| Refused::NoMemory)?;
        }
        self.chunks.push_back(Chunk::new(buf));
        Ok(())
    }

    /// `n` empty chunk buffers (recycled ones first), all or none.
    #[cold]
    fn take_buffers(&mut self, n: usize) -> Result<Vec<Vec<u8>>, Refused> {
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| Refused::NoMemory)?;
        self.chunks.try_reserve(n).map_err(|_| Refused::NoMemory)?;
        while v.len() < n {
            match self.spare.pop().or_else(pool_take) {
                Some(b) => v.push(b),
                None => {
                    let mut b = Vec::new();
                    if b.try_reserve_exact(CHUNK).is_err() {
                        self.spare.append(&mut v);
                        return Err(Refused::NoMemory);
                    }
                    v.push(b);
                }
            }
        }
        Ok(v)
    }

    /// Appends the bytes of one frame, `h` then `payload`, minus the first `skip` (already
    /// written), over as many chunks as needed. With `skip == 0` it starts in the last
    /// chunk if the header fits there; with `skip > 0` (the queue is empty) in a new one.
    fn append_spanning(&mut self, h: &[u8], payload: &[u8], skip: usize) -> Result<(), Refused> {
        let total = h.len() + payload.len();
        let rest = total - skip;
        let tail_room = match self.chunks.back() {
            Some(c) if skip == 0 && c.room() >= wire::HEADER_LEN => c.room(),
            _ => 0,
        };
        let new = (rest - tail_room.min(rest)).div_ceil(CHUNK);
        let mut bufs = self.take_buffers(new)?.into_iter();
        // The frame's bytes from `skip` on, in order.
        let mut at = skip;
        let mut copy = |dst: &mut Vec<u8>, n: usize| {
            let mut left = n;
            while left > 0 {
                let (src, off) = if at < h.len() {
                    (h, at)
                } else {
                    (payload, at - h.len())
                };
                let k = left.min(src.len() - off);
                dst.extend_from_slice(&src[off..off + k]);
                at += k;
                left -= k;
            }
        };
        let mut left = rest;
        let mut started_before = skip > 0;
        if tail_room > 0 {
            let k = tail_room.min(left);
            let tail = self.chunks.back_mut().expect("tail");
            copy(&mut tail.buf, k);
            left -= k;
            if left == 0 {
                tail.ends += 1;
                tail.ends_payload += payload.len() as u64;
            }
            started_before = true;
        }
        while left > 0 {
            let mut c = Chunk::new(bufs.next().expect("reserved"));
            let k = CHUNK.min(left);
            copy(&mut c.buf, k);
            left -= k;
            if started_before {
                c.head_end = k;
                c.head_completes = left == 0;
                c.head_payload = payload.len();
                c.scan = k;
            }
            if left == 0 {
                c.ends += 1;
                c.ends_payload += payload.len() as u64;
            }
            started_before = true;
            self.chunks.push_back(c);
        }
        Ok(())
    }

    /// With nothing queued, writes the frame straight from `payload` and queues (copies)
    /// only what the socket did not take. `Ok(Flushed)` says how the write went; with
    /// something queued already it only queues (`Ok(Flushed::Blocked)`: the queue must be
    /// flushed). A refused frame changes nothing.
    pub(crate) fn write_direct(
        &mut self,
        fd: RawFd,
        ty: u32,
        payload: &[u8],
    ) -> Result<Flushed, Refused> {
        if !self.is_empty() {
            self.push(ty, payload)?;
            return Ok(Flushed::Blocked);
        }
        let h = wire::encode_header(ty, payload.len()).ok_or(Refused::Unframeable)?;
        let total = wire::HEADER_LEN + payload.len();
        self.admit(total)?;
        let n = match send_iov(fd, &[IoSlice::new(&h), IoSlice::new(payload)]) {
            IoResult::Done(n) => n,
            IoResult::WouldBlock => 0,
            IoResult::Failed(e) => return Ok(Flushed::Error(e)),
        };
        self.since_attempt = 0;
        self.pushed += n as u64;
        self.written += n as u64;
        if n == total {
            self.stats.frames_sent += 1;
            self.stats.bytes_sent += payload.len() as u64;
            return Ok(Flushed::Drained);
        }
        // Queue the rest. If that fails the frame is cut: the stream is unusable, which
        // the caller learns from the next write (the peer sees a truncated frame only if
        // memory runs out in the middle of one, where Melon would crash).
        self.append_spanning(&h, payload, n)?;
        self.account(total - n, 1);
        self.since_attempt = 0;
        Ok(Flushed::Blocked)
    }

    /// Writes as much of the queue as the socket takes.
    pub(crate) fn write(&mut self, fd: RawFd) -> Flushed {
        self.since_attempt = 0;
        if !self.fd_batches.is_empty() {
            return self.write_with_fds(fd);
        }
        loop {
            let want = match self.chunks.len() {
                0 => return Flushed::Drained,
                // The common case (a few small frames): no iovec array to build.
                1 => {
                    let c = &self.chunks[0];
                    let s = &c.buf[c.sent..];
                    let n = match send_iov(fd, &[IoSlice::new(s)]) {
                        IoResult::Done(n) => n,
                        IoResult::WouldBlock => return Flushed::Blocked,
                        IoResult::Failed(e) => return Flushed::Error(e),
                    };
                    let want = s.len();
                    self.advance(n);
                    if n < want {
                        return Flushed::Blocked;
                    }
                    continue;
                }
                _ => 0,
            };
            let mut iov: [IoSlice<'_>; IOV_PER_WRITE] = [IoSlice::new(&[]); IOV_PER_WRITE];
            let mut n_iov = 0;
            let mut want = want;
            for c in self.chunks.iter().take(IOV_PER_WRITE) {
                let s = &c.buf[c.sent..];
                want += s.len();
                iov[n_iov] = IoSlice::new(s);
                n_iov += 1;
            }
            let n = match send_iov(fd, &iov[..n_iov]) {
                IoResult::Done(n) => n,
                IoResult::WouldBlock => return Flushed::Blocked,
                IoResult::Failed(e) => return Flushed::Error(e),
            };
            self.advance(n);
            if n < want {
                // A short write on a stream socket: it is full.
                return if self.chunks.is_empty() {
                    Flushed::Drained
                } else {
                    Flushed::Blocked
                };
            }
        }
    }

    /// Marks `n` more bytes as written: counts the frames they complete, releases the
    /// chunks they finish.
    fn advance(&mut self, mut n: usize) {
        self.written += n as u64;
        self.queued_bytes -= n;
        while n > 0 {
            let c = self
                .chunks
                .front_mut()
                .expect("written bytes come from a chunk");
            let take = n.min(c.buf.len() - c.sent);
            c.sent += take;
            n -= take;
            let (frames, payload) = count_completed(c);
            self.queued_frames -= frames;
            self.stats.frames_sent += frames as u64;
            self.stats.bytes_sent += payload;
            if c.sent == c.buf.len() {
                let done = self.chunks.pop_front().expect("front exists");
                if self.spare.len() < SPARE_MAX {
                    let mut v = done.buf;
                    v.clear();
                    self.spare.push(v);
                }
            }
        }
        if self.chunks.is_empty() {
            debug_assert_eq!(self.queued_bytes, 0);
            debug_assert_eq!(self.queued_frames, 0);
        }
    }

    /// Once the queue has drained, gives what it needed beyond [`SPARE_IDLE`] chunks to the
    /// thread's pool. For the end of a burst (the loop has written what handlers queued),
    /// not for the writes in the middle of one, which would take them all back at once.
    #[inline]
    pub(crate) fn trim(&mut self) {
        if self.spare.len() > SPARE_IDLE && self.chunks.is_empty() {
            pool_give(self.spare.drain(SPARE_IDLE..));
        }
    }
}

/// Frames of `c` completed by its `sent` bytes and not counted yet: (frames, payload bytes).
fn count_completed(c: &mut Chunk) -> (usize, u64) {
    if c.sent == c.buf.len() {
        // Written out whole: every frame that ends here is complete.
        let r = (c.ends, c.ends_payload);
        c.ends = 0;
        c.ends_payload = 0;
        c.head_end = 0;
        c.scan = c.buf.len();
        return r;
    }
    let (frames, payload) = scan_completed(c);
    debug_assert!(c.ends >= frames && c.ends_payload >= payload);
    c.ends = c.ends.saturating_sub(frames);
    c.ends_payload = c.ends_payload.saturating_sub(payload);
    (frames, payload)
}

/// `count_completed` for a chunk written in part: walks the frames the written bytes
/// complete.
fn scan_completed(c: &mut Chunk) -> (usize, u64) {
    let mut frames = 0;
    let mut payload = 0u64;
    if c.head_end > 0 {
        if c.sent < c.head_end {
            return (0, 0);
        }
        if c.head_completes {
            frames += 1;
            payload += c.head_payload as u64;
        }
        c.head_end = 0;
    }
    // Headers never straddle chunks; a frame that goes on in the next chunk ends beyond
    // `buf.len()`, so the scan stops at it (its last chunk counts it).
    while c.buf.len() - c.scan >= wire::HEADER_LEN {
        let mut l = [0u8; wire::LEN_LEN];
        l.copy_from_slice(&c.buf[c.scan..c.scan + wire::LEN_LEN]);
        let length = u32::from_ne_bytes(l) as usize;
        let end = c.scan + wire::LEN_LEN + length;
        if end > c.sent {
            break;
        }
        let mut t = [0u8; wire::TYPE_LEN];
        t.copy_from_slice(&c.buf[c.scan + wire::LEN_LEN..c.scan + wire::HEADER_LEN]);
        if u32::from_ne_bytes(t) != super::FDS_TYPE {
            // (The announcing frames of descriptors are the channel's own: not counted.)
            frames += 1;
            payload += (length - wire::TYPE_LEN) as u64;
        }
        c.scan = end;
    }
    (frames, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::rx::{Next, Read, Rx};
    use std::os::fd::{AsRawFd, OwnedFd};

    /// The frame type that carries sequence number `seq`: the number itself, past the
    /// types of the library's own frames (1021..=1023: the receive side consumes 1023).
    fn seq_type(seq: u32) -> u32 {
        if seq >= 1021 {
            seq + 3
        } else {
            seq
        }
    }

    fn pair() -> (OwnedFd, OwnedFd) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (a.into(), b.into())
    }

    /// Reads and checks every frame available on `b`: type = sequence number, payload of
    /// `len(seq)` bytes all equal to `seq as u8`.
    fn drain_check(rx: &mut Rx, b: RawFd, next: &mut u32, len: impl Fn(u32) -> usize) -> bool {
        loop {
            let r = rx.read(b);
            loop {
                match rx.next() {
                    Next::Frame {
                        ty,
                        ptr,
                        len: l,
                        pin,
                        ..
                    } => {
                        // SAFETY: the frame is pinned until `unpin`.
                        let p = unsafe { core::slice::from_raw_parts(ptr, l) };
                        assert_eq!(ty, seq_type(*next));
                        assert_eq!(l, len(*next));
                        assert!(p.iter().all(|&x| x == *next as u8));
                        *next += 1;
                        rx.unpin(pin);
                    }
                    Next::More => break,
                    Next::TooLong(n) => panic!("too long {n}"),
                }
            }
            match r {
                Read::Data(_) => continue,
                Read::WouldBlock => return false,
                Read::Eof => return true,
                Read::Error(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn mixed_sizes_survive_a_full_socket_in_order_with_exact_counts() {
        let (a, b) = pair();
        let len = |i: u32| match i % 9 {
            0 => 0,
            1 => 100_000,
            2 => LARGE,
            3 => LARGE + 1,
            4 => CHUNK - 8,
            5 => 3 * CHUNK + 5,
            _ => (i as usize * 37) % 3000,
        };
        let mut tx = Tx::new(0);
        let mut sent_payload = 0u64;
        let n = 3000u32;
        for i in 0..n {
            let p = vec![i as u8; len(i)];
            sent_payload += p.len() as u64;
            tx.push(seq_type(i), &p).unwrap();
        }
        assert_eq!(tx.queued_frames(), n as usize);
        let mut rx = Rx::new(wire::DEFAULT_MAX_MESSAGE);
        let mut next = 0;
        let mut blocked = false;
        loop {
            match tx.write(a.as_raw_fd()) {
                Flushed::Drained => break,
                Flushed::Blocked => blocked = true,
                Flushed::Error(e) => panic!("{e}"),
            }
            drain_check(&mut rx, b.as_raw_fd(), &mut next, len);
        }
        assert!(blocked, "the queue must exceed the socket buffer");
        assert_eq!(tx.queued_frames(), 0);
        assert_eq!(tx.queued_bytes(), 0);
        let st = tx.stats();
        assert_eq!(st.frames_sent, n as u64);
        assert_eq!(st.bytes_sent, sent_payload);
        drop(a);
        assert!(drain_check(&mut rx, b.as_raw_fd(), &mut next, len));
        assert_eq!(next, n);
    }

    #[test]
    fn direct_write_queues_only_the_rest() {
        let (a, b) = pair();
        let mut tx = Tx::new(0);
        let big = vec![0u8; 4 << 20];
        // Fills the socket: the rest is queued, one frame counted as queued.
        assert!(matches!(
            tx.write_direct(a.as_raw_fd(), 0, &big),
            Ok(Flushed::Blocked)
        ));
        assert_eq!(tx.queued_frames(), 1);
        assert!(tx.queued_bytes() < big.len());
        // With something queued, a direct write only queues.
        let small = vec![1u8; 10];
        assert!(matches!(
            tx.write_direct(a.as_raw_fd(), 1, &small),
            Ok(Flushed::Blocked)
        ));
        assert_eq!(tx.queued_frames(), 2);
        let mut rx = Rx::new(wire::DEFAULT_MAX_MESSAGE);
        let mut next = 0;
        let len = |i: u32| if i == 0 { 4 << 20 } else { 10 };
        while !matches!(tx.write(a.as_raw_fd()), Flushed::Drained) {
            drain_check(&mut rx, b.as_raw_fd(), &mut next, len);
        }
        drop(a);
        drain_check(&mut rx, b.as_raw_fd(), &mut next, len);
        assert_eq!(next, 2);
        assert_eq!(tx.stats().frames_sent, 2);
        assert_eq!(tx.stats().bytes_sent, (4 << 20) + 10);
        // An empty queue and a socket with room: written at once, nothing queued.
        let (a, _b) = pair();
        let mut tx = Tx::new(0);
        assert!(matches!(
            tx.write_direct(a.as_raw_fd(), 5, &small),
            Ok(Flushed::Drained)
        ));
        assert!(tx.is_empty());
    }

    #[test]
    fn limit_refuses_without_changing_anything() {
        let mut tx = Tx::new(1000);
        tx.push(1, &[0; 500]).unwrap();
        assert_eq!(tx.push(2, &[0; 500]), Err(Refused::QueueFull));
        assert_eq!(tx.queued_frames(), 1);
        assert_eq!(tx.queued_bytes(), 508);
        assert_eq!(tx.stats().sends_refused, 1);
        tx.push(3, &[0; 400]).unwrap();
        assert_eq!(tx.queued_frames(), 2);
    }

    #[test]
    fn chunks_are_recycled() {
        let (a, b) = pair();
        let mut tx = Tx::new(0);
        let mut rx = Rx::new(wire::DEFAULT_MAX_MESSAGE);
        let mut next = 0;
        for round in 0..50u32 {
            for i in 0..100u32 {
                let seq = round * 100 + i;
                tx.push(seq_type(seq), &vec![seq as u8; 1000]).unwrap();
            }
            while !matches!(tx.write(a.as_raw_fd()), Flushed::Drained) {
                drain_check(&mut rx, b.as_raw_fd(), &mut next, |_| 1000);
            }
            drain_check(&mut rx, b.as_raw_fd(), &mut next, |_| 1000);
            assert!(tx.spare.len() <= SPARE_MAX);
        }
        assert_eq!(next, 5000);
    }

    fn pool_len() -> usize {
        POOL.with(|p| p.borrow().len())
    }

    /// Issue 20: a drained queue gives back what its burst needed beyond a small cache,
    /// to the thread's pool (bounded, the rest to the kernel), and the next burst, to this
    /// peer or another, takes its chunks from there first.
    #[test]
    fn a_drained_queue_keeps_a_small_cache() {
        let (a, b) = pair();
        let mut tx = Tx::new(0);
        let mut rx = Rx::new(wire::DEFAULT_MAX_MESSAGE);
        let mut next = 0;
        // 8 MiB of 16 KiB frames queued while nobody reads: 128 chunks.
        let n = 512u32;
        for i in 0..n {
            tx.push(seq_type(i), &vec![i as u8; LARGE]).unwrap();
        }
        assert!(tx.chunks.len() > SPARE_MAX + POOL_MAX);
        // Trimming a queue that has not drained changes nothing.
        tx.trim();
        while !matches!(tx.write(a.as_raw_fd()), Flushed::Drained) {
            drain_check(&mut rx, b.as_raw_fd(), &mut next, |_| LARGE);
            // In the middle of a burst written chunks are kept for it.
            assert!(tx.spare.len() <= SPARE_MAX);
        }
        drain_check(&mut rx, b.as_raw_fd(), &mut next, |_| LARGE);
        assert_eq!(next, n);
        assert_eq!(tx.spare.len(), SPARE_MAX);
        assert_eq!(pool_len(), 0);
        tx.trim();
        assert_eq!(tx.spare.len(), SPARE_IDLE);
        assert_eq!(pool_len(), POOL_MAX);
        // Another peer's burst of 4 chunks takes them from the pool, and gives all but one
        // back once drained.
        let (c, d) = pair();
        let mut tx2 = Tx::new(0);
        for i in 0..12u32 {
            tx2.push(i, &vec![i as u8; LARGE]).unwrap();
        }
        assert_eq!(tx2.chunks.len(), 4);
        assert_eq!(pool_len(), POOL_MAX - 4);
        let mut rx2 = Rx::new(wire::DEFAULT_MAX_MESSAGE);
        let mut next2 = 0;
        while !matches!(tx2.write(c.as_raw_fd()), Flushed::Drained) {
            drain_check(&mut rx2, d.as_raw_fd(), &mut next2, |_| LARGE);
        }
        tx2.trim();
        assert_eq!(tx2.spare.len(), SPARE_IDLE);
        assert_eq!(pool_len(), POOL_MAX - 1);
    }
}
