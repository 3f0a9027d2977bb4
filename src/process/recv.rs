//! Receiving: reading a channel and dispatching its frames to this process's handlers.
//!
//! One receive pass reads a few large chunks and hands every complete frame to its
//! handler, with `buf` pointing into the receive buffer. Handlers run outside the process
//! state's borrow, so they may do anything: send (their frames are flushed when the pass
//! ends), close any child (their own is closed when the pass ends), run the event loop
//! (a nested pass of the same channel then reads behind the frames still being handled,
//! which stay put: see `channel::rx`), fork. The pass re-checks its channel after every
//! handler.

use super::flush::flush_dirty;
use super::handlers::Cache;
use super::state::{Peer, PROC};
use super::supervise::{close_child, master_gone};
use crate::abi::*;
use crate::channel::{Next, Read};
use crate::registry::Side;
use core::ffi::c_void;
use std::io;

/// At most this many reads per readiness notification, so one busy peer cannot starve
/// the others sharing the loop.
const MAX_READS_PER_EVENT: usize = 8;

/// How a pass ended.
enum End {
    /// Nothing more to read now.
    Drained,
    /// A handler asked to close this channel's child.
    Stopped,
    /// End of stream; every complete frame before it was delivered.
    Eof,
    /// A frame announced a length above the maximum (spec D3 fix): protocol error.
    TooLong(u32),
    /// The socket failed.
    Error(io::Error),
    /// A handler forked and we are the new child: nothing here is ours any more.
    Forked,
}

/// What the pass does next.
enum Step {
    Call {
        h: unsafe extern "C" fn(*mut mln_event_t, *mut c_void, *mut c_void, u32, *mut *mut c_void),
        slot: *mut *mut c_void,
        ptr: *mut u8,
        len: usize,
    },
    Skipped,
    More,
    TooLong(u32),
    Gone,
}

/// RECV on `peer`'s channel (the body of `mln_ipc_fd_handler_master/worker`).
pub(crate) fn readable(ev: *mut mln_event_t, peer: Peer) {
    let Some((fd, epoch)) = PROC.with(|p| {
        if p.dispatch_stopped {
            return None;
        }
        let epoch = p.epoch;
        let ch = p.chan(peer)?;
        ch.busy += 1;
        ch.ch.rx.set_max(super::max_message());
        Some((ch.ch.raw(), epoch))
    }) else {
        return;
    };
    let end = pass(ev, peer, fd, epoch);
    if matches!(end, End::Forked) {
        return;
    }
    let verdict = PROC.with(|p| {
        let ch = p.chan(peer)?;
        ch.busy -= 1;
        let outer = ch.busy == 0;
        let pending = ch.close_pending;
        // The end of a pass: whatever its handlers queued goes out now.
        flush_dirty(p);
        match end {
            End::Eof => Some("end of stream".to_string()),
            End::TooLong(n) => Some(format!(
                "protocol error: frame length {n} above the maximum"
            )),
            End::Error(e) => Some(format!("recv: {e}")),
            _ if outer && pending => Some("closed by request".to_string()),
            _ => None,
        }
    });
    if let Some(why) = verdict {
        match peer {
            Peer::Child(c) => close_child(ev, c, &why),
            Peer::Master => master_gone(&why),
        }
    }
    super::callbacks::run_writable_callbacks(ev);
}

fn pass(ev: *mut mln_event_t, peer: Peer, fd: i32, epoch: u64) -> End {
    let (side, f_ptr): (Side, *mut c_void) = match peer {
        Peer::Child(c) => (Side::Master, c.cast()),
        Peer::Master => (Side::Worker, super::master_connection().cast()),
    };
    for _ in 0..MAX_READS_PER_EVENT {
        let r = PROC.with(|p| p.chan(peer).map(|ch| ch.ch.rx.read(fd)));
        let eof = match r {
            None => return End::Stopped,
            Some(Read::Data(_)) => false,
            Some(Read::WouldBlock) => return End::Drained,
            Some(Read::Eof) => true,
            Some(Read::Error(e)) => return End::Error(e),
        };
        loop {
            let step = PROC.with(|p| next_step(p, peer, side));
            match step {
                Step::Call { h, slot, ptr, len } => {
                    // SAFETY: a handler from the tables with its own data slot; the
                    // payload stays pinned (valid) until `unpin` below.
                    unsafe { h(ev, f_ptr, ptr.cast(), len as u32, slot) };
                    let after = PROC.with(|p| {
                        if p.epoch != epoch {
                            return None;
                        }
                        p.callbacks -= 1;
                        let ch = p.chan(peer)?;
                        ch.ch.rx.unpin();
                        Some(ch.close_pending)
                    });
                    match after {
                        None if PROC.with(|p| p.epoch != epoch) => return End::Forked,
                        None => return End::Stopped,
                        Some(true) => return End::Stopped,
                        Some(false) => {}
                    }
                }
                Step::Skipped => {}
                Step::More => break,
                Step::TooLong(n) => return End::TooLong(n),
                Step::Gone => return End::Stopped,
            }
        }
        if eof {
            return End::Eof;
        }
        let full = PROC.with(|p| p.chan(peer).is_some_and(|ch| ch.ch.rx.last_read_full()));
        if !full {
            return End::Drained;
        }
    }
    End::Drained
}

/// Takes the next frame of `peer`'s channel and finds its handler.
#[inline]
fn next_step(p: &mut super::state::Proc, peer: Peer, side: Side) -> Step {
    if p.dispatch_stopped {
        // A handler stopped this process: the frames behind its frame stay unread.
        return Step::Gone;
    }
    let Some(ch) = p.chan(peer) else {
        return Step::Gone;
    };
    match ch.ch.rx.next() {
        Next::Frame { ty, ptr, len } => {
            ch.frames_received += 1;
            ch.bytes_received += len as u64;
            let found = Cache::lookup(&mut ch.cache, side, ty);
            match found.and_then(|f| f.handler.map(|h| (h, f.slot))) {
                Some((h, slot)) => {
                    p.callbacks += 1;
                    Step::Call { h, slot, ptr, len }
                }
                None => {
                    // Unknown type or a NULL handler: dropped silently (Melon's rule).
                    ch.ch.rx.unpin();
                    Step::Skipped
                }
            }
        }
        Next::More => Step::More,
        Next::TooLong(n) => Step::TooLong(n),
    }
}
