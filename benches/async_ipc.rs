//! The async face (feature `tokio`) against the synchronous Rust API, in the same run:
//! a worker-to-master stream of 64 B and of 16 KiB frames (messages per second), and the
//! round trip of a 64 B request and its answer (microseconds). Each figure runs in a fresh
//! process (the library's state is per process), `BENCH_REPS` times (default 5); the
//! median is printed with the async/sync ratio. `cargo bench --features tokio --bench
//! async_ipc`; under `cargo test` it only says it was skipped.

use mln_ipc::api::tokio::{AsyncMaster, AsyncWorker, Builder as AsyncBuilder};
use mln_ipc::api::{Builder, Error, Master, Worker, WorkerId};
use std::cell::Cell;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

const GO: u32 = 6200;
const DATA: u32 = 6201;
const PING: u32 = 6202;
const PONG: u32 = 6203;
const ENV: &str = "MLN_ASYNC_BENCH";

fn count_for(size: usize) -> u64 {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = if size <= 64 { 1_000_000.0 } else { 100_000.0 };
    ((n * scale) as u64).max(1000)
}

/// Sync stream: the worker sends `n` frames on GO (resuming from its writable callback),
/// the master counts them. Returns seconds.
fn sync_stream(size: usize, n: u64) -> f64 {
    let t0 = Rc::new(Cell::new(None::<Instant>));
    let took = Rc::new(Cell::new(0.0f64));
    let sent = Rc::new(Cell::new(0u64));
    let (t0m, tookm) = (t0.clone(), took.clone());
    let got = Cell::new(0u64);
    let (s1, s2) = (sent.clone(), sent.clone());
    let push = move |w: &mut Worker, sent: &Cell<u64>| {
        let p = vec![7u8; size];
        while sent.get() < n {
            match w.send(DATA, &p) {
                Ok(()) => sent.set(sent.get() + 1),
                Err(Error::QueueFull) => return,
                Err(e) => panic!("send: {e}"),
            }
        }
    };
    let push2 = push;
    Builder::new()
        .workers(1)
        .on_master_start(move |m: &mut Master| {
            t0m.set(Some(Instant::now()));
            let id = m.workers()[0];
            m.send_to(id, GO, []).expect("go");
        })
        .on_worker(GO, move |w: &mut Worker, _: &[u8]| push(w, &s1))
        .on_worker_writable(move |w: &mut Worker| push2(w, &s2))
        .on_master(DATA, move |m: &mut Master, _: WorkerId, _: &[u8]| {
            got.set(got.get() + 1);
            if got.get() == n {
                tookm.set(t0.get().expect("start").elapsed().as_secs_f64());
                m.stop();
            }
        })
        .run()
        .expect("run");
    took.get()
}

fn async_stream(size: usize, n: u64, many: bool) -> f64 {
    let took = Rc::new(Cell::new(0.0f64));
    let t = took.clone();
    AsyncBuilder::new()
        .workers(1)
        .master_types([DATA])
        .worker_types([GO])
        .run(
            move |w: AsyncWorker| async move {
                if w.recv().await.is_some() {
                    let p = vec![7u8; size];
                    for _ in 0..n {
                        w.send(DATA, &p).await.expect("send");
                    }
                }
                w.quit().await;
            },
            move |m: AsyncMaster| async move {
                let t0 = Instant::now();
                m.send(m.workers()[0], GO, []).await.expect("go");
                if many {
                    // The burst taken as it comes: every frame received so far per step.
                    let mut buf = Vec::with_capacity(4096);
                    let mut got = 0u64;
                    while got < n {
                        buf.clear();
                        let k = m.recv_many(&mut buf, 4096).await;
                        assert!(k > 0, "the stream ended early");
                        got += k as u64;
                    }
                } else {
                    for _ in 0..n {
                        m.recv().await.expect("data");
                    }
                }
                t.set(t0.elapsed().as_secs_f64());
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    took.get()
}

fn sync_rtt(n: u64) -> f64 {
    let t0 = Rc::new(Cell::new(None::<Instant>));
    let took = Rc::new(Cell::new(0.0f64));
    let (t0m, tookm) = (t0.clone(), took.clone());
    let got = Cell::new(0u64);
    let p = [1u8; 64];
    Builder::new()
        .workers(1)
        .on_master_start(move |m: &mut Master| {
            t0m.set(Some(Instant::now()));
            let id = m.workers()[0];
            m.send_to(id, PING, p).expect("ping");
        })
        .on_worker(PING, |w: &mut Worker, b: &[u8]| {
            w.send(PONG, b).expect("pong");
        })
        .on_master(PONG, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            got.set(got.get() + 1);
            if got.get() == n {
                tookm.set(t0.get().expect("start").elapsed().as_secs_f64());
                m.stop();
            } else {
                m.send_to(from, PING, b).expect("ping");
            }
        })
        .run()
        .expect("run");
    took.get()
}

fn async_rtt(n: u64) -> f64 {
    let took = Rc::new(Cell::new(0.0f64));
    let t = took.clone();
    AsyncBuilder::new()
        .workers(1)
        .master_types([PONG])
        .worker_types([PING])
        .run(
            |w: AsyncWorker| async move {
                while let Some(f) = w.recv().await {
                    w.send(PONG, &f.payload).await.expect("pong");
                }
            },
            move |m: AsyncMaster| async move {
                let id = m.workers()[0];
                let t0 = Instant::now();
                for _ in 0..n {
                    m.send(id, PING, [1u8; 64]).await.expect("ping");
                    m.recv().await.expect("pong");
                }
                t.set(t0.elapsed().as_secs_f64());
                m.shutdown(Duration::from_secs(5)).await;
            },
        )
        .expect("run");
    took.get()
}

/// In a fresh process: one figure, printed as seconds on stdout.
fn child(figure: &str) {
    let secs = match figure {
        "sync-64" => sync_stream(64, count_for(64)),
        "async-64" => async_stream(64, count_for(64), false),
        "async-64-many" => async_stream(64, count_for(64), true),
        "sync-16k" => sync_stream(16384, count_for(16384)),
        "async-16k" => async_stream(16384, count_for(16384), false),
        "sync-rtt" => sync_rtt(count_for(16384)),
        "async-rtt" => async_rtt(count_for(16384)),
        _ => panic!("unknown figure {figure}"),
    };
    println!("{secs}");
}

fn median_secs(figure: &str, reps: usize) -> f64 {
    let exe = std::env::current_exe().expect("current_exe");
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let out = Command::new(&exe)
                .env(ENV, figure)
                .env("MLN_IPC_LOG", "none")
                .output()
                .expect("run a figure");
            assert!(out.status.success(), "{figure}: {}", out.status);
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("seconds")
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Ok(f) = std::env::var(ENV) {
        child(&f);
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("async_ipc: skipped (run with cargo bench --features tokio --bench async_ipc)");
        return;
    }
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!("async face vs sync Rust API, median of {reps} (worker -> master stream; round trip)");
    for (name, size, sync, asy) in [
        ("stream 64 B", 64, "sync-64", "async-64"),
        ("64 B recv_many", 64, "sync-64", "async-64-many"),
        ("stream 16 KiB", 16384, "sync-16k", "async-16k"),
    ] {
        let n = count_for(size) as f64;
        let (s, a) = (median_secs(sync, reps), median_secs(asy, reps));
        println!(
            "{name:>14}: sync {:>10.0} msg/s  async {:>10.0} msg/s  async/sync {:.2}",
            n / s,
            n / a,
            s / a
        );
    }
    let n = count_for(16384) as f64;
    let (s, a) = (
        median_secs("sync-rtt", reps),
        median_secs("async-rtt", reps),
    );
    println!(
        "{:>14}: sync {:>10.1} us      async {:>10.1} us      async/sync {:.2}",
        "round trip",
        s / n * 1e6,
        a / n * 1e6,
        a / s
    );
}
