//! Requests and answers (issue 24 item 5), the ways a call ends without an answer:
//! deadlines and late answers; the statuses (no handler, no reply, panicked, undecodable
//! answer) and the misuses of `reply`; the synchronous errors; a worker being stopped
//! still answering; calls pending at the stop dropped uncalled. Safe API only.

#[path = "support/calls.rs"]
mod calls;
mod common;

use calls::*;
use mln_ipc::api::{
    Builder, CallError, End, Error, Master, ReplyTo, Worker, WorkerEvent, WorkerId,
};
use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The deadline of `Builder::call_timeout`; an answer after it is dropped (the callback
/// ran once); a zero deadline; `Duration::MAX` accepted.
fn timeout_and_late_answer() {
    let calls = Rc::new(Cell::new(0u32));
    let (c1, c2) = (calls.clone(), calls.clone());
    let started = Rc::new(Cell::new(None::<Instant>));
    let st = started.clone();
    let zero = Rc::new(Cell::new(0u32));
    let (z1, z2) = (zero.clone(), zero.clone());
    holder(
        Builder::new()
            .workers(1)
            .call_timeout(Duration::from_millis(150)),
    )
    .on_worker_message(echo)
    .on_master_start(move |m: &mut Master| {
        let w = m.worker(0).expect("w0");
        st.set(Some(Instant::now()));
        let st = st.clone();
        m.call(w, &Hold(1, 0), move |m: &mut Master, r: Outcome<Echoed>| {
            assert_eq!(r, Err(CallError::Timeout));
            let waited = st.get().expect("start").elapsed();
            assert!(waited >= Duration::from_millis(150), "{waited:?}");
            c1.set(c1.get() + 1);
            // Now the worker answers: too late.
            m.send_message_to(w, &Release(0, 0)).expect("release");
        })
        .expect("call");
        m.call_with_timeout(
            w,
            &Echo(5, 50),
            Duration::ZERO,
            move |_: &mut Master, r: Outcome<Echoed>| {
                assert_eq!(r, Err(CallError::Timeout));
                z1.set(z1.get() + 1);
            },
        )
        .expect("call, zero deadline");
    })
    .on_master_message(move |m: &mut Master, w: WorkerId, _: Release| {
        // The late answer came before this (same channel, in order) and was dropped.
        assert_eq!(c2.get(), 1);
        assert_eq!(z2.get(), 1);
        m.call_with_timeout(
            w,
            &Echo(7, 0),
            Duration::MAX,
            |m: &mut Master, r: Outcome<Echoed>| {
                assert_eq!(r.map(|e| e.0), Ok(7));
                m.stop();
            },
        )
        .expect("call, endless deadline");
    })
    .run()
    .expect("run");
    assert_eq!(calls.get(), 1);
    assert_eq!(zero.get(), 1);
}

/// Every reason a callee gives no answer, and the misuses of `reply` / `defer_reply`.
fn statuses() {
    common::expect_panics("boom on purpose");
    let outcomes: Outcomes = Rc::default();
    let reports = Rc::new(Cell::new(0u32));
    let (o1, o2, r1) = (outcomes.clone(), outcomes.clone(), reports.clone());
    let expected = 7;
    let check = move |m: &mut Master, o: &Outcomes| {
        if o.borrow().len() == expected && r1.get() == 2 {
            m.stop();
        }
    };
    let check2 = check.clone();
    Builder::new()
        .workers(1)
        .call_timeout(Duration::MAX)
        .on_worker_message(echo)
        .on_worker_message(|_: &mut Worker, _: Quiet| {})
        .on_worker_message(|_: &mut Worker, _: Boom| panic!("boom on purpose"))
        .on_worker_message(|w: &mut Worker, _: Wrong| w.reply(&Other(1, 1)).expect("reply"))
        .on_worker_message(|w: &mut Worker, _: DropIt| drop(w.defer_reply().expect("defer")))
        .on_worker_message(|w: &mut Worker, _: Misuse| {
            w.reply(&Echoed(1, 0)).expect("first reply");
            assert!(matches!(
                w.reply(&Echoed(2, 0)),
                Err(Error::InvalidArgument(_))
            ));
            assert!(w.defer_reply().is_none());
            w.after(Duration::from_millis(1), |w: &mut Worker| {
                // Not in a handler: no call to answer.
                assert!(matches!(
                    w.reply(&Echoed(3, 0)),
                    Err(Error::InvalidArgument(_))
                ));
                assert!(w.defer_reply().is_none());
                w.send_message(&Report(1, 0)).expect("report");
            })
            .expect("after");
        })
        .on_worker_message(|w: &mut Worker, _: Probe| {
            // A plain message, not a call: nothing to answer.
            let r = w.reply(&Echoed(4, 0));
            assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
            assert!(w.defer_reply().is_none());
            w.send_message(&Report(2, 0)).expect("report");
        })
        .on_master_message(move |m: &mut Master, _: WorkerId, Report(_, _)| {
            reports.set(reports.get() + 1);
            check2(m, &o1);
        })
        .on_master_start(move |m: &mut Master| {
            let w = m.worker(0).expect("w0");
            let record = |name: &'static str| {
                let o = o2.clone();
                let check = check.clone();
                move |m: &mut Master, r: Outcome<Echoed>| {
                    o.borrow_mut().push((name, r.map(|e| e.0)));
                    check(m, &o);
                }
            };
            m.call(w, &Quiet(0, 0), record("quiet")).expect("quiet");
            m.call(w, &Boom(0, 0), record("boom")).expect("boom");
            m.call(w, &Wrong(0, 0), record("wrong")).expect("wrong");
            m.call(w, &Unhandled(0, 0), record("unhandled"))
                .expect("unhandled");
            m.call(w, &DropIt(0, 0), record("dropit")).expect("dropit");
            m.call(w, &BadEcho, record("badecho")).expect("badecho");
            m.call(w, &Misuse(0, 0), record("misuse")).expect("misuse");
            m.send_message_to(w, &Probe(0, 0)).expect("probe");
        })
        .run()
        .expect("run");
    let mut got = outcomes.borrow().clone();
    got.sort_by_key(|o| o.0);
    let mut want = vec![
        ("quiet", Err(CallError::NoReply)),
        ("boom", Err(CallError::Panicked)),
        ("wrong", Err(CallError::Decode)),
        ("unhandled", Err(CallError::NoHandler)),
        ("dropit", Err(CallError::NoReply)),
        ("badecho", Err(CallError::NoReply)),
        ("misuse", Ok(1)),
    ];
    want.sort_by_key(|o| o.0);
    assert_eq!(got, want);
}

/// The synchronous errors (too large; a stopped worker's id, a dead worker's id) drop the
/// callback uncalled; a worker being stopped still answers (from its `on_quit`); calls
/// pending when the master stops are dropped uncalled.
fn sync_errors_and_stopping() {
    let max = 1024usize;
    let body = max - 4 - 12;
    let left_pending = Rc::new(Cell::new(false));
    let lp = left_pending.clone();
    // The largest request answered, w1's call answered while stopping, w1's end seen.
    let steps = Rc::new(RefCell::new([false; 3]));
    let (st1, st2, st3) = (steps.clone(), steps.clone(), steps.clone());
    fn step(m: &mut Master, steps: &RefCell<[bool; 3]>, i: usize) {
        let mut s = steps.borrow_mut();
        assert!(!s[i], "step {i} twice");
        s[i] = true;
        if s.iter().all(|&d| d) {
            m.stop();
        }
    }
    let held: Rc<RefCell<Vec<(u64, ReplyTo)>>> = Rc::default();
    let h2 = held.clone();
    Builder::new()
        .workers(2)
        .max_message(max)
        .queue_limit(1 << 20)
        .on_worker_message(move |w: &mut Worker, Hold(n, _)| {
            held.borrow_mut().push((n, w.defer_reply().expect("defer")));
        })
        .on_quit(move |w: &mut Worker| {
            let pid = u64::from(w.pid());
            for (n, t) in h2.borrow_mut().drain(..) {
                w.reply_to(t, &Echoed(n, pid)).expect("answer while stopping");
            }
        })
        .on_worker_message(|w: &mut Worker, Blob(b)| {
            w.reply(&Echoed(b.len() as u64, 0)).expect("reply")
        })
        .on_master_start(move |m: &mut Master| {
            let (w0, w1) = (m.worker(0).expect("w0"), m.worker(1).expect("w1"));
            m.call(w0, &Blob(vec![9; body]), move |m: &mut Master, r: Outcome<Echoed>| {
                assert_eq!(r, Ok(Echoed(body as u64, 0)));
                step(m, &st1, 0);
            })
            .expect("largest request");
            let dropped = Rc::new(Cell::new(false));
            let guard = OnDrop(dropped.clone());
            let r = m.call(
                w0,
                &Blob(vec![9; body + 1]),
                move |_: &mut Master, _: Outcome<Echoed>| {
                    let _ = &guard;
                    panic!("callback of a refused call");
                },
            );
            assert!(
                matches!(r, Err(Error::MessageTooLarge { len, max }) if len == body + 1 && max == body),
                "{r:?}"
            );
            assert!(dropped.get());
            // Pending forever: dropped uncalled at the end of `run`.
            let guard = OnDrop(lp.clone());
            m.call(w0, &Hold(99, 0), move |_: &mut Master, _: Outcome<Echoed>| {
                let _ = &guard;
                panic!("a pending call's callback ran after the stop");
            })
            .expect("call w0");
            // A call, then a graceful stop: the worker answers from its quit.
            let st2 = st2.clone();
            m.call(w1, &Hold(5, 0), move |m: &mut Master, r: Outcome<Echoed>| {
                assert_eq!(r, Ok(Echoed(5, u64::from(w1.pid()))));
                step(m, &st2, 1);
            })
            .expect("call w1");
            m.stop_worker(w1, Duration::from_secs(10)).expect("stop w1");
            let dropped = Rc::new(Cell::new(false));
            let guard = OnDrop(dropped.clone());
            let r = m.call(w1, &Hold(6, 0), move |_: &mut Master, _: Outcome<Echoed>| {
                let _ = &guard;
                panic!("callback of a refused call");
            });
            assert!(matches!(r, Err(Error::PeerGone)), "{r:?}");
            assert!(dropped.get());
        })
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            if let WorkerEvent::Exited {
                index: 1, id, how, ..
            } = e
            {
                assert_eq!(*how, End::Stopped);
                assert!(st3.borrow()[1], "answered before its end");
                let r = m.call(*id, &Hold(7, 0), |_: &mut Master, _: Outcome<Echoed>| {
                    panic!("callback of a refused call")
                });
                assert!(matches!(r, Err(Error::PeerGone)), "{r:?}");
                step(m, &st3, 2);
            }
        })
        .run()
        .expect("run");
    assert_eq!(*steps.borrow(), [true; 3]);
    assert!(left_pending.get(), "the pending callback was not dropped");
}

fn main() -> ExitCode {
    common::main(&[
        ("timeout_and_late_answer", timeout_and_late_answer),
        ("statuses", statuses),
        ("sync_errors_and_stopping", sync_errors_and_stopping),
    ])
}
