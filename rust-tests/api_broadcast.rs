//! Broadcast from a Rust master to 4 Rust workers: every worker gets it exactly once, and
//! the identities the master sees are consistent. Safe API only.

mod common;

use mln_ipc::api::{Builder, Master, Worker, WorkerId};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;

const HELLO: u32 = 4201;
const BCAST: u32 = 4202;
const ECHO: u32 = 4203;
const WORKERS: usize = 4;

#[derive(Default)]
struct Seen {
    hellos: BTreeMap<usize, WorkerId>,
    echoes: BTreeMap<usize, Vec<u8>>,
}

fn broadcast() {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let (s1, s2) = (seen.clone(), seen.clone());
    Builder::new()
        .workers(WORKERS as u32)
        .on_worker_start(|w: &mut Worker| {
            let pid = w.pid();
            w.send(HELLO, pid.to_le_bytes()).expect("hello");
        })
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            assert_eq!(common::u32_at(b, 0), Some(from.pid()));
            let mut s = s1.borrow_mut();
            assert!(
                s.hellos.insert(from.index(), from).is_none(),
                "two hellos from {from}"
            );
            if s.hellos.len() == WORKERS {
                assert_eq!(m.workers(), s.hellos.values().copied().collect::<Vec<_>>());
                assert_eq!(
                    m.broadcast(BCAST, b"to everyone")
                        .expect("broadcast")
                        .sent(),
                    WORKERS
                );
            }
        })
        .on_worker(BCAST, |w: &mut Worker, b: &[u8]| {
            let mut reply = w.pid().to_le_bytes().to_vec();
            reply.extend_from_slice(b);
            w.send(ECHO, reply).expect("echo");
        })
        .on_master(ECHO, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            let mut s = s2.borrow_mut();
            assert_eq!(s.hellos.get(&from.index()), Some(&from));
            assert_eq!(common::u32_at(b, 0), Some(from.pid()));
            assert!(
                s.echoes.insert(from.index(), b[4..].to_vec()).is_none(),
                "{from} got the broadcast twice"
            );
            if s.echoes.len() == WORKERS {
                m.stop();
            }
        })
        .run()
        .expect("run");
    let s = seen.borrow();
    assert_eq!(
        s.hellos.keys().copied().collect::<Vec<_>>(),
        (0..WORKERS).collect::<Vec<_>>()
    );
    assert_eq!(s.echoes.len(), WORKERS);
    assert!(s.echoes.values().all(|e| e == b"to everyone"));
}

fn main() -> ExitCode {
    common::main(&[("broadcast_to_4_workers", broadcast)])
}
