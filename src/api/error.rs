//! The API's error type, and the conversions from the core's refusals.

use crate::process::{self, SendError};
use crate::wire;
use std::fmt;
use std::io;

/// Everything that can go wrong in this API. Bad input never panics: it gives one of
/// these.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed (socketpair, fork, the fork handshake, a program to spawn
    /// that is missing, not executable, or refused by `execv`, ...); the OS error is
    /// inside (`raw_os_error()` gives errno when the kernel said it).
    Io(io::Error),
    /// The payload is longer than the largest payload a frame may carry (`max` bytes:
    /// the maximum message size minus the 4-byte type; see
    /// [`Builder::max_message`](super::Builder::max_message)). Nothing was queued.
    MessageTooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload accepted.
        max: usize,
    },
    /// The peer is gone: the worker died (a restarted worker has a new
    /// [`WorkerId`](super::WorkerId)), a write to it already failed (it died and its end of
    /// stream is not handled yet), or this process has no master. Nothing was queued.
    PeerGone,
    /// An argument was refused; the text says which and why.
    InvalidArgument(&'static str),
    /// A typed message could not be encoded ([`Message::try_encode`](super::Message::try_encode)
    /// said why: a serde `Serialize` that fails, or a shape the format cannot write, with
    /// the `serde` feature). Nothing was queued.
    Encode(String),
    /// The peer's send queue is at its limit (see
    /// [`Builder::queue_limit`](super::Builder::queue_limit)); nothing was queued. The
    /// writable callback of that side
    /// ([`Builder::on_master_writable`](super::Builder::on_master_writable),
    /// [`Builder::on_worker_writable`](super::Builder::on_worker_writable)) runs once
    /// the queue has drained to half the limit.
    QueueFull,
    /// [`Builder::run`](super::Builder::run) was already called in this process (by any
    /// thread; or this process is a worker).
    AlreadyStarted,
    /// A rolling restart is already under way
    /// ([`Master::rolling_restart`](super::Master::rolling_restart)).
    Busy,
    /// Other threads are running, so forking is unsafe; see
    /// [`Builder::allow_threads`](super::Builder::allow_threads).
    ThreadsRunning {
        /// How many threads this process has (including the caller).
        threads: usize,
    },
    /// A tokio runtime is running on this thread: forking now would copy it (and its
    /// threads' locks) into the workers. The async face (feature `tokio`) forks first and
    /// builds each process's runtime afterwards.
    RuntimeRunning,
    /// A start hook ([`Builder::on_master_start`](super::Builder::on_master_start))
    /// panicked: `run` stopped the workers and returned this instead of running a loop
    /// the hook may not have set up.
    Panicked {
        /// Which hook.
        hook: &'static str,
        /// The panic's message (empty when its payload was not a string).
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::MessageTooLarge { len, max } => {
                write!(
                    f,
                    "payload of {len} bytes exceeds the maximum of {max} bytes"
                )
            }
            Error::PeerGone => f.write_str("the peer process is gone"),
            Error::QueueFull => f.write_str("the peer's send queue is full"),
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::Encode(why) => write!(f, "the message does not encode: {why}"),
            Error::Busy => f.write_str("a rolling restart is already under way"),
            Error::AlreadyStarted => f.write_str("Builder::run was already called in this process"),
            Error::Panicked { hook, message } => write!(f, "{hook} panicked: {message}"),
            Error::RuntimeRunning => f.write_str(
                "a tokio runtime is running: fork before building it (the async face does)",
            ),
            Error::ThreadsRunning { threads } => write!(
                f,
                "{threads} threads are running; forking now is unsafe (see Builder::allow_threads)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// The API's error for a send of `len` payload bytes the core refused.
pub(super) fn send_error(e: SendError, len: usize) -> Error {
    match e {
        SendError::TooLarge => Error::MessageTooLarge {
            len,
            max: max_payload(),
        },
        SendError::NoPeer => Error::PeerGone,
        SendError::QueueFull | SendError::Busy => Error::QueueFull,
        SendError::NoMemory => Error::Io(io::Error::from(io::ErrorKind::OutOfMemory)),
        SendError::BadFd => Error::Io(io::Error::from_raw_os_error(libc::EBADF)),
        SendError::Os(e) => Error::Io(io::Error::from_raw_os_error(e)),
        SendError::Reserved => Error::InvalidArgument(
            "message types 1021..=1023 are the library's own (Melon reserves 0..=1024)",
        ),
    }
}

fn max_payload() -> usize {
    process::max_message().saturating_sub(wire::TYPE_LEN)
}

/// At most 253 descriptors per message (the kernel's SCM_MAX_FD).
pub(super) fn check_fds(n: usize) -> Result<(), Error> {
    if n > 253 {
        return Err(Error::InvalidArgument(
            "send_with_fds: at most 253 descriptors per message",
        ));
    }
    Ok(())
}

/// `MessageTooLarge` for a payload of `len` bytes, before anything is looked up.
pub(super) fn check_len(len: usize) -> Result<(), Error> {
    if len > max_payload() {
        return Err(Error::MessageTooLarge {
            len,
            max: max_payload(),
        });
    }
    Ok(())
}
