//! Descriptors through the channel (issue 23), the Rust API: `send_with_fds` both ways with
//! pipes, `take_fds`, descriptors a handler did not take are closed when it returns, 253 in
//! one message arrive and 254 are `InvalidArgument` (nothing queued), and `QueueFull` at
//! the per-peer descriptor limit. Pipes tell what happened: the side that keeps a pipe's
//! read end sees what the other wrote through the write end it was sent, then end of file
//! once every copy of the write end is closed.
//!
//! `unsafe` only for the one C setting the Rust API has no builder method for:
//! `mln_ipc_fds_limit_set` (the `queue_full_at_fds_limit` scenario).

mod common;

use mln_ipc::api::{Builder, End, Error, Master, Worker, WorkerEvent, WorkerId};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::stat::fstat;
use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::rc::Rc;

const HELLO: u32 = 8801;
const GIVE: u32 = 8802;
const NOTAKE: u32 = 8803;
const BACK: u32 = 8804;
const UNTAKEN: u32 = 8805;
const CHECK: u32 = 8806;
const DONE: u32 = 8807;
const MANY: u32 = 8808;
const HOLD: u32 = 8809;
const FILL: u32 = 8810;
const FDS: u32 = 8811;
const END: u32 = 8812;
const REPORT: u32 = 8813;
const SYNC: u32 = 8814;

/// A pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = std::io::pipe().expect("pipe");
    (r.into(), w.into())
}

fn cloexec(fd: &OwnedFd) -> bool {
    let fl = fcntl(fd.as_fd(), FcntlArg::F_GETFD).expect("F_GETFD");
    FdFlag::from_bits_truncate(fl).contains(FdFlag::FD_CLOEXEC)
}

fn write_to(fd: OwnedFd, bytes: &[u8]) {
    File::from(fd).write_all(bytes).expect("write");
}

/// What is readable at once in pipe `r` (non-blocking): `Some(bytes)` (empty at end of
/// file), `None` if nothing is there yet and some write end is still open.
fn read_now(r: &OwnedFd, n: usize) -> Option<Vec<u8>> {
    fcntl(r.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("O_NONBLOCK");
    let mut f = File::from(r.try_clone().expect("dup"));
    let mut buf = vec![0u8; n];
    match f.read(&mut buf) {
        Ok(k) => {
            buf.truncate(k);
            Some(buf)
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Err(e) => panic!("read: {e}"),
    }
}

/// Pipe `r` holds exactly `want`, then end of file.
fn expect_then_eof(r: &OwnedFd, want: &[u8]) {
    if !want.is_empty() {
        assert_eq!(read_now(r, want.len()).as_deref(), Some(want));
    }
    assert_eq!(
        read_now(r, 1).as_deref(),
        Some(&[][..]),
        "a write end is still open"
    );
}

fn same_file(a: &OwnedFd, b: &OwnedFd) -> bool {
    let (x, y) = (
        fstat(a.as_fd()).expect("fstat"),
        fstat(b.as_fd()).expect("fstat"),
    );
    x.st_dev == y.st_dev && x.st_ino == y.st_ino
}

/// One worker; a worker that crashes (a failed assertion aborts it) fails the scenario at
/// once, instead of being restarted until the watchdog.
fn one_worker() -> Builder {
    Builder::new()
        .workers(1)
        .on_worker_event(|_: &mut Master, e: &WorkerEvent| {
            if let WorkerEvent::Exited {
                how: End::Crashed, ..
            } = e
            {
                panic!("worker crashed: {e:?}");
            }
        })
}

#[derive(Default)]
struct MasterSide {
    give: Option<OwnedFd>,
    notake: Option<OwnedFd>,
}

#[derive(Default)]
struct WorkerSide {
    back: Option<OwnedFd>,
    untaken: Option<OwnedFd>,
}

/// A pipe each way, taken and used; one each way not taken (closed after the handler).
fn both_ways() {
    let ms = Rc::new(RefCell::new(MasterSide::default()));
    let ws = Rc::new(RefCell::new(WorkerSide::default()));
    let (m1, m2, m3) = (ms.clone(), ms.clone(), ms.clone());
    let (w1, w2) = (ws.clone(), ws.clone());
    one_worker()
        .on_worker_start(|w: &mut Worker| {
            assert!(w.take_fds().is_empty()); // not in a handler
            w.send(HELLO, []).expect("hello")
        })
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            assert!(m.take_fds().is_empty() && !m.fds_truncated());
            let (r, w) = pipe();
            let (rn, wn) = pipe();
            m.send_with_fds(from, GIVE, b"give", vec![w]).expect("give");
            m.send_with_fds(from, NOTAKE, [], vec![wn]).expect("notake");
            let mut s = m1.borrow_mut();
            s.give = Some(r);
            s.notake = Some(rn);
        })
        .on_worker(GIVE, move |w: &mut Worker, b: &[u8]| {
            assert_eq!(b, b"give");
            assert!(!w.fds_truncated());
            let mut fds = w.take_fds();
            assert_eq!(fds.len(), 1);
            assert!(w.take_fds().is_empty()); // taken already
            let fd = fds.pop().expect("one");
            assert!(cloexec(&fd));
            write_to(fd, b"from worker");
            let (r2, wr2) = pipe();
            let (r3, wr3) = pipe();
            w.send_with_fds(BACK, b"back", vec![wr2]).expect("back");
            w.send_with_fds(UNTAKEN, [], vec![wr3]).expect("untaken");
            // Handled once UNTAKEN's handler has returned.
            w.send(SYNC, []).expect("sync");
            let mut s = w1.borrow_mut();
            s.back = Some(r2);
            s.untaken = Some(r3);
        })
        .on_worker(NOTAKE, |_: &mut Worker, _: &[u8]| {}) // does not take it
        .on_master(BACK, move |m: &mut Master, _: WorkerId, b: &[u8]| {
            assert_eq!(b, b"back");
            let mut fds = m.take_fds();
            assert_eq!(fds.len(), 1);
            let fd = fds.pop().expect("one");
            assert!(cloexec(&fd));
            write_to(fd, b"x");
            // The worker wrote through the master's pipe and closed it; the library's
            // copy is closed too.
            expect_then_eof(m2.borrow().give.as_ref().expect("give"), b"from worker");
        })
        .on_master(UNTAKEN, |_: &mut Master, _: WorkerId, _: &[u8]| {}) // does not take it
        .on_master(SYNC, |m: &mut Master, from: WorkerId, _: &[u8]| {
            m.send_to(from, CHECK, []).expect("check")
        })
        .on_worker(CHECK, move |w: &mut Worker, _: &[u8]| {
            let s = w2.borrow();
            expect_then_eof(s.back.as_ref().expect("back"), b"x");
            expect_then_eof(s.untaken.as_ref().expect("untaken"), b"");
            let st = w.stats();
            assert_eq!((st.fds_sent, st.fds_received, st.fds_lost), (2, 2, 0));
            w.send(DONE, []).expect("done");
        })
        .on_master(DONE, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            expect_then_eof(m3.borrow().notake.as_ref().expect("notake"), b"");
            let st = m.stats(from).expect("stats");
            assert_eq!((st.fds_sent, st.fds_received, st.fds_lost), (2, 2, 0));
            m.stop();
        })
        .run()
        .expect("run");
}

/// 253 in one message arrive (copies of one pipe's write end: one file); 254 are refused
/// with `InvalidArgument` before anything is queued, and closed (moved into the call).
fn limits() {
    let keep = Rc::new(RefCell::new(None::<OwnedFd>));
    let k1 = keep.clone();
    one_worker()
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            let (r, w) = pipe();
            let copies = |n: usize| -> Vec<OwnedFd> {
                (0..n).map(|_| w.try_clone().expect("dup")).collect()
            };
            let before = m.stats(from).expect("stats");
            let many = copies(254);
            let r254 = m.send_with_fds(from, MANY, [], many);
            assert!(matches!(r254, Err(Error::InvalidArgument(_))), "{r254:?}");
            let after = m.stats(from).expect("stats");
            assert_eq!(before, after);
            m.send_with_fds(from, MANY, [], copies(253)).expect("253");
            m.send_with_fds(from, MANY, [], Vec::new())
                .expect("none: a plain send");
            drop(w);
            *k1.borrow_mut() = Some(r);
        })
        .on_worker(MANY, {
            let mut n = 0;
            move |w: &mut Worker, _: &[u8]| {
                let fds = w.take_fds();
                n += 1;
                if n == 2 {
                    assert!(fds.is_empty());
                    w.send(DONE, []).expect("done");
                    return;
                }
                assert_eq!(fds.len(), 253);
                assert!(fds.iter().all(|f| same_file(f, &fds[0]) && cloexec(f)));
                let mut fds = fds;
                write_to(fds.pop().expect("253"), b"253");
                // The 252 others close here.
            }
        })
        .on_master(DONE, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            // Every copy closed: the master's, the library's, the worker's 253.
            expect_then_eof(keep.borrow().as_ref().expect("pipe"), b"253");
            let st = m.stats(from).expect("stats");
            assert_eq!((st.fds_sent, st.sends_refused), (253, 0));
            m.stop();
        })
        .run()
        .expect("run");
}

/// The master's descriptor limit (64, set through the C API): a worker held still behind
/// 8 MiB of plain messages; messages of 5 descriptors are accepted until the next would go
/// beyond 64 queued (12), which is `QueueFull`; released, the worker gets all 60, and the
/// writable callback runs.
fn queue_full_at_fds_limit() {
    const PER: usize = 5;
    const FILL_LEN: usize = 1 << 20;
    // SAFETY: a plain setter of a process-wide setting, called before `run` (no loop, no
    // other thread); it reads no memory of ours.
    assert_eq!(unsafe { mln_ipc::capi::fds::mln_ipc_fds_limit_set(64) }, 0);
    let (mut hold, mut release) = UnixStream::pair().expect("pair");
    let accepted = Rc::new(Cell::new(0usize));
    let (a1, a2) = (accepted.clone(), accepted.clone());
    let pipes = Rc::new(RefCell::new(Vec::<OwnedFd>::new()));
    let (p1, p2) = (pipes.clone(), pipes.clone());
    let writable = Rc::new(Cell::new(0u32));
    let wr = writable.clone();
    one_worker()
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(HOLD, move |_: &mut Worker, _: &[u8]| {
            let mut b = [0u8; 1];
            hold.read_exact(&mut b).expect("release");
        })
        .on_worker(FILL, |w: &mut Worker, b: &[u8]| {
            assert_eq!(b.len(), FILL_LEN);
            assert!(w.take_fds().is_empty());
        })
        .on_worker(FDS, {
            let mut next = 0u32;
            move |w: &mut Worker, b: &[u8]| {
                let seq = u32::from_le_bytes(b.try_into().expect("4 bytes"));
                assert_eq!(seq, next);
                next += 1;
                let mut fds = w.take_fds();
                assert_eq!(fds.len(), PER);
                write_to(fds.pop().expect("5"), &seq.to_le_bytes());
            }
        })
        .on_worker(END, |w: &mut Worker, _: &[u8]| {
            let st = w.stats();
            w.send(REPORT, st.fds_received.to_le_bytes())
                .expect("report");
        })
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            m.send_to(from, HOLD, []).expect("hold");
            for _ in 0..8 {
                m.send_to(from, FILL, vec![0u8; FILL_LEN]).expect("fill");
            }
            loop {
                let seq = a1.get() as u32;
                let (r, w) = pipe();
                let fds = (0..PER).map(|_| w.try_clone().expect("dup")).collect();
                match m.send_with_fds(from, FDS, seq.to_le_bytes(), fds) {
                    Ok(()) => {
                        a1.set(a1.get() + 1);
                        p1.borrow_mut().push(r);
                    }
                    Err(Error::QueueFull) => break,
                    Err(e) => panic!("send: {e}"),
                }
                assert!(a1.get() <= 64, "never QueueFull");
            }
            assert_eq!(a1.get(), 64 / PER);
            let st = m.stats(from).expect("stats");
            assert_eq!((st.sends_refused, st.fds_sent), (1, 0));
            release.write_all(b"x").expect("release");
        })
        .on_master_writable(move |m: &mut Master, to: WorkerId| {
            wr.set(wr.get() + 1);
            m.send_to(to, END, []).expect("end");
        })
        .on_master(REPORT, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            let got = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            assert_eq!(got, (a2.get() * PER) as u64);
            for (i, r) in p2.borrow().iter().enumerate() {
                expect_then_eof(r, &(i as u32).to_le_bytes());
            }
            assert_eq!(m.stats(from).expect("stats").fds_sent, got);
            m.stop();
        })
        .run()
        .expect("run");
    assert_eq!(writable.get(), 1);
}

/// `send_with_borrowed_fds`: the worker gets a copy and writes through it; the master's
/// own write end stays open (no end of file until the master closes it too).
fn borrowed() {
    let (r, w) = pipe();
    let w = Rc::new(w);
    let (r, w1, w2) = (Rc::new(r), w.clone(), w);
    let r1 = r.clone();
    Builder::new()
        .workers(1)
        .on_worker(GIVE, |w: &mut Worker, _: &[u8]| {
            let fds = w.take_fds();
            assert_eq!(fds.len(), 1);
            for fd in fds {
                write_to(fd, b"copy");
            }
            w.send(DONE, []).expect("done");
        })
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            if let WorkerEvent::Started { id, .. } = e {
                m.send_with_borrowed_fds(*id, GIVE, [], &[w1.as_fd()])
                    .expect("send");
            }
        })
        .on_master(DONE, move |m: &mut Master, _: WorkerId, _: &[u8]| {
            assert_eq!(read_now(&r1, 4).as_deref(), Some(&b"copy"[..]));
            // Ours is still open: nothing more, and no end of file.
            assert_eq!(read_now(&r1, 1), None);
            m.stop();
        })
        .run()
        .expect("run");
    // Still ours (the closure's clone lives as long as the process: handlers are never
    // dropped), and still open.
    assert!(fstat(w2.as_fd()).is_ok());
    drop(r);
}

fn main() -> ExitCode {
    common::main(&[
        ("both_ways", both_ways),
        ("borrowed", borrowed),
        ("limits", limits),
        ("queue_full_at_fds_limit", queue_full_at_fds_limit),
    ])
}
