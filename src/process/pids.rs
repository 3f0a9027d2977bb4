//! Our children as processes: how they are forked so that their exit status can be known,
//! what can be known of them without a descriptor, a pidfd opened only when needed (a
//! child costs one descriptor while it lives: its socket), waiting for their exit, killing
//! them without the pid-reuse race of `kill(pid)`, and how they ended.
//!
//! # What a child's state rests on
//! `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT | __WALL)` says, without reaping and
//! without a descriptor, whether our child has exited (it is a zombie) or is running;
//! ECHILD means it is not our child any more: reaped (by the kernel, where SIGCHLD is
//! ignored, or by a wait of the program's own) and gone. While a child is not reaped its
//! pid cannot name another process, so a signal sent by pid reaches it.
//! `/proc/<pid>/stat` is read only to check that the pid still names the process we
//! started (its kernel start time, for children the kernel reaps by itself), and a
//! failure to read it other than ENOENT/ESRCH (EMFILE at the descriptor limit, ...) says
//! nothing about the child: a child whose state cannot be read is running, asked again
//! later.
//!
//! # Forking where SIGCHLD is ignored
//! Melon's `mln_fork_prepare` ignores SIGCHLD, so the kernel reaps a child forked by
//! `fork()` the moment it dies and its exit status is lost. The kernel reaps by itself
//! only children whose exit signal is SIGCHLD: so a plain worker is forked by [`fork`]
//! with `clone` and an exit signal of 0. It then stays a zombie until [`reap`] collects
//! its status (waits name it with `__WALL`), and SIGCHLD stays ignored for everything
//! else the program forks. See [`fork`] for what makes that clone a `fork()`, and when
//! `fork()` is used instead.
//!
//! `pidfd_open`, `pidfd_send_signal`, `clone` with a child TID word, `get_robust_list`
//! and `set_robust_list` have no nix wrapper: raw `syscall`s here.

use core::ffi::c_void;
use core::ptr::null_mut;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The kernel start time of `pid` (field 22 of /proc/<pid>/stat, clock ticks since boot).
pub(crate) fn start_ticks_of(pid: i32) -> Option<u64> {
    proc_stat(pid).ok().map(|(_, ticks)| ticks)
}

/// The state letter (field 3) and start time (field 22) of /proc/<pid>/stat; the error of
/// reading it (ENOENT or ESRCH: no such process).
fn proc_stat(pid: i32) -> io::Result<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let parsed = (|| {
        let mut after = s[s.rfind(')')? + 1..].split_whitespace();
        let state = after.next()?.chars().next()?;
        Some((state, after.nth(18)?.parse().ok()?))
    })();
    parsed.ok_or_else(|| io::ErrorKind::InvalidData.into())
}

/// What is known of one of our children now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Seen {
    /// Our child, not exited.
    Running,
    /// Our child, exited and not reaped yet (a zombie): [`reap`] gets its status.
    Exited,
    /// Not our child any more: reaped, or the pid names another process now.
    Gone,
    /// Cannot be told now (a failure that says nothing about the child): taken for
    /// running, asked again later.
    Unknown,
}

/// The state of our child `pid`, started at `ticks` (read at fork, when it could be).
fn seen(pid: i32, ticks: Option<u64>) -> Seen {
    let flags =
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::__WALL;
    let waited = loop {
        match waitid(Id::Pid(Pid::from_raw(pid)), flags) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    let child = match waited {
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Seen::Exited,
        Err(Errno::ECHILD) => return Seen::Gone,
        Ok(_) => true,
        Err(_) => false,
    };
    // Our child, not exited (or waitid could not say): the pid still names the process we
    // started unless ours was reaped by the kernel and the pid reused by a newer child.
    match proc_stat(pid) {
        Ok((_, t)) if ticks.is_some_and(|k| k != t) => Seen::Gone,
        Ok(('Z', _)) => Seen::Exited,
        Ok(_) => Seen::Running,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => Seen::Gone,
        Err(_) if child => Seen::Running,
        Err(_) => Seen::Unknown,
    }
}

/// How often the exit of a child is checked where there is no pidfd to wait on.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One of our children as a process, to wait for its exit and to kill it: through a pidfd
/// (it names that process only), or, without one (Linux before 5.3, a seccomp filter,
/// valgrind, no descriptor left), by pid, asking [`seen`] before each look and each
/// signal.
pub(crate) struct Pidfd {
    fd: Option<OwnedFd>,
    pid: i32,
    ticks: Option<u64>,
}

impl Pidfd {
    /// A handle on our child `pid` (started at `start_ticks`, read at fork if it could
    /// be), unless it is gone (reaped, or the pid names someone else now): `None` then.
    /// A child that exited and is not reaped yet gives a handle whose [`exited`] is true.
    ///
    /// [`exited`]: Pidfd::exited
    pub(crate) fn open(pid: i32, start_ticks: Option<u64>) -> Option<Pidfd> {
        let mut h = Pidfd {
            fd: None,
            pid,
            ticks: start_ticks,
        };
        match seen(pid, start_ticks) {
            Seen::Gone => return None,
            Seen::Exited => return Some(h),
            Seen::Running | Seen::Unknown => {}
        }
        // SAFETY: plain syscall; returns a new close-on-exec descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if fd < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // Gone since the look above.
                Some(libc::ESRCH) => return None,
                // No descriptor for it now: this child is polled.
                Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM) => {}
                _ => no_pidfd_once(&e),
            }
            return Some(h);
        }
        // SAFETY: a fresh descriptor we own.
        h.fd = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        // The pidfd pins whatever process has this pid now: ours, unless ours was reaped
        // since the look above and the pid reused.
        (seen(pid, start_ticks) != Seen::Gone).then_some(h)
    }

    /// The pidfd, readable once the process exits; `None` without pidfds (poll `exited`).
    pub(crate) fn raw(&self) -> Option<i32> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }

    fn seen(&self) -> Seen {
        seen(self.pid, self.ticks)
    }

    /// Waits at most `timeout` (signals do not restart it) for the process to exit;
    /// whether it did.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Some(fd) = &self.fd else {
                if matches!(self.seen(), Seen::Exited | Seen::Gone) {
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
        self.signal(libc::SIGKILL)
    }

    /// Sends `sig` as [`Pidfd::kill`] sends SIGKILL.
    pub(crate) fn signal(&self, sig: i32) {
        match &self.fd {
            // SAFETY: plain syscall on our own descriptor; no pointer is passed.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    sig,
                    core::ptr::null_mut::<libc::c_void>(),
                    0,
                );
            },
            None => {
                if self.seen() == Seen::Running {
                    if let Ok(sig) = Signal::try_from(sig) {
                        let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), sig);
                    }
                }
            }
        }
    }
}

/// Says once per process that children are watched by polling.
fn no_pidfd_once(e: &io::Error) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        crate::log::info(format_args!(
            "pidfd_open: {e}; children are waited for by checking on them every {} ms",
            POLL_INTERVAL.as_millis()
        ))
    });
}

/// How one of our children ended, as far as it can be known.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Status {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it (and whether it dumped core).
    Signaled(i32, bool),
    /// Not known: reaped by the kernel (SIGCHLD ignored) or by a wait of the program's own.
    Unknown,
}

impl Status {
    /// The wait status as `waitpid` gives it (`std::process::ExitStatus::from_raw`); `None`
    /// when unknown.
    pub(crate) fn raw(self) -> Option<i32> {
        match self {
            Status::Exited(code) => Some((code & 0xff) << 8),
            Status::Signaled(sig, core) => Some((sig & 0x7f) | if core { 0x80 } else { 0 }),
            Status::Unknown => None,
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Status::Exited(code) => write!(f, "exited with status {code}"),
            Status::Signaled(sig, core) => {
                let name = Signal::try_from(sig)
                    .map(|s| s.as_str())
                    .unwrap_or("a signal");
                write!(
                    f,
                    "killed by {name}{}",
                    if core { " (core dumped)" } else { "" }
                )
            }
            Status::Unknown if sigchld_discarded() => {
                f.write_str("gone (exit status unknown: SIGCHLD is ignored)")
            }
            Status::Unknown => {
                f.write_str("gone (exit status unknown: reaped by a wait of the program's own)")
            }
        }
    }
}

/// How `pid` ended, if it can be known: reaps it (see [`reap`]).
pub(crate) fn status_of(pid: i32) -> Status {
    reap(pid).unwrap_or(Status::Unknown)
}

/// Kills our child `pid`, not reaped yet, and waits for it (a start that failed: the child
/// may still be in its clear handler, or have closed its end and gone on).
pub(crate) fn kill_and_reap(pid: i32) {
    // SAFETY: signalling our own child, not reaped yet, so `pid` cannot name another
    // process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // `__WALL`: a worker forked with exit signal 0 is waited for only so.
    let _ = crate::sys::retry_eintr(|| {
        crate::sys::syscall!(waitpid(pid, core::ptr::null_mut(), libc::__WALL))
    });
}

/// Reaps our child `pid` if it is a zombie (never blocks; nothing to do when the kernel
/// reaped it, or something else already waited for it), and says how it ended.
pub(crate) fn reap(pid: i32) -> Option<Status> {
    let flags = WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
    match crate::sys::retry_eintr(|| Ok(waitpid(Pid::from_raw(pid), Some(flags))?)) {
        Ok(WaitStatus::Exited(_, code)) => Some(Status::Exited(code)),
        Ok(WaitStatus::Signaled(_, sig, core)) => Some(Status::Signaled(sig as i32, core)),
        _ => None,
    }
}

/// Whether the kernel reaps this process's children by itself when they die (SIGCHLD
/// ignored, or SA_NOCLDWAIT), discarding their exit status.
fn sigchld_discarded() -> bool {
    // SAFETY: an all-zero sigaction is a valid value to be overwritten.
    let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: a query (no new action): writes only to `old`.
    let r = unsafe { libc::sigaction(libc::SIGCHLD, core::ptr::null(), &mut old) };
    r == 0 && (old.sa_sigaction == libc::SIG_IGN || old.sa_flags & libc::SA_NOCLDWAIT != 0)
}

/// Forks this process for a new child of ours; `exec`: the child will exec a program.
///
/// Where the kernel would discard the child's exit status (SIGCHLD ignored, as Melon's
/// `mln_fork_prepare` sets it), a plain worker is created with `clone` and an exit signal
/// of 0, so that it stays a zombie until [`reap`] collects its status. That clone is
/// `fork()` as glibc makes it: the same system call with the same flags
/// (CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID on the thread's TID word, so glibc's cached
/// TID is the child's) and the child's robust-futex list registered again; the child's
/// parent is this process, as after `fork()` (`getppid`, a worker's own children and its
/// exec'd programs are unaffected). What glibc's `fork()` does besides, and this does not:
/// - take and reset the locks other threads may hold (malloc, stdio, the loader): so this
///   is used only while the process has one thread;
/// - run `pthread_atfork` handlers: a program whose workers depend on them (state to
///   reset in a child) does not get them for workers forked while SIGCHLD is ignored.
///
/// `fork()` is used instead when the process has other threads, when the TID word or
/// robust list cannot be found or is in use (robust mutexes held, not glibc), on other
/// architectures, and for programs to exec (an exec resets the exit signal to SIGCHLD:
/// their status is lost anyway). Valgrind runs this clone as a fork.
///
/// # Safety
/// As `fork()`: the child has only the calling thread; what it runs must not depend on
/// the others (see README "Threads and signals").
pub(crate) unsafe fn fork(exec: bool) -> nix::Result<ForkResult> {
    if !exec && sigchld_discarded() {
        match ForkByClone::prepare() {
            // SAFETY: caller's contract.
            Ok(c) => return unsafe { c.fork(0) },
            Err(why) => not_by_clone_once(&why),
        }
    }
    // SAFETY: caller's contract.
    unsafe { nix::unistd::fork() }
}

/// Makes a new child of this process's parent: a `fork()` (the clone of [`fork`]) with
/// `CLONE_PARENT`, so that the child is the parent's, not ours. The fork server makes the
/// master's workers so (`forkserver`). The child's exit signal is ours (the kernel gives a
/// `CLONE_PARENT` child its creator's): the server, forked by [`fork`], has the one a
/// worker forked by the master would have had. Err: the errno to report (EOPNOTSUPP where
/// the clone cannot be a `fork()`, logged).
///
/// # Safety
/// As [`fork`]; the calling process must have one thread (checked: EOPNOTSUPP otherwise).
pub(crate) unsafe fn fork_for_parent() -> io::Result<ForkResult> {
    match ForkByClone::prepare() {
        // SAFETY: caller's contract.
        Ok(c) => unsafe { c.fork(libc::CLONE_PARENT as libc::c_long) }.map_err(io::Error::from),
        Err(why) => {
            crate::log::error(format_args!("fork server: cannot clone a worker: {why}"));
            Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
        }
    }
}

/// Says once per process why workers are forked by `fork()` although SIGCHLD is ignored.
fn not_by_clone_once(why: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        crate::log::info(format_args!(
            "workers forked with fork() ({why}): SIGCHLD is ignored, so how they end is unknown"
        ))
    });
}

/// The kernel's `struct robust_list_head` (linux/futex.h).
#[repr(C)]
struct RobustListHead {
    list: *mut c_void,
    futex_offset: libc::c_long,
    list_op_pending: *mut c_void,
}

/// What a `clone` that is a `fork()` needs from the calling thread.
struct ForkByClone {
    /// The thread's TID word (glibc's thread descriptor): set to the child's TID in the
    /// child, cleared when it exits.
    tid: *mut libc::pid_t,
    /// The thread's robust-futex list head (NULL: none registered).
    robust: *mut RobustListHead,
}

impl ForkByClone {
    fn prepare() -> Result<ForkByClone, String> {
        if !cfg!(any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64"
        )) {
            // Other argument orders of clone (CLONE_BACKWARDS*) are not written here.
            return Err("clone's arguments are not known here on this architecture".into());
        }
        match threads() {
            Some(1) => {}
            Some(n) => return Err(format!("the process has {n} threads")),
            None => return Err("the number of threads cannot be read".into()),
        }
        let mut tid: *mut libc::pid_t = null_mut();
        // SAFETY: PR_GET_TID_ADDRESS writes one pointer to `tid`.
        let r = unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut tid as *mut *mut libc::pid_t) };
        if r != 0 || tid.is_null() || !tid.is_aligned() {
            return Err("the thread's TID word is not known".into());
        }
        // SAFETY: this thread's clear-child-TID address, which glibc sets at the thread's
        // start (set_tid_address or clone) to the TID word of its thread descriptor, live
        // as long as the thread; read only once it is known to be set and aligned.
        if unsafe { tid.read_volatile() } != nix::unistd::gettid().as_raw() {
            return Err("the thread's TID word is not glibc's".into());
        }
        let mut robust: *mut RobustListHead = null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: get_robust_list(0, ...) writes the calling thread's list head and size.
        let r = unsafe {
            libc::syscall(
                libc::SYS_get_robust_list,
                0,
                &mut robust as *mut *mut RobustListHead,
                &mut len as *mut libc::size_t,
            )
        };
        if r != 0 {
            return Err("the thread's robust-futex list is not known".into());
        }
        if !robust.is_null() {
            if len != core::mem::size_of::<RobustListHead>() || !robust.is_aligned() {
                return Err("the thread's robust-futex list is not known".into());
            }
            // SAFETY: the head this thread registered (in glibc's thread descriptor, live
            // as long as the thread), checked for size and alignment.
            let head = unsafe { robust.read_volatile() };
            // glibc's fork() drops robust mutexes held at the fork from the child's list.
            if head.list != robust.cast() || !head.list_op_pending.is_null() {
                return Err("robust mutexes are held".into());
            }
        }
        Ok(ForkByClone { tid, robust })
    }

    /// `extra`: more clone flags (`CLONE_PARENT`).
    ///
    /// # Safety
    /// As [`fork`].
    unsafe fn fork(self, extra: libc::c_long) -> nix::Result<ForkResult> {
        // Exit signal 0 (the low byte): not reaped by the kernel, waited for with __WALL.
        let flags = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as libc::c_long | extra;
        // As glibc's fork: no signal handler runs in the child before its thread state is
        // complete (the robust list below).
        let mut saved = SigSet::empty();
        let blocked = pthread_sigmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::all()),
            Some(&mut saved),
        );
        // SAFETY: clone without CLONE_VM and with no new stack returns twice like fork(),
        // the child on its own copy of this stack; the TID word is valid (prepare).
        let r = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags,
                0 as libc::c_long,
                null_mut::<libc::pid_t>(),
                self.tid,
                0 as libc::c_long,
            )
        };
        let err = Errno::last();
        let restore = |r| {
            if blocked.is_ok() {
                let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
            }
            r
        };
        match r {
            -1 => restore(Err(err)),
            0 => {
                if !self.robust.is_null() {
                    // SAFETY: the same head as in the parent (an empty list), in our copy
                    // of the thread descriptor; the kernel does not carry it over a clone.
                    unsafe {
                        libc::syscall(
                            libc::SYS_set_robust_list,
                            self.robust,
                            core::mem::size_of::<RobustListHead>(),
                        )
                    };
                }
                restore(Ok(ForkResult::Child))
            }
            pid => restore(Ok(ForkResult::Parent {
                child: Pid::from_raw(pid as i32),
            })),
        }
    }
}

/// The number of threads of this process (field 20 of /proc/self/stat).
fn threads() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    s[s.rfind(')')? + 1..]
        .split_whitespace()
        .nth(17)?
        .parse()
        .ok()
}

/// How many threads this process has (1 when `/proc` cannot tell).
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}
