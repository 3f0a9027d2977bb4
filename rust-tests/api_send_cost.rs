//! A send costs the same whatever the number of workers: `Master::send_to` and the
//! master's receive path do not rebuild the worker table (no allocation per message once
//! the queue has room). Also a benchmark, `bench_send_cost` (run it by name:
//! `cargo test --release --test api_send_cost -- bench_send_cost`), printing the time per
//! `send_to` with 1, 50 and 200 workers.
//!
//! The one `unsafe` here is the counting global allocator (it forwards to the system
//! allocator).

mod common;

use mln_ipc::api::{Builder, Master, Worker, WorkerId};
use std::alloc::{GlobalAlloc, Layout, System};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Counts allocations (of every thread; the scenarios are single-threaded).
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.load(Ordering::Relaxed)
}

const HELLO: u32 = 5201;
const DATA: u32 = 5202;
const ECHO: u32 = 5203;
const WORKERS: u32 = 40;
const SENDS: usize = 1000;

/// 1000 sends to one of 40 workers, and 200 frames received from it, allocate nothing
/// once the table and the queue are warm.
fn no_allocation_per_message() {
    Builder::new()
        .workers(WORKERS)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(DATA, |w: &mut Worker, b: &[u8]| {
            if b[0] == 1 {
                for _ in 0..200 {
                    w.send(ECHO, [0u8; 8]).expect("echo");
                }
            }
        })
        .on_master(HELLO, {
            let mut n = 0;
            move |m: &mut Master, _: WorkerId, _: &[u8]| {
                n += 1;
                if n < WORKERS {
                    return;
                }
                let w = m.worker(WORKERS as usize / 2).expect("worker");
                m.send_to(w, DATA, [0u8; 8]).expect("warm-up");
                let before = allocs();
                for _ in 0..SENDS {
                    m.send_to(w, DATA, [0u8; 8]).expect("send");
                }
                let during = allocs() - before;
                assert!(during <= 4, "{during} allocations for {SENDS} sends");
                m.send_to(w, DATA, [1u8; 8]).expect("send");
            }
        })
        .on_master(ECHO, {
            let mut n = 0;
            let mut at = 0;
            move |m: &mut Master, _: WorkerId, _: &[u8]| {
                n += 1;
                if n == 2 {
                    at = allocs();
                }
                if n == 200 {
                    let during = allocs() - at;
                    assert!(during <= 4, "{during} allocations for 198 received frames");
                    m.stop();
                }
            }
        })
        .run()
        .expect("run");
}

/// Time per `send_to` with 1, 50 and 200 workers (each count in a fresh process).
fn bench_send_cost() {
    for n in ["1", "50", "200"] {
        let out = common::output_of("sub_bench", &[("BENCH_WORKERS", n)]);
        assert!(out.status.success(), "{out:?}");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

fn sub_bench() {
    const N: usize = 200_000;
    let workers: u32 = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("BENCH_WORKERS");
    Builder::new()
        .workers(workers)
        .stop_timeout(std::time::Duration::from_secs(30))
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_master(HELLO, {
            let mut n = 0;
            move |m: &mut Master, _: WorkerId, _: &[u8]| {
                n += 1;
                if n < workers {
                    return;
                }
                let w = m.worker(0).expect("worker");
                let t = Instant::now();
                for _ in 0..N {
                    m.send_to(w, DATA, [0u8; 8]).expect("send");
                }
                let per = t.elapsed() / N as u32;
                println!("send_to with {workers:>3} workers: {per:?} per send");
                m.stop();
            }
        })
        .run()
        .expect("run");
}

fn main() -> ExitCode {
    common::main(&[
        ("no_allocation_per_message", no_allocation_per_message),
        ("bench_send_cost", bench_send_cost),
        ("sub_bench", sub_bench),
    ])
}
