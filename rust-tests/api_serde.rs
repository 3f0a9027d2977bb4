//! Typed messages through serde (feature `serde`, `api::SerdeMessage`): serde types go
//! master -> worker -> master unchanged over real processes, in order; frames of such a type
//! that do not decode (cut short, bytes left over, bad UTF-8, a bad variant, lengths far
//! beyond the payload, a varint that does not end) are dropped, logged with the reason and
//! counted in `Stats::undecoded` on the side that receives them, without a panic or a large
//! allocation, and the next good frame still arrives; a value that does not encode is
//! `Error::Encode` and queues nothing. Also a measure, `bench_codec` (run it by name:
//! `cargo test --release --features serde --test api_serde -- bench_codec`): encode +
//! decode of a small struct with postcard against a hand-written `Message`. Safe API only.

mod common;

use mln_ipc::api::{Builder, Error, Master, Message, SerdeMessage, Worker, WorkerId};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Shape {
    Point,
    Circle { r: f64 },
    Poly(Vec<(i32, i32)>),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Inner {
    name: String,
    tags: Vec<String>,
    note: Option<String>,
    shape: Shape,
}

/// Strings, vectors, options, maps, nested structs and enums, a recursive field.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Record {
    id: u64,
    neg: i64,
    flag: bool,
    ch: char,
    bytes: Vec<u8>,
    inner: Vec<Inner>,
    map: BTreeMap<String, Option<u32>>,
    nested: Option<Box<Record>>,
}
impl SerdeMessage for Record {
    const TYPE: u32 = 2100;
}

/// A record as a worker got it, with the worker's pid.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Echo {
    pid: u32,
    rec: Record,
}
impl SerdeMessage for Echo {
    const TYPE: u32 = 2101;
}

/// A hand-written `Message` in the same program as serde ones.
struct Count(u32);
impl Message for Count {
    const TYPE: u32 = 2102;
    fn encode(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn decode(b: &[u8]) -> Option<Self> {
        Some(Count(common::u32_at(b, 0)?))
    }
}

fn sample(i: u64) -> Record {
    let inner = |k: u64| Inner {
        name: format!("inner {k} héllo ✓"),
        tags: (0..k % 4).map(|t| format!("t{t}")).collect(),
        note: k.is_multiple_of(2).then(String::new),
        shape: match k % 3 {
            0 => Shape::Point,
            1 => Shape::Circle { r: k as f64 * 0.5 },
            _ => Shape::Poly(vec![(-1, 2), (i32::MIN, i32::MAX)]),
        },
    };
    Record {
        id: if i == 0 { u64::MAX } else { i },
        neg: -(i as i64) - 1,
        flag: i % 2 == 1,
        ch: ['a', 'é', '✓', '🦀'][i as usize % 4],
        bytes: (0..(i * 37 % 300) as u8).collect(),
        inner: (0..i % 5).map(|k| inner(k + i)).collect(),
        map: (0..i % 3)
            .map(|k| (format!("k{k}"), k.is_multiple_of(2).then_some(k as u32)))
            .collect(),
        nested: i.is_multiple_of(3).then(|| {
            Box::new(Record {
                nested: Some(Box::new(Record {
                    id: 1,
                    neg: 0,
                    flag: false,
                    ch: '\0',
                    bytes: vec![],
                    inner: vec![],
                    map: BTreeMap::new(),
                    nested: None,
                })),
                ..sample_flat(i + 1)
            })
        }),
    }
}

fn sample_flat(i: u64) -> Record {
    Record {
        nested: None,
        ..sample(i * 3 + 1)
    }
}

const WORKERS: u32 = 2;
const RECORDS: u64 = 24;

/// Records broadcast to 2 workers come back from each, equal and in order; a hand-written
/// `Message` works beside them.
fn round_trip() {
    let got: Rc<RefCell<BTreeMap<usize, Vec<Record>>>> = Rc::default();
    let g = got.clone();
    let counts: Rc<RefCell<Vec<u32>>> = Rc::default();
    let c = counts.clone();
    let summary = Builder::new()
        .workers(WORKERS)
        .on_master_start(|m: &mut Master| {
            for i in 0..RECORDS {
                let n = m.broadcast_message(&sample(i)).expect("broadcast");
                assert_eq!(n.sent(), WORKERS as usize);
            }
            assert!(m
                .broadcast_message(&Count(RECORDS as u32))
                .expect("count")
                .all_sent());
        })
        .on_worker_message(|w: &mut Worker, rec: Record| {
            let pid = w.pid();
            w.send_message(&Echo { pid, rec }).expect("echo");
        })
        .on_worker_message(|w: &mut Worker, c: Count| {
            w.send_message(&Count(c.0 + 1000)).expect("count back");
        })
        .on_master_message(move |_: &mut Master, from: WorkerId, e: Echo| {
            assert_eq!(e.pid, from.pid());
            g.borrow_mut().entry(from.index()).or_default().push(e.rec);
        })
        .on_master_message(move |m: &mut Master, _: WorkerId, n: Count| {
            // After every echo of that worker (one channel, in order).
            let mut c = c.borrow_mut();
            c.push(n.0);
            if c.len() == WORKERS as usize {
                m.stop();
            }
        })
        .run()
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    assert_eq!(
        *counts.borrow(),
        vec![RECORDS as u32 + 1000; WORKERS as usize]
    );
    let want: Vec<Record> = (0..RECORDS).map(sample).collect();
    let got = got.borrow();
    assert_eq!(got.len(), WORKERS as usize);
    for (index, recs) in got.iter() {
        assert!(*recs == want, "worker {index}: records differ");
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Seq {
    n: u32,
    text: String,
    pad: Vec<u16>,
}
impl SerdeMessage for Seq {
    const TYPE: u32 = 2110;
}

const MANY: u32 = 10_000;

fn seq(n: u32) -> Seq {
    Seq {
        n,
        text: n.to_string(),
        pad: vec![n as u16; (n % 7) as usize],
    }
}

/// 10,000 typed messages master -> worker arrive in order and intact, and the worker's
/// 10,000 answers reach the master in order too.
fn ten_thousand_in_order() {
    let done = Rc::new(RefCell::new(0u32));
    let d = done.clone();
    let summary = Builder::new()
        .workers(1)
        .on_master_start(|m: &mut Master| {
            let w = m.worker(0).expect("worker 0");
            for n in 0..MANY {
                m.send_message_to(w, &seq(n)).expect("send");
            }
        })
        .on_worker_message({
            let mut next = 0u32;
            move |w: &mut Worker, s: Seq| {
                // Out of order or damaged: answer with a number the master does not expect.
                let n = if s == seq(next) { next } else { u32::MAX };
                next += 1;
                w.send_message(&seq(n)).expect("answer");
            }
        })
        .on_master_message(move |m: &mut Master, _: WorkerId, s: Seq| {
            let mut d = d.borrow_mut();
            assert_eq!(s, seq(*d), "answer {} out of order or damaged", *d);
            *d += 1;
            if *d == MANY {
                m.stop();
            }
        })
        .run()
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    assert_eq!(*done.borrow(), MANY);
}

/// The type the bad frames pretend to be.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Probe {
    name: String,
    shape: Shape,
    items: Vec<u64>,
}
// A constant of its own, as `PROBE` is ambiguous in a module that has both
// `Message` and `SerdeMessage` in scope.
const PROBE: u32 = 2120;
impl SerdeMessage for Probe {
    const TYPE: u32 = PROBE;
}

/// What the side that received the bad frames saw, sent once the good probe arrived.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Seen {
    pid: u32,
    undecoded: u64,
    probe: Probe,
    /// Growth of the process's peak virtual size (VmPeak) across the bad frames, KiB.
    peak_growth_kib: u64,
}
impl SerdeMessage for Seen {
    const TYPE: u32 = 2121;
}

fn good_probe() -> Probe {
    Probe {
        name: "good".into(),
        shape: Shape::Circle { r: 2.0 },
        items: vec![1, 300, u64::MAX],
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// Payloads of type `PROBE` that are not one `Probe`: each is dropped and counted.
fn bad_payloads() -> Vec<(&'static str, Vec<u8>)> {
    let good = good_probe().encode();
    let mut trailing = good.clone();
    trailing.push(0);
    let mut bad_utf8 = vec![4, 0xff, 0xfe, 0xfd, 0xfc];
    bad_utf8.extend_from_slice(&good[5..]);
    let mut huge_vec = vec![0, 0]; // name "", Shape::Point
    huge_vec.extend(varint(1 << 60)); // items: 2^60 of them, then 3 bytes
    huge_vec.extend([1, 2, 3]);
    let mut huge_vec_fits = vec![0, 0]; // 2^28 u64 (2 GiB) if preallocated, 3 bytes here
    huge_vec_fits.extend(varint(1 << 28));
    huge_vec_fits.extend([1, 2, 3]);
    let mut huge_str = varint(1 << 60); // name: 2^60 bytes, then 1
    huge_str.push(b'a');
    vec![
        ("empty", vec![]),
        ("cut short", good[..good.len() - 1].to_vec()),
        ("a byte left over", trailing),
        ("bad utf-8", bad_utf8),
        ("bad variant", vec![0, 9, 0]),
        ("2^60 elements", huge_vec),
        ("2^28 elements", huge_vec_fits),
        ("2^60 bytes", huge_str),
        ("endless varint", vec![0xff; 11]),
    ]
}

/// The process's peak virtual size so far, KiB (a decoder that reserved room for a length
/// it was told, not for the bytes it has, would raise it by gigabytes).
fn vm_peak_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmPeak:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmPeak")
}

/// The most a process's peak may grow over the bad frames (the receive buffer is reused).
const PEAK_LIMIT_KIB: u64 = 64 << 10;

/// Master -> worker: the bad frames, then a good one; the worker reports its count.
fn sub_bad_frames_to_worker() {
    let seen: Rc<RefCell<Option<(WorkerId, Seen)>>> = Rc::default();
    let s = seen.clone();
    let peak_before = Rc::new(std::cell::Cell::new(0));
    let p = peak_before.clone();
    let summary = Builder::new()
        .workers(1)
        .on_master_start(|m: &mut Master| {
            let w = m.worker(0).expect("worker 0");
            for (_, bytes) in bad_payloads() {
                m.send_to(w, PROBE, bytes).expect("send raw");
            }
            m.send_message_to(w, &good_probe()).expect("send good");
        })
        .on_worker_start(move |_: &mut Worker| p.set(vm_peak_kib()))
        .on_worker_message(move |w: &mut Worker, probe: Probe| {
            let seen = Seen {
                pid: w.pid(),
                undecoded: w.stats().undecoded,
                probe,
                peak_growth_kib: vm_peak_kib().saturating_sub(peak_before.get()),
            };
            w.send_message(&seen).expect("report");
        })
        .on_master_message(move |m: &mut Master, from: WorkerId, seen: Seen| {
            let restarts = m.stats(from).expect("stats").restarts;
            assert_eq!(restarts, 0, "the worker died");
            *s.borrow_mut() = Some((from, seen));
            m.stop();
        })
        .run()
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    let (from, seen) = seen.borrow_mut().take().expect("a report");
    assert_eq!(seen.pid, from.pid());
    assert_eq!(seen.probe, good_probe());
    assert_eq!(seen.undecoded, bad_payloads().len() as u64, "undecoded");
    assert!(
        seen.peak_growth_kib < PEAK_LIMIT_KIB,
        "the worker's peak grew by {} KiB",
        seen.peak_growth_kib
    );
}

/// Worker -> master: the same, counted on the master's channel to that worker.
fn sub_bad_frames_to_master() {
    let result: Rc<RefCell<Option<(u64, Probe, u64)>>> = Rc::default();
    let r = result.clone();
    let peak_before = vm_peak_kib();
    let summary = Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| {
            for (_, bytes) in bad_payloads() {
                w.send(PROBE, bytes).expect("send raw");
            }
            w.send_message(&good_probe()).expect("send good");
        })
        .on_master_message(move |m: &mut Master, from: WorkerId, probe: Probe| {
            let st = m.stats(from).expect("stats");
            let growth = vm_peak_kib().saturating_sub(peak_before);
            *r.borrow_mut() = Some((st.undecoded, probe, growth));
            m.stop();
        })
        .run()
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    let (undecoded, probe, growth) = result.borrow_mut().take().expect("the good probe");
    assert_eq!(probe, good_probe());
    assert_eq!(undecoded, bad_payloads().len() as u64, "undecoded");
    assert!(
        growth < PEAK_LIMIT_KIB,
        "the master's peak grew by {growth} KiB"
    );
}

/// Runs `sub` with warn-level logging and checks what it logged: one line per bad frame,
/// each with its reason.
fn check_logged(sub: &str, from: &str) {
    let out = common::output_of(sub, &[("MLN_IPC_LOG", "warn")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{sub} failed:\n{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(&format!("type {}: ", PROBE)))
        .collect();
    assert_eq!(lines.len(), bad_payloads().len(), "{err}");
    for l in &lines {
        assert!(l.contains(from) && l.contains("do not decode ("), "{l}");
    }
    for reason in [
        "Hit the end of buffer",
        "1 bytes left after the value",
        "invalid utf-8",
        "didn't terminate",
    ] {
        assert!(lines.iter().any(|l| l.contains(reason)), "{reason}:\n{err}");
    }
}

fn bad_frames_to_worker() {
    check_logged("sub_bad_frames_to_worker", "from the master");
}

fn bad_frames_to_master() {
    check_logged("sub_bad_frames_to_master", "from worker");
}

/// `#[serde(flatten)]` serializes as a map of unknown length, which postcard refuses.
#[derive(Serialize, Deserialize)]
struct Unencodable {
    #[serde(flatten)]
    extra: BTreeMap<String, u32>,
}
const UNENCODABLE: u32 = 2130;
impl SerdeMessage for Unencodable {
    const TYPE: u32 = UNENCODABLE;
}

/// What the worker saw: its send refused with `Error::Encode`, and frames of the
/// unencodable type it received (none).
#[derive(Serialize, Deserialize)]
struct EncodeReport {
    refused: bool,
    received: u32,
    undecoded: u64,
}
impl SerdeMessage for EncodeReport {
    const TYPE: u32 = 2131;
}

#[derive(Serialize, Deserialize)]
struct Go;
impl SerdeMessage for Go {
    const TYPE: u32 = 2132;
}

fn unencodable() -> Unencodable {
    Unencodable {
        extra: [("a".to_string(), 1)].into_iter().collect(),
    }
}

/// A value postcard cannot write is `Error::Encode` on every typed send, and nothing is
/// queued: the peer gets no frame of that type, and the next message goes through.
fn encode_refused() {
    let report: Rc<RefCell<Option<(EncodeReport, u32)>>> = Rc::default();
    let r = report.clone();
    let master_got = Rc::new(RefCell::new(0u32));
    let g = master_got.clone();
    let summary = Builder::new()
        .workers(1)
        .on_master_start(|m: &mut Master| {
            let w = m.worker(0).expect("worker 0");
            let e = m.send_message_to(w, &unencodable());
            assert!(
                matches!(&e, Err(Error::Encode(why)) if why.contains("length")),
                "{e:?}"
            );
            let e = m.broadcast_message(&unencodable());
            assert!(matches!(e, Err(Error::Encode(_))), "{e:?}");
            // Called directly, encode() has no error to give: no bytes (and a log line).
            assert!(unencodable().encode().is_empty());
            assert!(unencodable().try_encode().is_err());
            assert_eq!(m.stats(w).expect("stats").queued_frames, 0);
            m.send_message_to(w, &Go).expect("go");
        })
        // A frame of that type would come back to the master, which counts them.
        .on_worker(UNENCODABLE, |w: &mut Worker, _: &[u8]| {
            let _ = w.send(UNENCODABLE, []);
        })
        .on_worker_message(|w: &mut Worker, _: Go| {
            let refused = matches!(w.send_message(&unencodable()), Err(Error::Encode(_)));
            let st = w.stats();
            let report = EncodeReport {
                refused,
                received: st.frames_received as u32,
                undecoded: st.undecoded,
            };
            w.send_message(&report).expect("report");
        })
        .on_master(UNENCODABLE, move |_: &mut Master, _: WorkerId, _: &[u8]| {
            *g.borrow_mut() += 1;
        })
        .on_master_message(move |m: &mut Master, from: WorkerId, rep: EncodeReport| {
            let received = m.stats(from).expect("stats").frames_received as u32;
            *r.borrow_mut() = Some((rep, received));
            m.stop();
        })
        .run()
        .expect("run");
    assert!(summary.is_clean(), "{summary:?}");
    let (rep, master_received) = report.borrow_mut().take().expect("a report");
    assert!(rep.refused, "the worker's send was not refused");
    // The worker received Go only; the master the report only.
    assert_eq!((rep.received, rep.undecoded), (1, 0));
    assert_eq!(master_received, 1);
    assert_eq!(*master_got.borrow(), 0);
}

/// A typical small message: a few numbers and a short name.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Small {
    id: u32,
    qty: u32,
    price: i64,
    name: String,
}
impl SerdeMessage for Small {
    const TYPE: u32 = 2140;
}

/// The same by hand: fixed little-endian fields, then the name's bytes.
#[derive(Debug, PartialEq)]
struct SmallByHand(Small);
impl Message for SmallByHand {
    const TYPE: u32 = 2141;
    fn encode(&self) -> Vec<u8> {
        let s = &self.0;
        let mut v = Vec::with_capacity(16 + s.name.len());
        v.extend_from_slice(&s.id.to_le_bytes());
        v.extend_from_slice(&s.qty.to_le_bytes());
        v.extend_from_slice(&s.price.to_le_bytes());
        v.extend_from_slice(s.name.as_bytes());
        v
    }
    fn decode(b: &[u8]) -> Option<Self> {
        Some(SmallByHand(Small {
            id: u32::from_le_bytes(b.get(0..4)?.try_into().ok()?),
            qty: u32::from_le_bytes(b.get(4..8)?.try_into().ok()?),
            price: i64::from_le_bytes(b.get(8..16)?.try_into().ok()?),
            name: String::from_utf8(b.get(16..)?.to_vec()).ok()?,
        }))
    }
}

fn small(i: u32) -> Small {
    Small {
        id: i,
        qty: i % 1000,
        price: -(i as i64) * 1000,
        name: "ACME-ORD".into(),
    }
}

/// Nanoseconds per encode + decode of `M` (the best of 7 passes over the same values, made
/// outside the timed part), and the size of one payload.
fn codec_ns<M: Message>(make: impl Fn(u32) -> M) -> (f64, usize) {
    const N: u32 = 200_000;
    let values: Vec<M> = (0..N).map(make).collect();
    let size = values[0].encode().len();
    let mut best = f64::MAX;
    for _ in 0..7 {
        let t = std::time::Instant::now();
        for v in &values {
            let bytes = std::hint::black_box(v.encode());
            std::hint::black_box(M::decode(&bytes).expect("decode"));
        }
        best = best.min(t.elapsed().as_nanos() as f64 / N as f64);
    }
    (best, size)
}

/// Encode + decode of a small struct: postcard through `SerdeMessage`, and by hand.
fn bench_codec() {
    let (serde, serde_len) = codec_ns(small);
    let (hand, hand_len) = codec_ns(|i| SmallByHand(small(i)));
    println!(
        "encode + decode of a small struct: SerdeMessage (postcard) {serde:.1} ns \
         ({serde_len} bytes), hand-written Message {hand:.1} ns ({hand_len} bytes)"
    );
}

fn main() -> ExitCode {
    common::main(&[
        ("round_trip", round_trip),
        ("ten_thousand_in_order", ten_thousand_in_order),
        ("bad_frames_to_worker", bad_frames_to_worker),
        ("bad_frames_to_master", bad_frames_to_master),
        ("sub_bad_frames_to_worker", sub_bad_frames_to_worker),
        ("sub_bad_frames_to_master", sub_bad_frames_to_master),
        ("encode_refused", encode_refused),
        ("bench_codec", bench_codec),
    ])
}
