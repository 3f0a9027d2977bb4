//! A child whose state cannot be read is not dead (safe API). Two workers; worker A is
//! made busy for ever, then the master, with no descriptor left (RLIMIT_NOFILE lowered to
//! A's socket number and every number below filled, so that neither a pidfd nor
//! /proc/<pid>/stat can be opened once A's socket is closed), closes A's channel. A must
//! still be taken for alive: killed after its grace, reaped, and only then replaced. The
//! limit is given back 300 ms later (a step of the scenario: the restart needs
//! descriptors). When the replacement says hello, A's process must be gone (no /proc
//! entry: not a zombie either) and the master's children must be B and the replacement;
//! after `run` returns no child may be left, running or zombie.
//!
//! `unsafe` here: setrlimit, and the C API's `mln_fork_socketpair_close_handler` on the
//! raw handles (the safe API has no call that closes a live worker's channel).
//! The defect it was written for: the unreadable /proc was taken for A's death; its replacement
//! ran beside it and A was left running after `run` returned.

mod common;

use mln_ipc::api::{Builder, Master, Worker, WorkerId};
use mln_ipc::capi::fork::mln_fork_socketpair_close_handler;
use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

const HELLO: u32 = 4501;
const BUSY: u32 = 4502;
const ACK: u32 = 4503;

#[derive(Default)]
struct Seen {
    hellos: Vec<WorkerId>,
    fillers: Vec<OwnedFd>,
    raised: bool,
}

fn nofile() -> libc::rlimit {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit to write to.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    r
}

fn set_nofile(r: &libc::rlimit) {
    // SAFETY: `r` is a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, r) }, 0);
}

/// This process's children (by the ppid of /proc/<pid>/stat): (live, zombies).
fn children() -> (Vec<i32>, Vec<i32>) {
    let me = std::process::id() as i32;
    let (mut live, mut zombies) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut f = stat[close + 1..].split_whitespace();
        let state = f.next().unwrap_or("");
        if f.next().and_then(|p| p.parse::<i32>().ok()) != Some(me) {
            continue;
        }
        if state == "Z" {
            zombies.push(pid);
        } else {
            live.push(pid);
        }
    }
    (live, zombies)
}

fn busy_worker_closed_without_descriptors() {
    let saved = nofile();
    let seen = Rc::new(RefCell::new(Seen::default()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let summary = Builder::new()
        .workers(2)
        .on_worker_start(|w: &mut Worker| {
            w.send(HELLO, []).expect("hello");
        })
        .on_worker(BUSY, |w: &mut Worker, _: &[u8]| {
            // The acknowledgement is written when this handler returns; then the timer
            // blocks for ever.
            w.send(ACK, []).expect("ack");
            w.after(Duration::ZERO, |_| loop {
                std::thread::sleep(Duration::from_secs(3600));
            })
            .expect("timer");
        })
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            let mut s = s1.borrow_mut();
            s.hellos.push(from);
            match s.hellos.len() {
                1 => m.send_to(from, BUSY, []).expect("busy"),
                2 => {}
                _ => {
                    // The replacement: A must be gone, and reaped.
                    assert!(s.raised, "replaced while no descriptor was free");
                    let (a, b) = (s.hellos[0], s.hellos[1]);
                    assert_eq!(from.index(), a.index());
                    assert!(
                        !std::path::Path::new(&format!("/proc/{}", a.pid())).exists(),
                        "worker {} (pid {}) still there beside its replacement",
                        a.index(),
                        a.pid()
                    );
                    let (mut live, zombies) = children();
                    live.sort_unstable();
                    let mut want = vec![b.pid() as i32, from.pid() as i32];
                    want.sort_unstable();
                    assert_eq!((live, zombies), (want, vec![]));
                    m.stop();
                }
            }
        })
        .on_master(ACK, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            let f = m.as_raw_fork(from).expect("live");
            // SAFETY: a live child's record (valid until the loop handles its death).
            let fd = unsafe { (*f).conn.sockfd };
            let mut s = s2.borrow_mut();
            set_nofile(&libc::rlimit {
                rlim_cur: fd as libc::rlim_t,
                rlim_max: saved.rlim_max,
            });
            let stdin = std::io::stdin();
            while let Ok(d) = stdin.as_fd().try_clone_to_owned() {
                s.fillers.push(d);
            }
            // SAFETY: the loop and record given by the API, on the loop thread.
            unsafe { mln_fork_socketpair_close_handler(m.as_raw_event_loop(), f, fd) };
            drop(s);
            let s3 = s2.clone();
            m.after(Duration::from_millis(300), move |_| {
                let mut s = s3.borrow_mut();
                set_nofile(&saved);
                s.fillers.clear();
                s.raised = true;
            })
            .expect("timer");
        })
        .run()
        .expect("run");
    assert_eq!(seen.borrow().hellos.len(), 3, "{summary:?}");
    assert_eq!(children(), (vec![], vec![]));
}

fn main() -> ExitCode {
    common::main(&[(
        "busy_worker_closed_without_descriptors",
        busy_worker_closed_without_descriptors,
    )])
}
