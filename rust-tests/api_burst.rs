//! 20,000 messages each way between a Rust master and one Rust worker, of varying sizes,
//! with the order checked on both sides. Safe API only.

mod common;

use mln_ipc::api::{Builder, Master, Worker, WorkerId};
use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;

const M2W: u32 = 4101;
const W2M: u32 = 4102;
const DONE: u32 = 4103;
const N: u32 = 20_000;

/// Message `i`: its number, then `i % 97` bytes of filler derived from it.
fn frame(i: u32) -> Vec<u8> {
    let mut v = i.to_le_bytes().to_vec();
    v.extend((0..i % 97).map(|k| (i as u8).wrapping_add(k as u8)));
    v
}

fn burst() {
    // Messages received in order by the master; whether the worker reported its side.
    let received = Rc::new(Cell::new(0u32));
    let worker_ok = Rc::new(Cell::new(false));
    let (r1, r2) = (received.clone(), received.clone());
    let (ok1, ok2) = (worker_ok.clone(), worker_ok.clone());
    Builder::new()
        .workers(1)
        .on_master_start(|m: &mut Master| {
            let w = m.worker(0).expect("worker 0");
            for i in 0..N {
                m.send_to(w, M2W, frame(i)).expect("send");
            }
        })
        .on_worker_start(|w: &mut Worker| {
            for i in 0..N {
                w.send(W2M, frame(i)).expect("send");
            }
        })
        .on_worker(M2W, {
            let mut expect = 0u32;
            move |w: &mut Worker, b: &[u8]| {
                if b == frame(expect).as_slice() {
                    expect += 1;
                    if expect == N {
                        let _ = w.send(DONE, b"ok");
                    }
                } else {
                    let _ = w.send(DONE, format!("out of order at {expect}"));
                }
            }
        })
        .on_master(W2M, move |m: &mut Master, _: WorkerId, b: &[u8]| {
            let next = r1.get();
            assert_eq!(
                b,
                frame(next).as_slice(),
                "worker->master out of order at {next}"
            );
            r1.set(next + 1);
            if next + 1 == N && ok1.get() {
                m.stop();
            }
        })
        .on_master(DONE, move |m: &mut Master, _: WorkerId, b: &[u8]| {
            assert_eq!(b, b"ok", "{}", String::from_utf8_lossy(b));
            ok2.set(true);
            if r2.get() == N {
                m.stop();
            }
        })
        .run()
        .expect("run");
    assert_eq!(received.get(), N);
    assert!(worker_ok.get());
}

fn main() -> ExitCode {
    common::main(&[("burst_20000_each_way", burst)])
}
