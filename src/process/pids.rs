//! Our children as processes: a pidfd opened only when needed (a child costs one
//! descriptor while it lives: its socket), checked to still name the process we started,
//! to wait for its exit and to kill it without the pid-reuse race of `kill(pid)` (where
//! there are no pidfds, the pid checked against /proc just before); and what can be known
//! of how it ended.
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
    proc_stat(pid).map(|(_, ticks)| ticks)
}

/// The state letter (field 3) and start time (field 22) of /proc/<pid>/stat.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut after = s[s.rfind(')')? + 1..].split_whitespace();
    let state = after.next()?.chars().next()?;
    Some((state, after.nth(18)?.parse().ok()?))
}

/// How often the exit of a child is checked where there is no pidfd to wait on.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One of our children as a process, to wait for its exit and to kill it: through a pidfd
/// (it names that process only), or, where `pidfd_open` is not available (Linux before
/// 5.3, a seccomp filter, valgrind), by pid, checking before each look and each signal
/// that the pid still names the process we started and that it has not exited.
pub(crate) struct Pidfd {
    fd: Option<OwnedFd>,
    pid: i32,
    ticks: u64,
}

impl Pidfd {
    /// A handle on `pid`, if it still names the running process we started
    /// (`start_ticks`, read at fork): `None` when it has exited, is gone (reaped) or the pid
    /// now names someone else.
    pub(crate) fn open(pid: i32, start_ticks: Option<u64>) -> Option<Pidfd> {
        let ticks = start_ticks?;
        // SAFETY: plain syscall; returns a new close-on-exec descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return None;
            }
            no_pidfd_once(&e);
            let h = Pidfd {
                fd: None,
                pid,
                ticks,
            };
            return h.running().then_some(h);
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The pidfd pins whatever process has this pid now; it is ours if it started when
        // ours did (a pid is not reused within one clock tick).
        (start_ticks_of(pid) == Some(ticks)).then_some(Pidfd {
            fd: Some(fd),
            pid,
            ticks,
        })
    }

    /// The pidfd, readable once the process exits; `None` without pidfds (poll `exited`).
    pub(crate) fn raw(&self) -> Option<i32> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }

    /// Without a pidfd: the pid still names our process and it has not exited (a zombie
    /// has).
    fn running(&self) -> bool {
        matches!(proc_stat(self.pid), Some((state, t)) if t == self.ticks && state != 'Z')
    }

    /// Waits at most `timeout` (signals do not restart it) for the process to exit;
    /// whether it did.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Some(fd) = &self.fd else {
                if !self.running() {
                    return true;
                }
                if left.is_zero() {
                    return false;
                }
                std::thread::sleep(left.min(POLL_INTERVAL / 4));
                continue;
            };
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut pfd = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
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

    /// SIGKILL, through the pidfd, or (without one) to the pid if it still names our
    /// running process.
    pub(crate) fn kill(&self) {
        match &self.fd {
            // SAFETY: plain syscall on our own descriptor; no pointer is passed.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    core::ptr::null_mut::<libc::c_void>(),
                    0,
                );
            },
            None => {
                if self.running() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
                }
            }
        }
    }
}

/// Says once per process that children are watched by polling.
fn no_pidfd_once(e: &std::io::Error) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        crate::log::info(format_args!(
            "pidfd_open: {e}; children are waited for by checking /proc every {} ms",
            POLL_INTERVAL.as_millis()
        ))
    });
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
