//! What the API reports: the counters of a connection ([`Stats`]) and the end of a
//! master's run ([`RunSummary`]).

use super::{WorkerEnd, WorkerId};
use crate::abi::mln_ipc_stats_t;

/// Counters of one connection (a child's channel in the master, the master connection
/// in a worker), as `mln_ipc_stats_get` gives them: see
/// [`Master::stats`](super::Master::stats) and [`Worker::stats`](super::Worker::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames completely written to the socket.
    pub frames_sent: u64,
    /// Payload bytes of those frames.
    pub bytes_sent: u64,
    /// Frames received and dispatched (or dropped for want of a handler).
    pub frames_received: u64,
    /// Payload bytes of those frames.
    pub bytes_received: u64,
    /// Frames queued and not yet written, now.
    pub queued_frames: u64,
    /// Wire bytes (headers included) queued and not yet written, now.
    pub queued_bytes: u64,
    /// The largest `queued_bytes` seen.
    pub queue_peak_bytes: u64,
    /// Sends refused with [`Error::QueueFull`](super::Error::QueueFull).
    pub sends_refused: u64,
    /// Restarts of this child's index so far (0 in a worker).
    pub restarts: u64,
    /// Nanoseconds sends to this peer spent waiting for it to read. Always 0 in the Rust
    /// API: its sends never wait (a full queue is [`Error::QueueFull`](super::Error::QueueFull));
    /// only a C program that set no writable handler is paced.
    pub paced_ns: u64,
    /// Descriptors handed to the socket.
    pub fds_sent: u64,
    /// Descriptors received with messages.
    pub fds_received: u64,
    /// Descriptors queued to this index's earlier processes that died first (closed).
    pub fds_lost: u64,
    /// Frames received of a type this side has no handler for (dropped; logged at debug
    /// level, `MLN_IPC_LOG=debug`).
    pub unhandled: u64,
    /// Frames received that a typed handler ([`Message`](super::Message)) could not decode
    /// (dropped and logged).
    pub undecoded: u64,
}

impl Stats {
    /// The counters of the channel to child `f` (NULL: the master connection, in a
    /// worker).
    pub(super) fn of(f: *const crate::abi::mln_fork_t) -> Option<Stats> {
        let mut s = Stats::from(crate::process::stats(f)?);
        if let Some(d) = crate::process::drop_counts(f) {
            s.unhandled = d.unhandled;
            s.undecoded = d.undecoded;
        }
        Some(s)
    }
}

impl From<mln_ipc_stats_t> for Stats {
    fn from(s: mln_ipc_stats_t) -> Self {
        Stats {
            frames_sent: s.frames_sent,
            bytes_sent: s.bytes_sent,
            frames_received: s.frames_received,
            bytes_received: s.bytes_received,
            queued_frames: s.queued_frames,
            queued_bytes: s.queued_bytes,
            queue_peak_bytes: s.queue_peak_bytes,
            sends_refused: s.sends_refused,
            restarts: s.restarts,
            paced_ns: s.paced_ns,
            fds_sent: s.fds_sent,
            fds_received: s.fds_received,
            fds_lost: s.fds_lost,
            unhandled: 0,
            undecoded: 0,
        }
    }
}

/// How the master's [`Builder::run`](super::Builder::run) ended, after
/// [`Master::stop`](super::Master::stop).
///
/// Stopping writes what is still queued to each child, closes every channel (a worker
/// sees the end of stream and exits with status 127) and waits for the children; all
/// of it is bounded by [`Builder::stop_timeout`](super::Builder::stop_timeout). This says
/// what did not go to plan: frames that could not be written in time, and children that
/// had to be killed, among the children live at the stop. Each list is in index order.
///
/// Frames already written into a socket buffer count as delivered: if their worker is
/// killed (or dies) before it reads them, they are lost without being counted here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Per child whose queue was not written out in time: how many frames were dropped.
    pub undelivered: Vec<(WorkerId, usize)>,
    /// The children that exited by themselves once their channel closed.
    pub exited: Vec<WorkerId>,
    /// The children still running at the stop timeout (busy in a handler, say), killed
    /// with SIGKILL.
    pub killed: Vec<WorkerId>,
    /// Every worker process's end during the run and at its stop, in the order they
    /// ended: index and pid, how, exit status. At most the last 4,096 are kept.
    pub ends: Vec<WorkerEnd>,
    /// Ends older than those kept in `ends`.
    pub ends_dropped: u64,
}

impl RunSummary {
    /// Nothing was lost and nobody had to be killed.
    pub fn is_clean(&self) -> bool {
        self.undelivered.is_empty() && self.killed.is_empty()
    }

    /// All the frames that were not delivered.
    pub fn undelivered_frames(&self) -> usize {
        self.undelivered.iter().map(|(_, n)| n).sum()
    }
}
