//! Backpressure and counters: a send past the queue limit is `QueueFull`; the writable
//! callback of that side runs once the queue drained; `stats` counts both directions.
//! A peer is held still by a blocking read on a socket pair made before `run` (inherited
//! by the fork), released by the other side once it saw `QueueFull`. Safe API only.

mod common;

use mln_ipc::api::{Builder, Error, Master, Worker, WorkerId};
use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::rc::Rc;

const HELLO: u32 = 5401;
const HOLD: u32 = 5402;
const DATA: u32 = 5403;
const DONE: u32 = 5404;
const FLOOD: u32 = 5405;
const REPORT: u32 = 5406;

const LIMIT: usize = 1 << 20;
const FRAME: usize = 32 << 10;

/// Blocks until the other end writes a byte.
fn wait_for_release(s: &mut UnixStream) {
    let mut b = [0u8; 1];
    s.read_exact(&mut b).expect("release");
}

/// Master to worker: the worker is held in a handler; the master queues until
/// `QueueFull`, releases it, and its writable callback names that worker once the queue
/// drained; the master then reads the counters.
fn master_side() {
    let (mut hold, mut release) = UnixStream::pair().expect("pair");
    let refused_at = Rc::new(Cell::new(0usize));
    let writable = Rc::new(RefCell::new(Vec::<WorkerId>::new()));
    let (r1, r2, wr) = (refused_at.clone(), refused_at.clone(), writable.clone());
    Builder::new()
        .workers(1)
        .max_message(FRAME + 64)
        .queue_limit(LIMIT)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(HOLD, move |_: &mut Worker, _: &[u8]| {
            wait_for_release(&mut hold)
        })
        .on_worker(DONE, |w: &mut Worker, _: &[u8]| {
            let s = w.stats();
            w.send(REPORT, s.frames_received.to_le_bytes())
                .expect("report");
        })
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            m.send_to(from, HOLD, []).expect("hold");
            let mut sent = 1;
            loop {
                match m.send_to(from, DATA, vec![0u8; FRAME]) {
                    Ok(()) => sent += 1,
                    Err(Error::QueueFull) => break,
                    Err(e) => panic!("send: {e}"),
                }
                assert!(sent < 10_000, "never QueueFull");
            }
            r1.set(sent);
            let s = m.stats(from).expect("stats");
            assert_eq!(s.sends_refused, 1);
            assert!(s.queued_bytes > 0 && s.queued_bytes as usize <= LIMIT);
            release.write_all(b"x").expect("release");
        })
        .on_master_writable(move |m: &mut Master, to: WorkerId| {
            wr.borrow_mut().push(to);
            let s = m.stats(to).expect("stats");
            assert!(s.queued_bytes as usize <= LIMIT / 2, "{s:?}");
            m.send_to(to, DONE, []).expect("done");
        })
        .on_master(REPORT, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            let got = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            // HOLD, the DATA frames accepted, DONE.
            assert_eq!(got, r2.get() as u64 + 1);
            let s = m.stats(from).expect("stats");
            assert_eq!(s.frames_sent, got);
            assert_eq!(s.frames_received, 2); // HELLO, REPORT
            assert_eq!(s.queued_frames, 0);
            assert!(s.queue_peak_bytes as usize >= LIMIT / 2);
            assert_eq!(s.restarts, 0);
            m.stop();
        })
        .run()
        .expect("run");
    assert_eq!(writable.borrow().len(), 1);
    assert!(refused_at.get() > 1);
}

/// Worker to master: the master is held in a handler; the worker floods until
/// `QueueFull`, releases the master, and its writable callback runs once drained.
fn worker_side() {
    let (mut hold, mut release) = UnixStream::pair().expect("pair");
    let got = Rc::new(Cell::new(0u64));
    let g = got.clone();
    // The worker's own count of the frames it queued (its copy of this cell).
    let sent = Rc::new(Cell::new(0u64));
    let s2 = sent.clone();
    Builder::new()
        .workers(1)
        .max_message(FRAME + 64)
        .queue_limit(LIMIT)
        .on_master(HOLD, move |_: &mut Master, _: WorkerId, _: &[u8]| {
            wait_for_release(&mut hold)
        })
        .on_worker_start(move |w: &mut Worker| {
            w.send(HOLD, []).expect("hold");
            let mut n = 1u64;
            loop {
                match w.send(FLOOD, vec![0u8; FRAME]) {
                    Ok(()) => n += 1,
                    Err(Error::QueueFull) => break,
                    Err(e) => panic!("send: {e}"),
                }
                assert!(n < 10_000, "never QueueFull");
            }
            sent.set(n);
            let s = w.stats();
            assert_eq!(s.sends_refused, 1);
            assert!(s.queued_bytes > 0 && s.queued_bytes as usize <= LIMIT);
            release.write_all(b"x").expect("release");
        })
        .on_worker_writable(move |w: &mut Worker| {
            assert!(w.stats().queued_bytes as usize <= LIMIT / 2);
            w.send(DONE, s2.get().to_le_bytes()).expect("done");
        })
        .on_master(FLOOD, move |_: &mut Master, _: WorkerId, _: &[u8]| {
            g.set(g.get() + 1);
        })
        .on_master(DONE, |m: &mut Master, from: WorkerId, b: &[u8]| {
            let sent = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            let s = m.stats(from).expect("stats");
            // HOLD, the FLOOD frames, DONE.
            assert_eq!(s.frames_received, sent + 1);
            m.stop();
        })
        .run()
        .expect("run");
    assert!(got.get() > 1);
}

/// The Rust API is never paced: a master streaming 256 KiB frames to a worker that takes
/// 10 ms for each never waits in `send_to` (its stats say 0 ns waited; before, each send
/// past 4 MiB queued waited for the worker, up to 95 ms a call), gets `QueueFull` at the
/// limit, and the writable callback resumes until every frame arrived in order.
fn never_paced() {
    const BIG: usize = 256 << 10;
    const TOTAL: u32 = 64;
    let next = Rc::new(Cell::new(0u32));
    let n1 = next.clone();
    let refusals = Rc::new(Cell::new(0u32));
    let (q1, q2) = (refusals.clone(), refusals.clone());
    // Sends until refused or done; the next frame to send is `next`.
    fn pump(m: &mut Master, to: WorkerId, next: &Cell<u32>, refusals: &Cell<u32>) {
        while next.get() < TOTAL {
            let mut frame = vec![0u8; BIG];
            frame[..4].copy_from_slice(&next.get().to_le_bytes());
            match m.send_to(to, DATA, frame) {
                Ok(()) => next.set(next.get() + 1),
                Err(Error::QueueFull) => {
                    refusals.set(refusals.get() + 1);
                    return;
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    }
    let n2 = next.clone();
    Builder::new()
        .workers(1)
        .max_message(BIG + 64)
        .queue_limit(4 << 20)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(DATA, {
            let mut expect = 0u32;
            move |w: &mut Worker, b: &[u8]| {
                assert_eq!(b.len(), BIG);
                assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()), expect);
                expect += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
                if expect == TOTAL {
                    w.send(DONE, []).expect("done");
                }
            }
        })
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            pump(m, from, &n1, &q1)
        })
        .on_master_writable(move |m: &mut Master, to: WorkerId| pump(m, to, &n2, &q2))
        .on_master(DONE, |m: &mut Master, from: WorkerId, _: &[u8]| {
            let s = m.stats(from).expect("stats");
            assert_eq!(s.paced_ns, 0, "{s:?}");
            assert_eq!(s.frames_sent, u64::from(TOTAL));
            m.stop();
        })
        .run()
        .expect("run");
    assert_eq!(next.get(), TOTAL);
    assert!(refusals.get() >= 1);
}

/// `stats` of a worker that was restarted counts the restart; a gone worker has none.
fn stats_after_restart() {
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(DONE, |w: &mut Worker, _: &[u8]| w.stop())
        .on_master(HELLO, {
            let mut first: Option<WorkerId> = None;
            move |m: &mut Master, from: WorkerId, _: &[u8]| match first {
                None => {
                    first = Some(from);
                    assert_eq!(m.stats(from).expect("stats").restarts, 0);
                    m.send_to(from, DONE, []).expect("done");
                }
                Some(old) => {
                    assert!(m.stats(old).is_none());
                    let s = m.stats(from).expect("stats");
                    assert_eq!(s.restarts, 1);
                    assert_eq!(s.frames_received, 1);
                    m.stop();
                }
            }
        })
        .run()
        .expect("run");
}

fn main() -> ExitCode {
    common::main(&[
        ("master_side", master_side),
        ("worker_side", worker_side),
        ("stats_after_restart", stats_after_restart),
        ("never_paced", never_paced),
    ])
}
