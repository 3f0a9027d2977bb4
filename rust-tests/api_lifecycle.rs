//! Workers that end while the master is running: `Worker::stop` gets to exit by itself
//! (status 0, its output flushed), and a worker that stops or exits while the master's
//! queue to it is blocked is replaced by a worker that lives on. Safe API only.

mod common;

use mln_ipc::api::{Builder, Error, Master, Worker, WorkerId};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

const HELLO: u32 = 4901;
const QUIT: u32 = 4902;
const HALT: u32 = 4903;
const FILL: u32 = 4904;
const PING: u32 = 4905;
const PONG: u32 = 4906;

const STOP_WORKERS: u32 = 10;
const STOP_ROUNDS: usize = 2;

/// Helper of `stop_exits_by_itself`: every worker prints a marker without a newline and
/// calls `Worker::stop`, twice per slot; the master prints the pids that stopped.
fn sub_stop_rounds() {
    let stopped = Rc::new(RefCell::new(Vec::<u32>::new()));
    let s = stopped.clone();
    let summary = Builder::new()
        .workers(STOP_WORKERS)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(QUIT, |w: &mut Worker, _: &[u8]| {
            print!("<bye {}>", w.pid());
            w.stop();
        })
        .on_master(HELLO, {
            let mut per_slot: BTreeMap<usize, usize> = BTreeMap::new();
            move |m: &mut Master, from: WorkerId, _: &[u8]| {
                let n = per_slot.entry(from.index()).or_default();
                *n += 1;
                if *n <= STOP_ROUNDS {
                    s.borrow_mut().push(from.pid());
                    m.send_to(from, QUIT, []).expect("quit");
                } else if per_slot.values().all(|&n| n > STOP_ROUNDS) {
                    m.stop();
                }
            }
        })
        .run()
        .expect("run");
    assert_eq!(summary.killed, vec![]);
    let pids: Vec<String> = stopped.borrow().iter().map(u32::to_string).collect();
    println!("\nstopped: {}", pids.join(","));
}

/// `Worker::stop` is never SIGKILLed: every stopped worker printed its marker and exited
/// with status 0 (the master's log says how each child ended).
fn stop_exits_by_itself() {
    let out = common::output_of("sub_stop_rounds", &[("MLN_IPC_LOG", "info")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stopped: "))
        .expect("the list of stopped pids");
    let pids: Vec<&str> = line.split(',').collect();
    assert_eq!(pids.len(), STOP_WORKERS as usize * STOP_ROUNDS);
    for pid in &pids {
        assert!(
            stdout.contains(&format!("<bye {pid}>")),
            "worker {pid} lost its output\n{stdout}"
        );
    }
    assert!(!stderr.contains("SIGKILL"), "{stderr}");
    assert_eq!(
        stderr.matches(" exited with status 0 (").count(),
        pids.len(),
        "{stderr}"
    );
}

/// A worker that stops (first generation) or exits (second) while the master's queue to
/// it is blocked: each replacement lives on; the third generation answers a ping after
/// the exit grace of the core has passed, and is the one that exits at the end.
fn blocked_queue_then_stop() {
    let gens = Rc::new(RefCell::new(Vec::<WorkerId>::new()));
    let g = gens.clone();
    let summary = Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(HALT, |w: &mut Worker, b: &[u8]| {
            if b == b"stop" {
                w.stop();
            } else {
                std::process::exit(3);
            }
        })
        .on_worker(PING, |w: &mut Worker, _: &[u8]| {
            w.send(PONG, []).expect("pong");
        })
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            let mut g = g.borrow_mut();
            g.push(from);
            match g.len() {
                1 | 2 => {
                    let how: &[u8] = if g.len() == 1 { b"stop" } else { b"exit" };
                    m.send_to(from, HALT, how).expect("halt");
                    // 8 MiB behind it: more than the socket buffers and what the worker
                    // reads before it ends, so the queue is blocked when it goes. A send
                    // may wait for the worker to read; once a write to it failed (it is
                    // gone), the rest are refused.
                    for _ in 0..128 {
                        match m.send_to(from, FILL, vec![7u8; 64 << 10]) {
                            Ok(()) => {}
                            Err(Error::PeerGone) => break,
                            Err(e) => panic!("fill: {e}"),
                        }
                    }
                }
                3 => {
                    // No message can say "nobody will kill this process": give a stale
                    // kill (the core's exit grace is 1 s) the time to happen.
                    m.after(Duration::from_millis(1500), move |m: &mut Master| {
                        m.send_to(from, PING, []).expect("ping");
                    })
                    .expect("timer");
                }
                _ => panic!("a fourth generation: the third was killed"),
            }
        })
        .on_master(PONG, |m: &mut Master, _: WorkerId, _: &[u8]| m.stop())
        .run()
        .expect("run");
    let g = gens.borrow();
    assert_eq!(g.len(), 3);
    assert_eq!(summary.exited, vec![g[2]]);
    assert_eq!(summary.killed, vec![]);
}

fn main() -> ExitCode {
    common::main(&[
        ("sub_stop_rounds", sub_stop_rounds),
        ("stop_exits_by_itself", stop_exits_by_itself),
        ("blocked_queue_then_stop", blocked_queue_then_stop),
    ])
}
