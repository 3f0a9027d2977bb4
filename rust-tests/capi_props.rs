//! The C API driven by random call sequences in one process (the bounded in-tree version of
//! the `fuzz/` C API target): register, unregister, handler set, install, prepare, and sends
//! with random lengths (NULL buffers and unframeable lengths included) to a live worker
//! forked at start. Every call's return value is checked against its documented contract,
//! and every send that returned 0 must arrive at the worker exactly once, in order, intact
//! (the worker echoes each payload's length and checksum).
//!
//! Then, with a counting allocator: a worker announces a frame of the maximum size but sends
//! only a few bytes of it; the master must not allocate anything near the announced size
//! for it (memory grows only with bytes that arrived, DECISIONS.md D3), and the frame is
//! delivered intact once the rest arrives.
//!
//! No test harness (`harness = false`): the process forks, so it must stay single-threaded.
//! It prints one line per property and fails by panicking (non-zero exit); no summary line.
//! `PROPTEST_CASES` sets the number of sequences (default 64).
#![cfg(feature = "standalone")]

use core::ffi::c_void;
use core::ptr::{self, null_mut};
use mln_ipc::abi::*;
use mln_ipc::capi::event::*;
use mln_ipc::capi::fork::*;
use mln_ipc::capi::ipc::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

// ----------------------------------------------------------------------------------------
// Counting allocator: the largest single allocation while TRACK is on.
// ----------------------------------------------------------------------------------------

struct Counting;
static TRACK: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if TRACK.load(Ordering::Relaxed) {
            LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if TRACK.load(Ordering::Relaxed) {
            LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if TRACK.load(Ordering::Relaxed) {
            LARGEST.fetch_max(n, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// ----------------------------------------------------------------------------------------
// Protocol between this master and its worker.
// ----------------------------------------------------------------------------------------

/// Largest length field accepted (type + payload): small, so refusals are cheap to reach.
const MAX: usize = 1 << 20;
/// Master -> worker: a payload to acknowledge.
const T_DATA: u32 = 61001;
/// Worker -> master: `[len u64][checksum u64]` of one T_DATA payload.
const T_ACK: u32 = 61002;
/// Master -> worker: write a raw header announcing a MAX frame, plus 8 of its bytes.
const T_RAW: u32 = 61003;
/// Master -> worker: write the rest of that frame.
const T_RAW_REST: u32 = 61004;
/// Worker -> master: the big frame.
const T_BIG: u32 = 61005;
/// Types the random registrations use (never the ones above).
const FIRST_RANDOM_TYPE: u32 = 62000;

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

fn slice<'a>(buf: *mut c_void, len: u32) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: the library hands handlers `len` readable bytes at `buf`.
    unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) }
}

fn master_fd_write(b: &[u8]) {
    // SAFETY: the master connection is never NULL (what the C macro
    // `mln_tcp_conn_fd_get` reads).
    let fd = unsafe { (*mln_fork_master_connection_get()).sockfd };
    let mut off = 0;
    while off < b.len() {
        // SAFETY: valid buffer.
        let n = unsafe { libc::write(fd, b[off..].as_ptr().cast(), b.len() - off) };
        if n < 0 {
            std::thread::sleep(std::time::Duration::from_micros(100));
            continue;
        }
        off += n as usize;
    }
}

unsafe extern "C" fn worker_data(
    ev: *mut mln_event_t,
    _f: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _u: *mut *mut c_void,
) {
    let mut ack = [0u8; 16];
    ack[..8].copy_from_slice(&u64::from(len).to_ne_bytes());
    ack[8..].copy_from_slice(&fnv(slice(buf, len)).to_ne_bytes());
    // SAFETY: live loop, valid buffer.
    let r = unsafe { mln_ipc_worker_send_prepare(ev, T_ACK, ack.as_mut_ptr().cast(), 16) };
    assert_eq!(r, 0);
}

unsafe extern "C" fn worker_raw(
    _ev: *mut mln_event_t,
    _f: *mut c_void,
    _buf: *mut c_void,
    _len: u32,
    _u: *mut *mut c_void,
) {
    let mut h = Vec::new();
    h.extend_from_slice(&(MAX as u32).to_ne_bytes());
    h.extend_from_slice(&T_BIG.to_ne_bytes());
    h.extend_from_slice(&[0xAB; 8]);
    master_fd_write(&h);
}

unsafe extern "C" fn worker_raw_rest(
    _ev: *mut mln_event_t,
    _f: *mut c_void,
    _buf: *mut c_void,
    _len: u32,
    _u: *mut *mut c_void,
) {
    master_fd_write(&vec![0xAB; MAX - 4 - 8]);
}

fn worker_main() -> ! {
    // SAFETY: a fresh loop for the worker, as the framework does.
    unsafe {
        let ev = mln_event_new();
        assert!(!ev.is_null());
        mln_fork_worker_events_set(ev);
        mln_event_dispatch(ev);
    }
    std::process::exit(0)
}

// ----------------------------------------------------------------------------------------
// Master side.
// ----------------------------------------------------------------------------------------

static ACKS: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
static WANT: AtomicUsize = AtomicUsize::new(0);
static BIG: Mutex<Option<(usize, bool)>> = Mutex::new(None);

fn set_break(ev: *mut mln_event_t) {
    // SAFETY: what the C macro `mln_event_break_set` does.
    unsafe { (*ev).is_break = 1 };
}

unsafe extern "C" fn master_ack(
    ev: *mut mln_event_t,
    _f: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _u: *mut *mut c_void,
) {
    let b = slice(buf, len);
    assert_eq!(b.len(), 16);
    let l = u64::from_ne_bytes(b[..8].try_into().unwrap());
    let s = u64::from_ne_bytes(b[8..].try_into().unwrap());
    let mut acks = ACKS.lock().unwrap();
    acks.push((l, s));
    if acks.len() >= WANT.load(Ordering::Relaxed) {
        set_break(ev);
    }
}

unsafe extern "C" fn master_big(
    ev: *mut mln_event_t,
    _f: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _u: *mut *mut c_void,
) {
    let b = slice(buf, len);
    *BIG.lock().unwrap() = Some((b.len(), b.iter().all(|&x| x == 0xAB)));
    set_break(ev);
}

unsafe extern "C" fn dummy(
    _: *mut mln_event_t,
    _: *mut c_void,
    _: *mut c_void,
    _: u32,
    _: *mut *mut c_void,
) {
}

static TIMED_OUT: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn guard_timer(ev: *mut mln_event_t, _data: *mut c_void) {
    TIMED_OUT.store(true, Ordering::Relaxed);
    set_break(ev);
}

/// Runs the loop until a handler breaks it or `ms` pass. Returns whether the time ran out.
fn run(ev: *mut mln_event_t, ms: u32) -> bool {
    TIMED_OUT.store(false, Ordering::Relaxed);
    // SAFETY: live loop; the guard timer is cancelled unless it fired.
    unsafe {
        let t = mln_event_timer_set(ev, ms, null_mut(), Some(guard_timer));
        assert!(!t.is_null());
        mln_event_dispatch(ev);
        (*ev).is_break = 0;
        if !TIMED_OUT.load(Ordering::Relaxed) {
            mln_event_timer_cancel(ev, t);
        }
    }
    TIMED_OUT.load(Ordering::Relaxed)
}

#[derive(Debug, Clone)]
enum Op {
    Register(u32, bool, bool),
    Unregister(usize),
    UnregisterForeign,
    HandlerSet(bool, u32, bool),
    SetProcessHandlers,
    Prepare,
    /// length, NULL buffer?
    Send(usize, bool),
    SendToForeign,
    WorkerSendInMaster,
}

fn len() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..64,
        3 => 0usize..70_000,
        1 => (MAX - 4 - 16)..=(MAX - 4),
        1 => (MAX - 3)..(MAX + 16),
        1 => Just(u32::MAX as usize - 4),
        1 => Just(u32::MAX as usize - 3),
        1 => any::<usize>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let ty = FIRST_RANDOM_TYPE..FIRST_RANDOM_TYPE + 4;
    prop_oneof![
        3 => (ty.clone(), any::<bool>(), any::<bool>()).prop_map(|(t, m, w)| Op::Register(t, m, w)),
        2 => any::<usize>().prop_map(Op::Unregister),
        1 => Just(Op::UnregisterForeign),
        2 => (any::<bool>(), ty, any::<bool>()).prop_map(|(m, t, n)| Op::HandlerSet(m, t, n)),
        1 => Just(Op::SetProcessHandlers),
        1 => Just(Op::Prepare),
        6 => (len(), prop::bool::weighted(0.1)).prop_map(|(l, n)| Op::Send(l, n)),
        1 => Just(Op::SendToForeign),
        1 => Just(Op::WorkerSendInMaster),
    ]
}

fn h(present: bool) -> ipc_handler {
    if present {
        Some(dummy)
    } else {
        None
    }
}

struct Master {
    ev: *mut mln_event_t,
    child: *mut mln_fork_t,
    live: Vec<*mut mln_ipc_cb_t>,
    seed: u8,
}

impl Master {
    fn case(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        let mut want: Vec<(u64, u64)> = Vec::new();
        let mut foreign: mln_fork_t = unsafe { core::mem::zeroed() };
        // A small buffer: sends with lengths it cannot hold must be refused before it is read.
        let mut small = [0u8; 16];
        for op in ops {
            // SAFETY (whole block): C API calls with valid or deliberately invalid
            // arguments, as their contracts allow.
            unsafe {
                match *op {
                    Op::Register(ty, m, w) => {
                        let cb = mln_ipc_handler_register(ty, h(m), h(w), null_mut(), null_mut());
                        prop_assert_eq!(cb.is_null(), !m && !w);
                        if !cb.is_null() {
                            prop_assert_eq!((*cb).r#type, ty);
                            self.live.push(cb);
                        }
                    }
                    Op::Unregister(i) => {
                        if self.live.is_empty() {
                            mln_ipc_handler_unregister(null_mut());
                        } else {
                            let cb = self.live.swap_remove(i % self.live.len());
                            mln_ipc_handler_unregister(cb);
                        }
                    }
                    Op::UnregisterForeign => {
                        let mut fake: mln_ipc_cb_t = core::mem::zeroed();
                        mln_ipc_handler_unregister(&mut fake);
                    }
                    Op::HandlerSet(master, ty, null) => {
                        let hd = h(!null);
                        let r = if master {
                            mln_fork_master_ipc_handler_set(ty, hd, null_mut())
                        } else {
                            mln_fork_worker_ipc_handler_set(ty, hd, null_mut())
                        };
                        prop_assert_eq!(r, if null { -1 } else { 0 });
                    }
                    Op::SetProcessHandlers => prop_assert_eq!(mln_ipc_set_process_handlers(), 0),
                    Op::Prepare => prop_assert_eq!(mln_fork_prepare(), 0),
                    Op::Send(len, null) => {
                        let fits = len <= MAX - 4;
                        let ok = fits && (len == 0 || !null);
                        let mut payload;
                        let buf: *mut c_void = if null {
                            ptr::null_mut()
                        } else if fits {
                            self.seed = self.seed.wrapping_add(1);
                            let s = self.seed;
                            payload = (0..len)
                                .map(|i| (i as u8).wrapping_mul(31) ^ s)
                                .collect::<Vec<u8>>();
                            payload.as_mut_ptr().cast()
                        } else {
                            small.as_mut_ptr().cast()
                        };
                        let r = mln_ipc_master_send_prepare(self.ev, T_DATA, buf, len, self.child);
                        prop_assert_eq!(r, if ok { 0 } else { -1 }, "len {} null {}", len, null);
                        if ok {
                            want.push((len as u64, fnv(slice(buf, len as u32))));
                        }
                    }
                    Op::SendToForeign => {
                        let r = mln_ipc_master_send_prepare(
                            self.ev,
                            T_DATA,
                            small.as_mut_ptr().cast(),
                            1,
                            &mut foreign,
                        );
                        prop_assert_eq!(r, -1);
                    }
                    Op::WorkerSendInMaster => {
                        let r = mln_ipc_worker_send_prepare(
                            self.ev,
                            T_ACK,
                            small.as_mut_ptr().cast(),
                            1,
                        );
                        prop_assert_eq!(r, -1);
                    }
                }
            }
        }
        if !want.is_empty() {
            WANT.store(want.len(), Ordering::Relaxed);
            prop_assert!(!run(self.ev, 20_000), "acknowledgements did not arrive");
        }
        let got = std::mem::take(&mut *ACKS.lock().unwrap());
        prop_assert_eq!(got, want);
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

fn main() {
    // SAFETY (whole block): C API calls with valid arguments, single-threaded.
    unsafe {
        assert_eq!(mln_ipc_max_message_set(MAX), 0);
        assert_eq!(
            mln_fork_worker_ipc_handler_set(T_DATA, Some(worker_data), null_mut()),
            0
        );
        assert_eq!(
            mln_fork_worker_ipc_handler_set(T_RAW, Some(worker_raw), null_mut()),
            0
        );
        assert_eq!(
            mln_fork_worker_ipc_handler_set(T_RAW_REST, Some(worker_raw_rest), null_mut()),
            0
        );
        assert_eq!(
            mln_fork_master_ipc_handler_set(T_ACK, Some(master_ack), null_mut()),
            0
        );
        assert_eq!(
            mln_fork_master_ipc_handler_set(T_BIG, Some(master_big), null_mut()),
            0
        );
        assert_eq!(mln_fork_prepare(), 0);
        let ev = mln_event_new();
        assert!(!ev.is_null());
        match mln_fork_restart(ev) {
            0 => worker_main(),
            1 => {}
            r => panic!("mln_fork_restart: {r}"),
        }
        unsafe extern "C" fn first(_: *mut mln_event_t, f: *mut mln_fork_t, d: *mut c_void) -> i32 {
            // SAFETY: `d` is the `*mut *mut mln_fork_t` passed below.
            unsafe { *d.cast::<*mut mln_fork_t>() = f };
            -1
        }
        let mut child: *mut mln_fork_t = null_mut();
        assert_eq!(
            mln_fork_iterate(ev, Some(first), ptr::addr_of_mut!(child).cast()),
            -1
        );
        assert!(!child.is_null());

        let m = std::cell::RefCell::new(Master {
            ev,
            child,
            live: Vec::new(),
            seed: 0,
        });
        let n = cases();
        let mut runner = TestRunner::new(Config {
            cases: n,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = prop::collection::vec(op(), 0..40);
        if let Err(e) = runner.run(&strategy, |ops| m.borrow_mut().case(&ops)) {
            panic!("C API call sequences: {e}");
        }
        println!("test capi_call_sequences ... ok ({n} cases)");

        // Allocation sized by an untrusted length: the announced MAX frame, 8 bytes of it.
        let baseline = 512 * 1024;
        TRACK.store(true, Ordering::Relaxed);
        LARGEST.store(0, Ordering::Relaxed);
        assert_eq!(
            mln_ipc_master_send_prepare(ev, T_RAW, null_mut(), 0, child),
            0
        );
        assert!(run(ev, 300), "nothing may be delivered yet");
        let largest = LARGEST.load(Ordering::Relaxed);
        TRACK.store(false, Ordering::Relaxed);
        assert!(
            largest < baseline,
            "allocated {largest} bytes for a frame of which 8 bytes arrived"
        );
        assert_eq!(
            mln_ipc_master_send_prepare(ev, T_RAW_REST, null_mut(), 0, child),
            0
        );
        assert!(!run(ev, 20_000), "the big frame did not arrive");
        assert_eq!(*BIG.lock().unwrap(), Some((MAX - 4, true)));
        println!(
            "test announced_length_allocates_nothing ... ok (largest allocation {largest} bytes)"
        );
    }
}
