//! Lifecycle control from the safe API (issue 22): worker events in order with their
//! index, status and restart counts; a graceful stop that lets a worker finish its reply
//! and say goodbye from `on_quit`; a rolling restart; the restart policy giving an index
//! up; SIGTERM stopping everything gracefully; the ends in the `RunSummary`.

mod common;

use mln_ipc::api::{Builder, End, Error, Master, RollingRestart, Worker, WorkerEvent, WorkerId};
use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

const CRASH: u32 = 4401;
const REQUEST: u32 = 4402;
const REPLY: u32 = 4403;
const BYE: u32 = 4404;
const GEN: u32 = 4405;
const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 16;

#[derive(Default)]
struct Log {
    events: Vec<WorkerEvent>,
    reply_bytes: usize,
    byes: Vec<usize>,
    gens: Vec<(usize, u8)>,
}

/// Crash (exit 3), then a graceful stop behind a 16 MiB reply, then a rolling restart of
/// what is left; the events say each step.
fn events_stop_rolling() {
    let log = Rc::new(RefCell::new(Log::default()));
    let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log.clone());
    let generation = Rc::new(RefCell::new(1u8));
    let g1 = generation.clone();
    let g2 = generation.clone();
    let summary = Builder::new()
        .workers(3)
        .queue_limit(64 << 20)
        .on_worker_start(move |w: &mut Worker| {
            let g = *g1.borrow();
            w.send(GEN, [g]).expect("gen");
        })
        .on_worker(CRASH, |_: &mut Worker, _: &[u8]| std::process::exit(3))
        .on_worker(REQUEST, |w: &mut Worker, _: &[u8]| {
            let chunk = vec![7u8; CHUNK];
            for _ in 0..CHUNKS {
                w.send(REPLY, &chunk).expect("reply");
            }
        })
        .on_quit(|w: &mut Worker| {
            w.send(BYE, []).expect("bye");
        })
        .on_master(REPLY, move |_: &mut Master, _: WorkerId, p: &[u8]| {
            l1.borrow_mut().reply_bytes += p.len();
        })
        .on_master(BYE, move |_: &mut Master, from: WorkerId, _: &[u8]| {
            let mut l = l2.borrow_mut();
            assert_eq!(l.reply_bytes, CHUNK * CHUNKS, "bye before the whole reply");
            l.byes.push(from.index());
        })
        .on_master(GEN, move |_: &mut Master, from: WorkerId, p: &[u8]| {
            l4.borrow_mut().gens.push((from.index(), p[0]));
        })
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            let mut l = l3.borrow_mut();
            l.events.push(e.clone());
            let started = |l: &Log, i: usize| {
                l.events
                    .iter()
                    .filter(|e| matches!(e, WorkerEvent::Started { index, .. } if *index == i))
                    .count()
            };
            match e {
                WorkerEvent::Started { index: 2, .. } if started(&l, 2) == 1 => {
                    // All three run: crash worker 0.
                    let w0 = m.worker(0).expect("worker 0");
                    m.send_to(w0, CRASH, []).expect("crash");
                }
                WorkerEvent::Started { index: 0, id, .. } if started(&l, 0) == 2 => {
                    // Worker 0's replacement: stop worker 1 behind a request.
                    assert_eq!(m.worker(0), Some(*id));
                    let w1 = m.worker(1).expect("worker 1");
                    m.send_to(w1, REQUEST, []).expect("request");
                    m.stop_worker(w1, Duration::from_secs(30)).expect("stop");
                    assert!(matches!(m.send_to(w1, REQUEST, []), Err(Error::PeerGone)));
                    assert!(matches!(
                        m.stop_worker(w1, Duration::ZERO),
                        Err(Error::PeerGone)
                    ));
                    assert!(m.worker(1).is_none());
                    assert_eq!(m.workers().len(), 2);
                }
                WorkerEvent::Exited { index: 1, how, .. } => {
                    assert_eq!(*how, End::Stopped);
                    *g2.borrow_mut() = 2;
                    m.rolling_restart(RollingRestart {
                        batch: 1,
                        ready_timeout: Duration::from_secs(20),
                        deadline: Duration::from_secs(20),
                    })
                    .expect("rolling");
                    assert!(matches!(
                        m.rolling_restart(RollingRestart::default()),
                        Err(Error::Busy)
                    ));
                }
                WorkerEvent::RollingDone { completed } => {
                    assert!(completed);
                    m.stop();
                }
                _ => {}
            }
        })
        .run()
        .expect("run");
    let l = log.borrow();
    let ev = &l.events;
    // Worker 0 crashed with status 3 and was restarted at once.
    let crash = ev
        .iter()
        .find(|e| {
            matches!(
                e,
                WorkerEvent::Exited {
                    index: 0,
                    how: End::Crashed,
                    ..
                }
            )
        })
        .expect("crash event");
    let WorkerEvent::Exited {
        status,
        restart_in,
        restarts,
        ..
    } = crash
    else {
        unreachable!()
    };
    assert_eq!(status.and_then(|s| s.code()), Some(3));
    assert_eq!(*restart_in, Some(Duration::ZERO));
    assert_eq!(*restarts, 0);
    let restarted = ev
        .iter()
        .any(|e| matches!(e, WorkerEvent::Started { index: 0, .. }));
    assert!(restarted);
    // Worker 1: the whole reply, then its goodbye, then its end: exit 0, not restarted.
    assert_eq!(l.reply_bytes, CHUNK * CHUNKS);
    // Worker 1's goodbye first, then those of the two the rolling restart stopped.
    assert_eq!(l.byes.first(), Some(&1), "{:?}", l.byes);
    assert_eq!(l.byes.len(), 3, "{:?}", l.byes);
    let stop = ev
        .iter()
        .find(|e| matches!(e, WorkerEvent::Exited { index: 1, .. }))
        .expect("stop event");
    let WorkerEvent::Exited {
        status, restart_in, ..
    } = stop
    else {
        unreachable!()
    };
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert_eq!(*restart_in, None);
    assert!(!ev
        .iter()
        .any(|e| matches!(e, WorkerEvent::Started { index: 1, .. })
            && ev.iter().position(|x| x == e) > ev.iter().position(|x| x == stop)));
    // The rolling restart replaced workers 0 and 2 with generation-2 workers.
    let mut gen2: Vec<usize> = l.gens.iter().filter(|g| g.1 == 2).map(|g| g.0).collect();
    gen2.sort();
    assert_eq!(gen2, vec![0, 2], "{:?}", l.gens);
    let rolled = ev
        .iter()
        .filter(|e| {
            matches!(
                e,
                WorkerEvent::Exited {
                    how: End::Stopped,
                    ..
                }
            )
        })
        .count();
    assert_eq!(rolled, 3, "{ev:?}");
    // The summary has every end: the crash, the three stops, the two at `run`'s end.
    assert_eq!(summary.ends.len(), 6, "{:?}", summary.ends);
    assert_eq!(summary.ends[0].how, End::Crashed);
}

/// The restart policy: 2 restarts within a minute, the third quick death gives the index
/// up.
fn policy_gives_up() {
    let events = Rc::new(RefCell::new(Vec::new()));
    let e1 = events.clone();
    let summary = Builder::new()
        .workers(1)
        .restart_policy(2, Duration::from_secs(60))
        .on_worker_start(|_: &mut Worker| std::process::exit(1))
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            e1.borrow_mut().push(e.clone());
            if matches!(e, WorkerEvent::GaveUp { index: 0 }) {
                m.stop();
            }
        })
        .run()
        .expect("run");
    let ev = events.borrow();
    let kinds: Vec<(&str, Option<Option<Duration>>)> = ev
        .iter()
        .map(|e| match e {
            WorkerEvent::Started { .. } => ("started", None),
            WorkerEvent::Exited { restart_in, .. } => ("exited", Some(*restart_in)),
            WorkerEvent::GaveUp { .. } => ("gave up", None),
            _ => ("other", None),
        })
        .collect();
    assert_eq!(kinds.len(), 7, "{ev:?}");
    assert_eq!(kinds[6].0, "gave up");
    assert_eq!(kinds[5], ("exited", Some(None)));
    assert_eq!(kinds[3].0, "exited");
    assert!(matches!(kinds[3].1, Some(Some(_))));
    assert!(summary.ends.iter().all(|e| e.how == End::Crashed));
    assert_eq!(summary.ends.len(), 3);
}

/// SIGTERM to the master: every worker stops gracefully (its `on_quit` runs), then `run`
/// returns by itself.
fn stop_on_sigterm() {
    let quits = Rc::new(RefCell::new(0));
    let q = quits.clone();
    let started = Rc::new(RefCell::new(0));
    let s = started.clone();
    let summary = Builder::new()
        .workers(3)
        .stop_on_signals(Duration::from_secs(10))
        .on_quit(|w: &mut Worker| {
            w.send(BYE, []).expect("bye");
        })
        .on_master(BYE, move |_: &mut Master, _: WorkerId, _: &[u8]| {
            *q.borrow_mut() += 1;
        })
        .on_worker_event(move |_: &mut Master, e: &WorkerEvent| {
            if let WorkerEvent::Started { .. } = e {
                *s.borrow_mut() += 1;
                if *s.borrow() == 3 {
                    let me = std::process::id().to_string();
                    let st = std::process::Command::new("kill")
                        .args(["-TERM", &me])
                        .status()
                        .expect("kill");
                    assert!(st.success());
                }
            }
        })
        .run()
        .expect("run");
    assert_eq!(*quits.borrow(), 3);
    assert_eq!(summary.ends.len(), 3, "{:?}", summary.ends);
    for e in &summary.ends {
        assert_eq!(e.how, End::Stopped);
        assert_eq!(e.status.and_then(|s| s.code()), Some(0));
    }
    assert!(summary.exited.is_empty() && summary.killed.is_empty());
}

fn main() -> ExitCode {
    common::main(&[
        ("events_stop_rolling", events_stop_rolling),
        ("policy_gives_up", policy_gives_up),
        ("stop_on_sigterm", stop_on_sigterm),
    ])
}
