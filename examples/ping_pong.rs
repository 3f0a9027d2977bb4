//! `cargo run --example ping_pong`: a master and three workers play ping-pong with typed
//! messages; each worker counts the balls it returned (state kept in its handler); after
//! ROUNDS rounds the master asks every worker for its count, prints the totals and stops.
//! The workers exit by themselves once the master is gone; `run` returns a summary of how
//! the stop went.

use mln_ipc::api::{Builder, Error, Master, Message, Worker, WorkerId};

const WORKERS: u32 = 3;
const ROUNDS: u32 = 5;
const REPORT: u32 = 5003;

/// A ball with its hit count.
struct Ball(u32);

impl Message for Ball {
    const TYPE: u32 = 5001;
    fn encode(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Ball(u32::from_le_bytes(bytes.try_into().ok()?)))
    }
}

/// The same ball on its way back (another type, so each side has one handler per type).
struct Return(u32);

impl Message for Return {
    const TYPE: u32 = 5002;
    fn encode(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Return(u32::from_le_bytes(bytes.try_into().ok()?)))
    }
}

fn main() -> Result<(), Error> {
    let mut done = 0;
    let mut reports = 0;
    let summary = Builder::new()
        .workers(WORKERS)
        .on_master_start(|m: &mut Master| {
            for w in m.workers() {
                println!("master: serving to {w}");
            }
            assert!(m.broadcast_message(&Ball(0)).expect("broadcast").all_sent());
        })
        .on_worker_message({
            let mut returned = 0u32; // this worker's own count
            move |w: &mut Worker, ball: Ball| {
                returned += 1;
                if ball.0 == u32::MAX {
                    // The master asks for the count.
                    let _ = w.send(REPORT, returned.to_le_bytes());
                    return;
                }
                let _ = w.send_message(&Return(ball.0 + 1));
            }
        })
        .on_master_message(move |m: &mut Master, from: WorkerId, ball: Return| {
            if ball.0 < ROUNDS {
                m.send_message_to(from, &Ball(ball.0)).expect("send");
                return;
            }
            done += 1;
            if done == WORKERS {
                println!("master: {ROUNDS} rounds played with each worker");
                assert!(m
                    .broadcast_message(&Ball(u32::MAX))
                    .expect("broadcast")
                    .all_sent());
            }
        })
        .on_master(
            REPORT,
            move |m: &mut Master, from: WorkerId, bytes: &[u8]| {
                let n = u32::from_le_bytes(bytes.try_into().unwrap_or_default());
                println!("master: {from} handled {n} messages");
                reports += 1;
                if reports == WORKERS {
                    println!("master: bye");
                    m.stop();
                }
            },
        )
        .run()?;
    // Stopping closed every channel; the workers exited by themselves.
    assert!(summary.is_clean(), "{summary:?}");
    println!("master: {} workers exited", summary.exited.len());
    Ok(())
}
