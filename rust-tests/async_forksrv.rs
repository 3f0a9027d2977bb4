//! The async face's master on a multi-thread runtime (`Builder::master_runtime`): its
//! forks are made by a fork server, a single-threaded copy of the master made before the
//! runtime existed. Real processes; each scenario runs in a fresh process
//! (rust-tests/common/mod.rs).
//!
//! Each scenario fails without the server: the master runs other threads (the runtime's,
//! and one holding a lock across the restarts), so a restart forked by the master itself
//! is refused (`RestartFailed`, EDEADLK) or, without that refusal, hangs in the worker on
//! the copied lock (the watchdog); and there is no `mln-forkserver` process to find.

mod common;

use futures_core::Stream;
use mln_ipc::api::tokio::{AsyncMaster, AsyncWorker, Builder};
use mln_ipc::api::{End, WorkerEvent, WorkerId};
use std::future::poll_fn;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REQ: u32 = 2600;
const ANS: u32 = 2601;
const HELLO: u32 = 2602;
const CRASH: u32 = 2603;
const EXIT7: u32 = 2604;
const P_ARGS: u32 = 2610;
const P_DIE: u32 = 2611;

/// Held by a thread of the master across the restarts; every worker takes it at its start.
static LOCK: Mutex<()> = Mutex::new(());

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

fn multi_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// A thread that holds [`LOCK`] until released.
struct Holder {
    release: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn hold_lock() -> Holder {
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let thread = std::thread::spawn(move || {
        let _g = LOCK.lock().expect("lock");
        held_tx.send(()).expect("held");
        while !r.load(Ordering::Acquire) {
            std::thread::park();
        }
    });
    held_rx.recv().expect("the thread holds the lock");
    Holder { release, thread }
}

impl Holder {
    fn release(self) {
        self.release.store(true, Ordering::Release);
        self.thread.thread().unpark();
        self.thread.join().expect("join");
    }
}

/// Field 3 (state), 4 (ppid) and the name of /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(char, u32, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let name = s[s.find('(')? + 1..s.rfind(')')?].to_string();
    let mut after = s[s.rfind(')')? + 1..].split_whitespace();
    let state = after.next()?.chars().next()?;
    let ppid = after.next()?.parse().ok()?;
    Some((state, ppid, name))
}

/// The live (not zombie) processes named `mln-forkserver` whose parent is `parent`.
fn fork_servers(parent: u32) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat(pid)
                .is_some_and(|(st, pp, name)| st != 'Z' && pp == parent && name == "mln-forkserver")
        })
        .collect();
    out.sort();
    out
}

/// Whether `pid` names a live (not zombie) process.
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(st, _, _)| st != 'Z')
}

/// Waits (up to 10 s) until `pid` is no live process; whether it is gone.
fn gone_within(pid: u32) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        if Instant::now() > end {
            return false;
        }
        // Polling the end of a process we have no handle on.
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The worker: takes the lock (a copy of a process whose thread held it would hang
/// here), says hello with its pid and its parent's, then echoes; CRASH aborts, EXIT7
/// exits with status 7.
async fn worker(w: AsyncWorker) {
    drop(LOCK.lock().unwrap_or_else(|e| e.into_inner()));
    let ids = [std::process::id(), std::os::unix::process::parent_id()];
    let hello: Vec<u8> = ids.iter().flat_map(|i| i.to_ne_bytes()).collect();
    w.send(HELLO, hello).await.expect("hello");
    while let Some(f) = w.recv().await {
        match f.ty {
            CRASH => std::process::abort(),
            EXIT7 => std::process::exit(7),
            _ => w.send(ANS, &f.payload).await.expect("answer"),
        }
    }
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks(4)
        .map(|c| u32::from_ne_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// Waits for `id`'s hello (its pid, its parent the master), from a task on one of the
/// runtime's threads; then a request sent from another task comes back from it.
async fn serves(m: &AsyncMaster, id: WorkerId) {
    let main = std::thread::current().id();
    let rx = {
        let m = m.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 2 {
                let (from, f) = m.recv().await.expect("frame");
                assert_eq!(from, id, "a frame from another worker");
                got.push(f);
            }
            (got, std::thread::current().id())
        })
    };
    let tx = {
        let m = m.clone();
        tokio::spawn(async move {
            m.send(id, REQ, b"again").await.expect("send");
            std::thread::current().id()
        })
    };
    let sender = tx.await.expect("sender task");
    let (got, receiver) = rx.await.expect("receiver task");
    assert!(
        sender != main && receiver != main,
        "tasks on the runtime's threads"
    );
    assert_eq!(got[0].ty, HELLO);
    assert_eq!(u32s(&got[0].payload), [id.pid(), std::process::id()]);
    assert_eq!((got[1].ty, got[1].payload.as_slice()), (ANS, &b"again"[..]));
}

/// Waits for the `Exited` of `old` (ended as `how`, with status `check`) and the
/// `Started` of its replacement; the replacement's id.
async fn replaced<S: Stream<Item = WorkerEvent> + Unpin>(
    ev: &mut S,
    seen: &mut Vec<WorkerEvent>,
    old: WorkerId,
    check: impl Fn(std::process::ExitStatus) -> bool,
) -> WorkerId {
    let mut exited = false;
    loop {
        let e = next(ev).await.expect("event");
        seen.push(e.clone());
        match e {
            WorkerEvent::Exited {
                id,
                how,
                status,
                restart_in,
                ..
            } => {
                assert_eq!(id, old);
                assert_eq!(how, End::Crashed);
                assert!(status.is_some_and(&check), "status {status:?}");
                assert!(restart_in.is_some());
                exited = true;
            }
            WorkerEvent::Started { index, id, .. } if index == old.index() => {
                assert!(exited, "Started before Exited");
                assert_ne!(id.pid(), old.pid());
                return id;
            }
            e => panic!("unexpected {e:?}"),
        }
    }
}

static SERVER: AtomicU32 = AtomicU32::new(0);

/// A master on a multi-thread runtime, with a thread holding a lock the workers take: both
/// workers crash and are restarted by the server; the replacements are the master's
/// children, take the lock, answer requests sent and received by tasks on the runtime's
/// threads; a replacement that exits has its status; the server is not a worker (the
/// count stays 2, no event names it) and is gone when `run` returns.
fn restarts_beside_threads() {
    let summary = Builder::new()
        .workers(2)
        .master_types([ANS, HELLO])
        .worker_types([REQ, CRASH, EXIT7])
        .master_runtime(multi_thread)
        .run(worker, |m: AsyncMaster| async move {
            let holder = hold_lock();
            let servers = fork_servers(std::process::id());
            assert_eq!(servers.len(), 1, "one fork server: {servers:?}");
            let server = servers[0];
            SERVER.store(server, Ordering::Relaxed);
            let mut ev = m.events();
            let mut seen = Vec::new();
            while seen.len() < 2 {
                let e = next(&mut ev).await.expect("event");
                assert!(matches!(e, WorkerEvent::Started { .. }), "{e:?}");
                seen.push(e);
            }
            for _ in 0..2 {
                let (_, f) = m.recv().await.expect("hello");
                assert_eq!(f.ty, HELLO);
            }
            let threads = std::fs::read_dir("/proc/self/task").expect("tasks").count();
            assert!(threads >= 3, "{threads} threads");
            for i in 0..2 {
                let old = m.worker(i).expect("worker");
                m.send(old, CRASH, []).await.expect("crash");
                let new = replaced(&mut ev, &mut seen, old, |s| {
                    s.signal() == Some(libc::SIGABRT)
                })
                .await;
                serves(&m, new).await;
                assert_eq!(m.workers().len(), 2);
            }
            // A worker the server made ends: its status is the master's to know.
            let w0 = m.worker(0).expect("worker 0");
            m.send(w0, EXIT7, []).await.expect("exit");
            let new = replaced(&mut ev, &mut seen, w0, |s| s.code() == Some(7)).await;
            serves(&m, new).await;
            assert_eq!(m.workers().len(), 2);
            assert!(m.workers().iter().all(|w| w.pid() != server));
            assert_eq!(fork_servers(std::process::id()), [server]);
            holder.release();
            m.shutdown(Duration::from_secs(5)).await;
            while let Some(e) = m.next_event().await {
                let stopped = matches!(
                    e,
                    WorkerEvent::Exited {
                        how: End::Stopped,
                        ..
                    }
                );
                seen.push(e);
                if stopped && m.workers().is_empty() {
                    break;
                }
            }
            for e in &seen {
                let pid = match e {
                    WorkerEvent::Started { pid, .. } | WorkerEvent::Exited { pid, .. } => *pid,
                    _ => panic!("unexpected {e:?}"),
                };
                assert_ne!(pid, server, "an event for the server: {e:?}");
            }
        })
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    let server = SERVER.load(Ordering::Relaxed);
    assert!(
        !std::path::Path::new(&format!("/proc/{server}")).exists(),
        "the server is gone and reaped when run returns"
    );
}

/// The server killed: the next restart fails with `RestartFailed` (ECHILD; not the
/// refusal beside threads), the dead server is reaped, the other worker goes on, and the
/// master stops cleanly.
fn server_killed() {
    let summary = Builder::new()
        .workers(2)
        .master_types([ANS, HELLO])
        .worker_types([REQ, CRASH])
        .master_runtime(multi_thread)
        .run(worker, |m: AsyncMaster| async move {
            let servers = fork_servers(std::process::id());
            assert_eq!(servers.len(), 1, "one fork server: {servers:?}");
            let server = servers[0];
            for _ in 0..2 {
                let (_, f) = m.recv().await.expect("hello");
                assert_eq!(f.ty, HELLO);
            }
            // SAFETY: signalling our own child, not reaped (only the library reaps it).
            assert_eq!(unsafe { libc::kill(server as i32, libc::SIGKILL) }, 0);
            let old = m.worker(0).expect("worker 0");
            let other = m.worker(1).expect("worker 1");
            m.send(old, CRASH, []).await.expect("crash");
            loop {
                match m.next_event().await.expect("event") {
                    WorkerEvent::Started { .. } => {}
                    WorkerEvent::Exited { id, .. } => assert_eq!(id, old),
                    WorkerEvent::RestartFailed {
                        index,
                        threads_running,
                        errno,
                        ..
                    } => {
                        assert_eq!(index, 0);
                        assert!(!threads_running);
                        assert_eq!(errno, libc::ECHILD);
                        break;
                    }
                    e => panic!("unexpected {e:?}"),
                }
            }
            assert!(
                !std::path::Path::new(&format!("/proc/{server}")).exists(),
                "the dead server is reaped"
            );
            assert_eq!(m.workers(), [other]);
            m.send(other, REQ, b"still").await.expect("send");
            let (from, f) = m.recv().await.expect("answer");
            assert_eq!((from, f.payload.as_slice()), (other, &b"still"[..]));
            m.shutdown(Duration::from_secs(5)).await;
        })
        .expect("run");
    assert!(summary.killed.is_empty(), "{summary:?}");
}

/// The server stopped (SIGSTOP): the next restart waits for its answer at most 5 s, then
/// fails with `RestartFailed` (ECHILD); the stuck server is killed and reaped, and the
/// master stops cleanly.
fn server_stuck() {
    let summary = Builder::new()
        .workers(1)
        .master_types([HELLO])
        .worker_types([CRASH])
        .master_runtime(multi_thread)
        .run(worker, |m: AsyncMaster| async move {
            let servers = fork_servers(std::process::id());
            assert_eq!(servers.len(), 1, "one fork server: {servers:?}");
            let server = servers[0];
            let (_, f) = m.recv().await.expect("hello");
            assert_eq!(f.ty, HELLO);
            // SAFETY: signalling our own child, not reaped (only the library reaps it).
            assert_eq!(unsafe { libc::kill(server as i32, libc::SIGSTOP) }, 0);
            let old = m.worker(0).expect("worker 0");
            m.send(old, CRASH, []).await.expect("crash");
            let crashed = Instant::now();
            loop {
                match m.next_event().await.expect("event") {
                    WorkerEvent::Started { .. } => {}
                    WorkerEvent::Exited { id, .. } => assert_eq!(id, old),
                    WorkerEvent::RestartFailed { errno, .. } => {
                        assert_eq!(errno, libc::ECHILD);
                        break;
                    }
                    e => panic!("unexpected {e:?}"),
                }
            }
            let waited = crashed.elapsed();
            assert!(
                waited >= Duration::from_secs(4) && waited < Duration::from_secs(30),
                "{waited:?}"
            );
            assert!(
                !std::path::Path::new(&format!("/proc/{server}")).exists(),
                "the stuck server is killed and reaped"
            );
            assert!(m.workers().is_empty());
            m.shutdown(Duration::from_secs(5)).await;
        })
        .expect("run");
    assert!(summary.killed.is_empty(), "{summary:?}");
}

/// The master (this binary, `--exiting-master`) exits without stopping anything: its fork
/// server and its worker go too (end of stream on their sockets).
fn master_exit_ends_server() {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .arg("--exiting-master")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the master");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the master's report");
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 2, "{line:?}");
    assert!(child.wait().expect("wait").success());
    assert!(gone_within(pids[0]), "the fork server outlived its master");
    assert!(gone_within(pids[1]), "the worker outlived its master");
}

/// The master of `master_exit_ends_server`: prints its server's pid and its worker's, then
/// exits from its async main (runtime threads running, nothing stopped).
fn exiting_master() -> ExitCode {
    let _ = Builder::new()
        .workers(1)
        .master_types([HELLO])
        .master_runtime(multi_thread)
        .run(worker, |m: AsyncMaster| async move {
            let (from, f) = m.recv().await.expect("hello");
            assert_eq!(f.ty, HELLO);
            let servers = fork_servers(std::process::id());
            assert_eq!(servers.len(), 1, "one fork server: {servers:?}");
            println!("{} {}", servers[0], from.pid());
            std::process::exit(0)
        });
    ExitCode::FAILURE
}

/// A program started by `spawn` (this binary, `--program ARGS..`): says its arguments,
/// echoes, exits with status 5 on P_DIE.
fn program() -> ExitCode {
    use mln_ipc::api::{Program, Worker};
    let p = Program::from_env().expect("started by spawn");
    let args: Vec<u8> = p
        .args()
        .iter()
        .flat_map(|a| {
            let mut v = a.to_string_lossy().into_owned().into_bytes();
            v.push(0);
            v
        })
        .collect();
    let r = p
        .on_start(move |w: &mut Worker| w.send(P_ARGS, &args).expect("args"))
        .on_worker(REQ, |w: &mut Worker, b: &[u8]| {
            w.send(ANS, b).expect("echo");
        })
        .on_worker(P_DIE, |_: &mut Worker, _: &[u8]| std::process::exit(5))
        .run();
    ExitCode::from(if r.is_ok() { 0 } else { 9 })
}

/// A supervised program, restarted through the server: executed again with the same
/// arguments (an empty one and one with spaces included), its status known.
fn program_restarted() {
    let exe = std::env::current_exe().expect("current_exe");
    let summary = Builder::new()
        .workers(0)
        .master_types([P_ARGS, ANS])
        .spawn(&exe, ["--program", "two words", ""], true)
        .master_runtime(multi_thread)
        .run(
            |_: AsyncWorker| async move {},
            |m: AsyncMaster| async move {
                let holder = hold_lock();
                let want = b"--program\0two words\0\0".to_vec();
                let (first, f) = m.recv().await.expect("args");
                assert_eq!((f.ty, f.payload.as_slice()), (P_ARGS, want.as_slice()));
                m.send(first, P_DIE, []).await.expect("die");
                let mut ev = m.events();
                let mut exited = false;
                let again = loop {
                    match next(&mut ev).await.expect("event") {
                        WorkerEvent::Exited { id, status, .. } => {
                            assert_eq!(id, first);
                            assert_eq!(status.and_then(|s| s.code()), Some(5));
                            exited = true;
                        }
                        WorkerEvent::Started { id, .. } if exited => break id,
                        WorkerEvent::Started { .. } => {}
                        e => panic!("unexpected {e:?}"),
                    }
                };
                let (from, f) = m.recv().await.expect("args again");
                assert_eq!(from, again);
                assert_eq!((f.ty, f.payload.as_slice()), (P_ARGS, want.as_slice()));
                m.send(again, REQ, b"echo").await.expect("send");
                let (from, f) = m.recv().await.expect("echo");
                assert_eq!((from, f.payload.as_slice()), (again, &b"echo"[..]));
                holder.release();
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--exiting-master") => return exiting_master(),
        Some("--program") => return program(),
        _ => {}
    }
    common::main(&[
        ("restarts_beside_threads", restarts_beside_threads),
        ("server_killed", server_killed),
        ("server_stuck", server_stuck),
        ("master_exit_ends_server", master_exit_ends_server),
        ("program_restarted", program_restarted),
    ])
}
