//! Requests and answers (issue 24 item 5): `Master::call` / `Worker::call` answered with
//! `reply`, `defer_reply` + `reply_to`; correlation with many calls in flight, answers out
//! of order; `PeerGone` for exactly the calls of a worker that died; a restarted worker
//! never running the master's callbacks; a worker calling its master; nested calls. Every
//! callback is counted: called exactly once. The errors are in `api_call_errors.rs`. Safe
//! API only.

#[path = "support/calls.rs"]
mod calls;
mod common;

use calls::*;
use mln_ipc::api::{Builder, CallError, Error, Master, ReplyTo, Worker, WorkerEvent, WorkerId};
use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

const MANY: usize = 1000;

/// 1,000 calls in flight over 4 workers, one in ten answered later from a timer: each
/// callback gets its own request's answer, from the worker it called, once.
fn many_in_flight() {
    let seen = Rc::new(RefCell::new((vec![0u32; MANY], Vec::<u64>::new())));
    let s = seen.clone();
    Builder::new()
        .workers(4)
        .on_worker_message(echo)
        .on_master_start(move |m: &mut Master| {
            let ws = m.workers();
            assert_eq!(ws.len(), 4);
            for n in 0..MANY as u64 {
                let to = ws[n as usize % 4];
                let delay = if n % 10 == 0 { 1 + n % 20 } else { 0 };
                let s = s.clone();
                m.call(
                    to,
                    &Echo(n, delay),
                    move |m: &mut Master, r: Outcome<Echoed>| {
                        let Echoed(got, pid) = r.expect("answer");
                        assert_eq!(got, n, "answer of another call");
                        assert_eq!(pid, u64::from(to.pid()), "answer from another worker");
                        let mut s = s.borrow_mut();
                        s.0[n as usize] += 1;
                        s.1.push(n);
                        if s.1.len() == MANY {
                            m.stop();
                        }
                    },
                )
                .expect("call");
            }
        })
        .run()
        .expect("run");
    let (counts, order) = &*seen.borrow();
    assert!(counts.iter().all(|&c| c == 1), "a callback not called once");
    // Call 0 (worker 0, deferred) was answered after call 4 (worker 0, at once).
    let pos = |n: u64| order.iter().position(|&x| x == n).expect("answered");
    assert!(
        pos(4) < pos(0),
        "deferred answers did not come out of order"
    );
}

#[derive(Default)]
struct Gone {
    gone: Vec<u64>,
    ok: Vec<u64>,
    exited: bool,
    restarted_ok: u32,
}

/// Worker 0 dies with 5 calls pending: exactly those fail with `PeerGone`, before its
/// `Exited`; worker 1's 5 pending calls are answered afterwards; the restarted worker 0
/// answers a new call; the dead worker's id is refused synchronously.
fn peer_gone_then_restart() {
    let st = Rc::new(RefCell::new(Gone::default()));
    let (s1, s2) = (st.clone(), st.clone());
    let w0_first: Rc<Cell<Option<WorkerId>>> = Rc::default();
    let first = w0_first.clone();
    holder(Builder::new().workers(2))
        .on_worker_message(echo)
        .on_master_start(move |m: &mut Master| {
            let (w0, w1) = (m.worker(0).expect("w0"), m.worker(1).expect("w1"));
            first.set(Some(w0));
            for n in 0..5 {
                let s = s1.clone();
                m.call(
                    w0,
                    &Hold(n, 0),
                    move |_: &mut Master, r: Outcome<Echoed>| {
                        assert_eq!(r, Err(CallError::PeerGone));
                        let mut s = s.borrow_mut();
                        assert!(!s.exited, "PeerGone after the Exited event");
                        assert!(s.ok.is_empty());
                        s.gone.push(n);
                    },
                )
                .expect("call w0");
                let s = s1.clone();
                m.call(
                    w1,
                    &Hold(10 + n, 0),
                    move |m: &mut Master, r: Outcome<Echoed>| {
                        assert_eq!(r, Ok(Echoed(10 + n, u64::from(w1.pid()))));
                        let mut s = s.borrow_mut();
                        assert!(s.exited);
                        s.ok.push(10 + n);
                        if s.ok.len() == 5 && s.restarted_ok == 1 {
                            m.stop();
                        }
                    },
                )
                .expect("call w1");
            }
            m.send_message_to(w0, &Die(0, 0)).expect("die");
        })
        .on_master_message(|_: &mut Master, _: WorkerId, _: Release| {})
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| match e {
            WorkerEvent::Exited { index: 0, id, .. } => {
                let mut s = s2.borrow_mut();
                assert_eq!(s.gone, vec![0, 1, 2, 3, 4], "exactly w0's calls, in order");
                s.exited = true;
                drop(s);
                let dropped = Rc::new(Cell::new(false));
                let guard = OnDrop(dropped.clone());
                let r = m.call(
                    *id,
                    &Echo(0, 0),
                    move |_: &mut Master, _: Outcome<Echoed>| {
                        let _ = &guard;
                        panic!("callback of a refused call");
                    },
                );
                assert!(matches!(r, Err(Error::PeerGone)), "{r:?}");
                assert!(dropped.get(), "the refused callback is dropped at once");
                let w1 = m.worker(1).expect("w1");
                m.send_message_to(w1, &Release(0, 0)).expect("release");
            }
            WorkerEvent::Started { index: 0, id, .. } if Some(*id) != w0_first.get() => {
                let s = s2.clone();
                let new = *id;
                m.call(
                    new,
                    &Echo(77, 0),
                    move |m: &mut Master, r: Outcome<Echoed>| {
                        assert_eq!(r, Ok(Echoed(77, u64::from(new.pid()))));
                        let mut s = s.borrow_mut();
                        s.restarted_ok += 1;
                        if s.ok.len() == 5 {
                            m.stop();
                        }
                    },
                )
                .expect("call the restarted worker");
            }
            _ => {}
        })
        .run()
        .expect("run");
    let s = st.borrow();
    assert_eq!(s.gone.len(), 5);
    assert_eq!(s.ok.len(), 5);
    assert_eq!(s.restarted_ok, 1);
}

/// Without `on_worker_event`: a worker's death still fails its pending calls.
fn peer_gone_without_event_handler() {
    let gone = Rc::new(Cell::new(0u32));
    let g = gone.clone();
    holder(Builder::new().workers(1))
        .on_master_start(move |m: &mut Master| {
            let w = m.worker(0).expect("w0");
            for n in 0..3 {
                let g = g.clone();
                m.call(w, &Hold(n, 0), move |m: &mut Master, r: Outcome<Echoed>| {
                    assert_eq!(r, Err(CallError::PeerGone));
                    g.set(g.get() + 1);
                    if g.get() == 3 {
                        m.stop();
                    }
                })
                .expect("call");
            }
            m.send_message_to(w, &Die(0, 0)).expect("die");
        })
        .run()
        .expect("run");
    assert_eq!(gone.get(), 3);
}

/// A worker forked by a restart gets a copy of the master's pending calls: it must never
/// run them (their callbacks take a `Master`). Each worker makes a call that times out
/// after the master's pending call's deadline has passed; the restarted one would then
/// run the master's callback (which fails outside the master) if it kept the table.
fn restarted_worker_forgets_master_calls() {
    let master_pid = std::process::id();
    let w0_first: Rc<Cell<Option<WorkerId>>> = Rc::default();
    let first = w0_first.clone();
    let pending = Rc::new(Cell::new(true));
    let (p1, p2) = (pending.clone(), pending.clone());
    let done_by_new = Rc::new(Cell::new(false));
    let done = done_by_new.clone();
    holder(Builder::new().workers(2))
        .on_worker_start(|w: &mut Worker| {
            w.call_with_timeout(
                &Never(0, 0),
                Duration::from_millis(3500),
                |w: &mut Worker, r: Outcome<Echoed>| {
                    assert_eq!(r, Err(CallError::Timeout));
                    w.send_message(&WorkerDone(u64::from(w.pid()), 0))
                        .expect("done");
                },
            )
            .expect("worker call");
        })
        .on_master_message({
            let kept: Rc<RefCell<Vec<ReplyTo>>> = Rc::default();
            move |m: &mut Master, _: WorkerId, _: Never| {
                kept.borrow_mut().push(m.defer_reply().expect("defer"));
            }
        })
        .on_master_start(move |m: &mut Master| {
            let (w0, w1) = (m.worker(0).expect("w0"), m.worker(1).expect("w1"));
            first.set(Some(w0));
            m.call_with_timeout(
                w1,
                &Hold(1, 0),
                Duration::from_secs(3),
                move |_: &mut Master, r: Outcome<Echoed>| {
                    assert_eq!(std::process::id(), master_pid, "master callback elsewhere");
                    assert_eq!(r, Err(CallError::Timeout));
                    p1.set(false);
                },
            )
            .expect("call");
            m.send_message_to(w0, &Die(0, 0)).expect("die");
            m.after(Duration::from_secs(8), |_: &mut Master| {
                panic!("the restarted worker's call never ended")
            })
            .expect("after");
        })
        .on_worker_event(move |_: &mut Master, e: &WorkerEvent| match e {
            WorkerEvent::Started { index: 0, id, .. } if Some(*id) != w0_first.get() => {
                assert!(
                    p2.get(),
                    "the restart came after the deadline: nothing tested"
                );
            }
            WorkerEvent::Exited {
                index: 0, id, how, ..
            } if Some(*id) != w0_first.get() => {
                panic!("the restarted worker ended: {how:?}");
            }
            WorkerEvent::Exited { index: 1, .. } => panic!("worker 1 ended"),
            _ => {}
        })
        .on_master_message(move |m: &mut Master, from: WorkerId, _: WorkerDone| {
            if from.index() == 0 {
                done.set(true);
                m.stop();
            }
        })
        .run()
        .expect("run");
    assert!(done_by_new.get());
    assert!(!pending.get(), "the master's call did not time out");
}

#[derive(Default)]
struct Both {
    master_chain: Vec<usize>,
    relays: u32,
    worker_done: u32,
}

const CHAIN: u64 = 20;

/// Both directions: each worker calls the master (a chain of calls made from the previous
/// call's callback, plus 20 in parallel; the master answers some later); the master calls
/// each worker (a chain, nested the same way); a worker serves a master's call by calling
/// the master and answering from that callback.
fn both_directions() {
    let st = Rc::new(RefCell::new(Both::default()));
    let (s1, s2) = (st.clone(), st.clone());
    fn maybe_stop(m: &mut Master, s: &Both) {
        if s.master_chain.len() == 2 && s.relays == 2 && s.worker_done == 2 {
            m.stop();
        }
    }
    fn worker_chain(w: &mut Worker, n: u64, left: Rc<Cell<u32>>) {
        let pid = u64::from(w.pid());
        w.call(&Ask(n, pid), move |w: &mut Worker, r: Outcome<Answer>| {
            assert_eq!(r, Ok(Answer(n, pid * 2)));
            if n + 1 < CHAIN {
                worker_chain(w, n + 1, left);
            } else {
                finish(w, &left);
            }
        })
        .expect("worker call");
    }
    fn finish(w: &mut Worker, left: &Cell<u32>) {
        left.set(left.get() - 1);
        if left.get() == 0 {
            w.send_message(&WorkerDone(0, 0)).expect("done");
        }
    }
    fn master_chain(m: &mut Master, to: WorkerId, n: u64, st: Rc<RefCell<Both>>) {
        m.call(
            to,
            &Echo(n, n % 2),
            move |m: &mut Master, r: Outcome<Echoed>| {
                assert_eq!(r, Ok(Echoed(n, u64::from(to.pid()))));
                if n + 1 < CHAIN {
                    master_chain(m, to, n + 1, st);
                } else {
                    let mut s = st.borrow_mut();
                    s.master_chain.push(to.index());
                    maybe_stop(m, &s);
                }
            },
        )
        .expect("master call");
    }
    Builder::new()
        .workers(2)
        .on_worker_message(echo)
        .on_worker_start(|w: &mut Worker| {
            // 20 parallel calls + the chain.
            let left = Rc::new(Cell::new(21u32));
            let pid = u64::from(w.pid());
            for i in 0..20 {
                let left = left.clone();
                w.call(
                    &Ask(100 + i, pid),
                    move |w: &mut Worker, r: Outcome<Answer>| {
                        assert_eq!(r, Ok(Answer(100 + i, pid * 2)));
                        finish(w, &left);
                    },
                )
                .expect("worker call");
            }
            worker_chain(w, 0, left);
        })
        .on_worker_message(|w: &mut Worker, Relay(n, _)| {
            let t = w.defer_reply().expect("defer");
            let pid = u64::from(w.pid());
            w.call(&Ask(n, 7), move |w: &mut Worker, r: Outcome<Answer>| {
                let Answer(_, k) = r.expect("relay answer");
                w.reply_to(t, &Echoed(k, pid)).expect("reply_to");
            })
            .expect("relay call");
        })
        .on_master_message(|m: &mut Master, from: WorkerId, Ask(n, k)| {
            if n % 3 != 0 {
                m.reply(&Answer(n, k * 2)).expect("master reply");
                return;
            }
            let t = m.defer_reply().expect("defer");
            assert_eq!(t.caller(), Some(from));
            m.after(Duration::from_millis(2), move |m: &mut Master| {
                m.reply_to(t, &Answer(n, k * 2)).expect("master reply_to")
            })
            .expect("after");
        })
        .on_master_message(move |m: &mut Master, _: WorkerId, _: WorkerDone| {
            let mut s = s1.borrow_mut();
            s.worker_done += 1;
            maybe_stop(m, &s);
        })
        .on_master_start(move |m: &mut Master| {
            for to in m.workers() {
                master_chain(m, to, 0, s2.clone());
                let s = s2.clone();
                m.call(
                    to,
                    &Relay(3, 0),
                    move |m: &mut Master, r: Outcome<Echoed>| {
                        assert_eq!(r, Ok(Echoed(14, u64::from(to.pid()))));
                        let mut s = s.borrow_mut();
                        s.relays += 1;
                        maybe_stop(m, &s);
                    },
                )
                .expect("relay");
            }
        })
        .run()
        .expect("run");
    let s = st.borrow();
    assert_eq!((s.master_chain.len(), s.relays, s.worker_done), (2, 2, 2));
}

/// `cargo test --release --test api_call bench_`: calls per second, 1,000 in flight over 4
/// workers, each answered at once.
fn bench_call_rate() {
    const TOTAL: u64 = 200_000;
    const WINDOW: u64 = 1000;
    struct St {
        issued: u64,
        done: u64,
        started: Option<Instant>,
        took: Duration,
    }
    fn issue(m: &mut Master, st: &Rc<RefCell<St>>) {
        let n = {
            let mut s = st.borrow_mut();
            if s.issued == TOTAL {
                return;
            }
            s.issued += 1;
            s.issued
        };
        let ws = m.workers();
        let to = ws[n as usize % ws.len()];
        let st2 = st.clone();
        m.call(
            to,
            &Echo(n, 0),
            move |m: &mut Master, r: Outcome<Echoed>| {
                assert_eq!(r.map(|e| e.0), Ok(n));
                let done = {
                    let mut s = st2.borrow_mut();
                    s.done += 1;
                    s.done
                };
                if done == TOTAL {
                    let mut s = st2.borrow_mut();
                    s.took = s.started.expect("started").elapsed();
                    m.stop();
                } else {
                    issue(m, &st2);
                }
            },
        )
        .expect("call");
    }
    let st = Rc::new(RefCell::new(St {
        issued: 0,
        done: 0,
        started: None,
        took: Duration::ZERO,
    }));
    let s = st.clone();
    Builder::new()
        .workers(4)
        .on_worker_message(echo)
        .on_master_start(move |m: &mut Master| {
            s.borrow_mut().started = Some(Instant::now());
            for _ in 0..WINDOW {
                issue(m, &s);
            }
        })
        .run()
        .expect("run");
    let took = st.borrow().took;
    eprintln!(
        "{TOTAL} calls, {WINDOW} in flight, 4 workers: {took:.2?}, {:.0} calls/s",
        TOTAL as f64 / took.as_secs_f64()
    );
}

fn main() -> ExitCode {
    common::main(&[
        ("many_in_flight", many_in_flight),
        ("peer_gone_then_restart", peer_gone_then_restart),
        (
            "peer_gone_without_event_handler",
            peer_gone_without_event_handler,
        ),
        (
            "restarted_worker_forgets_master_calls",
            restarted_worker_forgets_master_calls,
        ),
        ("both_directions", both_directions),
        ("bench_call_rate", bench_call_rate),
    ])
}
