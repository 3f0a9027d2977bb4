//! Adversarial scenarios against `SerdeMessage` (feature `serde`) used with calls: a
//! `Serialize` that panics or fails in a request or an answer, forged lengths inside
//! payloads (the docs: "reserves nothing ahead"), measured with a counting allocator.
//! Written from the docs only. A scenario marked `// DEFECT:` fails on purpose.

mod common;

use mln_ipc::api::{Builder, CallError, Error, Master, Message, SerdeMessage, Worker, WorkerId};
use serde::{Deserialize, Serialize, Serializer};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The largest single allocation since `LARGEST` was reset.
struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);
// SAFETY: forwards to the system allocator unchanged; only records the largest size.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Req {
    n: u64,
    mode: u8, // 0: answer; 1: answer panics in Serialize; 2: answer fails to encode
}
impl SerdeMessage for Req {
    const TYPE: u32 = 2300;
}

#[derive(Deserialize, Debug, PartialEq)]
struct Resp {
    n: u64,
    mode: u8,
}
impl Serialize for Resp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.mode {
            1 => panic!("adv-expected: serialize"),
            2 => Err(serde::ser::Error::custom("adv: refuses")),
            _ => (self.n, self.mode).serialize(s),
        }
    }
}
impl SerdeMessage for Resp {
    const TYPE: u32 = 2301;
}

/// A request whose `Serialize` panics or fails.
#[derive(Deserialize)]
struct BadReq(u8);
impl Serialize for BadReq {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        if self.0 == 1 {
            panic!("adv-expected: request");
        }
        Err(serde::ser::Error::custom("adv: request refuses"))
    }
}
impl SerdeMessage for BadReq {
    const TYPE: u32 = 2302;
}

/// Answers that panic or fail in `Serialize` inside the callee: the caller's callback
/// runs once each (`Panicked`; the refused answer leaves the call unanswered, so
/// `NoReply` when the handler returns); requests that fail to encode are `Err(Encode)`
/// synchronously, and one that panics in `Serialize` is the caller's own panic.
fn serialize_failures_in_calls() {
    common::expect_panics("adv-expected");
    let out: Rc<RefCell<Vec<String>>> = Rc::default();
    let o = out.clone();
    Builder::new()
        .workers(1)
        .call_timeout(Duration::from_secs(3))
        .on_worker_message(|w: &mut Worker, r: Req| {
            let res = w.reply(&Resp {
                n: r.n,
                mode: r.mode,
            });
            if r.mode == 2 {
                let ok = matches!(res, Err(Error::Encode(_)));
                w.send(2399, format!("reply refused with Encode: {ok}"))
                    .expect("report");
            }
        })
        .on_master(2399, {
            let o = out.clone();
            move |_: &mut Master, _: WorkerId, b: &[u8]| {
                o.borrow_mut().push(String::from_utf8_lossy(b).into_owned())
            }
        })
        .on_master_start(move |m: &mut Master| {
            let w: WorkerId = m.worker(0).expect("w0");
            let o2 = o.clone();
            let e = m.call(
                w,
                &BadReq(2),
                move |_: &mut Master, _: Result<Resp, CallError>| {
                    o2.borrow_mut().push("bad request callback ran".into())
                },
            );
            o.borrow_mut().push(format!(
                "encode refused: {}",
                matches!(e, Err(Error::Encode(_)))
            ));
            for mode in 0..3u8 {
                let o = o.clone();
                m.call(
                    w,
                    &Req { n: 5, mode },
                    move |m: &mut Master, r: Result<Resp, CallError>| {
                        o.borrow_mut().push(format!("{mode}: {r:?}"));
                        if mode == 2 {
                            m.after(Duration::from_millis(200), |m: &mut Master| m.stop())
                                .expect("after");
                        }
                    },
                )
                .expect("call");
            }
        })
        .run()
        .expect("run");
    // Was a defect (fixed): `Master::call` and `Worker::reply` did not refuse a value whose `Serialize`
    // fails (SerdeMessage: "a value whose Serialize fails ... is refused with
    // Error::Encode and nothing is queued"; Message::try_encode: the typed sends call it):
    // the call is sent (with the empty payload `encode` gives) and its callback runs; the
    // reply is sent as an empty answer that does not decode.
    assert_eq!(
        *out.borrow(),
        vec![
            "encode refused: true".to_string(),
            "0: Ok(Resp { n: 5, mode: 0 })".to_string(),
            "1: Err(Panicked)".to_string(),
            "reply refused with Encode: true".to_string(),
            "2: Err(NoReply)".to_string(),
        ]
    );
}

/// Forged lengths: a `Vec<u8>` / `String` / `Vec<u64>` / nested `Vec<Vec<u8>>` claiming
/// ~4 G elements in a few bytes. The docs (SerdeMessage): "A length inside the payload
/// beyond what the bytes left could hold reserves nothing ahead".
fn forged_lengths_reserve_nothing() {
    #[derive(Serialize, Deserialize)]
    struct Bytes(Vec<u8>);
    impl SerdeMessage for Bytes {
        const TYPE: u32 = 2310;
    }
    #[derive(Serialize, Deserialize)]
    struct Words(Vec<u64>);
    impl SerdeMessage for Words {
        const TYPE: u32 = 2311;
    }
    #[derive(Serialize, Deserialize)]
    struct Nested(Vec<Vec<u8>>);
    impl SerdeMessage for Nested {
        const TYPE: u32 = 2312;
    }
    let huge = [0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]; // varint 2^32-1, then 3 bytes
    let mut report = Vec::new();
    LARGEST.store(0, Ordering::Relaxed);
    assert!(<Bytes as Message>::try_decode(&huge).is_err());
    report.push(("Vec<u8>", LARGEST.swap(0, Ordering::Relaxed)));
    assert!(<Words as Message>::try_decode(&huge).is_err());
    report.push(("Vec<u64>", LARGEST.swap(0, Ordering::Relaxed)));
    // Outer: 3 inner vectors claimed; each inner claims 2^32-1 bytes.
    let nested = [3, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(<Nested as Message>::try_decode(&nested).is_err());
    report.push(("Vec<Vec<u8>>", LARGEST.swap(0, Ordering::Relaxed)));
    // DEFECT (if it fails): a forged length reserved memory ahead (the docs say nothing is
    // reserved beyond what the bytes left could hold; 4 KiB allows for the error text).
    assert!(
        report.iter().all(|&(_, n)| n <= 4096),
        "largest allocations: {report:?}"
    );
}

fn main() -> ExitCode {
    common::main(&[
        ("serialize_failures_in_calls", serialize_failures_in_calls),
        (
            "forged_lengths_reserve_nothing",
            forged_lengths_reserve_nothing,
        ),
    ])
}
