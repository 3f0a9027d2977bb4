//! Adversarial scenarios against requests and answers (`Master::call` / `Worker::call`,
//! `reply`, `defer_reply`, `reply_to`): tokens that outlive their caller or cross a fork,
//! forged wire frames, exact size limits, storms of tiny deadlines, nested chains, calls
//! and replies around stops. Written from the docs only (docs/rust-api.md and the rustdoc).
//! A scenario marked `// DEFECT:` fails because the library contradicts its docs.

#[path = "support/calls.rs"]
mod calls;
mod common;

use calls::*;
use mln_ipc::api::{
    Builder, CallError, CallId, Error, Master, Message, ReplyTo, Worker, WorkerEvent, WorkerId,
};
use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

type Shared<T> = Rc<RefCell<T>>;

fn shared<T: Default>() -> Shared<T> {
    Rc::default()
}

/// A `ReplyTo` of the master (a worker's call it deferred) that a restarted worker
/// inherits at its fork. The docs: a `ReplyTo` "in another process (a worker forked with a
/// copy of it) does nothing". Answering it there must not reach the master as the answer
/// of one of the master's own calls (call ids are per process and may collide).
fn token_in_forked_copy() {
    let token: Shared<Option<ReplyTo>> = shared();
    let asked = Rc::new(Cell::new(false));
    let got: Shared<Vec<Outcome<Report>>> = shared();
    let used: Shared<Vec<u64>> = shared();
    let starts = Rc::new(Cell::new(0u32));
    let (t1, t2) = (token.clone(), token.clone());
    let (a1, a2) = (asked.clone(), asked.clone());
    let (g, u) = (got.clone(), used.clone());
    Builder::new()
        .workers(1)
        .on_worker_start(move |w: &mut Worker| {
            if !a1.get() {
                // First incarnation: call the master, whose answer is deferred for ever.
                w.call(&Ask(1, 0), |_: &mut Worker, _: Outcome<Answer>| {})
                    .expect("ask");
            }
        })
        .on_master_message(move |m: &mut Master, from: WorkerId, _: Ask| {
            *t1.borrow_mut() = Some(m.defer_reply().expect("defer"));
            a2.set(true);
            m.send_message_to(from, &Die(0, 0)).expect("die");
        })
        .on_worker_message(|_: &mut Worker, _: Die| std::process::abort())
        .on_worker_message(move |w: &mut Worker, Probe(n, _)| {
            // The replacement: answer the master's call, after trying the inherited token.
            let r = match t2.borrow_mut().take() {
                Some(t) => match w.reply_to(t, &Report(666, 0)) {
                    Ok(()) => 1,
                    Err(_) => 2,
                },
                None => 0,
            };
            let _ = w.send_message(&Relay(r, 0));
            w.reply(&Report(n, 0)).expect("reply");
        })
        .on_master_message(move |_: &mut Master, _: WorkerId, Relay(r, _)| {
            u.borrow_mut().push(r);
        })
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            if let WorkerEvent::Started { id, .. } = e {
                starts.set(starts.get() + 1);
                if starts.get() == 2 {
                    // The master's first calls: ids that may collide with the dead
                    // worker's call id.
                    for n in 0..4 {
                        let g = g.clone();
                        m.call(
                            *id,
                            &Probe(n, 0),
                            move |m: &mut Master, r: Outcome<Report>| {
                                g.borrow_mut().push(r);
                                if g.borrow().len() == 4 {
                                    m.stop();
                                }
                            },
                        )
                        .expect("probe");
                    }
                }
            }
        })
        .run()
        .expect("run");
    let got = got.borrow();
    assert_eq!(
        *got,
        (0..4).map(|n| Ok(Report(n, 0))).collect::<Vec<_>>(),
        "a master call got an answer forged from an inherited ReplyTo (uses: {:?})",
        used.borrow()
    );
}

/// The worker that asked dies; the master answers its deferred call after the worker's
/// replacement (forked from the master, so with the same call-id counter) made its own
/// call: `reply_to` is `PeerGone`, and the replacement gets its own answer only.
fn reply_to_after_caller_died() {
    let token: Shared<Option<ReplyTo>> = shared();
    let results: Shared<Vec<String>> = shared();
    let (t, r1, r2) = (token.clone(), results.clone(), results.clone());
    let first = Rc::new(Cell::new(true));
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| {
            let me = u64::from(w.pid());
            w.call(&Ask(me, 0), move |w: &mut Worker, r: Outcome<Answer>| {
                let _ = w.send_message(&WorkerDone(u64::from(r == Ok(Answer(me, 0))), 0));
            })
            .expect("ask");
        })
        .on_master_message(move |m: &mut Master, from: WorkerId, Ask(pid, _)| {
            if first.replace(false) {
                *t.borrow_mut() = Some(m.defer_reply().expect("defer"));
                m.send_message_to(from, &Die(0, 0)).expect("die");
                return;
            }
            let old = t.borrow_mut().take().expect("token");
            assert_eq!(old.caller().map(|w| w.index()), Some(0));
            let r = m.reply_to(old, &Answer(1, 0));
            r1.borrow_mut().push(format!("old: {r:?}"));
            m.reply(&Answer(pid, 0)).expect("reply");
        })
        .on_worker_message(|_: &mut Worker, _: Die| std::process::abort())
        .on_master_message(move |m: &mut Master, _: WorkerId, WorkerDone(ok, _)| {
            r2.borrow_mut()
                .push(format!("replacement answered right: {ok}"));
            m.stop();
        })
        .run()
        .expect("run");
    assert_eq!(
        *results.borrow(),
        vec![
            "old: Err(PeerGone)".to_string(),
            "replacement answered right: 1".to_string()
        ]
    );
}

/// `ReplyTo`s kept beyond the stop: one in a timer of `Duration::MAX`, one in a value
/// that outlives `run` (dropped after it returned): nothing panics or hangs, and
/// dropping it afterwards does nothing.
fn reply_to_outlives_run() {
    let kept: Shared<Vec<ReplyTo>> = shared();
    let k = kept.clone();
    let n = Rc::new(Cell::new(0));
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| {
            for i in 0..2 {
                w.call(&Ask(i, 0), |_: &mut Worker, _: Outcome<Answer>| {})
                    .expect("ask");
            }
        })
        .on_master_message(move |m: &mut Master, _: WorkerId, _: Ask| {
            let t = m.defer_reply().expect("defer");
            n.set(n.get() + 1);
            if n.get() == 1 {
                m.after(Duration::MAX, move |m: &mut Master| {
                    let _ = m.reply_to(t, &Answer(0, 0));
                })
                .expect("after MAX");
            } else {
                k.borrow_mut().push(t);
                m.stop();
            }
        })
        .run()
        .expect("run");
    assert_eq!(kept.borrow().len(), 1);
    kept.borrow_mut().clear(); // dropped after run: nothing happens
}

/// A worker defers the master's call, keeps the token in a timer an hour away and stops:
/// the master's callback runs exactly once, promptly (the docs: a dropped `ReplyTo`
/// answers `NoReply`; a worker that exited before answering gives `PeerGone`).
fn worker_token_dropped_at_stop() {
    let got: Shared<Vec<Outcome<Answer>>> = shared();
    let g = got.clone();
    let started = Rc::new(Cell::new(None::<Instant>));
    let s2 = started.clone();
    let calls = Rc::new(Cell::new(0));
    Builder::new()
        .workers(1)
        .call_timeout(Duration::from_secs(40))
        .on_worker_message(|w: &mut Worker, _: Ask| {
            let t = w.defer_reply().expect("defer");
            w.after(Duration::from_secs(3600), move |w: &mut Worker| {
                let _ = w.reply_to(t, &Answer(1, 0));
            })
            .expect("after");
            w.stop();
        })
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            if let WorkerEvent::Started { id, .. } = e {
                calls.set(calls.get() + 1);
                if calls.get() > 1 {
                    return;
                }
                s2.set(Some(Instant::now()));
                let g = g.clone();
                m.call(
                    *id,
                    &Ask(0, 0),
                    move |m: &mut Master, r: Outcome<Answer>| {
                        g.borrow_mut().push(r);
                        // Let a duplicate show up, if any.
                        m.after(Duration::from_millis(300), |m: &mut Master| m.stop())
                            .expect("after");
                    },
                )
                .expect("call");
            }
        })
        .run()
        .expect("run");
    let got = got.borrow();
    assert_eq!(got.len(), 1, "callback count: {got:?}");
    assert!(
        matches!(got[0], Err(CallError::NoReply) | Err(CallError::PeerGone)),
        "{got:?}"
    );
    let _ = started;
}

/// Exact limits with `max_message(64 KiB)`: a request of the maximum payload less 12 bytes
/// goes, one byte more is `MessageTooLarge` (whose `len` exceeds its `max`); an answer of
/// the maximum payload less 16 goes, one more is refused and the call then ends `NoReply`.
fn exact_limits() {
    const MAX: usize = 64 << 10;
    let payload = MAX - 4;
    let out: Shared<Vec<String>> = shared();
    let (o1, o2) = (out.clone(), out.clone());
    Builder::new()
        .workers(1)
        .max_message(MAX)
        .queue_limit(1 << 20)
        .on_worker_message(|w: &mut Worker, Blob(b)| {
            let want = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
            match w.reply(&Blob(vec![7; want])) {
                Ok(()) => {}
                Err(Error::MessageTooLarge { len, max }) => {
                    let _ = w.send_message(&Report(len as u64, max as u64));
                }
                Err(e) => panic!("reply: {e}"),
            }
        })
        .on_master_message(move |_: &mut Master, _: WorkerId, Report(len, max)| {
            o2.borrow_mut()
                .push(format!("reply too large: len {len} max {max}"));
        })
        .on_master_start(move |m: &mut Master| {
            let w = m.worker(0).expect("w0");
            let req = |size: usize, want: usize| {
                let mut v = vec![1u8; size];
                v[..8].copy_from_slice(&(want as u64).to_le_bytes());
                Blob(v)
            };
            let o = o1.clone();
            let cb = move |tag: &'static str| {
                let o = o.clone();
                move |m: &mut Master, r: Outcome<Blob>| {
                    o.borrow_mut()
                        .push(format!("{tag}: {:?}", r.map(|b| b.0.len())));
                    if tag == "last" {
                        m.stop();
                    }
                }
            };
            m.call(w, &req(payload - 12, payload - 16), cb("at limit"))
                .expect("request at the limit");
            match m.call(w, &req(payload - 11, 8), cb("never")) {
                Err(Error::MessageTooLarge { len, max }) => o1
                    .borrow_mut()
                    .push(format!("request +1 refused, len>max: {}", len > max)),
                r => o1.borrow_mut().push(format!("request +1: {r:?}")),
            }
            m.call(w, &req(64, payload - 15), cb("last"))
                .expect("small request");
        })
        .run()
        .expect("run");
    let out = out.borrow();
    let want = vec![
        "request +1 refused, len>max: true".to_string(),
        format!("at limit: Ok({})", payload - 16),
        format!("reply too large: len {} max {}", payload - 15, payload - 16),
        "last: Err(NoReply)".to_string(),
    ];
    assert_eq!(*out, want);
}

/// 6,000 calls over 2 workers with deadlines of zero, a nanosecond, a millisecond and
/// `Duration::MAX`, answers now or from timers: each callback runs exactly once, the
/// `MAX` ones with their answer.
fn tiny_timeouts_storm() {
    const N: u64 = 6000;
    let seen: Shared<Vec<u32>> = Rc::new(RefCell::new(vec![0; N as usize]));
    let bad: Shared<Vec<String>> = shared();
    let done = Rc::new(Cell::new(0u64));
    let (s, b) = (seen.clone(), bad.clone());
    Builder::new()
        .workers(2)
        .on_worker_message(echo)
        .on_master_start(move |m: &mut Master| {
            let ws = m.workers();
            for n in 0..N {
                let timeout = match n % 4 {
                    0 => Duration::ZERO,
                    1 => Duration::from_nanos(1),
                    2 => Duration::from_millis(1),
                    _ => Duration::MAX,
                };
                let to = ws[(n % 2) as usize];
                let (s, b, done) = (s.clone(), b.clone(), done.clone());
                m.call_with_timeout(
                    to,
                    &Echo(n, n % 3),
                    timeout,
                    move |m: &mut Master, r: Outcome<Echoed>| {
                        s.borrow_mut()[n as usize] += 1;
                        match r {
                            Ok(Echoed(got, _)) if got == n => {}
                            Err(CallError::Timeout) if n % 4 != 3 => {}
                            other => b.borrow_mut().push(format!("{n}: {other:?}")),
                        }
                        done.set(done.get() + 1);
                        if done.get() == N {
                            m.after(Duration::from_millis(200), |m: &mut Master| m.stop())
                                .expect("after");
                        }
                    },
                )
                .expect("call");
            }
        })
        .run()
        .expect("run");
    assert!(
        bad.borrow().is_empty(),
        "{:?}",
        &bad.borrow()[..bad.borrow().len().min(5)]
    );
    let dup: Vec<usize> = (0..N as usize).filter(|&i| seen.borrow()[i] != 1).collect();
    assert!(
        dup.is_empty(),
        "callbacks not run once: {:?}",
        &dup[..dup.len().min(10)]
    );
}

/// An outcome callback stops the master and then calls again and replies: the new call's
/// callback never runs (nothing runs after the stop), nothing panics.
fn call_after_stop_in_callback() {
    let ran = Rc::new(Cell::new(0));
    let r2 = ran.clone();
    let after_stop: Shared<Option<String>> = shared();
    let a = after_stop.clone();
    Builder::new()
        .workers(1)
        .on_worker_message(echo)
        .on_master_start(move |m: &mut Master| {
            let w = m.worker(0).expect("w0");
            let (ran, a) = (r2.clone(), a.clone());
            m.call(w, &Echo(1, 0), move |m: &mut Master, _: Outcome<Echoed>| {
                m.stop();
                let ran2 = ran.clone();
                let r = m.call(w, &Echo(2, 0), move |_: &mut Master, _: Outcome<Echoed>| {
                    ran2.set(ran2.get() + 100)
                });
                let rep = m.reply(&Answer(0, 0));
                *a.borrow_mut() = Some(format!("call {:?} reply {rep:?}", r.is_ok()));
                ran.set(ran.get() + 1);
            })
            .expect("call");
        })
        .run()
        .expect("run");
    assert_eq!(ran.get(), 1, "a callback ran after the stop");
    assert!(after_stop.borrow().is_some());
}

/// A chain 12 deep across both sides: the master calls the worker, whose handler defers
/// and calls the master, whose handler defers and calls the worker, ...; the innermost
/// answers at once and each level answers from its call's callback.
fn nested_chain() {
    const DEPTH: u64 = 12;
    let result: Shared<Option<Outcome<Answer>>> = shared();
    let r = result.clone();
    fn next_master(m: &mut Master, from: WorkerId, n: u64) {
        if n >= DEPTH {
            m.reply(&Answer(n, 0)).expect("reply");
            return;
        }
        let t = m.defer_reply().expect("defer");
        m.call(
            from,
            &Relay(n + 1, 0),
            move |m: &mut Master, r: Outcome<Answer>| {
                let a = r.expect("inner answer");
                m.reply_to(t, &Answer(a.0, a.1 + 1)).expect("reply_to");
            },
        )
        .expect("call");
    }
    Builder::new()
        .workers(1)
        .on_worker_message(|w: &mut Worker, Relay(n, _)| {
            if n >= DEPTH {
                w.reply(&Answer(n, 0)).expect("reply");
                return;
            }
            let t = w.defer_reply().expect("defer");
            w.call(&Ask(n + 1, 0), move |w: &mut Worker, r: Outcome<Answer>| {
                let a = r.expect("inner answer");
                w.reply_to(t, &Answer(a.0, a.1 + 1)).expect("reply_to");
            })
            .expect("call");
        })
        .on_master_message(|m: &mut Master, from: WorkerId, Ask(n, _)| next_master(m, from, n))
        .on_master_start(move |m: &mut Master| {
            let w = m.worker(0).expect("w0");
            let r = r.clone();
            m.call(
                w,
                &Relay(1, 0),
                move |m: &mut Master, o: Outcome<Answer>| {
                    *r.borrow_mut() = Some(o);
                    m.stop();
                },
            )
            .expect("call");
        })
        .run()
        .expect("run");
    assert_eq!(*result.borrow(), Some(Ok(Answer(DEPTH, DEPTH - 1))));
}

fn call_frame(id: u64, ty: u32, payload: &[u8]) -> Vec<u8> {
    [&id.to_ne_bytes()[..], &ty.to_ne_bytes(), payload].concat()
}

fn reply_frame(id: u64, status: u32, ty: u32, payload: &[u8]) -> Vec<u8> {
    [
        &id.to_ne_bytes()[..],
        &status.to_ne_bytes(),
        &ty.to_ne_bytes(),
        payload,
    ]
    .concat()
}

/// Forged wire frames (types 1019/1020 are sendable, for C peers): garbage CALLs to the
/// worker (short, nested CALL-of-CALL, undecodable) and garbage / truncated / unknown
/// status / wrong type / duplicate REPLYs to the master for its pending calls. Nothing
/// crashes; each callback runs exactly once; the channel keeps working.
fn forged_wire_frames() {
    let got: Shared<Vec<(u64, Outcome<Echoed>)>> = shared();
    let (g, g0) = (got.clone(), got.clone());
    Builder::new()
        .workers(1)
        .call_timeout(Duration::from_secs(2))
        .on_worker_message(echo)
        .on_worker_message(|_: &mut Worker, Hold(_, _)| {
            // Neither answered nor deferred: would answer NoReply; instead the master
            // asked for Quiet, so this one is never called.
        })
        .on_worker_message(|w: &mut Worker, Relay(a, b)| {
            // Forge answers to the master's calls a and b, then garbage.
            let _ = w.send(1020, reply_frame(a, 99, 0, &[]));
            let _ = w.send(1020, &reply_frame(b, 0, 0, &[])[..12]);
            let _ = w.send(1020, reply_frame(b + 1, 0, Echoed::TYPE, &[1, 2, 3]));
            for len in 0..20 {
                let _ = w.send(1020, vec![0xff; len]);
            }
            let _ = w.send(1020, reply_frame(u64::MAX, 3, 0, &[]));
            let _ = w.send_message(&WorkerDone(0, 0));
        })
        .on_master_message(move |m: &mut Master, from: WorkerId, _: WorkerDone| {
            // Duplicate of an answered call (a): dropped; then a real round trip.
            let _ = m.send_to(from, 1019, call_frame(0, Echo::TYPE, &[]));
            let g2 = g.clone();
            m.call(
                from,
                &Echo(77, 0),
                move |m: &mut Master, r: Outcome<Echoed>| {
                    g2.borrow_mut().push((77, r));
                    m.after(Duration::from_millis(2500), |m: &mut Master| m.stop())
                        .expect("after");
                },
            )
            .expect("call");
        })
        .on_master_start(move |m: &mut Master| {
            let w = m.worker(0).expect("w0");
            // Garbage CALLs first.
            for len in 0..14 {
                m.send_to(w, 1019, vec![0xa5; len]).expect("garbage call");
            }
            m.send_to(w, 1019, call_frame(5, 1019, &call_frame(6, 1019, &[])))
                .expect("call of call");
            m.send_to(w, 1019, call_frame(7, 1020, &reply_frame(1, 0, 0, &[])))
                .expect("call of reply");
            m.send_to(w, 1019, call_frame(8, Echo::TYPE, &[1]))
                .expect("undecodable call");
            let mut ids = Vec::new();
            for n in 0..3u64 {
                let g = g0.clone();
                let id: CallId = m
                    .call(w, &Hold(n, 0), move |_: &mut Master, r: Outcome<Echoed>| {
                        g.borrow_mut().push((n, r))
                    })
                    .expect("call");
                ids.push(id.get());
            }
            // The worker forges: a=ids[0] status 99, b=ids[1] truncated, ids[2] wrong bytes.
            assert_eq!(ids[2], ids[1] + 1, "call ids not consecutive");
            m.send_message_to(w, &Relay(ids[0], ids[1])).expect("relay");
        })
        .run()
        .expect("run");
    let got = got.borrow();
    let by = |n: u64| -> Vec<&Outcome<Echoed>> {
        got.iter()
            .filter(|(k, _)| *k == n)
            .map(|(_, r)| r)
            .collect()
    };
    // The Hold handler returned without answering: NoReply may already have come for
    // each (before the forgeries); else the forgeries decide. Exactly once each.
    for n in 0..3 {
        assert_eq!(by(n).len(), 1, "call {n}: {got:?}");
    }
    assert_eq!(by(77), vec![&Ok(Echoed(77, by(77)[0].as_ref().unwrap().1))]);
}

/// Requests whose type is reserved (0, 1, the library's 1019..=1023): refused, or
/// answered `NoHandler`; never dispatched to the library's own frame handlers.
fn reserved_request_types() {
    macro_rules! typed {
        ($($n:ident = $t:expr;)*) => {$(
            struct $n;
            impl Message for $n {
                const TYPE: u32 = $t;
                fn encode(&self) -> Vec<u8> { call_frame(1, 1019, &[]) }
                fn decode(_: &[u8]) -> Option<Self> { Some($n) }
            }
        )*};
    }
    typed! { T0 = 0; T1 = 1; T1019 = 1019; T1020 = 1020; T1021 = 1021; T1023 = 1023; }
    let out: Shared<Vec<String>> = shared();
    let o = out.clone();
    Builder::new()
        .workers(1)
        .call_timeout(Duration::from_secs(3))
        .on_worker_message(echo)
        .on_master_start(move |m: &mut Master| {
            let w = m.worker(0).expect("w0");
            let pending = Rc::new(Cell::new(0));
            macro_rules! go {
                ($($t:ident),*) => {$({
                    let o2 = o.clone();
                    let p = pending.clone();
                    let r = m.call(w, &$t, move |m: &mut Master, r: Outcome<Echoed>| {
                        o2.borrow_mut().push(format!("{}: {:?}", stringify!($t), r.err()));
                        p.set(p.get() - 1);
                        if p.get() == 0 {
                            m.stop();
                        }
                    });
                    match r {
                        Ok(_) => pending.set(pending.get() + 1),
                        Err(e) => o.borrow_mut().push(format!("{} refused: {e:?}", stringify!($t))),
                    }
                })*};
            }
            go!(T0, T1, T1019, T1020, T1021, T1023);
            let p = pending.clone();
            let o2 = o.clone();
            pending.set(pending.get() + 1);
            m.call(w, &Echo(1, 0), move |m: &mut Master, r: Outcome<Echoed>| {
                o2.borrow_mut().push(format!("echo ok: {}", r.is_ok()));
                p.set(p.get() - 1);
                if p.get() == 0 {
                    m.stop();
                }
            })
            .expect("echo");
        })
        .run()
        .expect("run");
    let out = out.borrow();
    eprintln!("{out:#?}");
    assert!(out.contains(&"echo ok: true".to_string()), "{out:?}");
    for line in out.iter().filter(|l| l.starts_with('T')) {
        assert!(
            line.contains("NoHandler") || line.contains("refused"),
            "reserved request type: {line}"
        );
    }
}

fn main() -> ExitCode {
    common::main(&[
        ("token_in_forked_copy", token_in_forked_copy),
        ("reply_to_after_caller_died", reply_to_after_caller_died),
        ("reply_to_outlives_run", reply_to_outlives_run),
        ("worker_token_dropped_at_stop", worker_token_dropped_at_stop),
        ("exact_limits", exact_limits),
        ("tiny_timeouts_storm", tiny_timeouts_storm),
        ("call_after_stop_in_callback", call_after_stop_in_callback),
        ("nested_chain", nested_chain),
        ("forged_wire_frames", forged_wire_frames),
        ("reserved_request_types", reserved_request_types),
    ])
}
