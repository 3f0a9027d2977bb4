//! Handler state kept across messages (in a worker and in the master), timers, and the
//! panic boundary. Safe API only.

mod common;

use mln_ipc::api::{Builder, Master, Worker, WorkerId};
use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

const INC: u32 = 4401;
const COUNT: u32 = 4402;
const N: u32 = 100;

/// The worker's closure counts the INCs it got and answers each with its count; the
/// master's closure checks the counts arrive as 1, 2, ... N.
fn state_across_messages() {
    let last = Rc::new(Cell::new(0u32));
    let l = last.clone();
    Builder::new()
        .workers(1)
        .on_master_start(|m: &mut Master| {
            let w = m.worker(0).expect("worker");
            for _ in 0..N {
                m.send_to(w, INC, []).expect("send");
            }
        })
        .on_worker(INC, {
            let mut count = 0u32;
            move |w: &mut Worker, _: &[u8]| {
                count += 1;
                w.send(COUNT, count.to_le_bytes()).expect("send");
            }
        })
        .on_master(COUNT, {
            let mut expect = 1u32;
            move |m: &mut Master, _: WorkerId, b: &[u8]| {
                assert_eq!(common::u32_at(b, 0), Some(expect));
                l.set(expect);
                expect += 1;
                if expect > N {
                    m.stop();
                }
            }
        })
        .run()
        .expect("run");
    assert_eq!(last.get(), N);
}

const TICK: u32 = 4411;

/// A worker timer fires after its delay; a cancelled master timer never runs; a master
/// timer stops the master.
fn timers() {
    let cancelled_ran = Rc::new(Cell::new(false));
    let ticks = Rc::new(Cell::new(0u32));
    let started = Instant::now();
    let (c, t1, t2) = (cancelled_ran.clone(), ticks.clone(), ticks.clone());
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| {
            let t0 = Instant::now();
            w.after(Duration::from_millis(30), move |w: &mut Worker| {
                let waited = t0.elapsed().as_millis() as u32;
                w.send(TICK, waited.to_le_bytes()).expect("tick");
            })
            .expect("timer");
        })
        .on_master_start(move |m: &mut Master| {
            let t = m
                .after(Duration::from_millis(1), move |_: &mut Master| c.set(true))
                .expect("timer");
            assert!(m.cancel(t));
            assert!(!m.cancel(t));
        })
        .on_master(TICK, move |m: &mut Master, _: WorkerId, b: &[u8]| {
            assert!(common::u32_at(b, 0).expect("ms") >= 30);
            t1.set(t1.get() + 1);
            m.after(Duration::from_millis(20), |m: &mut Master| m.stop())
                .expect("timer");
        })
        .run()
        .expect("run");
    assert_eq!(t2.get(), 1);
    assert!(!cancelled_ran.get());
    assert!(started.elapsed() >= Duration::from_millis(50));
}

const BOOM: u32 = 4421;
const AFTER: u32 = 4422;
const DELIBERATE: &str = "deliberate panic in a worker handler (expected by the test)";

/// A panicking handler is stopped at the boundary: that message is dropped, the process
/// and the handler's state live on, and the next messages are handled.
fn panic_is_caught() {
    common::expect_panics(DELIBERATE);
    // The library logs the contained panic at error level: expected here, so quiet unless
    // the caller chose a level (MLN_IPC_LOG=error shows it). Read at the first log line,
    // and this process (one scenario, one thread) has not logged yet.
    if std::env::var_os("MLN_IPC_LOG").is_none() {
        std::env::set_var("MLN_IPC_LOG", "none");
    }
    let answers = Rc::new(RefCell::new(Vec::new()));
    let a = answers.clone();
    Builder::new()
        .workers(1)
        .on_master_start(|m: &mut Master| {
            let w = m.worker(0).expect("worker");
            for i in 0..4u32 {
                m.send_to(w, BOOM, i.to_le_bytes()).expect("send");
            }
        })
        .on_worker(BOOM, {
            let mut seen = 0u32;
            move |w: &mut Worker, b: &[u8]| {
                seen += 1;
                let i = common::u32_at(b, 0).expect("i");
                if i == 1 {
                    panic!("{DELIBERATE}");
                }
                w.send(AFTER, [i as u8, seen as u8]).expect("send");
            }
        })
        .on_master(AFTER, move |m: &mut Master, _: WorkerId, b: &[u8]| {
            a.borrow_mut().push(b.to_vec());
            if a.borrow().len() == 3 {
                m.stop();
            }
        })
        .run()
        .expect("run");
    let got: Vec<(u8, u8)> = answers.borrow().iter().map(|v| (v[0], v[1])).collect();
    assert_eq!(got, vec![(0, 1), (2, 3), (3, 4)]);
}

fn main() -> ExitCode {
    common::main(&[
        ("state_across_messages", state_across_messages),
        ("timers", timers),
        ("panic_is_caught", panic_is_caught),
    ])
}
