//! A peer's life: the one state machine of a channel that the send, receive and
//! supervision code read (instead of flags of their own).
//!
//! ```text
//!   master side:   Handshake --byte read--> Live --write failed--> Failing
//!                      |                     |                        |
//!                      +----- deadline, EOF, close asked ------------+--> Closing --> (gone)
//!   worker side:   Held --byte written--> Live --write failed--> Failing
//! ```
//!
//! * `Handshake` (master side, a child started from the loop): the child has not yet said
//!   that its post-fork clean-up is done. Frames sent to it are accepted and written (the
//!   socket keeps them until the child reads, after its handshake); the first byte read
//!   from it is the handshake, not a frame. A deadline ([`HANDSHAKE_DEADLINE`]) runs; a
//!   child that dies or misses it is closed as a quick death (restart backoff).
//! * `Held` (worker side, between fork and the handshake byte): sends made by the
//!   resource-clear handler are queued and nothing is written, so the handshake byte is
//!   the first thing the master reads; the queue is written right after it.
//! * `Live`: frames both ways.
//! * `Failing`: a write failed; the peer is gone even if its end of stream has not been
//!   handled yet. Sends are refused (ESRCH); the read side delivers what the peer sent
//!   before it went and then reports the end.
//! * `Closing`: a close was asked for while the channel's frames are being dispatched; to
//!   the program the peer is gone at once (sends, stats, iteration); the receive pass that
//!   runs finishes the close when it ends.
//!
//! Transitions only go forward (the order of the variants), so "at least Failing" reads as
//! one comparison.

use std::time::Duration;

/// How long a child started from the loop (a restart, `mln_fork_spawn`, `mln_fork_restart`
/// with a loop) has to complete its fork handshake (its resource-clear handler included)
/// before it is killed and counted as a quick death.
pub(crate) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Phase {
    Handshake,
    Held,
    Live,
    Failing,
    Closing,
}

impl Phase {
    /// Sends to the peer are accepted.
    #[inline]
    pub(crate) fn accepts_sends(self) -> bool {
        self < Phase::Failing
    }

    /// Queued frames may be written to the socket now.
    #[inline]
    pub(crate) fn writes(self) -> bool {
        matches!(self, Phase::Handshake | Phase::Live)
    }

    /// The peer is gone or going: nothing is written any more.
    #[inline]
    pub(crate) fn ended(self) -> bool {
        self >= Phase::Failing
    }

    /// Moves forward to `to` (never back); whether it changed.
    #[inline]
    pub(crate) fn advance(&mut self, to: Phase) -> bool {
        if to > *self {
            *self = to;
            true
        } else {
            false
        }
    }
}

/// Frame types of the library's own, in the range Melon reserves (0..=1024; Melon itself
/// uses 1, its configuration reload). Never handed to handlers on the side that consumes
/// them; a Melon peer drops them as frames of a type it has no handler for.
///
/// Master to worker: a graceful stop (`mln_fork_stop`): run the quit handler.
pub(crate) const QUIT_TYPE: u32 = 1021;
/// Worker to master: the worker's loop runs (a rolling restart's "ready").
pub(crate) const READY_TYPE: u32 = 1022;
