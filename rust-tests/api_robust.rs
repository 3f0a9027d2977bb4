//! The Rust API's rules under hostile use (issue 24, items 2, 3, 6, 7, 8): a thread
//! started after `run` began refuses every later fork instead of forking a multi-threaded
//! master; a start hook that panics ends `run` (master) or the worker (status 101); a
//! worker knows its index; a dead worker is never listed once its death is known;
//! `broadcast` tries every worker; frames nobody handles are counted; reserved types are
//! refused at registration; closures are dropped when `run` ends, in the master and in
//! each worker. Safe API only.

mod common;

use mln_ipc::api::{Builder, Error, Master, Worker, WorkerEvent, WorkerId};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HELLO: u32 = 4901;
const CRASH: u32 = 4902;
const NOBODY: u32 = 4903;
const COUNTS: u32 = 4904;
/// Nobody handles it either.
const FILLER: u32 = 4905;
const BIG: usize = 256 << 10;

/// Expected panics of these scenarios say this; any other fails the scenario.
const EXPECTED: &str = "expected by the test";

fn expect_panics() {
    std::panic::set_hook(Box::new(|info| {
        let p = info.payload();
        let expected = p
            .downcast_ref::<&str>()
            .is_some_and(|s| s.contains(EXPECTED))
            || p.downcast_ref::<String>()
                .is_some_and(|s| s.contains(EXPECTED));
        if !expected {
            eprintln!("scenario failed: {info}");
            std::process::abort();
        }
    }));
}

/// A lock a thread of the master holds from `on_master_start` on; the first worker takes
/// it at its start. A restart that forked the master now would copy it locked, and the
/// replacement would hang for ever on it (3 of 3 runs before the check at every fork).
static LOCK: Mutex<()> = Mutex::new(());

fn thread_after_run_refuses_forks() {
    let thread: Rc<RefCell<Option<std::thread::JoinHandle<()>>>> = Rc::default();
    let release = Arc::new(AtomicBool::new(false));
    let events = Rc::new(RefCell::new(Vec::new()));
    let (t1, t2) = (thread.clone(), thread.clone());
    let (r1, r2) = (release.clone(), release.clone());
    let ev = events.clone();
    let hellos = Rc::new(Cell::new(0u32));
    let h = hellos.clone();
    Builder::new()
        .workers(1)
        .on_master_start(move |_: &mut Master| {
            let (held_tx, held_rx) = std::sync::mpsc::channel();
            let r = r1.clone();
            *t1.borrow_mut() = Some(std::thread::spawn(move || {
                let _g = LOCK.lock().expect("lock");
                held_tx.send(()).expect("held");
                while !r.load(Ordering::Acquire) {
                    std::thread::park();
                }
            }));
            held_rx.recv().expect("the thread holds the lock");
        })
        .on_worker_start(|w: &mut Worker| {
            drop(LOCK.lock().unwrap_or_else(|e| e.into_inner()));
            w.send(HELLO, []).expect("hello");
        })
        .on_worker(CRASH, |_: &mut Worker, _: &[u8]| std::process::exit(3))
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            h.set(h.get() + 1);
            match h.get() {
                // The first worker (forked before the thread): crash it.
                1 => m.send_to(from, CRASH, []).expect("crash"),
                // The replacement, forked once the thread had ended.
                _ => m.stop(),
            }
        })
        .on_worker_event(move |_: &mut Master, e: &WorkerEvent| {
            ev.borrow_mut().push(e.clone());
            if let WorkerEvent::RestartFailed {
                threads_running: true,
                ..
            } = e
            {
                // End the thread: the next attempt forks.
                if let Some(t) = t2.borrow_mut().take() {
                    r2.store(true, Ordering::Release);
                    t.thread().unpark();
                    t.join().expect("join");
                }
            }
        })
        .run()
        .expect("run");
    assert_eq!(hellos.get(), 2, "the replacement said hello");
    let events = events.borrow();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, WorkerEvent::RestartFailed { .. }))
        .collect();
    assert!(!failed.is_empty(), "no RestartFailed: {events:?}");
    for e in &failed {
        let WorkerEvent::RestartFailed {
            index,
            threads_running,
            errno,
            ..
        } = e
        else {
            unreachable!()
        };
        assert_eq!(*index, 0);
        assert!(*threads_running);
        assert_eq!(*errno, libc::EDEADLK);
    }
    assert!(thread.borrow().is_none(), "the thread was joined");
}

/// `on_master_start` panics after the workers are forked (here with none, and no timer:
/// before, the loop then ran for ever): `run` stops them and says so.
fn master_start_panic_ends_run() {
    expect_panics();
    let r = Builder::new()
        .workers(0)
        .on_master_start(|_: &mut Master| panic!("start failed ({EXPECTED})"))
        .run();
    match r {
        Err(Error::Panicked { hook, message }) => {
            assert_eq!(hook, "on_master_start");
            assert!(message.contains("start failed"), "{message}");
        }
        other => panic!("run gave {other:?}"),
    }
}

/// The same with workers: they are stopped before `run` returns (the runner fails the
/// scenario if a process of its group is left).
fn master_start_panic_stops_workers() {
    expect_panics();
    let r = Builder::new()
        .workers(3)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_master_start(|_: &mut Master| panic!("start failed ({EXPECTED})"))
        .run();
    assert!(
        matches!(
            r,
            Err(Error::Panicked {
                hook: "on_master_start",
                ..
            })
        ),
        "{r:?}"
    );
}

/// `on_worker_start` panics: the worker exits with 101, as a Rust program whose `main`
/// panicked (before: the panic was caught and the worker ran on, set up by half).
fn worker_start_panic_exits_101() {
    expect_panics();
    let exits = Rc::new(RefCell::new(Vec::new()));
    let e2 = exits.clone();
    Builder::new()
        .workers(1)
        .restart_policy(1, Duration::from_secs(600))
        .on_worker_start(|_: &mut Worker| panic!("worker start failed ({EXPECTED})"))
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| match e {
            WorkerEvent::Exited { status, .. } => {
                e2.borrow_mut().push(status.and_then(|s| s.code()));
            }
            WorkerEvent::GaveUp { .. } => m.stop(),
            _ => {}
        })
        .run()
        .expect("run");
    assert_eq!(*exits.borrow(), vec![Some(101), Some(101)]);
}

/// Each worker knows its index, also a replacement.
fn worker_knows_its_index() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    Builder::new()
        .workers(3)
        .on_worker_start(|w: &mut Worker| {
            let i = w.index().expect("a forked worker has an index") as u32;
            w.send(HELLO, i.to_le_bytes()).expect("hello");
        })
        .on_worker(CRASH, |_: &mut Worker, _: &[u8]| std::process::exit(3))
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, p: &[u8]| {
            let said = u32::from_le_bytes(p.try_into().expect("4 bytes")) as usize;
            assert_eq!(said, from.index(), "{from} says it is {said}");
            let mut s = s.borrow_mut();
            s.push(said);
            if s.len() == 3 {
                let one = m.worker(1).expect("worker 1");
                m.send_to(one, CRASH, []).expect("crash");
            } else if s.len() == 4 {
                m.stop();
            }
        })
        .run()
        .expect("run");
    let mut seen = seen.borrow().clone();
    seen[..3].sort();
    assert_eq!(seen, vec![0, 1, 2, 1]);
}

/// A worker whose death the master learnt from a failed write is not listed any more,
/// even before its end of stream is handled (before: `worker(0)` still gave it).
fn dead_worker_not_listed() {
    let checked = Rc::new(Cell::new(false));
    let c = checked.clone();
    let started = Rc::new(Cell::new(0u32));
    let st = started.clone();
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(CRASH, |_: &mut Worker, _: &[u8]| std::process::exit(3))
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            if c.get() {
                // The replacement.
                m.stop();
                return;
            }
            m.send_to(from, CRASH, []).expect("crash");
            let c = c.clone();
            // On the next loop turn (the crash is written when this handler returns):
            // wait until the worker is gone (not reaped: the library reaps it), then
            // learn it from a write, before the loop handles its end of stream.
            m.after(Duration::ZERO, move |m: &mut Master| {
                waitid(
                    Id::Pid(Pid::from_raw(from.pid() as i32)),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
                )
                .expect("waitid");
                // Large enough to be written at once (and fail).
                let r = m.send_to(from, CRASH, vec![0u8; BIG]);
                assert!(matches!(r, Err(Error::PeerGone)), "{r:?}");
                assert_eq!(m.worker(from.index()), None, "the dead worker is listed");
                assert!(!m.workers().contains(&from));
                assert!(m.stats(from).is_none());
                c.set(true);
            })
            .expect("timer");
        })
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            if let WorkerEvent::Exited { index, id, .. } = e {
                // The index may hold its replacement already (restarted at once).
                assert_ne!(m.worker(*index), Some(*id));
                assert!(!m.workers().contains(id));
                assert!(matches!(m.send_to(*id, CRASH, []), Err(Error::PeerGone)));
            }
            if let WorkerEvent::Started { .. } = e {
                st.set(st.get() + 1);
            }
        })
        .run()
        .expect("run");
    assert!(checked.get());
    assert_eq!(started.get(), 2);
}

/// One worker's full queue does not keep a broadcast from the others: each result is
/// given (before: the walk stopped at worker 1, and workers 2 and 3 got nothing).
fn broadcast_tries_every_worker() {
    let hellos = Rc::new(Cell::new(0u32));
    let h = hellos.clone();
    let acks = Rc::new(RefCell::new(Vec::new()));
    let a = acks.clone();
    Builder::new()
        .workers(4)
        .queue_limit(BIG * 2)
        .max_message(BIG + 4)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(NOBODY, |w: &mut Worker, p: &[u8]| {
            if p.len() == 1 {
                w.send(COUNTS, []).expect("ack");
            }
        })
        .on_master(HELLO, move |m: &mut Master, _: WorkerId, _: &[u8]| {
            h.set(h.get() + 1);
            if h.get() < 4 {
                return;
            }
            // Fill worker 1's queue: nothing is written while this handler runs.
            let one = m.worker(1).expect("worker 1");
            let mut sends = 0;
            for size in [BIG, 4096, 64, 1] {
                let filler = vec![0u8; size];
                while m.send_to(one, FILLER, &filler).is_ok() {
                    sends += 1;
                    assert!(sends < 100_000, "worker 1's queue never filled");
                }
            }
            let b = m.broadcast(NOBODY, [1u8]).expect("broadcast");
            assert_eq!(b.results().len(), 4);
            let failures: Vec<_> = b.failures().map(|(w, _)| w.index()).collect();
            assert_eq!(failures, vec![1]);
            assert!(matches!(b.failures().next(), Some((_, Error::QueueFull))));
            assert_eq!(b.sent(), 3, "the workers after 1 got it too");
            assert!(!b.all_sent());
        })
        .on_master(COUNTS, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            let mut a = a.borrow_mut();
            a.push(from.index());
            if a.len() == 3 {
                m.stop();
            }
        })
        .run()
        .expect("run");
    let mut acks = acks.borrow().clone();
    acks.sort();
    assert_eq!(acks, vec![0, 2, 3]);
}

/// Frames of a type nobody handles are counted on the side that dropped them.
fn unhandled_counted() {
    let got = Rc::new(Cell::new(None));
    let g = got.clone();
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| {
            for _ in 0..5 {
                w.send(NOBODY, b"nobody handles this").expect("send");
            }
            w.send(HELLO, []).expect("hello");
        })
        .on_worker(COUNTS, |w: &mut Worker, _: &[u8]| {
            let n = w.stats().unhandled as u32;
            w.send(COUNTS, n.to_le_bytes()).expect("counts");
        })
        .on_master(HELLO, |m: &mut Master, from: WorkerId, _: &[u8]| {
            assert_eq!(m.stats(from).expect("stats").unhandled, 5);
            for _ in 0..7 {
                m.send_to(from, NOBODY, []).expect("send");
            }
            m.send_to(from, COUNTS, []).expect("ask");
        })
        .on_master(COUNTS, move |m: &mut Master, _: WorkerId, p: &[u8]| {
            g.set(Some(u32::from_le_bytes(p.try_into().expect("4 bytes"))));
            m.stop();
        })
        .run()
        .expect("run");
    assert_eq!(got.get(), Some(7));
}

/// Handlers for Melon's types (0..=1024) are refused, on either side.
fn reserved_types_refused() {
    for ty in [0, 1, 1021, 1024] {
        let r = Builder::new()
            .workers(0)
            .on_master(ty, |_: &mut Master, _: WorkerId, _: &[u8]| {})
            .run();
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{ty}: {r:?}");
        let r = Builder::new()
            .workers(0)
            .on_worker(ty, |_: &mut Worker, _: &[u8]| {})
            .run();
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{ty}: {r:?}");
    }
    // 1025 is the first type of the program's.
    let summary = Builder::new()
        .workers(0)
        .on_master(1025, |_: &mut Master, _: WorkerId, _: &[u8]| {})
        .on_master_start(|m: &mut Master| m.stop())
        .run()
        .expect("1025 is accepted");
    assert!(summary.is_clean());
}

/// Writes a byte to its socket when dropped.
struct Witness(UnixStream, u8);

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.0.write_all(&[self.1]);
    }
}

/// Closures are dropped when `run` ends: every one in the master; in each worker, the
/// worker side's (its handlers, start hook, writable callback and quit hook) before it
/// exits, whether it was stopped or its master went; the master side's copies are not
/// dropped there (their destructors would run twice).
fn closures_dropped() {
    let (mut probe, witness) = UnixStream::pair().expect("socketpair");
    let w = || witness.try_clone().expect("clone");
    let (a, b, c, d, e, f, g, h) = (w(), w(), w(), w(), w(), w(), w(), w());
    let master_a = Witness(a, b'M');
    let master_b = Witness(b, b'E');
    let worker_a = Witness(c, b'w');
    let worker_b = Witness(d, b's');
    let worker_c = Witness(e, b'q');
    let worker_d = Witness(f, b'r');
    let master_c = Witness(g, b'W');
    let stopper = Witness(h, b'x');
    drop(witness);
    let summary = Builder::new()
        .workers(2)
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            let _ = &master_a;
            if from.index() == 0 {
                // Worker 0 is stopped (never restarted: no new copies); worker 1 sees its
                // master go.
                m.stop_worker(from, Duration::from_secs(30))
                    .expect("stop 0");
            }
        })
        .on_master(COUNTS, move |m: &mut Master, _: WorkerId, _: &[u8]| {
            let _ = &stopper;
            m.stop();
        })
        .on_worker_event(move |_: &mut Master, _: &WorkerEvent| {
            let _ = &master_b;
        })
        .on_master_writable(move |_: &mut Master, _: WorkerId| {
            let _ = &master_c;
        })
        .on_worker(CRASH, move |w: &mut Worker, _: &[u8]| {
            let _ = &worker_a;
            w.stop();
        })
        .on_worker_start(move |w: &mut Worker| {
            let _ = &worker_b;
            w.send(HELLO, []).expect("hello");
        })
        .on_quit(move |_: &mut Worker| {
            let _ = &worker_c;
        })
        .on_worker_writable(move |_: &mut Worker| {
            let _ = &worker_d;
        })
        .on_worker_event(|m: &mut Master, e: &WorkerEvent| {
            // Worker 0 exited after its stop: enough; the master stops.
            if let WorkerEvent::Exited { index: 0, .. } = e {
                m.stop();
            }
        })
        .run()
        .expect("run");
    let _ = summary;
    // Every copy of the socket is gone once each process dropped or leaked its copies and
    // exited: read to the end.
    let mut bytes = Vec::new();
    probe.read_to_end(&mut bytes).expect("read");
    let count = |c: u8| bytes.iter().filter(|&&b| b == c).count();
    // The master dropped each of its closures once, worker-side ones included.
    for (c, what) in [
        (b'M', "master handler"),
        (b'W', "master writable"),
        (b'x', "master handler 2"),
    ] {
        assert_eq!(count(c), 1, "{what}: {bytes:?}");
    }
    // on_worker_event was replaced by the second call: the first closure is dropped
    // at once (by the builder), in the master only.
    assert_eq!(count(b'E'), 1, "{bytes:?}");
    // Worker side: once in the master, once in each of the two workers (one stopped, one
    // whose master went).
    for (c, what) in [
        (b'w', "worker handler"),
        (b's', "worker start"),
        (b'q', "on_quit"),
        (b'r', "worker writable"),
    ] {
        assert_eq!(count(c), 3, "{what}: {bytes:?}");
    }
}

fn main() -> ExitCode {
    common::main(&[
        (
            "thread_after_run_refuses_forks",
            thread_after_run_refuses_forks,
        ),
        ("master_start_panic_ends_run", master_start_panic_ends_run),
        (
            "master_start_panic_stops_workers",
            master_start_panic_stops_workers,
        ),
        ("worker_start_panic_exits_101", worker_start_panic_exits_101),
        ("worker_knows_its_index", worker_knows_its_index),
        ("dead_worker_not_listed", dead_worker_not_listed),
        ("broadcast_tries_every_worker", broadcast_tries_every_worker),
        ("unhandled_counted", unhandled_counted),
        ("reserved_types_refused", reserved_types_refused),
        ("closures_dropped", closures_dropped),
    ])
}
