//! The send queue's descriptors: a frame queued with descriptors, and the writes that
//! carry them (each `sendmsg` that starts at such a frame carries its batch, and none
//! crosses into the next batch's frame).

use super::{Flushed, Refused, Tx, LARGE};

/// iovecs per `sendmsg` while descriptors are queued.
const IOV_FDS: usize = 16;
use crate::channel::IoResult;
use crate::wire;
use std::io::IoSlice;
use std::os::fd::{OwnedFd, RawFd};

impl Tx {
    /// Descriptors queued and not yet handed to the socket.
    pub(crate) fn queued_fds(&self) -> usize {
        self.queued_fds
    }

    /// Queues a frame with descriptors: an announcing frame ([`crate::channel::FDS_TYPE`], the
    /// count) then the frame, both or neither; the descriptors go with the announcing
    /// frame's first byte. `fds_limit` (0: none) caps the descriptors queued, except that
    /// a queue with none takes one frame's.
    pub(crate) fn push_fds(
        &mut self,
        ty: u32,
        payload: &[u8],
        fds: Vec<OwnedFd>,
        fds_limit: usize,
    ) -> Result<(), Refused> {
        if fds.is_empty() {
            return self.push(ty, payload);
        }
        let n = fds.len();
        let h = wire::encode_header(ty, payload.len()).ok_or(Refused::Unframeable)?;
        let count = (n as u32).to_ne_bytes();
        let ch = wire::encode_header(crate::channel::FDS_TYPE, count.len()).expect("4 bytes frame");
        let ctl = wire::HEADER_LEN + count.len();
        let total = wire::HEADER_LEN + payload.len();
        if fds_limit != 0 && self.queued_fds > 0 && self.queued_fds + n > fds_limit {
            self.stats.sends_refused += 1;
            return Err(Refused::QueueFull);
        }
        self.admit(ctl + total)?;
        self.fd_batches
            .try_reserve(1)
            .map_err(|_| Refused::NoMemory)?;
        let at = self.pushed;
        {
            let c = self.small_chunk(ctl)?;
            c.buf.extend_from_slice(&ch);
            c.buf.extend_from_slice(&count);
        }
        self.account(ctl, 0);
        let r = if payload.len() <= LARGE {
            self.small_chunk(total).map(|c| c.append_frame(&h, payload))
        } else {
            self.append_spanning(&h, payload, 0)
        };
        if let Err(e) = r {
            // Take the announcing frame back (the last bytes of the last chunk).
            let c = self.chunks.back_mut().expect("it was queued");
            c.buf.truncate(c.buf.len() - ctl);
            if c.buf.is_empty() && c.sent == 0 {
                let b = self.chunks.pop_back().expect("back").buf;
                self.spare.push(b);
            }
            self.pushed -= ctl as u64;
            self.queued_bytes -= ctl;
            self.since_attempt = self.since_attempt.saturating_sub(ctl);
            return Err(e);
        }
        self.account(total, 1);
        self.queued_fds += n;
        self.fd_batches.push_back((at, fds));
        Ok(())
    }

    /// [`Tx::write`] while descriptors are queued: each `sendmsg` stops where the next
    /// batch's frame begins, and the one that starts there carries the batch.
    #[cold]
    pub(super) fn write_with_fds(&mut self, fd: RawFd) -> Flushed {
        loop {
            if self.chunks.is_empty() {
                return Flushed::Drained;
            }
            let (carry, cap) = match self.fd_batches.front() {
                None => return self.write(fd),
                Some(&(at, _)) if at <= self.written => {
                    let next = self.fd_batches.get(1).map(|b| b.0 - self.written);
                    (true, next)
                }
                Some(&(at, _)) => (false, Some(at - self.written)),
            };
            let cap = cap.map_or(usize::MAX, |c| c as usize);
            // Fewer than a plain write: a write stops at the next batch, a few frames away.
            let mut iov: [IoSlice<'_>; IOV_FDS] = [IoSlice::new(&[]); IOV_FDS];
            let mut n_iov = 0;
            let mut want = 0usize;
            for c in self.chunks.iter().take(IOV_FDS) {
                if want == cap {
                    break;
                }
                let s = &c.buf[c.sent..];
                let s = &s[..s.len().min(cap - want)];
                want += s.len();
                iov[n_iov] = IoSlice::new(s);
                n_iov += 1;
            }
            let raw: &[RawFd] = if carry {
                let b = &self.fd_batches[0].1;
                // SAFETY: `OwnedFd` is `repr(transparent)` over the descriptor number (std
                // documents it for FFI), so the batch is an array of descriptor numbers.
                unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<RawFd>(), b.len()) }
            } else {
                &[]
            };
            let n = match crate::channel::send_iov_fds(fd, &iov[..n_iov], raw) {
                IoResult::Done(n) => n,
                IoResult::WouldBlock => return Flushed::Blocked,
                IoResult::Failed(e) => return Flushed::Error(e),
            };
            if carry && n > 0 {
                // In the socket now (the kernel holds its own references): ours close.
                let (_, sent) = self.fd_batches.pop_front().expect("front");
                self.queued_fds -= sent.len();
                self.stats.fds_sent += sent.len() as u64;
            }
            self.advance(n);
            if n < want {
                return if self.chunks.is_empty() {
                    Flushed::Drained
                } else {
                    Flushed::Blocked
                };
            }
        }
    }
}
