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
use super::peer::{Phase, QUIT_TYPE, READY_TYPE};
use super::state::{Chan, Peer, Proc, PROC};
use super::supervise::{close_child, master_gone};
use crate::abi::*;
use crate::channel::{FrameFds, IoResult, Next, Pin, Read};
use crate::log;
use crate::registry::Side;
use core::ffi::c_void;
use std::io;

/// At most this many reads per readiness notification, so one busy peer cannot starve
/// the others sharing the loop.
const MAX_READS_PER_EVENT: usize = 8;
/// A read that stopped at descriptors (the kernel ends a read at each batch) costs this
/// fraction of a read of the budget above: a peer that sends a frame with descriptors
/// each is read up to 64 frames per notification, not 8 (a `epoll_wait` per 8 frames cost
/// descriptor passing an eighth of its rate), and still cannot starve the others.
const FD_READS_PER_READ: usize = 8;

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
        pin: Pin,
        fds: Option<Box<FrameFds>>,
    },
    Skipped,
    More,
    TooLong(u32),
    /// The process was stopped (`stop_dispatch`).
    Stopped,
    /// Master side: the child's ready frame (its loop runs).
    Ready,
    /// Worker side: the master's quit frame (a graceful stop).
    Quit,
}

/// How a receive pass begins.
enum Start {
    /// Nothing to do (stopped, or the peer is gone).
    Nothing,
    /// The child failed before its handshake: close it.
    Close(String),
    /// Child events are queued: they are delivered before these frames.
    EventsFirst,
    /// The channel (kept busy) and the epoch the pass began in.
    Pass(*mut Chan, u64),
}

/// RECV on `peer`'s channel (the body of `mln_ipc_fd_handler_master/worker`).
pub(crate) fn readable(ev: *mut mln_event_t, peer: Peer) {
    // The channel stays allocated for the whole pass: closing it waits while `busy` (and
    // only `shutdown`, which runs outside any pass, or a fork, which changes the epoch,
    // release it otherwise). So the pass keeps a pointer and touches it only inside
    // borrows of the process state.
    let start = PROC.with(|p| {
        if p.dispatch_stopped {
            return Start::Nothing;
        }
        let epoch = p.epoch;
        let Some(ch) = p.chan(peer) else {
            return Start::Nothing;
        };
        if ch.phase == Phase::Handshake {
            // Once per child: its first byte, then the pass goes on with its frames.
            match handshake(p, peer) {
                Ok(()) => {}
                Err(None) => return Start::Nothing,
                Err(Some(why)) => return Start::Close(why),
            }
        }
        if !p.events.is_empty() && !p.delivering {
            // Child events first (a STARTED, an EXITED of another child): the program
            // hears that a child started before it handles its frames.
            return Start::EventsFirst;
        }
        let Some(ch) = p.chan(peer) else {
            return Start::Nothing;
        };
        ch.busy += 1;
        ch.ch.rx.set_max(super::max_message());
        Start::Pass(ch as *mut Chan, epoch)
    });
    let (ch, epoch) = match start {
        Start::Pass(ch, epoch) => (ch, epoch),
        Start::Nothing => return,
        Start::EventsFirst => {
            super::lifecycle::deliver_events(ev);
            // Then the pass, unless the events' handler closed this child, stopped the
            // process or forked (the child's records are not ours then): looked up again.
            if PROC.with(|p| p.events.is_empty() || p.delivering) {
                return readable(ev, peer);
            }
            // Events still queued (their handler ran the loop, which delivers them after
            // it returns): the frames wait for the next notification.
            return;
        }
        Start::Close(why) => {
            if let Peer::Child(c) = peer {
                close_child(ev, c, &why);
            }
            return;
        }
    };
    let end = pass(ev, peer, ch, epoch);
    if matches!(end, End::Forked) {
        return;
    }
    let verdict = PROC.with(|p| {
        // SAFETY: still allocated (see above); reached inside the borrow only.
        let c = unsafe { &mut *ch };
        c.busy -= 1;
        let outer = c.busy == 0;
        let pending = c.phase == Phase::Closing;
        let pending_why = if outer { c.pending_why.take() } else { None };
        // The end of a pass: whatever its handlers queued goes out now.
        flush_dirty(p);
        match end {
            End::Eof => Some("end of stream".to_string()),
            End::TooLong(n) => Some(format!(
                "protocol error: frame length {n} above the maximum"
            )),
            End::Error(e) => Some(format!("recv: {e}")),
            _ if outer && pending => {
                Some(pending_why.unwrap_or_else(|| "closed by request".to_string()))
            }
            _ => None,
        }
    });
    if let Some(why) = verdict {
        match peer {
            Peer::Child(c) => close_child(ev, c, &why),
            Peer::Master => {
                // Returns only where the loop ends instead of the process (`adopt`).
                master_gone(ev, &why);
                return;
            }
        }
    }
    super::flush::run_writable_callbacks(ev);
    if peer == Peer::Master {
        super::lifecycle::quit_check();
    }
}

/// A child in phase `Handshake` became readable: its first byte is the handshake (then
/// its frames follow, read by the same pass). `Err(None)`: not yet; `Err(Some(why))`: it
/// died or failed before its handshake.
fn handshake(p: &mut Proc, peer: Peer) -> Result<(), Option<String>> {
    let Peer::Child(c) = peer else { return Ok(()) };
    let fd = p.chan(peer).ok_or(None)?.ch.raw();
    let mut byte = [0u8; 1];
    match crate::channel::recv_into(fd, &mut byte) {
        IoResult::Done(1) => {
            super::supervise::handshake_done(p, c);
            Ok(())
        }
        IoResult::Done(_) => Err(Some("exited before the fork handshake".into())),
        IoResult::WouldBlock => Err(None),
        IoResult::Failed(e) => Err(Some(format!("recv before the fork handshake: {e}"))),
    }
}

/// Frames received behind one whose handler now runs the loop itself (nested dispatch):
/// the socket has nothing new to say about them, so no readiness event would hand them
/// out and a handler waiting for the next frame would wait for ever. Called before each
/// wait of loop `ev`: a nested pass of each such channel registered on `ev` delivers them,
/// in order. Costs nothing while no user callback runs. Standalone only: Melon's loop does
/// not report a descriptor again while its handler runs, so there a nested dispatch does
/// not receive on the channel being handled at all (README, "The melon build").
#[cfg(feature = "standalone")]
pub(crate) fn deliver_held(ev: *mut mln_event_t) {
    let held = |p: &mut Proc, peer: Peer| {
        !p.dispatch_stopped
            && p.chan(peer).is_some_and(|c| {
                c.busy > 0 && c.phase != Phase::Closing && c.ev == ev && c.ch.rx.has_frame()
            })
    };
    let Some(peers) = PROC.try_with(|p| {
        if p.callbacks == 0 {
            return Vec::new();
        }
        let mut all: Vec<Peer> = p.children().into_iter().map(Peer::Child).collect();
        if p.is_worker {
            all.push(Peer::Master);
        }
        all.retain(|&peer| held(p, peer));
        all
    }) else {
        return;
    };
    for peer in peers {
        if PROC.try_with(|p| held(p, peer)) == Some(true) {
            readable(ev, peer);
        }
    }
}

fn pass(ev: *mut mln_event_t, peer: Peer, ch: *mut Chan, epoch: u64) -> End {
    let (side, f_ptr): (Side, *mut c_void) = match peer {
        Peer::Child(c) => (Side::Master, c.cast()),
        Peer::Master => (Side::Worker, super::master_connection().cast()),
    };
    // Frames already received come first: a nested pass (a handler running the loop) finds
    // those behind the frame its outer handler is handling.
    if let Some(end) = deliver(ev, ch, epoch, side, f_ptr) {
        return end;
    }
    let mut budget = MAX_READS_PER_EVENT * FD_READS_PER_READ;
    while budget > 0 {
        // SAFETY (every dereference of `ch`): inside a borrow of the process state, with
        // the epoch unchanged (no fork since the pass began), the channel is allocated.
        let (r, at_fds) = PROC.with(|_| unsafe {
            let c = &mut *ch;
            let fd = c.ch.raw();
            let r = c.ch.rx.read(fd);
            (r, c.ch.rx.last_read_stopped_at_fds())
        });
        budget = budget.saturating_sub(if at_fds { 1 } else { FD_READS_PER_READ });
        let eof = match r {
            Read::Data(_) => false,
            Read::WouldBlock => return End::Drained,
            Read::Eof => true,
            Read::Error(e) => return End::Error(e),
        };
        if let Some(end) = deliver(ev, ch, epoch, side, f_ptr) {
            return end;
        }
        if eof {
            return End::Eof;
        }
        if !PROC.with(|_| unsafe { (*ch).ch.rx.last_read_full() }) {
            return End::Drained;
        }
    }
    End::Drained
}

/// Hands every complete frame in `ch`'s buffer to its handler; `None` when it needs more
/// bytes, or how the pass ends.
fn deliver(
    ev: *mut mln_event_t,
    ch: *mut Chan,
    epoch: u64,
    side: Side,
    f_ptr: *mut c_void,
) -> Option<End> {
    // SAFETY (every dereference of `ch`): as in `pass`.
    let mut step = PROC.with(|p| next_step(p, unsafe { &mut *ch }, side));
    loop {
        match step {
            Step::Call {
                h,
                slot,
                ptr,
                len,
                pin,
                fds,
            } => {
                super::fds::enter(fds);
                // SAFETY: a handler from the tables with its own data slot; the payload
                // stays pinned (valid) until `unpin` below.
                unsafe { h(ev, f_ptr, ptr.cast(), len as u32, slot) };
                // What the handler did not take is closed (in a new child too: its copies).
                super::fds::leave();
                // One borrow for the end of this frame and the next one's lookup (this
                // runs for every frame).
                let after = PROC.with(|p| {
                    // The handler returned (in this process, parent or new child).
                    p.callbacks = p.callbacks.saturating_sub(1);
                    if p.epoch != epoch {
                        return Err(End::Forked);
                    }
                    let c = unsafe { &mut *ch };
                    c.ch.rx.unpin(pin);
                    if c.phase == Phase::Closing {
                        return Err(End::Stopped);
                    }
                    Ok(next_step(p, c, side))
                });
                match after {
                    Err(end) => return Some(end),
                    Ok(next) => step = next,
                }
                continue;
            }
            Step::Skipped => {}
            Step::Ready => PROC.with(|p| super::lifecycle::on_ready(p, f_ptr.cast())),
            Step::Quit => {
                super::lifecycle::on_quit(ev);
                if PROC.with(|p| p.epoch != epoch) {
                    return Some(End::Forked);
                }
            }
            Step::More => return None,
            Step::TooLong(n) => return Some(End::TooLong(n)),
            Step::Stopped => return Some(End::Stopped),
        }
        step = PROC.with(|p| next_step(p, unsafe { &mut *ch }, side));
    }
}

/// Takes the next frame of channel `ch` and finds its handler.
#[inline(always)]
fn next_step(p: &mut Proc, ch: &mut Chan, side: Side) -> Step {
    if p.dispatch_stopped || ch.phase == Phase::Closing {
        // A handler stopped this process, or closed this channel's child: the frames
        // behind its frame are never dispatched.
        return Step::Stopped;
    }
    match ch.ch.rx.next() {
        Next::Frame {
            ty,
            ptr,
            len,
            pin,
            fds,
        } => {
            if ty == READY_TYPE && side == Side::Master || ty == QUIT_TYPE && side == Side::Worker {
                // The library's own frames: not the program's, not counted.
                ch.ch.rx.unpin(pin);
                return if ty == READY_TYPE {
                    Step::Ready
                } else {
                    Step::Quit
                };
            }
            if !ch.fds_dropped && fds.as_ref().is_some_and(|f| f.truncated) {
                ch.fds_dropped = true;
                let from = match side {
                    Side::Master => "a child",
                    Side::Worker => "the master",
                };
                log::warn(format_args!(
                    "fewer descriptors came from {from} than it announced: the kernel dropped \
                     some (this process at its descriptor limit, RLIMIT_NOFILE) or the peer \
                     sent fewer; the frame is handled with those that came \
                     (mln_ipc_fds_truncated); not logged again for this peer"
                ));
            }
            ch.frames_received += 1;
            ch.bytes_received += len as u64;
            match ch
                .cache
                .lookup(side, ty)
                .and_then(|f| f.handler.map(|h| (h, f.slot)))
            {
                Some((h, slot)) => {
                    p.callbacks += 1;
                    Step::Call {
                        h,
                        slot,
                        ptr,
                        len,
                        pin,
                        fds,
                    }
                }
                None => {
                    // Unknown type or a NULL handler: dropped (Melon's rule), counted, and
                    // said at debug level.
                    ch.unhandled += 1;
                    if log::enabled(log::Level::Debug) {
                        let side = match side {
                            Side::Master => "master",
                            Side::Worker => "worker",
                        };
                        log::debug(format_args!(
                            "type {ty}: no {side} handler; the frame ({len} bytes) is dropped"
                        ));
                    }
                    ch.ch.rx.unpin(pin);
                    Step::Skipped
                }
            }
        }
        Next::More => Step::More,
        Next::TooLong(n) => Step::TooLong(n),
    }
}
