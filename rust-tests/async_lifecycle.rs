//! The async face (feature `tokio`), what the sync `Builder` offers too: descriptors with
//! frames both ways, the rolling restart, the restart policy and the stop on signals,
//! across real processes; the `_mt` scenarios again with the master on a multi-thread
//! runtime (`master_runtime`: forks by the fork server). Each scenario runs in a fresh
//! process (rust-tests/common/mod.rs).

mod common;

use mln_ipc::api::tokio::{AsyncMaster, AsyncWorker, Builder};
use mln_ipc::api::{End, Error, RollingRestart, WorkerEvent, WorkerId};
use std::collections::HashSet;
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;
use std::time::Duration;

const FD: u32 = 2600;
const FD_BACK: u32 = 2601;
const PLAIN: u32 = 2602;
const HELLO: u32 = 2603;
const REQ: u32 = 2604;
const ANS: u32 = 2605;
const BYE: u32 = 2606;

/// `f`, or a failed scenario after `secs` seconds (instead of the watchdog's minute).
async fn within<F: Future>(secs: u64, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing after {secs} s"),
    }
}

/// A pipe holding `text` (its write end closed): (read end).
fn pipe_with(text: &[u8]) -> OwnedFd {
    let (r, mut w) = std::io::pipe().expect("pipe");
    w.write_all(text).expect("write into the pipe");
    OwnedFd::from(r)
}

/// Everything a pipe's read end gives until its end.
fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut v)
        .expect("read the pipe");
    v
}

/// The master's runtime of the `_mt` scenarios: multi-thread (its forks are then the fork
/// server's, and its tasks run on the runtime's threads).
fn multi_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// The builder of a scenario: its master on a multi-thread runtime when `mt`.
fn builder(mt: bool) -> Builder {
    let b = Builder::new();
    if mt {
        b.master_runtime(multi_thread)
    } else {
        b
    }
}

fn pid_of(b: &[u8]) -> u32 {
    u32::from_ne_bytes(b[..4].try_into().expect("4 bytes"))
}

/// Descriptors both ways: the master sends each worker the read end of a pipe it wrote
/// into (and three pipes in one frame, in order), the worker reads them and answers with
/// pipes of its own (one through `send_with_fds`, one through a `Permit`); every content
/// is checked on the other side. Frames without descriptors carry none.
fn fds_both_ways(mt: bool) {
    let summary = builder(mt)
        .workers(2)
        .master_types([FD_BACK, PLAIN])
        .worker_types([FD, PLAIN])
        .run(
            |w: AsyncWorker| async move {
                let i = w.index().expect("index");
                let mut f = w.recv().await.expect("the plain frame");
                assert_eq!((f.ty, f.fds().len(), f.fds_truncated()), (PLAIN, 0, false));
                assert!(f.take_fds().is_empty());
                let mut f = w.recv().await.expect("the frame with one pipe");
                assert_eq!((f.ty, &f.payload[..]), (FD, &b"one"[..]));
                let fds = f.take_fds();
                assert_eq!(fds.len(), 1);
                assert!(f.take_fds().is_empty(), "taken once");
                let got = read_all(fds.into_iter().next().expect("fd"));
                assert_eq!(got, format!("from the master to worker {i}").as_bytes());
                let mut f = w.recv().await.expect("the frame with three pipes");
                assert_eq!(f.payload, b"three");
                let texts: Vec<Vec<u8>> = f.take_fds().into_iter().map(read_all).collect();
                assert_eq!(texts, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
                let back = pipe_with(format!("from worker {i}").as_bytes());
                w.send_with_fds(FD_BACK, b"back", vec![back])
                    .await
                    .expect("send back");
                let p = w.reserve(16).await.expect("reserve");
                let again = pipe_with(format!("again from worker {i}").as_bytes());
                p.send_with_fds(FD_BACK, b"permit", vec![again])
                    .expect("permit send");
                w.send(PLAIN, b"plain").await.expect("plain");
                w.quit().await;
            },
            |m: AsyncMaster| async move {
                let too_many: Vec<OwnedFd> = (0..254).map(|_| pipe_with(b"")).collect();
                let w0 = m.workers()[0];
                assert!(matches!(
                    m.send_with_fds(w0, FD, b"", too_many).await,
                    Err(Error::InvalidArgument(_))
                ));
                for id in m.workers() {
                    m.send(id, PLAIN, b"no fds").await.expect("plain");
                    let text = format!("from the master to worker {}", id.index());
                    m.send_with_fds(id, FD, b"one", vec![pipe_with(text.as_bytes())])
                        .await
                        .expect("send a pipe");
                    let three = vec![pipe_with(b"a"), pipe_with(b"b"), pipe_with(b"c")];
                    m.send_with_fds(id, FD, b"three", three)
                        .await
                        .expect("send three pipes");
                }
                let mut seen: HashSet<(usize, String)> = HashSet::new();
                for _ in 0..6 {
                    let (from, mut f) = within(10, "answers", m.recv()).await.expect("frame");
                    match f.ty {
                        PLAIN => {
                            assert!(f.fds().is_empty());
                            seen.insert((from.index(), "plain".into()));
                        }
                        FD_BACK => {
                            let fds = f.take_fds();
                            assert_eq!(fds.len(), 1, "one pipe with {:?}", f.payload);
                            let text =
                                String::from_utf8(read_all(fds.into_iter().next().expect("fd")))
                                    .expect("utf-8");
                            let want = match &f.payload[..] {
                                b"back" => format!("from worker {}", from.index()),
                                b"permit" => format!("again from worker {}", from.index()),
                                p => panic!("unexpected payload {p:?}"),
                            };
                            assert_eq!(text, want);
                            seen.insert((from.index(), text));
                        }
                        t => panic!("unexpected type {t}"),
                    }
                }
                assert_eq!(seen.len(), 6, "{seen:?}");
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
}

/// A worker for the lifecycle scenarios: says HELLO with its pid, answers REQ with ANS
/// (its pid), and once asked to quit says BYE (its pid) and returns.
async fn hello_worker(w: AsyncWorker) {
    let pid = std::process::id().to_ne_bytes();
    w.send(HELLO, pid).await.expect("hello");
    while let Some(f) = w.recv().await {
        if f.ty == REQ {
            w.send(ANS, pid).await.expect("answer");
        }
    }
    w.send(BYE, pid).await.expect("bye");
}

/// `AsyncMaster::rolling_restart`: both workers are replaced one at a time; each
/// replacement is seen (`Started` at its index with a new pid, the old one's `Exited`,
/// stopped gracefully with status 0 after its BYE), then `RollingDone { completed }`; a
/// second one meanwhile is `Busy`, a zero batch `InvalidArgument`; the new workers answer.
fn rolling_restart(mt: bool) {
    let summary = builder(mt)
        .workers(2)
        .master_types([HELLO, ANS, BYE])
        .worker_types([REQ])
        .run(hello_worker, |m: AsyncMaster| async move {
            let mut old: Vec<WorkerId> = Vec::new();
            while old.len() < 2 {
                if let Some(WorkerEvent::Started { id, .. }) = m.next_event().await {
                    old.push(id);
                }
            }
            for _ in 0..2 {
                let (from, f) = within(10, "hello", m.recv()).await.expect("hello");
                assert_eq!((f.ty, pid_of(&f.payload)), (HELLO, from.pid()));
            }
            let zero = RollingRestart {
                batch: 0,
                ..RollingRestart::default()
            };
            assert!(matches!(
                m.rolling_restart(zero).await,
                Err(Error::InvalidArgument(_))
            ));
            let r = RollingRestart {
                batch: 1,
                ready_timeout: Duration::from_secs(10),
                deadline: Duration::from_secs(5),
            };
            m.rolling_restart(r).await.expect("rolling restart");
            assert!(matches!(m.rolling_restart(r).await, Err(Error::Busy)));
            let (mut new, mut exited) = (Vec::new(), Vec::new());
            loop {
                match within(20, "rolling restart events", m.next_event())
                    .await
                    .expect("event")
                {
                    WorkerEvent::Started { index, id, .. } => {
                        assert!(!old.contains(&id));
                        // One at a time: the previous replacement was ready, its old
                        // worker told to stop (its end may come later).
                        assert!(new.len() <= exited.len() + 1, "batch of 1");
                        new.push((index, id));
                    }
                    WorkerEvent::Exited {
                        index,
                        id,
                        how,
                        status,
                        restart_in,
                        ..
                    } => {
                        assert!(old.contains(&id), "an old worker ends: {id}");
                        assert_eq!(how, End::Stopped);
                        assert_eq!(status.and_then(|s| s.code()), Some(0));
                        assert_eq!(restart_in, None);
                        let replaced = new.iter().any(|n| n.0 == index);
                        assert!(replaced, "an old worker ends after its replacement started");
                        exited.push(id);
                    }
                    WorkerEvent::RollingDone { completed } => {
                        assert!(completed);
                        break;
                    }
                    e => panic!("unexpected {e:?}"),
                }
            }
            assert_eq!(exited.len(), 2);
            let indices: HashSet<usize> = new.iter().map(|n| n.0).collect();
            assert_eq!(indices, HashSet::from([0, 1]));
            // Every old worker said BYE, every new one HELLO.
            let (mut hellos, mut byes) = (HashSet::new(), HashSet::new());
            while hellos.len() + byes.len() < 4 {
                let (from, f) = within(10, "hello and bye", m.recv()).await.expect("frame");
                assert_eq!(pid_of(&f.payload), from.pid());
                match f.ty {
                    HELLO => hellos.insert(from),
                    BYE => byes.insert(from),
                    t => panic!("unexpected type {t}"),
                };
            }
            assert_eq!(byes, old.iter().copied().collect());
            assert_eq!(hellos, new.iter().map(|n| n.1).collect());
            let live = m.workers();
            assert_eq!(live.len(), 2);
            for id in &live {
                assert!(!old.contains(id));
                m.send(*id, REQ, []).await.expect("request");
            }
            for _ in 0..2 {
                let (from, f) = within(10, "answers", m.recv()).await.expect("answer");
                assert_eq!((f.ty, pid_of(&f.payload)), (ANS, from.pid()));
            }
            m.shutdown(Duration::from_secs(5)).await;
        })
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
}

/// `Builder::restart_policy(2, 10 s)`: a worker that dies at once, every time, is
/// restarted twice, then given up (`GaveUp`, no restart due in its last `Exited`).
fn restart_policy() {
    let summary = Builder::new()
        .workers(1)
        .restart_policy(2, Duration::from_secs(10))
        .run(
            |_: AsyncWorker| async move { std::process::exit(3) },
            |m: AsyncMaster| async move {
                let mut exits = Vec::new();
                within(20, "the policy", async {
                    loop {
                        match m.next_event().await.expect("event") {
                            WorkerEvent::Exited {
                                status, restart_in, ..
                            } => {
                                assert_eq!(status.and_then(|s| s.code()), Some(3));
                                exits.push(restart_in);
                            }
                            WorkerEvent::GaveUp { index } => {
                                assert_eq!(index, 0);
                                break;
                            }
                            _ => {}
                        }
                    }
                })
                .await;
                assert_eq!(exits.len(), 3, "two restarts, then given up: {exits:?}");
                assert!(exits[..2].iter().all(Option::is_some));
                assert_eq!(exits[2], None, "no restart after the last");
                assert!(m.workers().is_empty());
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    assert!(summary.killed.is_empty(), "{summary:?}");
    // A bad policy is refused before anything starts.
    let bad = Builder::new()
        .restart_policy(1, Duration::ZERO)
        .run(|_| async {}, |_| async {});
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
}

/// `Builder::stop_on_signals`: SIGTERM to the master stops both workers gracefully (each
/// hears its quit and says BYE), `stop_requested` resolves, the streams end once both
/// have ended (`Exited`, Stopped, status 0), and `run` returns a clean summary.
fn stop_on_signals(mt: bool) {
    let summary = builder(mt)
        .workers(2)
        .master_types([HELLO, ANS, BYE])
        .worker_types([REQ])
        .stop_on_signals(Duration::from_secs(5))
        .run(hello_worker, |m: AsyncMaster| async move {
            for _ in 0..2 {
                let (_, f) = within(10, "hello", m.recv()).await.expect("hello");
                assert_eq!(f.ty, HELLO);
            }
            assert!(!m.is_stop_requested());
            // SAFETY: kill(2) with our own pid and a signal number; no memory involved.
            assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGTERM) }, 0);
            within(10, "stop_requested", m.stop_requested()).await;
            assert!(m.is_stop_requested());
            let mut byes = 0;
            while let Some((from, f)) = within(10, "the end of recv", m.recv()).await {
                assert_eq!((f.ty, pid_of(&f.payload)), (BYE, from.pid()));
                byes += 1;
            }
            assert_eq!(byes, 2);
            let mut stopped = 0;
            while let Some(e) = within(10, "the end of events", m.next_event()).await {
                if let WorkerEvent::Exited { how, status, .. } = e {
                    assert_eq!(how, End::Stopped);
                    assert_eq!(status.and_then(|s| s.code()), Some(0));
                    stopped += 1;
                }
            }
            assert_eq!(stopped, 2);
            assert!(m.next_call().await.is_none());
            assert!(m.workers().is_empty());
        })
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    assert_eq!(summary.ends.len(), 2, "{summary:?}");
    for e in &summary.ends {
        assert_eq!(e.how, End::Stopped, "{summary:?}");
        assert_eq!(e.status.and_then(|s| s.code()), Some(0));
        assert_eq!(e.status.and_then(|s| s.signal()), None);
    }
}

fn main() -> ExitCode {
    common::main(&[
        ("fds_both_ways", || fds_both_ways(false)),
        ("rolling_restart", || rolling_restart(false)),
        ("restart_policy", restart_policy),
        ("stop_on_signals", || stop_on_signals(false)),
        // The same with the master on a multi-thread runtime (forks by the fork server).
        ("fds_both_ways_mt", || fds_both_ways(true)),
        ("rolling_restart_mt", || rolling_restart(true)),
        ("stop_on_signals_mt", || stop_on_signals(true)),
    ])
}
