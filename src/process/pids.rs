//! Our children as processes: a pidfd opened only when needed (a child costs one
//! descriptor while it lives: its socket), checked to still name the process we started,
//! to wait for its exit and to kill it without the pid-reuse race of `kill(pid)`; and what
//! can be known of how it ended.
//!
//! `pidfd_open` and `pidfd_send_signal` have no nix wrapper: raw `syscall`s here.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The kernel start time of `pid` (field 22 of /proc/<pid>/stat, clock ticks since boot).
pub(crate) fn start_ticks_of(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// A pidfd of one of our children.
pub(crate) struct Pidfd(OwnedFd);

impl Pidfd {
    /// The pidfd of `pid`, if it still names the process we started (`start_ticks`, read
    /// at fork): `None` when it is gone (reaped) or the pid now names someone else.
    pub(crate) fn open(pid: i32, start_ticks: Option<u64>) -> Option<Pidfd> {
        // SAFETY: plain syscall; returns a new close-on-exec descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor we own.
        let fd = Pidfd(unsafe { OwnedFd::from_raw_fd(fd) });
        // The pidfd pins whatever process has this pid now; it is ours if it started when
        // ours did (a pid is not reused within one clock tick).
        match (start_ticks, start_ticks_of(pid)) {
            (Some(a), Some(b)) if a == b => Some(fd),
            _ => None,
        }
    }

    pub(crate) fn raw(&self) -> i32 {
        self.0.as_raw_fd()
    }

    /// Waits at most `timeout` (signals do not restart it) for the process to exit;
    /// whether it did.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut pfd = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut pfd, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => return true,
                Ok(_) if left.is_zero() => return false,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return false,
            }
        }
    }

    /// Whether the process has exited (no wait).
    pub(crate) fn exited(&self) -> bool {
        self.wait(Duration::ZERO)
    }

    /// SIGKILL, through the pidfd (it names that process only).
    pub(crate) fn kill(&self) {
        // SAFETY: plain syscall on our own descriptor; no pointer is passed.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.raw(),
                libc::SIGKILL,
                core::ptr::null_mut::<libc::c_void>(),
                0,
            )
        };
    }
}

/// How `pid` ended, if it can be known. Reaps it when SIGCHLD is not ignored (the safe
/// Rust API restores its disposition); with Melon's disposition (ignored) the kernel
/// reaps our children and their status is lost.
pub(crate) fn status_of(pid: i32) -> String {
    reap(pid).unwrap_or_else(|| "gone (exit status unknown: SIGCHLD is ignored)".into())
}

/// Reaps our child `pid` if it is a zombie (never blocks; nothing to do when SIGCHLD is
/// ignored, or when something else already waited for it), and says how it ended.
pub(crate) fn reap(pid: i32) -> Option<String> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(format!("exited with status {code}")),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(format!("killed by {}", signal_name(sig))),
        _ => None,
    }
}

fn signal_name(sig: Signal) -> &'static str {
    sig.as_str()
}
