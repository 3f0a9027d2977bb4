//! Threads and `Builder::run`: a call from another thread while the loop runs is refused
//! without touching the process state the loop thread owns; forking with other threads
//! alive takes `unsafe` (`Builder::allow_threads`).

mod common;

use mln_ipc::api::{Builder, Error, Master, Worker, WorkerId};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

const HELLO: u32 = 5301;
const DATA: u32 = 5302;
const CALLS: usize = 100_000;

/// While the master's handler sends (each send works on the process state), another
/// thread calls `Builder::run` over and over: every call is `AlreadyStarted`, and neither
/// thread ever meets the other inside the process state (that would panic, "process
/// state re-entered", or race).
fn run_from_another_thread() {
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_master(HELLO, |m: &mut Master, from: WorkerId, _: &[u8]| {
            let done = Arc::new(AtomicBool::new(false));
            let d = done.clone();
            let t = std::thread::spawn(move || {
                let mut wrong = None;
                for _ in 0..CALLS {
                    match Builder::new().workers(0).run() {
                        Err(Error::AlreadyStarted) => {}
                        other => {
                            wrong = Some(format!("{other:?}"));
                            break;
                        }
                    }
                }
                d.store(true, Ordering::SeqCst);
                wrong
            });
            while !done.load(Ordering::SeqCst) {
                m.send_to(from, DATA, [0u8; 8]).expect("send");
            }
            let wrong = t.join().expect("the other thread panicked");
            assert_eq!(wrong, None);
            m.stop();
        })
        .run()
        .expect("run");
}

/// With another thread alive, `run` refuses; `allow_threads` (unsafe, with its contract
/// kept: the other thread only waits on a channel and the workers never use it) lets it
/// start.
fn allow_threads_is_unsafe_opt_in() {
    let (tx, rx) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv().ok());
    match Builder::new().workers(0).run() {
        Err(Error::ThreadsRunning { threads }) => assert!(threads >= 2),
        other => panic!("with a thread alive: {other:?}"),
    }
    // SAFETY: the other thread holds no lock and is in the middle of no update a worker
    // could see: it is blocked receiving on a channel no worker touches.
    let b = unsafe { Builder::new().allow_threads(true) };
    b.workers(1)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_master(HELLO, |m: &mut Master, _: WorkerId, _: &[u8]| m.stop())
        .run()
        .expect("run");
    tx.send(()).expect("send");
    t.join().expect("join");
}

fn main() -> ExitCode {
    common::main(&[
        ("run_from_another_thread", run_from_another_thread),
        (
            "allow_threads_is_unsafe_opt_in",
            allow_threads_is_unsafe_opt_in,
        ),
    ])
}
