//! Workers that die are restarted and keep their index: one stops on command (clean exit),
//! one aborts (killed by a signal), one is killed with `kill -KILL <pid>`. The replacements
//! answer; the dead processes' `WorkerId`s give `PeerGone`. Safe API only.

mod common;

use mln_ipc::api::{Builder, Error, Master, Worker, WorkerId};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;

const HELLO: u32 = 4301;
const QUIT: u32 = 4302;
const ABORT: u32 = 4303;
const PING: u32 = 4304;
const PONG: u32 = 4305;
const WORKERS: usize = 3;

#[derive(Default)]
struct Seen {
    first: BTreeMap<usize, WorkerId>,
    second: BTreeMap<usize, WorkerId>,
    pongs: BTreeMap<usize, WorkerId>,
}

fn restart() {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let summary = Builder::new()
        .workers(WORKERS as u32)
        .on_worker_start(|w: &mut Worker| {
            w.send(HELLO, []).expect("hello");
        })
        .on_worker(QUIT, |w: &mut Worker, _: &[u8]| w.stop())
        .on_worker(ABORT, |_: &mut Worker, _: &[u8]| std::process::abort())
        .on_worker(PING, |w: &mut Worker, _: &[u8]| {
            w.send(PONG, []).expect("pong");
        })
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            let mut s = s1.borrow_mut();
            if s.first.len() < WORKERS {
                assert!(s.first.insert(from.index(), from).is_none());
                if s.first.len() == WORKERS {
                    m.send_to(s.first[&0], QUIT, []).expect("quit");
                    m.send_to(s.first[&1], ABORT, []).expect("abort");
                    let pid = s.first[&2].pid().to_string();
                    // Waited for: `run` leaves SIGCHLD's disposition alone.
                    let st = std::process::Command::new("kill")
                        .args(["-KILL", &pid])
                        .status()
                        .expect("kill");
                    assert!(st.success());
                }
                return;
            }
            // A replacement: same index as a dead worker, another process.
            let old = s.first[&from.index()];
            assert_ne!(old.pid(), from.pid());
            assert!(
                s.second.insert(from.index(), from).is_none(),
                "{from} twice"
            );
            assert!(matches!(m.send_to(old, PING, []), Err(Error::PeerGone)));
            m.send_to(from, PING, []).expect("ping");
        })
        .on_master(PONG, move |m: &mut Master, from: WorkerId, _: &[u8]| {
            let mut s = s2.borrow_mut();
            assert_eq!(s.second.get(&from.index()), Some(&from));
            s.pongs.insert(from.index(), from);
            if s.pongs.len() == WORKERS {
                assert_eq!(m.workers(), s.second.values().copied().collect::<Vec<_>>());
                m.stop();
            }
        })
        .run()
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    assert_eq!(summary.exited.len(), WORKERS);
    let s = seen.borrow();
    assert_eq!(s.second.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(s.pongs.len(), WORKERS);
}

fn main() -> ExitCode {
    common::main(&[("worker_killed_and_restarted", restart)])
}
