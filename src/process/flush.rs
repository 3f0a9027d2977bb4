//! Sending: the one state machine of a channel's send side.
//!
//! ```text
//!            send                   flush (loop)                 socket full
//!   idle ----------> dirty ------------------------> idle   or  ----------> armed
//!     ^   (queued, a flush is due)                                (SEND interest on
//!     |                                                            the channel's loop)
//!     +------------------------ writable: flush, drop SEND ---------------+
//! ```
//!
//! * A send queues the frame (or, when nothing is queued and the frame is large, writes it
//!   straight from the caller's buffer) and makes the channel *dirty*. While a burst is
//!   being queued, every [`OPPORTUNISTIC`] bytes are written at once if the socket takes
//!   them, so the receiver works in parallel and the queue stays small.
//! * A dirty channel is flushed after the current handlers: at the end of the receive pass
//!   that ran them, or by a zero-delay timer on the channel's loop (standalone build), or
//!   by the wake-up descriptor (melon build, and whenever a timer cannot be set), so frames
//!   queued by a handler that runs the loop itself go out too.
//! * A flush that meets a full socket arms a level-triggered SEND interest beside the
//!   persistent RECV on the loop the channel is registered on (never an appended one-shot,
//!   which stalls Melon's loop, spec D10) and drops it again by a replace once drained.
//! * Only the loop carrying the channel's RECV interest is used. The `ev` given to a send
//!   is not kept: a send through a temporary loop cannot leave the channel waiting on it.
//!   A channel registered on no loop is written at once, as far as the socket takes it;
//!   the rest waits for the next send or for the registration.
//! * The send path never calls into the event loop except (standalone) to set that timer,
//!   which the loop refuses while its own bookkeeping runs: so a send from a signal
//!   handler never deadlocks (D9), in either build. A send that finds the process state
//!   itself busy (the signal interrupted the library) is parked (`crate::sigsafe`); every
//!   later send queues the parked frames first, so frames keep the order of the sends.
//! * Pacing, for Melon programs only: a program that set no writable handler (Melon's
//!   API has no way to hear "the queue drained") would otherwise see a burst faster than
//!   its peer reads end up whole in memory, or refused and lost. So once [`PACE_HIGH`]
//!   bytes are queued to one peer, its sends wait (`poll`) until the peer has taken half
//!   of them, as a blocking pipe would, but never longer than [`PACE_SEND_MAX`] per send
//!   nor [`PACE_TURN_MAX`] in all between two turns of the loop; past that the queue
//!   grows (up to the queue limit, where sends are refused with EAGAIN). A peer that takes
//!   nothing for [`PACE_WAIT_MS`] ms is marked stalled and not waited for again until it
//!   reads. The time waited is in the peer's stats (`paced_ns`). A program that set a
//!   writable handler (C) and every program of the Rust API are never paced: their sends
//!   queue up to the limit, then EAGAIN / `QueueFull`, and the writable callback resumes.
//! * A failed write moves the peer to `Failing` and changes nothing else: the end of stream
//!   arrives on the read side, which delivers what the peer sent before it went and then
//!   handles its death (restart and so on) from the loop. From the failed write on, sends
//!   to it are refused (`NoPeer`: ESRCH); what was queued is counted as lost at the close.
//!   (Melon accepts them until the death is handled, and loses them.)

use super::peer::Phase;
use super::settings::fds_limit;
use super::settings::{max_message, queue_limit};
use super::state::{Chan, Peer, Proc, PROC};
use super::ENTRIES;
use crate::abi::*;
use crate::channel::{Flushed, Refused};
use crate::log;
use crate::reactor;
use crate::wire;
use core::ffi::c_void;
use core::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// While a burst is queued, write whenever this many bytes accumulated (at most; see
/// [`opportunistic_due`]).
pub(crate) const OPPORTUNISTIC: usize = crate::channel::tx::CHUNK;
/// What may wait, over every peer being sent to, between opportunistic writes: about what
/// a core's cache holds. A program sending to many peers in turn writes each one sooner,
/// so the bytes it queues are still in the cache when the kernel copies them (200 workers
/// x 64 KiB waiting: the master's CPU per send 3.2-3.4x that of 2 workers; with this
/// budget and the 16 KiB floor 1.5-1.8x, `make bench`'s rr200, where the rest is mostly
/// the kernel waking the 200 receivers).
const OPPORTUNISTIC_BUDGET: usize = 1024 * 1024;
/// ... but no less than this between two writes to one peer (system calls per frame: 8
/// KiB cost more than they saved, 32 KiB no less than 16).
const OPPORTUNISTIC_MIN: usize = 16 * 1024;

/// Whether `since` bytes queued to one peer since its last write attempt call for a write
/// now, while `dirty` peers have frames queued in this pass: `since` reached
/// `OPPORTUNISTIC_BUDGET / dirty`, within `OPPORTUNISTIC_MIN..=OPPORTUNISTIC` (without a
/// division: this runs for every frame sent).
#[inline(always)]
fn opportunistic_due(since: usize, dirty: usize) -> bool {
    since >= OPPORTUNISTIC
        || (since >= OPPORTUNISTIC_MIN && since.saturating_mul(dirty) >= OPPORTUNISTIC_BUDGET)
}
/// Payloads at least this large are written straight from the caller's buffer when
/// nothing is queued.
pub(crate) const DIRECT_MIN: usize = 16 * 1024;
/// Above this many queued bytes a send waits for the peer to take some (pacing).
pub(crate) const PACE_HIGH: usize = 4 << 20;
/// How long one pacing wait may see no progress before the peer counts as stalled.
const PACE_WAIT_MS: u64 = 20;
/// The longest one send waits (pacing).
pub(crate) const PACE_SEND_MAX: Duration = Duration::from_millis(20);
/// The longest the sends made between two turns of the loop wait in all (pacing).
pub(crate) const PACE_TURN_MAX: Duration = Duration::from_millis(100);

/// Sends may wait for their peer (pacing): no writable handler is set. Cleared by
/// `mln_ipc_writable_handler_set` with a handler and by the Rust API.
static PACING: AtomicBool = AtomicBool::new(true);
/// Turns of the loops (`loop_turned`), and the pacing time spent since the last one.
static TURN: AtomicU64 = AtomicU64::new(0);
static TURN_SEEN: AtomicU64 = AtomicU64::new(0);
static TURN_SPENT_NS: AtomicU64 = AtomicU64::new(0);

/// Whether sends may wait for a slow peer (see the module docs).
pub(crate) fn set_pacing(on: bool) {
    PACING.store(on, Ordering::Relaxed);
}

/// A loop of this process turned (before its wait, or one of the core's callbacks ran):
/// the pacing budget of [`PACE_TURN_MAX`] starts again.
#[inline]
pub(crate) fn loop_turned() {
    TURN.fetch_add(1, Ordering::Relaxed);
}

/// What is left of this turn's pacing budget.
fn turn_budget() -> Duration {
    let turn = TURN.load(Ordering::Relaxed);
    if TURN_SEEN.swap(turn, Ordering::Relaxed) != turn {
        TURN_SPENT_NS.store(0, Ordering::Relaxed);
    }
    PACE_TURN_MAX.saturating_sub(Duration::from_nanos(TURN_SPENT_NS.load(Ordering::Relaxed)))
}

/// Why a send was refused (errno in the C API).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum SendError {
    /// Above the maximum message size, or not framable at all (EMSGSIZE).
    TooLarge,
    /// No such live peer (ESRCH).
    NoPeer,
    /// The per-peer queue limit (EAGAIN).
    QueueFull,
    /// No memory (ENOMEM).
    NoMemory,
    /// A signal handler interrupted the library and every parking slot is taken, or the
    /// frame is too large for one, or it carries descriptors (EAGAIN).
    Busy,
    /// A descriptor to send is not open (EBADF).
    BadFd,
    /// A system call failed (its errno: EMFILE duplicating a descriptor, ...).
    Os(i32),
    /// A type the library keeps for its own frames (1021..=1023, in Melon's reserved
    /// range): EINVAL.
    Reserved,
}

/// Whether `ty` is a type of the library's own frames (`peer::QUIT_TYPE`,
/// `peer::READY_TYPE`, `channel::FDS_TYPE`), which a program may not send.
#[inline]
pub(super) fn reserved(ty: u32) -> bool {
    (1021..=1023).contains(&ty)
}

/// Whom a send is for, as the caller named it.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    Child(*const mln_fork_t),
    Master,
}

/// `mln_ipc_master_send_prepare`. `ev`: the caller's loop (live during the call, NULL if
/// none); only asked whether a signal handler interrupted its bookkeeping.
#[inline]
pub(crate) fn send_to_child(
    ev: *mut mln_event_t,
    f: *const mln_fork_t,
    ty: u32,
    payload: &[u8],
) -> Result<(), SendError> {
    send(ev, Target::Child(f), ty, payload)
}

/// `mln_ipc_worker_send_prepare`; `ev` as for `send_to_child`.
#[inline]
pub(crate) fn send_to_master(
    ev: *mut mln_event_t,
    ty: u32,
    payload: &[u8],
) -> Result<(), SendError> {
    send(ev, Target::Master, ty, payload)
}

#[inline]
fn send(ev: *mut mln_event_t, t: Target, ty: u32, payload: &[u8]) -> Result<(), SendError> {
    if payload.len() > max_message().saturating_sub(wire::TYPE_LEN) {
        return Err(SendError::TooLarge);
    }
    if reserved(ty) {
        return Err(SendError::Reserved);
    }
    // `ev` is never dereferenced (it may be a loop the program freed since). A signal
    // handler that interrupted the bookkeeping of a loop of this thread (possibly inside
    // `malloc`) parks the frame, without allocating, as when the signal interrupted the
    // library itself.
    let _ = ev;
    if reactor::busy_here() {
        return park(t, ty, payload);
    }
    match PROC.try_with(|p| {
        if crate::sigsafe::parked() {
            drain_parked(p);
        }
        send_in(p, t, ty, payload, false)
    }) {
        Some(r) => r,
        None => park(t, ty, payload),
    }
}

/// The process state is busy: a signal handler interrupted the library. Copy the frame
/// into a preallocated slot (no allocation, no lock); the next send or the loop queues it.
fn park(t: Target, ty: u32, payload: &[u8]) -> Result<(), SendError> {
    let to = match t {
        Target::Child(f) => f.cast_mut().cast::<c_void>(),
        Target::Master => null_mut(),
    };
    if crate::sigsafe::park(to, ty, payload) {
        Ok(())
    } else {
        Err(SendError::Busy)
    }
}

/// Queues a frame of the library's own (a graceful stop's quit, a worker's ready) with an
/// empty payload to `peer`, behind everything queued before; also to a child being
/// stopped, never refused for the queue limit. Whether it was queued (the peer is live).
pub(crate) fn send_control(p: &mut Proc, peer: Peer, ty: u32) -> bool {
    let t = match peer {
        Peer::Child(c) => Target::Child(c.cast_const().cast()),
        Peer::Master => Target::Master,
    };
    send_in(p, t, ty, &[], true).is_ok()
}

/// Queues the frames parked by signal handlers, oldest first.
pub(crate) fn drain_parked(p: &mut Proc) {
    crate::sigsafe::drain(|parked| {
        let t = if parked.to.is_null() {
            Target::Master
        } else {
            Target::Child(parked.to.cast())
        };
        match send_in(p, t, parked.ty, parked.payload, true) {
            Err(e) => log::warn(format_args!(
                "frame of type {} sent from a signal handler dropped: {e:?}",
                parked.ty
            )),
            Ok(()) => note_overfull(p, t),
        }
    });
}

/// The peer a send names and its channel, with one lookup. `accepted`: the frame was
/// accepted earlier (parked by a signal handler) or is the library's own: a child being
/// stopped gracefully still takes it.
#[inline]
pub(super) fn resolve(
    p: &mut Proc,
    t: Target,
    accepted: bool,
) -> Result<(Peer, *mut Chan), SendError> {
    match t {
        Target::Child(f) => {
            let c = if accepted {
                p.find(f)
                    .filter(|&c| p.chan_phase(c) != Some(Phase::Closing))
                    .ok_or(SendError::NoPeer)?
            } else {
                p.find_open(f).ok_or(SendError::NoPeer)?
            };
            // SAFETY: a live record (found in the live set), reached inside the borrow.
            let ch = unsafe { (*c).live.as_mut() }.ok_or(SendError::NoPeer)?;
            Ok((Peer::Child(c), &mut ch.chan))
        }
        Target::Master if p.is_worker => match p.master().chan.as_mut() {
            Some(ch) => Ok((Peer::Master, ch)),
            None => Err(SendError::NoPeer),
        },
        Target::Master => Err(SendError::NoPeer),
    }
}

pub(super) fn refused(r: Refused) -> SendError {
    match r {
        Refused::Unframeable => SendError::TooLarge,
        Refused::QueueFull => SendError::QueueFull,
        Refused::NoMemory => SendError::NoMemory,
    }
}

/// Queues one frame. `parked`: a frame a signal handler parked, already accepted (its send
/// returned 0), or a frame of the library's own ([`send_control`]): it goes in whatever the
/// queue limit says (at most 32 x 4 KiB over it), also to a child being stopped.
#[inline(always)]
fn send_in(
    p: &mut Proc,
    t: Target,
    ty: u32,
    payload: &[u8],
    parked: bool,
) -> Result<(), SendError> {
    let (peer, ch) = resolve(p, t, parked)?;
    let limit = if parked { 0 } else { queue_limit() };
    // SAFETY: the channel of a live peer, reached inside the borrow; `p` is not used to
    // reach it again while this reference lives (only `mark_dirty` below, after its last
    // use).
    let ch = unsafe { &mut *ch };
    if !ch.phase.accepts_sends() {
        // A write to the peer failed: it is gone, even if the loop has not handled its end
        // of stream yet. Refused, so the program knows (Melon accepts and loses it).
        return Err(SendError::NoPeer);
    }
    ch.ch.tx.set_limit(limit);
    let fd = ch.ch.raw();
    let r = if payload.len() >= DIRECT_MIN
        && ch.ch.tx.is_empty()
        && !ch.send_armed
        && ch.phase.writes()
    {
        ch.ch.tx.write_direct(fd, ty, payload)
    } else {
        ch.ch.tx.push(ty, payload).map(|()| Flushed::Blocked)
    };
    match r {
        Ok(Flushed::Drained) => return Ok(()),
        Ok(Flushed::Blocked) => {}
        Ok(Flushed::Error(e)) => {
            broken(ch, peer, &e);
            return Err(SendError::NoPeer);
        }
        Err(r) => {
            if r == Refused::QueueFull {
                if !ch.refused {
                    log::debug(format_args!(
                        "{peer}: queue full ({} bytes queued, limit {limit}): sends refused \
                         until it drains to half",
                        ch.ch.tx.queued_bytes()
                    ));
                }
                ch.refused = true;
                // A flush must come to notice the drain and call the writable callback.
                mark_dirty(p, peer);
            }
            return Err(refused(r));
        }
    }
    queued(p, peer, ch, wire::HEADER_LEN + payload.len())
}

/// A frame of `total` wire bytes was queued to `peer`: keep the socket busy during a
/// burst (a channel no loop watches is written at once), pace, and schedule a flush.
#[inline(always)]
pub(super) fn queued(
    p: &mut Proc,
    peer: Peer,
    ch: &mut Chan,
    total: usize,
) -> Result<(), SendError> {
    let fd = ch.ch.raw();
    if ch.phase.writes()
        && (ch.ev.is_null() || opportunistic_due(ch.ch.tx.since_attempt(), p.dirty.len()))
    {
        if let Flushed::Error(e) = ch.ch.tx.write(fd) {
            // This frame is queued behind bytes the peer will never read: refused (the
            // program is told), so not counted among the frames lost at the close.
            broken(ch, peer, &e);
            ch.ch.tx.disown_last(total);
            return Err(SendError::NoPeer);
        }
        if ch.ch.tx.queued_bytes() >= PACE_HIGH && !ch.stalled && PACING.load(Ordering::Relaxed) {
            pace(ch, peer, fd);
            if ch.phase.ended() {
                ch.ch.tx.disown_last(total);
                return Err(SendError::NoPeer);
            }
        }
    }
    if !ch.dirty && !ch.ch.tx.is_empty() {
        mark_dirty(p, peer);
    }
    Ok(())
}

/// Waits until the peer has taken half of what is queued (see the module docs). errno is
/// left as it was (an interrupted `poll` sets it).
#[cold]
fn pace(ch: &mut Chan, peer: Peer, fd: i32) {
    crate::sys::keeping_errno(|| pace_waits(ch, peer, fd));
}

fn pace_waits(ch: &mut Chan, peer: Peer, fd: i32) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let budget = turn_budget().min(PACE_SEND_MAX);
    if budget.is_zero() {
        return;
    }
    // SAFETY: the channel's descriptor, open for the duration of the call.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let patience = Duration::from_millis(PACE_WAIT_MS);
    let start = Instant::now();
    let end = start + budget;
    // The peer must take something within `patience` (signals interrupting the wait do
    // not restart the clock).
    let mut deadline = start + patience;
    while ch.ch.tx.queued_bytes() > PACE_HIGH / 2 {
        let now = Instant::now();
        if now >= deadline {
            ch.stalled = true;
            log::debug(format_args!(
                "{peer} took nothing for {PACE_WAIT_MS} ms: sends stop waiting for it \
                 (queued: {} bytes)",
                ch.ch.tx.queued_bytes()
            ));
            break;
        }
        if now >= end {
            break;
        }
        let left = deadline.min(end) - now;
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut pfd = [PollFd::new(bfd, PollFlags::POLLOUT)];
        match poll(&mut pfd, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        let before = ch.ch.tx.queued_bytes();
        match ch.ch.tx.write(fd) {
            Flushed::Error(e) => {
                broken(ch, peer, &e);
                break;
            }
            Flushed::Drained => break,
            Flushed::Blocked => {}
        }
        if ch.ch.tx.queued_bytes() < before {
            deadline = Instant::now() + patience;
        }
    }
    let spent = start.elapsed().as_nanos() as u64;
    ch.paced_ns += spent;
    TURN_SPENT_NS.fetch_add(spent, Ordering::Relaxed);
}

fn broken(ch: &mut Chan, peer: Peer, e: &std::io::Error) {
    if ch.phase.advance(Phase::Failing) {
        log::debug(format_args!("write to {peer} failed: {e}"));
        // Gone to the program now: the faces' child lists drop it.
        super::state::bump_generation();
    }
}

/// A parked frame went into `t`'s queue whatever its limit: if that put the queue over the
/// limit, parking is refused until it drains back under it (`recheck_overfull`).
fn note_overfull(p: &mut Proc, t: Target) {
    let limit = queue_limit();
    let Ok((peer, ch)) = resolve(p, t, true) else {
        return;
    };
    // SAFETY: the channel of a live peer, reached inside the borrow.
    if limit != 0 && unsafe { (*ch).ch.tx.queued_bytes() } > limit && !p.overfull.contains(&peer) {
        p.overfull.push(peer);
        crate::sigsafe::set_overfull(true);
    }
}

/// Forgets the peers of `Proc::overfull` that are gone or back under their limit, and lets
/// signal handlers park again when none is left.
pub(crate) fn recheck_overfull(p: &mut Proc) {
    let limit = queue_limit();
    let mut list = std::mem::take(&mut p.overfull);
    list.retain(|&peer| {
        p.chan(peer)
            .is_some_and(|c| limit != 0 && c.ch.tx.queued_bytes() > limit)
    });
    if list.is_empty() {
        crate::sigsafe::set_overfull(false);
    }
    p.overfull = list;
}

/// Lists `peer` for a flush and makes sure one is scheduled.
pub(crate) fn mark_dirty(p: &mut Proc, peer: Peer) {
    let Some(ch) = p.chan(peer) else { return };
    if ch.dirty {
        return;
    }
    ch.dirty = true;
    let ev = ch.ev;
    p.dirty.push(peer);
    if !ev.is_null() {
        schedule(p, ev);
    }
}

/// A flush of the dirty channels soon, even if a handler runs the loop itself: the
/// standalone loop calls the core before each wait (`callbacks::before_wait`); Melon's loop
/// is woken through the eventfd (never called from the send path, D9).
#[inline]
fn schedule(_p: &mut Proc, _ev: *mut mln_event_t) {
    #[cfg(feature = "standalone")]
    if WAIT_HOOK.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    crate::sigsafe::kick();
}

/// Whether the standalone loops call `callbacks::before_wait`.
#[cfg(feature = "standalone")]
pub(crate) static WAIT_HOOK: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Flushes every dirty channel (loop context: a loop callback, with no user code below
/// us that could be inside the loop's bookkeeping).
pub(crate) fn flush_dirty(p: &mut Proc) {
    if p.dirty.is_empty() {
        return;
    }
    let mut list = std::mem::take(&mut p.dirty);
    for &peer in &list {
        if let Some(ch) = p.chan(peer) {
            ch.dirty = false;
            flush(p, peer);
        }
    }
    if p.dirty.is_empty() {
        // Keep the allocation for the next round.
        list.clear();
        p.dirty = list;
    }
}

/// Writes `peer`'s queue and settles its SEND interest (loop context only: it may call
/// into the loop).
pub(crate) fn flush(p: &mut Proc, peer: Peer) {
    let limit = queue_limit();
    let Some(ch) = p.chan(peer) else { return };
    let fd = ch.ch.raw();
    let before = ch.ch.tx.queued_bytes();
    let res = if ch.phase.ended() {
        Flushed::Drained
    } else if !ch.phase.writes() {
        // Held (a worker before its handshake byte): written right after it.
        return;
    } else {
        ch.ch.tx.write(fd)
    };
    if ch.ch.tx.queued_bytes() < before {
        // The peer reads again: pace it again.
        ch.stalled = false;
    }
    match res {
        Flushed::Drained => {
            // The end of a burst: its spare chunks go back (issue 20).
            ch.ch.tx.trim();
            if ch.send_armed {
                ch.send_armed = false;
                set_recv_interest(ch.ev, fd, peer);
            }
        }
        Flushed::Blocked => {
            if !ch.send_armed {
                if ch.ev.is_null() {
                    // No loop: the next send or the registration writes the rest.
                    let queued = !ch.dirty;
                    ch.dirty = true;
                    if queued {
                        p.dirty.push(peer);
                    }
                    return;
                }
                // SAFETY: `ch.ev` is the live loop carrying this channel.
                let r = unsafe {
                    reactor::fd_set(
                        ch.ev,
                        fd,
                        M_EV_SEND | M_EV_APPEND | M_EV_NONBLOCK,
                        M_EV_UNLIMITED,
                        peer.data(),
                        Some(ENTRIES.send_ready),
                    )
                };
                if r == 0 {
                    ch.send_armed = true;
                } else {
                    log::error(format_args!(
                        "cannot wait for writability of fd {fd}; retrying"
                    ));
                    let ev = ch.ev;
                    ch.dirty = true;
                    p.dirty.push(peer);
                    schedule(p, ev);
                    return;
                }
            }
        }
        Flushed::Error(e) => {
            broken(ch, peer, &e);
            if ch.send_armed {
                ch.send_armed = false;
                set_recv_interest(ch.ev, fd, peer);
            }
        }
    }
    if !p.overfull.is_empty() {
        recheck_overfull(p);
    }
    let Some(ch) = p.chan(peer) else { return };
    let fl = fds_limit();
    if ch.refused
        && (limit == 0 || ch.ch.tx.queued_bytes() <= limit / 2)
        && (fl == 0 || ch.ch.tx.queued_fds() <= fl / 2)
    {
        ch.refused = false;
        log::debug(format_args!(
            "{peer} drained to {} bytes: writable callback due",
            ch.ch.tx.queued_bytes()
        ));
        p.writable_due.push(peer);
    }
}

/// Registers (replace) the persistent RECV interest of `peer`'s channel `fd` on `ev`; this
/// also drops a SEND interest there. Returns the backend's result.
pub(crate) fn set_recv_interest(ev: *mut mln_event_t, fd: i32, peer: Peer) -> i32 {
    let h = match peer {
        Peer::Child(_) => ENTRIES.child_readable,
        Peer::Master => ENTRIES.master_readable,
    };
    // SAFETY: `ev` is a live loop (callers pass the channel's loop or one being adopted).
    unsafe {
        reactor::fd_set(
            ev,
            fd,
            M_EV_RECV | M_EV_NONBLOCK,
            M_EV_UNLIMITED,
            peer.data(),
            Some(h),
        )
    }
}

// ---------------------------------------------------------------------------------------
// The writable callback (extension `mln_ipc_writable_handler_set`)
// ---------------------------------------------------------------------------------------

/// The writable handler and its data (any thread may set it; the loop calls it).
type Writable = (mln_ipc_writable_handler, usize);
static WRITABLE: Mutex<Writable> = Mutex::new((None, 0));

/// Setting a handler means the program handles backpressure itself: its sends are never
/// paced (`flush`); clearing it brings pacing back.
pub(crate) fn set_writable_handler(h: mln_ipc_writable_handler, data: *mut c_void) {
    *WRITABLE.lock().unwrap_or_else(|p| p.into_inner()) = (h, data as usize);
    set_pacing(h.is_none());
}

/// Calls the writable handler for every peer that drained after a refused send (loop
/// context, no borrow held).
pub(crate) fn run_writable_callbacks(ev: *mut mln_event_t) {
    let due = PROC.with(|p| {
        if p.writable_due.is_empty() || p.dispatch_stopped {
            return Vec::new();
        }
        let due = std::mem::take(&mut p.writable_due);
        p.callbacks += 1;
        due
    });
    if due.is_empty() {
        return;
    }
    let (h, data) = *WRITABLE.lock().unwrap_or_else(|p| p.into_inner());
    for peer in due {
        let f = match peer {
            Peer::Child(c) => {
                if PROC.with(|p| p.find(c.cast()).is_none()) {
                    continue;
                }
                c.cast::<mln_fork_t>()
            }
            Peer::Master => core::ptr::null_mut(),
        };
        if let Some(h) = h {
            // SAFETY: the user's handler with its data, on the loop thread.
            unsafe { h(ev, f, data as *mut c_void) };
        }
    }
    PROC.with(|p| p.callbacks = p.callbacks.saturating_sub(1));
}
