//! The async face (feature `tokio`) against the synchronous Rust API, in the same run:
//! a worker-to-master stream of 64 B frames (taken one `recv` at a time, and in bursts
//! with `recv_many`) and of 16 KiB frames (messages per second), and the round trip of a
//! 64 B request and its answer (microseconds).
//!
//! Every sample runs in a fresh process (the library's state is per process) and lasts at
//! least 0.3 s (the message counts are sized by a first sample of each figure, not kept,
//! and a shorter sample is taken again with more); the figures are interleaved (one
//! sample of each, sync and async in turn, then again) so a slow minute on a shared
//! machine hits both faces alike. `BENCH_REPS` samples per figure (default and minimum
//! 5). Printed: each figure's median and spread [min..max], the ratio of the medians
//! (async/sync) and whether it meets its target. `cargo bench --features tokio --bench
//! async_ipc`; under `cargo test` it only says it was skipped.

use mln_ipc::api::tokio::{AsyncMaster, AsyncWorker, Builder as AsyncBuilder};
use mln_ipc::api::{Builder, Error, Master, Worker, WorkerId};
use std::cell::Cell;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

const GO: u32 = 6200;
const DATA: u32 = 6201;
const PING: u32 = 6202;
const PONG: u32 = 6203;
const ENV: &str = "MLN_ASYNC_BENCH";
const ENV_N: &str = "MLN_ASYNC_BENCH_N";

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

/// In a fresh process: one sample of `figure` with `n` messages (round trips), printed as
/// seconds on stdout.
fn child(figure: &str, n: u64) {
    let secs = match figure {
        "sync-64" => sync_stream(64, n),
        "async-64" => async_stream(64, n, false),
        "async-64-many" => async_stream(64, n, true),
        "sync-16k" => sync_stream(16384, n),
        "async-16k" => async_stream(16384, n, false),
        "sync-rtt" => sync_rtt(n),
        "async-rtt" => async_rtt(n),
        _ => panic!("unknown figure {figure}"),
    };
    println!("{secs}");
}

/// The shortest sample kept: a shorter one is taken again with more messages.
const MIN_SAMPLE: f64 = 0.3;
/// What the message counts aim at.
const AIM: f64 = 0.5;
/// A sample that takes longer fails the run.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(120);

/// One sample in a fresh process: seconds for `n` messages.
fn sample(figure: &str, n: u64) -> f64 {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(&exe)
        .env(ENV, figure)
        .env(ENV_N, n.to_string())
        .env("MLN_IPC_LOG", "none")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run a sample");
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > SAMPLE_TIMEOUT {
            let _ = child.kill();
            panic!("{figure}: a sample of {n} took more than {SAMPLE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "{figure}: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds")
}

/// One figure: its samples (messages per second, or microseconds per round trip) and the
/// message count its next sample uses.
struct Figure {
    name: &'static str,
    rtt: bool,
    n: u64,
    values: Vec<f64>,
}

impl Figure {
    fn new(name: &'static str, rtt: bool) -> Figure {
        Figure {
            name,
            rtt,
            n: if rtt { 5_000 } else { 100_000 },
            values: Vec::new(),
        }
    }

    /// Takes one sample of at least `MIN_SAMPLE` seconds (`keep`: recorded), the count
    /// adjusted so the next one takes about `AIM` seconds.
    fn take(&mut self, keep: bool) {
        loop {
            let secs = sample(self.name, self.n).max(1e-6);
            let n = self.n as f64;
            let ok = secs >= MIN_SAMPLE;
            if ok && keep {
                self.values
                    .push(if self.rtt { secs / n * 1e6 } else { n / secs });
            }
            self.n = ((n * AIM / secs) as u64).max(1000);
            if ok || !keep {
                return;
            }
        }
    }

    /// (median, min, max).
    fn stats(&self) -> (f64, f64, f64) {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        (median, v[0], v[v.len() - 1])
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    if let Ok(f) = std::env::var(ENV) {
        let n = std::env::var(ENV_N)
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("message count");
        child(&f, n);
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
        .max(5);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "async face vs sync Rust API: {reps} samples per figure, each in a fresh process, \
         at least {MIN_SAMPLE} s; the faces interleaved (sync, async, sync, ...); \
         {cores} cores, load average {} at the start",
        load()
    );
    // (row, sync figure, async figure, target: async/sync at least (throughput) or at
    // most (round trip)).
    let rows: [(&str, usize, usize, f64); 4] = [
        ("stream 64 B, recv", 0, 1, 0.5),
        ("stream 64 B, recv_many", 0, 2, 0.55),
        ("stream 16 KiB, recv", 3, 4, 0.5),
        ("round trip 64 B", 5, 6, 1.5),
    ];
    let mut figs = [
        Figure::new("sync-64", false),
        Figure::new("async-64", false),
        Figure::new("async-64-many", false),
        Figure::new("sync-16k", false),
        Figure::new("async-16k", false),
        Figure::new("sync-rtt", true),
        Figure::new("async-rtt", true),
    ];
    // `BENCH_ONLY`: the rows whose name contains one of these words (comma-separated).
    let only: Vec<String> = std::env::var("BENCH_ONLY")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| only.is_empty() || only.iter().any(|w| r.0.contains(w.as_str())))
        .collect();
    let used: Vec<usize> = (0..figs.len())
        .filter(|&i| rows.iter().any(|r| r.1 == i || r.2 == i))
        .collect();
    // One sample each to size the counts, not kept.
    for &i in &used {
        figs[i].take(false);
    }
    for _ in 0..reps {
        for &i in &used {
            figs[i].take(true);
        }
    }
    println!("load average {} at the end", load());
    println!(
        "{:<24} {:>30} {:>30} {:>10}  target",
        "", "sync median [min..max]", "async median [min..max]", "async/sync"
    );
    let mut failed = 0;
    for &(name, s, a, target) in &rows {
        let ((sm, smin, smax), (am, amin, amax)) = (figs[s].stats(), figs[a].stats());
        let rtt = figs[s].rtt;
        let ratio = am / sm;
        let pass = if rtt {
            ratio <= target
        } else {
            ratio >= target
        };
        failed += usize::from(!pass);
        let cell = |m: f64, lo: f64, hi: f64| {
            if rtt {
                format!("{m:.2} us [{lo:.2}..{hi:.2}]")
            } else {
                format!("{:.3} M/s [{:.3}..{:.3}]", m / 1e6, lo / 1e6, hi / 1e6)
            }
        };
        println!(
            "{name:<24} {:>30} {:>30} {ratio:>10.2}  {} {target}: {}",
            cell(sm, smin, smax),
            cell(am, amin, amax),
            if rtt { "<=" } else { ">=" },
            if pass { "pass" } else { "FAIL" }
        );
    }
    println!(
        "targets: {} of {} met (medians; throughput async/sync, round trip async/sync)",
        rows.len() - failed,
        rows.len()
    );
}
