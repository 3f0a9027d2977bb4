//! An async master spreads requests over 4 workers and awaits the answers (feature
//! `tokio`): `cargo run --release --features tokio --example async_fanout`.
//!
//! Each request is a number; a worker answers with its square. The master keeps up to 64
//! requests in flight per worker (sends wait when a worker's queue is full), matches each
//! answer to its request, checks them all, and stops the workers gracefully. The workers
//! run on multi-threaded runtimes and answer from spawned tasks.

use mln_ipc::api::tokio::{AsyncMaster, AsyncWorker, Builder};
use mln_ipc::api::Message;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A request: an id and a number.
struct Square {
    id: u64,
    n: u64,
}

/// The answer: the request's id and the square.
struct Squared {
    id: u64,
    sq: u64,
}

fn two(a: u64, b: u64) -> Vec<u8> {
    let mut v = a.to_le_bytes().to_vec();
    v.extend_from_slice(&b.to_le_bytes());
    v
}

fn parse(b: &[u8]) -> Option<(u64, u64)> {
    let a = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    let c = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
    Some((a, c))
}

impl Message for Square {
    const TYPE: u32 = 2100;
    fn encode(&self) -> Vec<u8> {
        two(self.id, self.n)
    }
    fn decode(b: &[u8]) -> Option<Self> {
        parse(b).map(|(id, n)| Square { id, n })
    }
}

impl Message for Squared {
    const TYPE: u32 = 2101;
    fn encode(&self) -> Vec<u8> {
        two(self.id, self.sq)
    }
    fn decode(b: &[u8]) -> Option<Self> {
        parse(b).map(|(id, sq)| Squared { id, sq })
    }
}

const REQUESTS: u64 = 100_000;
const WORKERS: u32 = 4;

async fn worker(w: AsyncWorker) {
    // The stream ends when the master stops this worker gracefully.
    while let Some(frame) = w.recv().await {
        let Some(req) = frame.decode::<Square>() else {
            continue;
        };
        let w = w.clone();
        // Answered from a task of the multi-threaded runtime.
        tokio::spawn(async move {
            let ans = Squared {
                id: req.id,
                sq: req.n * req.n,
            };
            let _ = w.send_message(&ans).await;
        });
    }
}

async fn master(m: AsyncMaster) {
    let ids = m.workers();
    let t0 = Instant::now();
    let mut pending: HashMap<u64, u64> = HashMap::new();
    let mut next = 0u64;
    let mut answered = 0u64;
    while answered < REQUESTS {
        // Keep the pipeline full: at most 64 in flight per worker.
        while next < REQUESTS && pending.len() < 64 * ids.len() {
            let to = ids[(next % ids.len() as u64) as usize];
            m.send_message(to, &Square { id: next, n: next })
                .await
                .expect("send");
            pending.insert(next, next);
            next += 1;
        }
        let (_, frame) = m.recv().await.expect("answer");
        let ans = frame.decode::<Squared>().expect("an answer");
        let n = pending
            .remove(&ans.id)
            .expect("an answer to a pending request");
        assert_eq!(ans.sq, n * n);
        answered += 1;
    }
    let took = t0.elapsed();
    println!(
        "{REQUESTS} requests over {} workers answered in {took:.2?} ({:.0} req/s)",
        ids.len(),
        REQUESTS as f64 / took.as_secs_f64()
    );
    m.shutdown(Duration::from_secs(5)).await;
}

fn main() {
    let summary = Builder::new()
        .workers(WORKERS)
        .master_types([Squared::TYPE])
        .worker_types([Square::TYPE])
        .worker_runtime(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        })
        .run(worker, master)
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    println!("all workers stopped cleanly");
}
