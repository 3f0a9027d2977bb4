//! The async face (feature `tokio`): streams, backpressure that awaits, cancel-safe sends,
//! restarts and the graceful stop, across real processes. Each scenario runs in a fresh
//! process (rust-tests/common/mod.rs).

mod common;

use futures_core::Stream;
use mln_ipc::api::tokio::{AsyncMaster, AsyncWorker, Builder};
use mln_ipc::api::{End, Error, WorkerEvent};
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::process::ExitCode;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

const REQ: u32 = 2500;
const ANS: u32 = 2501;
const DATA: u32 = 2502;
const DONE: u32 = 2503;
const CRASH: u32 = 2504;
const BYE: u32 = 2505;

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// Whether `f` is not ready at its first poll (it is polled on, to completion, after).
async fn waits<F: Future>(f: F) -> (bool, F::Output) {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => (false, v),
        Poll::Pending => (true, f.await),
    }
}

fn u64_of(b: &[u8]) -> u64 {
    u64::from_ne_bytes(b[..8].try_into().expect("8 bytes"))
}

/// An echo worker: each REQ comes back as ANS.
async fn echo(w: AsyncWorker) {
    let mut rx = w.receiver();
    while let Some(f) = next(&mut rx).await {
        if f.ty == REQ {
            w.send(ANS, &f.payload).await.expect("answer");
        }
    }
}

/// 4 workers (multi-thread runtimes), 4,000 requests spread over them, the answers taken
/// from the master's stream: each comes back once, from the worker it was sent to.
fn stream() {
    const N: u64 = 4000;
    let summary = Builder::new()
        .workers(4)
        .master_types([ANS])
        .worker_types([REQ])
        .worker_runtime(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        })
        .run(echo, |m: AsyncMaster| async move {
            let ids = m.workers();
            assert_eq!(ids.len(), 4);
            let mut seen = vec![false; N as usize];
            let mut rx = m.receiver();
            let mut answered = 0u64;
            for i in 0..N {
                let to = ids[(i % 4) as usize];
                let mut p = i.to_ne_bytes().to_vec();
                p.extend_from_slice(&(to.index() as u64).to_ne_bytes());
                m.send(to, REQ, p).await.expect("send");
            }
            while answered < N {
                let (from, f) = next(&mut rx).await.expect("answer");
                assert_eq!(f.ty, ANS);
                let i = u64_of(&f.payload);
                assert_eq!(u64_of(&f.payload[8..]), from.index() as u64);
                assert!(!seen[i as usize], "answer {i} twice");
                seen[i as usize] = true;
                answered += 1;
            }
            m.shutdown(Duration::from_secs(5)).await;
        })
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
}

/// A slow worker: it reads nothing for a while. The master's sends wait (the core's queue,
/// the window, the socket and the worker's receive queue are full) instead of failing, and
/// every frame arrives once, in order.
fn backpressure() {
    const N: u64 = 3000;
    let summary = Builder::new()
        .workers(1)
        .max_message(16 * 1024)
        .queue_limit(64 * 1024)
        .send_window(16 * 1024)
        .receive_capacity(8)
        .master_types([DONE])
        .worker_types([DATA])
        .run(
            |w: AsyncWorker| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut expect = 0u64;
                while expect < N {
                    let f = w.recv().await.expect("data");
                    assert_eq!(u64_of(&f.payload), expect, "out of order or lost");
                    assert_eq!(f.payload.len(), 4096);
                    expect += 1;
                }
                w.send(DONE, expect.to_ne_bytes()).await.expect("done");
                // Returning now would be an end unasked (and a restart).
                w.quit().await;
            },
            |m: AsyncMaster| async move {
                let to = m.workers()[0];
                let mut waited = 0;
                for i in 0..N {
                    let mut p = vec![0u8; 4096];
                    p[..8].copy_from_slice(&i.to_ne_bytes());
                    let (w, r) = waits(m.send(to, DATA, p)).await;
                    r.expect("a full queue makes the send wait, not fail");
                    waited += w as u32;
                }
                assert!(waited > 0, "12 MiB never made a send wait");
                let (_, f) = m.recv().await.expect("done");
                assert_eq!(u64_of(&f.payload), N);
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
}

/// Send futures dropped while they wait (a timeout much shorter than the slow worker's
/// pace) queue nothing; those that completed are delivered once: the worker sees the
/// sequence numbers of the completed sends, consecutive, and their count.
fn cancellation() {
    let summary = Builder::new()
        .workers(1)
        .max_message(16 * 1024)
        .queue_limit(32 * 1024)
        .send_window(8 * 1024)
        .receive_capacity(4)
        .master_types([DONE])
        .worker_types([DATA, DONE])
        .run(
            |w: AsyncWorker| async move {
                let mut expect = 0u64;
                loop {
                    let f = w.recv().await.expect("frame");
                    if f.ty == DONE {
                        assert_eq!(u64_of(&f.payload), expect);
                        w.send(DONE, expect.to_ne_bytes()).await.expect("done");
                        w.quit().await;
                        break;
                    }
                    assert_eq!(u64_of(&f.payload), expect, "lost or duplicated");
                    expect += 1;
                    if expect.is_multiple_of(64) {
                        // Slow: the master's sends time out meanwhile.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            },
            |m: AsyncMaster| async move {
                let to = m.workers()[0];
                let (mut sent, mut dropped) = (0u64, 0u64);
                while sent < 2000 {
                    let mut p = vec![0u8; 2048];
                    p[..8].copy_from_slice(&sent.to_ne_bytes());
                    match tokio::time::timeout(Duration::from_micros(200), m.send(to, DATA, p))
                        .await
                    {
                        Ok(r) => {
                            r.expect("send");
                            sent += 1;
                        }
                        Err(_) => dropped += 1,
                    }
                }
                assert!(dropped > 0, "no send was ever cancelled while waiting");
                // A permit dropped unused gives its room back and sends nothing.
                drop(m.reserve(to, 2048).await.expect("reserve"));
                m.reserve(to, 8)
                    .await
                    .expect("reserve")
                    .send(DONE, sent.to_ne_bytes())
                    .expect("permit send");
                let (_, f) = m.recv().await.expect("done");
                assert_eq!(u64_of(&f.payload), sent);
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
}

/// A worker that aborts is restarted at its index: the event stream says Started, Exited
/// (SIGABRT) and Started again; the new process answers, the old id is gone.
fn restart() {
    let summary = Builder::new()
        .workers(2)
        .master_types([ANS])
        .worker_types([REQ, CRASH])
        .run(
            |w: AsyncWorker| async move {
                while let Some(f) = w.recv().await {
                    match f.ty {
                        CRASH => std::process::abort(),
                        _ => w.send(ANS, &f.payload).await.expect("answer"),
                    }
                }
            },
            |m: AsyncMaster| async move {
                let mut ev = m.events();
                let mut started = Vec::new();
                while started.len() < 2 {
                    if let Some(WorkerEvent::Started { id, .. }) = next(&mut ev).await {
                        started.push(id);
                    }
                }
                let old = m.worker(0).expect("worker 0");
                m.send(old, CRASH, []).await.expect("crash");
                let new = loop {
                    match next(&mut ev).await.expect("event") {
                        WorkerEvent::Exited {
                            id,
                            how,
                            status,
                            restart_in,
                            ..
                        } => {
                            assert_eq!(id, old);
                            assert_eq!(how, End::Crashed);
                            use std::os::unix::process::ExitStatusExt;
                            assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGABRT));
                            assert!(restart_in.is_some());
                        }
                        WorkerEvent::Started { index: 0, id, .. } => break id,
                        e => panic!("unexpected {e:?}"),
                    }
                };
                assert_ne!(new.pid(), old.pid());
                assert!(matches!(m.send(old, REQ, []).await, Err(Error::PeerGone)));
                m.send(new, REQ, b"again")
                    .await
                    .expect("send to the new one");
                let (from, f) = m.recv().await.expect("answer");
                assert_eq!((from, f.payload.as_slice()), (new, &b"again"[..]));
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
}

/// `shutdown`: each worker hears its quit, sends what it has left, returns, and exits
/// with status 0; the master gets every BYE and every Exited (Stopped) first.
fn graceful_stop() {
    let summary = Builder::new()
        .workers(3)
        .master_types([BYE])
        .worker_types([REQ])
        .run(
            |w: AsyncWorker| async move {
                w.quit().await;
                assert!(w.quit_requested());
                let i = w.index().expect("index") as u64;
                w.send(BYE, i.to_ne_bytes()).await.expect("bye");
            },
            |m: AsyncMaster| async move {
                let n = m.workers().len();
                assert_eq!(n, 3);
                m.shutdown(Duration::from_secs(5)).await;
                let mut byes = Vec::new();
                while let Some((from, f)) = m.recv().await {
                    assert_eq!(u64_of(&f.payload), from.index() as u64);
                    byes.push(from.index());
                    if byes.len() == n {
                        break;
                    }
                }
                byes.sort();
                assert_eq!(byes, [0, 1, 2]);
                let mut stopped = 0;
                let mut ev = m.events();
                while stopped < n {
                    if let Some(WorkerEvent::Exited {
                        how,
                        status,
                        restart_in,
                        ..
                    }) = next(&mut ev).await
                    {
                        assert_eq!(how, End::Stopped);
                        assert_eq!(status.and_then(|s| s.code()), Some(0));
                        assert_eq!(restart_in, None);
                        stopped += 1;
                    }
                }
                assert!(m.workers().is_empty());
            },
        )
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    assert!(summary.killed.is_empty());
}

/// Never fork with a runtime or other threads: refused before anything is touched.
fn refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let r = rt.block_on(async { Builder::new().workers(1).run(|_| async {}, |_| async {}) });
    assert!(matches!(r, Err(Error::RuntimeRunning)), "{r:?}");
    drop(rt);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv());
    let r = Builder::new().workers(1).run(|_| async {}, |_| async {});
    assert!(matches!(r, Err(Error::ThreadsRunning { .. })), "{r:?}");
    drop(tx);
    let _ = t.join();
    let r = Builder::new()
        .master_types([1000])
        .run(|_| async {}, |_| async {});
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}

/// A worker whose async main panics exits with status 101 and is restarted; a master
/// whose async main panics stops the workers and `run` returns `Error::Panicked`.
fn panics() {
    common::expect_panics("async test panic");
    let r = Builder::new().workers(1).worker_types([CRASH]).run(
        |w: AsyncWorker| async move {
            if let Some(f) = w.recv().await {
                assert_eq!(f.ty, CRASH);
                panic!("async test panic in a worker");
            }
        },
        |m: AsyncMaster| async move {
            let old = m.workers()[0];
            m.send(old, CRASH, []).await.expect("crash");
            loop {
                match next(&mut m.events()).await.expect("event") {
                    WorkerEvent::Exited { id, status, .. } => {
                        assert_eq!(id, old);
                        assert_eq!(status.and_then(|s| s.code()), Some(101));
                    }
                    WorkerEvent::Started { index: 0, id, .. } if id != old => break,
                    _ => {}
                }
            }
            panic!("async test panic in the master");
        },
    );
    match r {
        Err(Error::Panicked { message, .. }) => assert!(message.contains("async test panic")),
        r => panic!("{r:?}"),
    }
}

/// Request/response over the CALL/REPLY frames: answers matched to their calls, a
/// refusal's status, a call to a worker that dies first (PeerGone), a call forgotten by a
/// dropped future (its late answer is dropped; the next call gets its own), and a worker
/// calling the master.
fn call() {
    const UPPER: u32 = 2600;
    const SLOW: u32 = 2601;
    const DIE: u32 = 2602;
    const ASK: u32 = 2603;
    let summary = Builder::new()
        .workers(2)
        .master_types([BYE])
        .run(
            |w: AsyncWorker| async move {
                if w.index() == Some(1) {
                    // Worker 1 calls the master once.
                    let r = w.call(ASK, b"who").await.expect("call the master");
                    assert!(r.answered());
                    assert_eq!(r.frame.payload, b"master");
                    w.send(BYE, []).await.expect("bye");
                }
                while let Some(c) = w.next_call().await {
                    match c.request.ty {
                        UPPER => {
                            let up = c.request.payload.to_ascii_uppercase();
                            c.reply(UPPER, up).await.expect("reply");
                        }
                        SLOW => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            c.reply(SLOW, b"late").await.expect("reply");
                        }
                        DIE => std::process::abort(),
                        _ => c.refuse(7).await.expect("refuse"),
                    }
                }
            },
            |m: AsyncMaster| async move {
                let c = m.next_call().await.expect("worker 1's call");
                assert_eq!(c.from().map(|id| id.index()), Some(1));
                assert_eq!(c.request.ty, ASK);
                c.reply(ASK, b"master").await.expect("answer worker 1");
                let (_, bye) = m.recv().await.expect("bye");
                assert_eq!(bye.ty, BYE);
                let (w0, w1) = (m.workers()[0], m.workers()[1]);
                for i in 0..100u32 {
                    let to = if i % 2 == 0 { w0 } else { w1 };
                    let r = m.call(to, UPPER, format!("req {i}")).await.expect("call");
                    assert!(r.answered());
                    assert_eq!(r.frame.ty, UPPER);
                    assert_eq!(r.frame.payload, format!("REQ {i}").as_bytes());
                }
                let r = m.call(w1, 2699, b"?").await.expect("call");
                assert_eq!(r.status, 7);
                let late = tokio::time::timeout(Duration::from_millis(5), m.call(w1, SLOW, []));
                assert!(late.await.is_err(), "the slow call answered within 5 ms");
                let r = m
                    .call(w1, UPPER, b"after")
                    .await
                    .expect("call after a forgotten one");
                assert_eq!(r.frame.payload, b"AFTER");
                assert!(matches!(m.call(w0, DIE, []).await, Err(Error::PeerGone)));
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    assert!(summary.killed.is_empty(), "{summary:?}");
}

/// CPU time (user + system) of this process, or of its reaped children.
fn cpu(who: i32) -> Duration {
    // SAFETY: an all-zero rusage is valid to fill in.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out-pointer.
    assert_eq!(unsafe { libc::getrusage(who, &mut u) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Nothing busy-waits: a master (on a tokio timer) and 2 workers (on their receive
/// streams) idle for 500 ms use almost no CPU.
fn idle() {
    let before = cpu(libc::RUSAGE_SELF);
    let summary = Builder::new()
        .workers(2)
        .worker_types([REQ])
        .run(
            |w: AsyncWorker| async move { while w.recv().await.is_some() {} },
            |m: AsyncMaster| async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    let (master, workers) = (cpu(libc::RUSAGE_SELF) - before, cpu(libc::RUSAGE_CHILDREN));
    assert!(
        master < Duration::from_millis(100),
        "master used {master:?} idle"
    );
    assert!(
        workers < Duration::from_millis(100),
        "workers used {workers:?} idle"
    );
}

/// A worker handler written against the C API (`mln_ipc_handler_register`,
/// `mln_ipc_worker_send_prepare`): it answers PING with the payload reversed.
unsafe extern "C" fn c_worker_ping(
    ev: *mut mln_ipc::abi::mln_event_t,
    _f: *mut core::ffi::c_void,
    buf: *mut core::ffi::c_void,
    len: mln_ipc::abi::mln_u32_t,
    _udata: *mut *mut core::ffi::c_void,
) {
    // SAFETY: `buf` holds `len` bytes during the call; `ev` is the worker's loop.
    unsafe {
        let mut reply: Vec<u8> = core::slice::from_raw_parts(buf.cast::<u8>(), len as usize)
            .iter()
            .rev()
            .copied()
            .collect();
        let r = mln_ipc::capi::fork::mln_ipc_worker_send_prepare(
            ev,
            ANS,
            reply.as_mut_ptr().cast(),
            reply.len(),
        );
        assert_eq!(r, 0);
    }
}

/// The same frames as the C API's: an async master drives a worker handler written
/// against the C API (in an async worker's loop), and takes its answers from its stream.
fn c_handlers() {
    // SAFETY: registration of a valid handler function; its data is unused.
    let r = unsafe {
        mln_ipc::capi::ipc::mln_ipc_handler_register(
            REQ,
            None,
            Some(c_worker_ping),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    assert!(!r.is_null());
    let summary = Builder::new()
        .workers(2)
        .master_types([ANS])
        .run(
            |w: AsyncWorker| async move { w.quit().await },
            |m: AsyncMaster| async move {
                for id in m.workers() {
                    m.send(id, REQ, format!("abc{}", id.index()))
                        .await
                        .expect("send");
                }
                let mut got: Vec<(usize, Vec<u8>)> = Vec::new();
                for _ in 0..2 {
                    let (from, f) = m.recv().await.expect("answer");
                    got.push((from.index(), f.payload.into_vec()));
                }
                got.sort();
                assert_eq!(got, [(0, b"0cba".to_vec()), (1, b"1cba".to_vec())]);
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
}

/// A burst taken with `recv_many` (master side) and a second one on the worker side: every
/// frame once, in order, batches of at most the limit; once a worker was asked to quit and
/// its frames were taken, `recv_many` gives 0.
fn recv_many() {
    const N: u64 = 20_000;
    const LIMIT: usize = 300;
    let summary = Builder::new()
        .workers(1)
        .master_types([DATA])
        .worker_types([REQ])
        .run(
            |w: AsyncWorker| async move {
                for i in 0..N {
                    w.send(DATA, i.to_ne_bytes()).await.expect("data");
                }
                let mut buf = Vec::new();
                let mut next = 0u64;
                loop {
                    buf.clear();
                    let k = w.recv_many(&mut buf, LIMIT).await;
                    if k == 0 {
                        break;
                    }
                    assert!(k <= LIMIT && k == buf.len());
                    for f in &buf {
                        assert_eq!(u64_of(&f.payload), next, "worker: out of order");
                        next += 1;
                    }
                }
                assert_eq!(next, N, "worker: frames lost before the quit");
            },
            |m: AsyncMaster| async move {
                let to = m.workers()[0];
                for i in 0..N {
                    m.send(to, REQ, i.to_ne_bytes()).await.expect("req");
                }
                let mut buf = Vec::new();
                let mut next = 0u64;
                let mut batches = 0;
                while next < N {
                    buf.clear();
                    let k = m.recv_many(&mut buf, LIMIT).await;
                    assert!(k > 0 && k <= LIMIT && k == buf.len());
                    batches += 1;
                    for (from, f) in &buf {
                        assert_eq!(*from, to);
                        assert_eq!(u64_of(&f.payload), next, "master: out of order");
                        next += 1;
                    }
                }
                assert!(batches < N, "never more than one frame at a time");
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
}

/// Bytes as a typed message of type `T` (for the synchronous API's reply and call).
struct Text<const T: u32>(Vec<u8>);

impl<const T: u32> mln_ipc::api::Message for Text<T> {
    const TYPE: u32 = T;
    fn encode(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Text(bytes.to_vec()))
    }
}

const P_ECHO: u32 = 2700;
const P_UPPER: u32 = 2701;
const P_ASK: u32 = 2702;
const P_TOLD: u32 = 2703;

/// The program an async master spawns (this binary, `--sync-program`): written with the
/// synchronous API's `Program`; it echoes, answers calls, calls its master once at its
/// start and reports the answer.
fn sync_program() -> ExitCode {
    use mln_ipc::api::{CallError, Program, Worker};
    std::panic::set_hook(Box::new(|info| {
        eprintln!("program failed: {info}");
        std::process::abort();
    }));
    let r = Program::from_env()
        .expect("started by spawn")
        .on_worker(P_ECHO, |w: &mut Worker, p: &[u8]| {
            w.send(P_ECHO, p).expect("echo");
        })
        .on_worker_message(|w: &mut Worker, t: Text<P_UPPER>| {
            w.reply(&Text::<P_UPPER>(t.0.to_ascii_uppercase()))
                .expect("reply");
        })
        .on_start(|w: &mut Worker| {
            w.call(
                &Text::<P_ASK>(b"who".to_vec()),
                |w: &mut Worker, r: Result<Text<P_ASK>, CallError>| {
                    let answer = r.expect("the async master answers").0;
                    w.send(P_TOLD, answer).expect("told");
                },
            )
            .expect("call the master");
        })
        .run();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("program: {e}");
            ExitCode::from(9)
        }
    }
}

/// An async master drives a program written with the synchronous API (`Program`), on the
/// same wire: frames both ways, calls both ways (the async `call` answered by the sync
/// `reply`, the sync `call` answered by the async `reply`), a graceful stop it obeys.
fn drives_sync_program() {
    let exe = std::env::current_exe().expect("current_exe");
    let summary = Builder::new()
        .workers(0)
        .master_types([P_ECHO, P_TOLD])
        .spawn(&exe, ["--sync-program"], false)
        .run(
            |_: AsyncWorker| async move {},
            |m: AsyncMaster| async move {
                let c = m.next_call().await.expect("the program's call");
                assert_eq!(c.request.ty, P_ASK);
                assert_eq!(c.request.payload, b"who");
                c.reply(P_ASK, b"the async master").await.expect("answer");
                let (prog, told) = m.recv().await.expect("told");
                assert_eq!(told.ty, P_TOLD);
                assert_eq!(told.payload, b"the async master");
                for i in 0..1000u32 {
                    m.send(prog, P_ECHO, i.to_ne_bytes()).await.expect("echo");
                }
                for i in 0..1000u32 {
                    let (from, f) = m.recv().await.expect("echoed");
                    assert_eq!(from, prog);
                    assert_eq!(f.payload, i.to_ne_bytes());
                }
                let r = m.call(prog, P_UPPER, b"shout").await.expect("call");
                assert!(r.answered(), "status {}", r.status);
                assert_eq!(r.frame.ty, P_UPPER);
                assert_eq!(r.frame.payload, b"SHOUT");
                let r = m.call(prog, 2799, b"?").await.expect("call");
                assert_eq!(r.status, 1, "no handler for that type");
                m.shutdown(Duration::from_secs(5)).await;
                let mut ev = m.events();
                loop {
                    if let Some(WorkerEvent::Exited { how, status, .. }) = next(&mut ev).await {
                        assert_eq!(how, End::Stopped);
                        assert_eq!(status.and_then(|s| s.code()), Some(0));
                        break;
                    }
                }
            },
        )
        .expect("run");
    assert!(summary.killed.is_empty(), "{summary:?}");
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--sync-program") {
        return sync_program();
    }
    common::main(&[
        ("stream", stream),
        ("recv_many", recv_many),
        ("drives_sync_program", drives_sync_program),
        ("backpressure", backpressure),
        ("cancellation", cancellation),
        ("restart", restart),
        ("graceful_stop", graceful_stop),
        ("refused", refused),
        ("panics", panics),
        ("call", call),
        ("idle", idle),
        ("c_handlers", c_handlers),
    ])
}
