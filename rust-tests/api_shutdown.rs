//! The end of `Builder::run` in the master: workers that do not exit by themselves within
//! the stop timeout are killed, frames that could not be written are counted, and the
//! returned `RunSummary` says all of it. Safe API only.

mod common;

use mln_ipc::api::{Builder, Master, Worker, WorkerId};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const HELLO: u32 = 5101;
const BUSY: u32 = 5102;
const DATA: u32 = 5103;

const TIMEOUT: Duration = Duration::from_millis(400);

/// Worker 0 is stuck in a handler when the master stops; worker 1 is idle. `run` returns
/// once worker 1 exited by itself and worker 0 was killed, and says which.
fn busy_worker_is_killed() {
    let mut ids = Vec::new();
    let started = Instant::now();
    let summary = Builder::new()
        .workers(2)
        .stop_timeout(TIMEOUT)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(BUSY, |_: &mut Worker, _: &[u8]| loop {
            // Busy for good (the scenario, not a synchronisation).
            std::thread::sleep(Duration::from_secs(3600));
        })
        .on_master(HELLO, {
            let mut seen = Vec::new();
            move |m: &mut Master, from: WorkerId, _: &[u8]| {
                seen.push(from);
                if seen.len() == 2 {
                    // BUSY is written before the channel closes, so worker 0 reads it (and
                    // is stuck) before it could see the end of stream.
                    m.send_to(m.worker(0).expect("worker 0"), BUSY, [])
                        .expect("busy");
                    m.stop();
                }
            }
        })
        .run()
        .expect("run");
    ids.extend(summary.killed.iter().chain(&summary.exited).copied());
    assert_eq!(summary.killed.len(), 1, "{summary:?}");
    assert_eq!(summary.killed[0].index(), 0, "{summary:?}");
    assert_eq!(summary.exited.len(), 1, "{summary:?}");
    assert_eq!(summary.exited[0].index(), 1, "{summary:?}");
    assert!(summary.undelivered.is_empty(), "{summary:?}");
    assert!(!summary.is_clean());
    for w in ids {
        assert!(common::stat_of(w.pid()).is_none(), "{w} still there");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Frames still queued at the stop timeout (the worker is stuck, its socket is full) are
/// counted per worker in the summary instead of only being logged.
fn undelivered_are_reported() {
    const FRAMES: usize = 2000;
    let summary = Builder::new()
        .workers(2)
        .stop_timeout(TIMEOUT)
        .on_worker(BUSY, |_: &mut Worker, _: &[u8]| loop {
            std::thread::sleep(Duration::from_secs(3600));
        })
        .on_master_start(|m: &mut Master| {
            let w = m.worker(1).expect("worker 1");
            m.send_to(w, BUSY, []).expect("busy");
            for _ in 0..FRAMES {
                m.send_to(w, DATA, vec![1u8; 8 << 10]).expect("data");
            }
            m.stop();
        })
        .run()
        .expect("run");
    assert_eq!(summary.undelivered.len(), 1, "{summary:?}");
    let (w, n) = summary.undelivered[0];
    assert_eq!(w.index(), 1);
    // The socket buffers and the worker's first read took some; most are left.
    assert!(n > FRAMES / 2 && n <= FRAMES, "{n} undelivered");
    assert_eq!(summary.undelivered_frames(), n);
    assert_eq!(summary.killed, vec![w]);
    assert_eq!(summary.exited.len(), 1);
}

/// A stop with nothing queued and idle workers: a clean summary.
fn clean_stop() {
    let summary = Builder::new()
        .workers(3)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_master(HELLO, {
            let mut n = 0;
            move |m: &mut Master, _: WorkerId, _: &[u8]| {
                n += 1;
                if n == 3 {
                    m.stop();
                }
            }
        })
        .run()
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    let mut idx: Vec<usize> = summary.exited.iter().map(|w| w.index()).collect();
    idx.sort();
    assert_eq!(idx, vec![0, 1, 2]);
    assert_eq!(common::children(), vec![]);
}

/// A stop timeout too long for the clock (`Duration::MAX`) is a far deadline, not a panic,
/// in the master and in a worker; the worker's last frame, queued before its `stop`,
/// arrives.
fn longest_stop_timeout() {
    const BYE: u32 = 5903;
    const LAST: u32 = 5904;
    let summary = Builder::new()
        .workers(1)
        .stop_timeout(Duration::MAX)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(BYE, |w: &mut Worker, _: &[u8]| {
            w.send(LAST, *b"bye").expect("last");
            w.stop();
        })
        .on_master(HELLO, |m: &mut Master, from: WorkerId, _: &[u8]| {
            m.send_to(from, BYE, []).expect("bye")
        })
        .on_master(LAST, |m: &mut Master, _: WorkerId, b: &[u8]| {
            assert_eq!(b, b"bye");
            m.stop();
        })
        .run()
        .expect("run");
    assert!(summary.killed.is_empty(), "{summary:?}");
    assert_eq!(common::children(), vec![]);
}

fn main() -> ExitCode {
    common::main(&[
        ("busy_worker_is_killed", busy_worker_is_killed),
        ("undelivered_are_reported", undelivered_are_reported),
        ("clean_stop", clean_stop),
        ("longest_stop_timeout", longest_stop_timeout),
    ])
}
