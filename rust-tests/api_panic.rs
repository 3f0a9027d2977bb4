//! The panic boundary with a hostile payload: a panic whose payload's `Drop` panics too.
//! Dropping the caught payload is a second panic; it must be caught as well (not abort the
//! process from an `extern "C"` frame, nor escape `Builder::run`). Safe API only.

mod common;

use mln_ipc::api::{Builder, Master, Worker, WorkerId};
use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

/// A panic payload whose destructor panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's Drop panics too (expected by the test)");
    }
}

fn explode() {
    std::panic::panic_any(Bomb);
}

const GO: u32 = 4701;
const ALIVE: u32 = 4702;
const BOOM: u32 = 4703;

/// A master timer, a master handler, a worker handler and a worker timer each panic with a
/// `Bomb`; every process carries on and `run` returns normally.
fn payload_drop_panics() {
    // The library reports each caught panic at error level: quiet unless the caller chose
    // a level (this process is single-threaded here).
    if std::env::var_os("MLN_IPC_LOG").is_none() {
        std::env::set_var("MLN_IPC_LOG", "none");
    }
    // The deliberate panics (a `Bomb`, and its `Drop`'s) unwind quietly, also when
    // RUST_BACKTRACE is set; any other panic fails the scenario as the runner's hook does.
    std::panic::set_hook(Box::new(|info| {
        let p = info.payload();
        let expected = p.is::<Bomb>()
            || p.downcast_ref::<&str>()
                .is_some_and(|s| s.contains("expected by the test"));
        if !expected {
            eprintln!("scenario failed: {info}");
            std::process::abort();
        }
    }));
    let alive = Rc::new(Cell::new(0u32));
    let a = alive.clone();
    Builder::new()
        .workers(1)
        .on_master_start(|m: &mut Master| {
            // (A start hook that panics ends `run`: api_robust.)
            m.after(Duration::ZERO, |_: &mut Master| explode())
                .expect("timer");
        })
        .on_worker_start(|w: &mut Worker| {
            w.after(Duration::ZERO, |w: &mut Worker| {
                // The worker timer runs (and survives its panic) before the first frame.
                w.send(GO, []).expect("go");
                explode();
            })
            .expect("timer");
        })
        .on_master(GO, |m: &mut Master, from: WorkerId, _: &[u8]| {
            m.send_to(from, BOOM, []).expect("boom");
            explode();
        })
        .on_worker(BOOM, |w: &mut Worker, _: &[u8]| {
            // Queued before the panic: delivered after it.
            w.send(ALIVE, []).expect("alive");
            explode();
        })
        .on_master(ALIVE, move |m: &mut Master, _: WorkerId, _: &[u8]| {
            a.set(a.get() + 1);
            m.stop();
        })
        .run()
        .expect("run");
    assert_eq!(alive.get(), 1);
}

fn main() -> ExitCode {
    common::main(&[("payload_drop_panics", payload_drop_panics)])
}
