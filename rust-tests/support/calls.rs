//! Messages and helpers shared by `api_call` and `api_call_errors` (requests and
//! answers).
#![allow(dead_code)]

use mln_ipc::api::{Builder, CallError, Message, ReplyTo, Worker};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// Message types carrying two numbers.
macro_rules! msg {
    ($($name:ident = $ty:expr;)*) => {$(
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub u64, pub u64);
        impl Message for $name {
            const TYPE: u32 = $ty;
            fn encode(&self) -> Vec<u8> {
                [self.0.to_le_bytes(), self.1.to_le_bytes()].concat()
            }
            fn decode(b: &[u8]) -> Option<Self> {
                if b.len() != 16 {
                    return None;
                }
                Some($name(
                    u64::from_le_bytes(b[..8].try_into().ok()?),
                    u64::from_le_bytes(b[8..].try_into().ok()?),
                ))
            }
        }
    )*};
}

msg! {
    // (n, delay in ms: 0 answers at once, else from a timer)
    Echo = 2100;
    // (n, the answering process's pid)
    Echoed = 2101;
    // deferred and kept until `Release` (or the worker's quit)
    Hold = 2102;
    Release = 2103;
    Die = 2104;
    Quiet = 2105;
    Boom = 2106;
    Wrong = 2107;
    Other = 2108;
    Unhandled = 2109;
    DropIt = 2110;
    Misuse = 2111;
    Probe = 2112;
    Report = 2114;
    Ask = 2115;
    Answer = 2116;
    Relay = 2117;
    WorkerDone = 2118;
    Never = 2119;
}

/// Same type as `Echo`, but 3 bytes: the worker's typed handler cannot decode it.
pub struct BadEcho;
impl Message for BadEcho {
    const TYPE: u32 = Echo::TYPE;
    fn encode(&self) -> Vec<u8> {
        vec![1, 2, 3]
    }
    fn decode(_: &[u8]) -> Option<Self> {
        None
    }
}

/// Raw bytes.
pub struct Blob(pub Vec<u8>);
impl Message for Blob {
    const TYPE: u32 = 2113;
    fn encode(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn decode(b: &[u8]) -> Option<Self> {
        Some(Blob(b.to_vec()))
    }
}

/// Sets its flag when dropped: tells whether a callback was dropped (uncalled).
pub struct OnDrop(pub Rc<Cell<bool>>);
impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

pub type Outcome<T> = Result<T, CallError>;
/// What each call of `statuses` got.
pub type Outcomes = Rc<RefCell<Vec<(&'static str, Outcome<u64>)>>>;

/// Answers `Echo` with the same n and this worker's pid, at once or from a timer.
pub fn echo(w: &mut Worker, Echo(n, delay): Echo) {
    let pid = u64::from(w.pid());
    if delay == 0 {
        w.reply(&Echoed(n, pid)).expect("reply");
        return;
    }
    let t = w.defer_reply().expect("defer");
    assert!(w.defer_reply().is_none(), "deferred twice");
    w.after(Duration::from_millis(delay), move |w: &mut Worker| {
        w.reply_to(t, &Echoed(n, pid)).expect("reply_to")
    })
    .expect("after");
}

/// Holds every `Hold` call; `Release` answers them; `Die` aborts.
pub fn holder(b: Builder) -> Builder {
    let held: Rc<RefCell<Vec<(u64, ReplyTo)>>> = Rc::default();
    let h2 = held.clone();
    b.on_worker_message(move |w: &mut Worker, Hold(n, _)| {
        held.borrow_mut().push((n, w.defer_reply().expect("defer")));
    })
    .on_worker_message(move |w: &mut Worker, _: Release| {
        let pid = u64::from(w.pid());
        for (n, t) in h2.borrow_mut().drain(..) {
            w.reply_to(t, &Echoed(n, pid)).expect("reply_to");
        }
        w.send_message(&Release(0, 0)).expect("released");
    })
    .on_worker_message(|_: &mut Worker, _: Die| std::process::abort())
}
