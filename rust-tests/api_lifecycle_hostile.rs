//! Hostile uses of the Rust lifecycle API: panics in `on_worker_event` and `on_quit`,
//! huge deadlines, chained rolling restarts.

mod common;

use mln_ipc::api::{Builder, End, Error, Master, RollingRestart, Worker, WorkerEvent, WorkerId};
use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

const BYE: u32 = 4501;

/// on_worker_event panics on every event; the loop goes on and the events keep coming.
fn panic_in_event() {
    common::expect_panics("hostile-boom");
    let n = Rc::new(RefCell::new(Vec::new()));
    let n1 = n.clone();
    let summary = Builder::new()
        .workers(2)
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            n1.borrow_mut().push(e.clone());
            let started = n1
                .borrow()
                .iter()
                .filter(|e| matches!(e, WorkerEvent::Started { .. }))
                .count();
            match e {
                WorkerEvent::Started { .. } if started == 2 => {
                    let w0 = m.worker(0).expect("w0");
                    m.stop_worker(w0, Duration::from_secs(5)).expect("stop");
                }
                WorkerEvent::Exited { index: 0, .. } => m.stop(),
                _ => {}
            }
            panic!("hostile-boom {e:?}");
        })
        .run()
        .expect("run");
    let ev = n.borrow();
    assert!(
        ev.iter().any(|e| matches!(
            e,
            WorkerEvent::Exited {
                index: 0,
                how: End::Stopped,
                ..
            }
        )),
        "{ev:?}"
    );
    assert!(summary.ends.iter().any(|e| e.how == End::Stopped));
}

/// on_quit sends a goodbye and then panics: the goodbye arrives, the worker still stops
/// gracefully (End::Stopped), within its deadline.
fn panic_in_quit() {
    common::expect_panics("hostile-quit-boom");
    let byes = Rc::new(RefCell::new(0));
    let b = byes.clone();
    let ends = Rc::new(RefCell::new(Vec::new()));
    let e1 = ends.clone();
    let t0 = Rc::new(RefCell::new(None::<Instant>));
    let t1 = t0.clone();
    Builder::new()
        .workers(1)
        .on_quit(|w: &mut Worker| {
            w.send(BYE, []).expect("bye");
            panic!("hostile-quit-boom");
        })
        .on_master(BYE, move |_: &mut Master, _: WorkerId, _: &[u8]| {
            *b.borrow_mut() += 1;
        })
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| match e {
            WorkerEvent::Started { id, .. } => {
                *t1.borrow_mut() = Some(Instant::now());
                m.stop_worker(*id, Duration::from_secs(20)).expect("stop");
            }
            WorkerEvent::Exited { how, status, .. } => {
                let dt = t1.borrow().unwrap().elapsed();
                e1.borrow_mut().push((*how, *status, dt));
                m.stop();
            }
            _ => {}
        })
        .run()
        .expect("run");
    let ends = ends.borrow();
    eprintln!("panic_in_quit: {ends:?}");
    assert_eq!(*byes.borrow(), 1);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].0, End::Stopped, "{ends:?}");
    assert!(ends[0].2 < Duration::from_secs(5), "{ends:?}");
}

/// stop_worker with Duration::MAX (and a huge rolling deadline): the deadline must not
/// wrap into an immediate SIGTERM; the worker's on_quit finishes a 1.5 s job first.
fn huge_deadline() {
    let ends = Rc::new(RefCell::new(Vec::new()));
    let e1 = ends.clone();
    Builder::new()
        .workers(1)
        .on_quit(|w: &mut Worker| {
            std::thread::sleep(Duration::from_millis(1500));
            w.send(BYE, []).expect("bye");
        })
        .on_master(BYE, |_: &mut Master, _: WorkerId, _: &[u8]| {})
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| match e {
            WorkerEvent::Started { id, .. } => {
                let r = m.stop_worker(*id, Duration::MAX);
                assert!(
                    r.is_ok() || matches!(r, Err(Error::InvalidArgument(_))),
                    "{r:?}"
                );
                if r.is_err() {
                    m.stop_worker(*id, Duration::from_secs(u32::MAX as u64))
                        .expect("stop");
                }
            }
            WorkerEvent::Exited { how, .. } => {
                e1.borrow_mut().push(*how);
                m.stop();
            }
            _ => {}
        })
        .run()
        .expect("run");
    assert_eq!(*ends.borrow(), vec![End::Stopped]);
}

/// Five rolling restarts chained from RollingDone, Busy in between; each completes.
fn chained_rolling() {
    let dones = Rc::new(RefCell::new(Vec::new()));
    let d = dones.clone();
    let summary = Builder::new()
        .workers(3)
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            let go = |m: &mut Master| {
                m.rolling_restart(RollingRestart {
                    batch: 2,
                    ready_timeout: Duration::from_secs(10),
                    deadline: Duration::from_secs(5),
                })
                .expect("rolling");
                assert!(matches!(
                    m.rolling_restart(RollingRestart::default()),
                    Err(Error::Busy)
                ));
            };
            match e {
                WorkerEvent::Started { index: 2, .. }
                    if d.borrow().is_empty() && m.workers().len() == 3 =>
                {
                    d.borrow_mut().push(true);
                    go(m);
                }
                WorkerEvent::RollingDone { completed } => {
                    d.borrow_mut().push(*completed);
                    if d.borrow().len() == 6 {
                        m.stop();
                    } else {
                        go(m);
                    }
                }
                _ => {}
            }
        })
        .run()
        .expect("run");
    assert_eq!(*dones.borrow(), vec![true; 6]);
    assert_eq!(
        summary
            .ends
            .iter()
            .filter(|e| e.how == End::Stopped)
            .count(),
        18
    );
}

fn main() -> ExitCode {
    common::main(&[
        ("panic_in_event", panic_in_event),
        ("panic_in_quit", panic_in_quit),
        ("huge_deadline", huge_deadline),
        ("chained_rolling", chained_rolling),
    ])
}
