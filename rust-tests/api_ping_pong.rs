//! Ping-pong between a Rust master and Rust workers, with typed messages, plus the errors
//! a caller can act on. Safe API only.

mod common;

use mln_ipc::api::{Builder, Error, Master, Message, Worker, WorkerId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::process::ExitCode;
use std::rc::Rc;

struct Ping(u32);
impl Message for Ping {
    const TYPE: u32 = 4001;
    fn encode(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn decode(b: &[u8]) -> Option<Self> {
        Some(Ping(common::u32_at(b, 0)?))
    }
}

/// The answer: the ball plus one, and the worker's own pid.
struct Pong {
    n: u32,
    pid: u32,
}
impl Message for Pong {
    const TYPE: u32 = 4002;
    fn encode(&self) -> Vec<u8> {
        [self.n.to_le_bytes(), self.pid.to_le_bytes()].concat()
    }
    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 8 {
            return None;
        }
        Some(Pong {
            n: common::u32_at(b, 0)?,
            pid: common::u32_at(b, 1)?,
        })
    }
}

const FAIL: u32 = 4009;
const WORKERS: u32 = 3;
const ROUNDS: u32 = 500;

#[derive(Default)]
struct Seen {
    finished: HashMap<usize, u32>,
    pongs: u32,
    errors: Vec<String>,
}

fn ping_pong() {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s = seen.clone();
    let s2 = seen.clone();
    let summary = Builder::new()
        .workers(WORKERS)
        .on_master_start(|m: &mut Master| {
            let b = m.broadcast_message(&Ping(0)).expect("broadcast");
            assert!(b.all_sent());
            assert_eq!(b.sent(), WORKERS as usize);
        })
        .on_worker_message(|w: &mut Worker, p: Ping| {
            let pid = w.pid();
            if let Err(e) = w.send_message(&Pong { n: p.0 + 1, pid }) {
                let _ = w.send(FAIL, format!("worker send: {e}"));
            }
        })
        .on_master_message(move |m: &mut Master, from: WorkerId, p: Pong| {
            let mut s = s.borrow_mut();
            s.pongs += 1;
            if p.pid != from.pid() {
                s.errors.push(format!("pong pid {} from {from}", p.pid));
            }
            if p.n < ROUNDS {
                m.send_message_to(from, &Ping(p.n)).expect("send");
                return;
            }
            s.finished.insert(from.index(), p.n);
            if s.finished.len() == WORKERS as usize {
                m.stop();
            }
        })
        .on_master(FAIL, move |m: &mut Master, _: WorkerId, b: &[u8]| {
            s2.borrow_mut()
                .errors
                .push(String::from_utf8_lossy(b).into_owned());
            m.stop();
        })
        .run()
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    let s = seen.borrow();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.pongs, WORKERS * ROUNDS);
    let mut idx: Vec<_> = s.finished.keys().copied().collect();
    idx.sort();
    assert_eq!(idx, (0..WORKERS as usize).collect::<Vec<_>>());
    assert!(s.finished.values().all(|n| *n == ROUNDS));
}

const HELLO: u32 = 4010;
const REPORT: u32 = 4011;

/// Oversized payloads are refused with a value saying by how much, on both sides; a
/// worker that is gone is `PeerGone`; a second `run` is refused.
fn errors() {
    let result = Rc::new(RefCell::new(Vec::<String>::new()));
    let r = result.clone();
    Builder::new()
        .workers(1)
        .max_message(1028)
        .on_worker_start(|w: &mut Worker| {
            let too_big = w.send(HELLO, vec![0u8; 1025]);
            let ok = w.send(HELLO, vec![0u8; 1024]);
            let report = match (too_big, ok) {
                (
                    Err(Error::MessageTooLarge {
                        len: 1025,
                        max: 1024,
                    }),
                    Ok(()),
                ) => "ok".to_string(),
                other => format!("worker: {other:?}"),
            };
            let _ = w.send(REPORT, report);
        })
        .on_master(HELLO, |m: &mut Master, from: WorkerId, b: &[u8]| {
            assert_eq!(b.len(), 1024);
            match m.send_to(from, HELLO, vec![1u8; 2000]) {
                Err(Error::MessageTooLarge {
                    len: 2000,
                    max: 1024,
                }) => {}
                other => panic!("master oversize: {other:?}"),
            }
        })
        .on_master(REPORT, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            r.borrow_mut().push(String::from_utf8_lossy(b).into_owned());
            let ghost = m.workers().iter().map(|w| w.index()).collect::<Vec<_>>();
            r.borrow_mut().push(format!("{ghost:?}"));
            assert_eq!(m.worker(0), Some(from));
            assert_eq!(m.worker(7), None);
            m.stop();
        })
        .run()
        .expect("run");
    assert_eq!(*result.borrow(), vec!["ok".to_string(), "[0]".to_string()]);
    // One run per process.
    assert!(matches!(Builder::new().run(), Err(Error::AlreadyStarted)));
}

/// Bad builder arguments come back from `run` as values, before anything is forked (and
/// without using up the one `run` of the process).
fn bad_arguments() {
    match Builder::new().spawn("", ["x"], true).run() {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("empty program: {other:?}"),
    }
    match Builder::new().spawn("/no/such/program", ["x"], true).run() {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("missing program: {other:?}"),
    }
    match Builder::new().max_message(3).run() {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("max_message(3): {other:?}"),
    }
    match Builder::new().max_message(1 << 20).queue_limit(1000).run() {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("queue_limit below max_message: {other:?}"),
    }
    match Builder::new().max_message(usize::MAX).queue_limit(0).run() {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("max_message above u32::MAX: {other:?}"),
    }
    let t = std::thread::spawn(|| Builder::new().workers(0).run());
    match t.join().expect("thread") {
        Err(Error::ThreadsRunning { threads }) => assert!(threads >= 2),
        other => panic!("threads: {other:?}"),
    }
}

fn main() -> ExitCode {
    common::main(&[
        ("ping_pong", ping_pong),
        ("errors", errors),
        ("bad_arguments", bad_arguments),
    ])
}
