//! The fork server (a zygote): the forks of a master that must not fork itself.
//!
//! A master that runs threads (the async face's multi-thread runtime) cannot fork: the
//! child would get copies of the locks its other threads hold, held for ever there. So,
//! when asked (`fork::start_fork_server`, after the initial forks and before any thread
//! exists), the master forks one more process, the server: a single-threaded copy of the
//! master as it is then, which only waits for requests on a socketpair. From then on every
//! fork the core would do in the master (a restart, a rolling restart's replacement, a
//! program's start) is asked of the server ([`request`]): the server creates the new
//! child's socketpair and clones itself with `CLONE_PARENT` (`pids::fork_for_parent`), so
//! that the new process is the master's child (its exit status, pidfd and SIGCHLD are the
//! master's, as for a child the master forks itself); the new process runs the child side
//! of a fork (`fork.rs`, the same code as after the master's own fork) and comes back from
//! `fork::start_fork_server` as a new child; the server sends its pid and the master's end
//! of its socketpair back (SCM_RIGHTS), and the master lists it as after its own fork.
//!
//! # The exchange
//! One request at a time, one `SOCK_SEQPACKET` message each way ([`encode`], [`answer`]).
//! The master waits for the answer on its loop's thread, at most [`REPLY_DEADLINE`]: the
//! clone costs the server what a fork costs the master (copying its page tables), so a
//! healthy server answers within milliseconds, and a master that forks itself blocks its
//! loop for as long. A server that does not answer in time is killed (a late answer could
//! not be told from the next request's) and every later fork fails with ECHILD. (An
//! asynchronous exchange would spare the loop even that wait, but every caller of a fork
//! (restart, rolling step, spawn) expects the new child listed when the fork returns.)
//!
//! # The server's life
//! It closes what is the master's (the children's sockets, pidfds, the wake-up eventfd:
//! `fork.rs`), ignores the signals a terminal or a supervisor sends to a whole process
//! group (it must live as long as the master, not die of the master's Ctrl-C or SIGHUP,
//! nor stop at a terminal's Ctrl-Z; its children get the master's dispositions back), is named `mln-forkserver` (its
//! children get the master's name back) and asks for SIGKILL if the master dies. It exits
//! when the master's end of its socket closes: the master exited, or ended its IPC
//! (`shutdown`, [`close`]). It is no child of the core: never listed, no events, never
//! restarted. If it dies, forks fail with ECHILD (a restart's RESTART_FAILED event and its
//! retries).
//!
//! # What its children are
//! A copy of the process as it was when the server started, not as the master is at the
//! restart: settings, handlers, the resource-clear handler and data changed since are not
//! theirs (their slot and whether they announce their readiness come with the request).

use super::handlers;
use super::pids::{self, Pidfd};
use super::state::ExecArgs;
use crate::channel::{recv_fds, send_iov_fds, IoResult};
use crate::log;
use core::ffi::c_int;
use nix::unistd::ForkResult;
use std::ffi::CString;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the master waits for the server's answer to one request.
pub(crate) const REPLY_DEADLINE: Duration = Duration::from_secs(5);
/// The largest request (a program's arguments); larger ones fail with E2BIG.
const MAX_REQUEST: usize = 64 * 1024;
/// How long a killed server is waited for.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// The server's name (`/proc/<pid>/comm`, `ps`): at most 15 bytes.
pub(crate) const NAME: &[u8] = b"mln-forkserver";

const READY: u8 = 1;
const EXEC: u8 = 2;
const REPORT: u8 = 4;

/// The master's side.
enum State {
    /// No server: the master forks itself.
    Off,
    Running(Server),
    /// The server died or was killed: forks fail (ECHILD).
    Dead,
}

struct Server {
    sock: OwnedFd,
    pid: i32,
    ticks: Option<u64>,
}

static STATE: Mutex<State> = Mutex::new(State::Off);

fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether this process's forks go to a server (or fail because it is gone).
pub(crate) fn active() -> bool {
    !matches!(*lock(), State::Off)
}

/// Whether a server runs for this process.
pub(crate) fn running() -> bool {
    matches!(*lock(), State::Running(_))
}

/// In the master, once the server `pid` is forked (`sock`: the master's end): waits (at
/// most [`REPLY_DEADLINE`]) until the server says it is ready (its settings made: see
/// [`serve`]); the server is killed if it does not.
pub(crate) fn started(sock: OwnedFd, pid: i32) -> io::Result<()> {
    let ticks = pids::start_ticks_of(pid);
    let server = Server { sock, pid, ticks };
    let end_by = Instant::now() + REPLY_DEADLINE;
    let fd = server.sock.as_raw_fd();
    let mut buf = [0u8; 8];
    let ready = loop {
        if let Err(why) = wait(fd, libc::POLLIN, end_by) {
            break Err(why);
        }
        match recv_fds(fd, &mut buf) {
            (IoResult::Done(4), _) if buf[..4] == pid.to_ne_bytes() => break Ok(()),
            (IoResult::WouldBlock, _) => {}
            (IoResult::Done(0), _) => break Err("is gone (end of stream)".into()),
            (IoResult::Done(n), _) => break Err(format!("said {n} bytes")),
            (IoResult::Failed(e), _) => break Err(format!("is gone ({e})")),
        }
    };
    if let Err(why) = ready {
        log::error(format_args!("fork server (pid {pid}) {why}"));
        drop(server);
        end(pid, ticks);
        return Err(io::Error::from_raw_os_error(libc::ECHILD));
    }
    *lock() = State::Running(server);
    Ok(())
}

/// In the master's orderly end: closes the master's end (the server exits at the end of
/// stream; no more forks go to it), and gives the server's pid and start time, to wait
/// for and reap (`None`: there was no server, or it is gone already).
pub(crate) fn close() -> Option<(i32, Option<u64>)> {
    match std::mem::replace(&mut *lock(), State::Off) {
        State::Running(s) => Some((s.pid, s.ticks)),
        State::Off | State::Dead => None,
    }
}

/// What the master asks for: a new child of `slot`.
pub(crate) struct Request<'a> {
    pub slot: u32,
    /// The child says when its loop runs (a rolling restart's replacement).
    pub announce_ready: bool,
    /// A program to execute (a plain worker otherwise).
    pub exec: Option<&'a ExecArgs>,
    /// Where the child reports a failed `execv` (`fork::spawn_plan_checked`).
    pub report: Option<RawFd>,
}

/// Asks the server for a new child (master side): its pid and the master's end of its
/// socketpair, or the errno of the server's socketpair or clone; ECHILD when the server is
/// gone (it is then killed if it still runs, and reaped), E2BIG for a request too large.
pub(crate) fn request(r: &Request<'_>) -> io::Result<(i32, OwnedFd)> {
    let msg = encode(r)?;
    let mut state = lock();
    let State::Running(server) = &*state else {
        return Err(io::Error::from_raw_os_error(libc::ECHILD));
    };
    match exchange(server, &msg, r.report) {
        Ok(made) => made,
        Err(why) => {
            log::error(format_args!(
                "fork server (pid {}) {why}: no more forks in this process",
                server.pid
            ));
            let (pid, ticks) = (server.pid, server.ticks);
            *state = State::Dead;
            drop(state);
            end(pid, ticks);
            Err(io::Error::from_raw_os_error(libc::ECHILD))
        }
    }
}

/// Kills the server (unless it exited) and reaps it.
fn end(pid: i32, ticks: Option<u64>) {
    if let Some(h) = Pidfd::open(pid, ticks) {
        if !h.exited() {
            h.kill();
            h.wait(KILL_WAIT);
        }
    }
    let _ = pids::reap(pid);
}

/// `[u32 slot][u8 flags][u32 count][count NUL-terminated strings]`, host order; a report
/// descriptor rides with it.
fn encode(r: &Request<'_>) -> io::Result<Vec<u8>> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&r.slot.to_ne_bytes());
    let mut flags = 0;
    if r.announce_ready {
        flags |= READY;
    }
    if r.exec.is_some() {
        flags |= EXEC;
    }
    if r.report.is_some() {
        flags |= REPORT;
    }
    m.push(flags);
    if let Some(a) = r.exec {
        m.extend_from_slice(&(a.strings.len() as u32).to_ne_bytes());
        for s in &a.strings {
            m.extend_from_slice(s.as_bytes_with_nul());
        }
    }
    if m.len() > MAX_REQUEST {
        return Err(io::Error::from_raw_os_error(libc::E2BIG));
    }
    Ok(m)
}

/// A request as the server reads it.
struct Decoded {
    slot: u32,
    ready: bool,
    exec: Option<ExecArgs>,
    report: Option<OwnedFd>,
}

fn decode(m: &[u8], mut fds: Vec<OwnedFd>) -> Option<Decoded> {
    let slot = u32::from_ne_bytes(m.get(..4)?.try_into().ok()?);
    let flags = *m.get(4)?;
    let exec = if flags & EXEC != 0 {
        let n = u32::from_ne_bytes(m.get(5..9)?.try_into().ok()?);
        let mut rest = m.get(9..)?;
        let mut strings = Vec::new();
        for _ in 0..n {
            let end = rest.iter().position(|&b| b == 0)?;
            strings.push(CString::new(&rest[..end]).ok()?);
            rest = &rest[end + 1..];
        }
        Some(ExecArgs::new(strings))
    } else {
        None
    };
    let report = if flags & REPORT != 0 {
        Some(fds.pop()?)
    } else {
        None
    };
    Some(Decoded {
        slot,
        ready: flags & READY != 0,
        exec,
        report,
    })
}

/// Sends `msg` and waits for the answer, until [`REPLY_DEADLINE`]. Err: why the server is
/// to be taken for gone; Ok(Err): this fork failed, the server is fine.
fn exchange(
    s: &Server,
    msg: &[u8],
    report: Option<RawFd>,
) -> Result<io::Result<(i32, OwnedFd)>, String> {
    let fd = s.sock.as_raw_fd();
    let end = Instant::now() + REPLY_DEADLINE;
    let fds: Vec<RawFd> = report.into_iter().collect();
    loop {
        match send_iov_fds(fd, &[IoSlice::new(msg)], &fds) {
            IoResult::Done(_) => break,
            IoResult::WouldBlock => wait(fd, libc::POLLOUT, end)?,
            IoResult::Failed(e) => return Err(format!("is gone ({e})")),
        }
    }
    let mut buf = [0u8; 8];
    let (n, batch) = loop {
        wait(fd, libc::POLLIN, end)?;
        match recv_fds(fd, &mut buf) {
            (IoResult::Done(0), _) => return Err("is gone (end of stream)".into()),
            (IoResult::Done(n), batch) => break (n, batch.unwrap_or_default()),
            (IoResult::WouldBlock, _) => continue,
            (IoResult::Failed(e), _) => return Err(format!("is gone ({e})")),
        }
    };
    if n != 4 {
        return Err(format!("answered {n} bytes"));
    }
    let v = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if v <= 0 {
        let errno = if v == 0 { libc::EIO } else { -v };
        return Ok(Err(io::Error::from_raw_os_error(errno)));
    }
    let mut fds = batch.fds;
    match (fds.pop(), batch.truncated) {
        (Some(mine), false) if fds.is_empty() => Ok(Ok((v, mine))),
        _ => {
            // The child is ours, but its socket did not come (the kernel drops descriptors
            // beyond our limit): it cannot be reached, it goes.
            pids::kill_and_reap(v);
            Ok(Err(io::Error::from_raw_os_error(libc::EMFILE)))
        }
    }
}

/// Waits until `fd` is ready for `events`, at most until `end`.
fn wait(fd: RawFd, events: libc::c_short, end: Instant) -> Result<(), String> {
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        match crate::sys::syscall!(poll(&mut pfd, 1, ms)) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) => {
                return Err(format!(
                    "did not answer within {} s (killed)",
                    REPLY_DEADLINE.as_secs()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot be waited for ({e})")),
        }
    }
}

/// What a child made by the server needs for the child side of its fork (`fork.rs`).
pub(crate) struct Served {
    /// The child's end of its socketpair.
    pub theirs: OwnedFd,
    pub slot: u32,
    pub announce_ready: bool,
    pub exec: Option<ExecArgs>,
    pub report: Option<OwnedFd>,
    /// The handler lock, held across the clone as across any fork of ours.
    pub guard: handlers::Guard,
}

/// Signals sent to a whole process group (a terminal's, a supervisor's): the server
/// ignores them. The terminal's stop signals too: a stopped server would make the next
/// fork wait for its answer and then kill it (every later fork failing).
const GROUP_SIGNALS: [c_int; 9] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// What the server changed of the process it copies, given back to its children.
struct Saved {
    actions: [libc::sigaction; GROUP_SIGNALS.len()],
    name: [u8; 16],
}

impl Saved {
    fn restore(&self) {
        for (sig, old) in GROUP_SIGNALS.iter().zip(&self.actions) {
            // SAFETY: an action sigaction gave us for this signal.
            unsafe { libc::sigaction(*sig, old, core::ptr::null_mut()) };
        }
        // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, self.name.as_ptr()) };
    }
}

/// In the new server (a copy of the master `master`, which closed the master's
/// descriptors): serves requests on `sock` until the master's end closes (then the
/// process exits). Returns only in a new child it made, which is the master's.
pub(crate) fn serve(sock: OwnedFd, master: i32) -> Served {
    let saved = become_server(master);
    // Ready: the master goes on (`started`).
    answer(&sock, nix::unistd::getpid().as_raw(), None);
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let (len, fds) = next_request(&sock, &mut buf);
        let Some(req) = decode(&buf[..len], fds) else {
            answer(&sock, -libc::EINVAL, None);
            continue;
        };
        let pair = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        );
        let (mine, theirs) = match pair {
            Ok(p) => p,
            Err(e) => {
                answer(&sock, -(e as i32), None);
                continue;
            }
        };
        let guard = handlers::lock();
        // SAFETY: this process has one thread (the clone checks it); the child runs only
        // this thread's code.
        match unsafe { pids::fork_for_parent() } {
            Ok(ForkResult::Child) => {
                // The new child: nothing of the server's stays.
                drop(sock);
                drop(mine);
                saved.restore();
                return Served {
                    theirs,
                    slot: req.slot,
                    announce_ready: req.ready,
                    exec: req.exec,
                    report: req.report,
                    guard,
                };
            }
            Ok(ForkResult::Parent { child }) => {
                drop(guard);
                drop(theirs);
                // The report descriptor is the child's now (the master waits for its end).
                drop(req);
                answer(&sock, child.as_raw(), Some(&mine));
            }
            Err(e) => {
                drop(guard);
                answer(&sock, -e.raw_os_error().unwrap_or(libc::EIO), None);
            }
        }
    }
}

/// The server's own settings (see the module's documentation).
fn become_server(master: i32) -> Saved {
    // SAFETY: an all-zero sigaction is a valid value to be overwritten.
    let mut saved = Saved {
        actions: unsafe { core::mem::zeroed() },
        name: [0; 16],
    };
    // SAFETY: PR_GET_NAME writes at most 16 bytes; the rest are plain syscalls on our own
    // process (dispositions, name, parent-death signal) with valid arguments.
    unsafe {
        libc::prctl(libc::PR_GET_NAME, saved.name.as_mut_ptr());
        let mut ignore: libc::sigaction = core::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        for (sig, old) in GROUP_SIGNALS.iter().zip(saved.actions.iter_mut()) {
            libc::sigaction(*sig, &ignore, old);
        }
        let mut name = [0u8; 16];
        name[..NAME.len()].copy_from_slice(NAME);
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if nix::unistd::getppid().as_raw() != master {
        // The master died before the parent-death signal was asked for.
        exit_server();
    }
    saved
}

/// Waits for the next request (blocking); exits the process at the end of stream or on an
/// error of the socket.
fn next_request(sock: &OwnedFd, buf: &mut [u8]) -> (usize, Vec<OwnedFd>) {
    let fd = sock.as_raw_fd();
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        match crate::sys::syscall!(poll(&mut pfd, 1, -1)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => exit_server(),
        }
        match recv_fds(fd, buf) {
            (IoResult::Done(0), _) | (IoResult::Failed(_), _) => exit_server(),
            (IoResult::Done(n), batch) => return (n, batch.map(|b| b.fds).unwrap_or_default()),
            (IoResult::WouldBlock, _) => {}
        }
    }
}

/// Answers the master: a pid (with the master's end of the child's socketpair) or a
/// negative errno. Exits the process if the master cannot be told.
fn answer(sock: &OwnedFd, v: i32, mine: Option<&OwnedFd>) {
    let fd = sock.as_raw_fd();
    let bytes = v.to_ne_bytes();
    let fds: Vec<RawFd> = mine.map(|m| m.as_raw_fd()).into_iter().collect();
    loop {
        match send_iov_fds(fd, &[IoSlice::new(&bytes)], &fds) {
            IoResult::Done(_) => return,
            IoResult::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let _ = crate::sys::syscall!(poll(&mut pfd, 1, -1));
            }
            IoResult::Failed(_) => exit_server(),
        }
    }
}

/// Ends the server: none of the master's exit handlers run in this copy of it.
fn exit_server() -> ! {
    // SAFETY: leaving the process without running the master's atexit handlers.
    unsafe { libc::_exit(0) }
}
