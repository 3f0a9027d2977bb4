//! Rust-side benchmark: the same core driven from Rust through the crate's `extern "C"`
//! functions (the C API's own path; the safe Rust API, `mln_ipc::api` in src/api.rs, is a
//! thin face over the same functions), against a raw socketpair baseline written with std.
//! A smaller companion of `benches/ipc_bench.c`, which is the main benchmark; see
//! benches/README.md.
//!
//! `cargo bench --bench ipc` runs each figure in a fresh process (the library's state is
//! per process). The sampling rule is the C benchmark's: each figure's count is calibrated
//! first (the fastest pace of two runs of at least 0.08 s, for samples of 0.5 s; the burst
//! in whole rounds of 20,000 x 16 KiB), then every figure runs `BENCH_REPS` times (default
//! 5), interleaved, and the table prints median [min .. max], the ratio to the raw figure
//! of the same run with the spread of the per-repetition ratios, the count and the shortest
//! sample. A sample under 0.3 s is measured again with the count raised (`+`; marked `!`
//! if still short after three). `BENCH_SCALE` multiplies the durations and the burst.
//! Under `cargo test` (no `--bench` argument) it only says it was skipped: timing never
//! decides a test.

use core::ffi::{c_int, c_void};
use core::ptr;
use mln_ipc::abi::{mln_event_t, mln_fork_t, mln_framework_attr};
use mln_ipc::capi::fork::{mln_fork_iterate, mln_ipc_master_send_prepare};
use mln_ipc::capi::fork::{mln_fork_worker_num_set, mln_ipc_worker_send_prepare};
use mln_ipc::capi::framework::mln_framework_init;
use mln_ipc::capi::ipc::mln_ipc_handler_register;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Instant;

const T_GO: u32 = 6100;
const T_DATA: u32 = 6101;
const T_ACK: u32 = 6102;
const T_PING: u32 = 6104;
const T_PONG: u32 = 6105;
const RAW_CHUNK: usize = 64 * 1024;
const WINDOW_BYTES: usize = 1 << 20;
/// Exit status of a worker whose burst had a send refused (the C driver's EXIT_REFUSED).
const EXIT_REFUSED: i32 = 4;

/// Per-process benchmark state. The library calls handlers on the thread that runs the
/// loop, one at a time, so plain statics accessed through this one helper suffice.
struct St {
    size: usize,
    count: u64,
    sent: u64,
    acked: u64,
    received: u64,
    window: u64,
    ack_every: u64,
    msg: Vec<u8>,
    child: *mut mln_fork_t,
    t0: Option<Instant>,
    /// A burst: the worker queues a round of `round` messages from one handler call, no
    /// window; the master asks for the next round (T_GO) once the last has arrived.
    burst: bool,
    round: u64,
    master: libc::pid_t,
}

static mut ST: St = St {
    size: 0,
    count: 0,
    sent: 0,
    acked: 0,
    received: 0,
    window: 0,
    ack_every: 0,
    msg: Vec::new(),
    child: ptr::null_mut(),
    t0: None,
    burst: false,
    round: 0,
    master: 0,
};

fn st() -> &'static mut St {
    // SAFETY: single-threaded process (see `St`); no two references are used at once.
    unsafe { &mut *ptr::addr_of_mut!(ST) }
}

fn set_seq(p: &mut [u8], seq: u64) {
    p[..4].copy_from_slice(&(seq as u32).to_ne_bytes());
}

fn seq_of(p: &[u8]) -> u64 {
    u64::from(u32::from_ne_bytes([p[0], p[1], p[2], p[3]]))
}

fn check(p: &[u8], want: u64) {
    let s = st();
    assert_eq!(p.len(), s.size, "payload length");
    assert_eq!(seq_of(p), want, "sequence number");
    if want + 1 == s.count {
        assert_eq!(&p[4..], &s.msg[4..], "content of the last message");
    }
}

fn report(ns: u128, msgs: u64) {
    println!("ns={ns} msgs={msgs}");
}

/// Peak resident set (VmHWM) of a process in KiB, or 0.
fn peak_rss_kib(pid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Master, at the end of a worker-to-master figure: sender (worker) and receiver peak RSS.
fn report_rss() {
    let child = st().child;
    let worker = if child.is_null() {
        0
    } else {
        // SAFETY: the live child record; only its pid is read.
        unsafe { (*child).pid }
    };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    println!(
        "rss_send={} rss_recv={}",
        peak_rss_kib(worker),
        peak_rss_kib(me)
    );
}

unsafe fn payload<'a>(buf: *mut c_void, len: u32) -> &'a [u8] {
    if buf.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: the library passes a pointer into its receive buffer, valid for `len` bytes
    // during the handler.
    unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) }
}

unsafe fn break_loop(ev: *mut mln_event_t) {
    // SAFETY: `ev` is the live loop a handler was given (`mln_event_break_set`).
    unsafe { (*ev).is_break = 1 };
}

/// Worker: queue while the credit window allows; a burst queues its next round now,
/// counting refused sends (-1): any refusal fails the figure loudly (the worker takes the
/// master down with it, so the driver sees it at once).
unsafe fn fill(ev: *mut mln_event_t) {
    let s = st();
    if s.burst {
        let mut refused = 0u64;
        let end = (s.sent + s.round).min(s.count);
        for seq in s.sent..end {
            set_seq(&mut s.msg, seq);
            // SAFETY: valid buffer of `size` bytes; `ev` is the live loop.
            let r = unsafe {
                mln_ipc_worker_send_prepare(ev, T_DATA, s.msg.as_mut_ptr().cast(), s.size)
            };
            if r != 0 {
                refused += 1;
            }
        }
        s.sent = end;
        if refused > 0 {
            eprintln!(
                "ipc bench: burst of {} x {} B: {refused} send_prepare call(s) returned -1; \
                 the row FAILS",
                s.round, s.size
            );
            // SAFETY: signalling our own master, then leaving without its exit handlers.
            unsafe {
                libc::kill(s.master, libc::SIGKILL);
                libc::_exit(EXIT_REFUSED);
            }
        }
        return;
    }
    while s.sent < s.count && s.sent - s.acked < s.window {
        let seq = s.sent;
        set_seq(&mut s.msg, seq);
        // SAFETY: valid buffer of `size` bytes; `ev` is the live loop.
        let r =
            unsafe { mln_ipc_worker_send_prepare(ev, T_DATA, s.msg.as_mut_ptr().cast(), s.size) };
        assert_eq!(r, 0, "send_prepare");
        s.sent += 1;
    }
}

unsafe extern "C" fn w_go(
    ev: *mut mln_event_t,
    _: *mut c_void,
    _: *mut c_void,
    _: u32,
    _: *mut *mut c_void,
) {
    // SAFETY: forwarded handler arguments.
    unsafe { fill(ev) }
}

unsafe extern "C" fn w_ack(
    ev: *mut mln_event_t,
    _: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _: *mut *mut c_void,
) {
    // SAFETY: handler arguments.
    let p = unsafe { payload(buf, len) };
    st().acked = u64::from_ne_bytes(p.try_into().expect("ack length"));
    // SAFETY: forwarded handler arguments.
    unsafe { fill(ev) }
}

unsafe extern "C" fn w_ping(
    ev: *mut mln_event_t,
    _: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _: *mut *mut c_void,
) {
    // SAFETY: echoing the received buffer, valid during the handler.
    let r = unsafe { mln_ipc_worker_send_prepare(ev, T_PONG, buf, len as usize) };
    assert_eq!(r, 0, "send pong");
}

unsafe extern "C" fn m_data(
    ev: *mut mln_event_t,
    f: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _: *mut *mut c_void,
) {
    // SAFETY: handler arguments.
    let p = unsafe { payload(buf, len) };
    let s = st();
    check(p, s.received);
    s.received += 1;
    if s.received == s.count {
        report(s.t0.expect("started").elapsed().as_nanos(), s.count);
        report_rss();
        // SAFETY: handler's loop.
        unsafe { break_loop(ev) };
    } else if s.burst {
        if s.received.is_multiple_of(s.round) {
            // SAFETY: no payload; `f` is the sending worker.
            let r = unsafe { mln_ipc_master_send_prepare(ev, T_GO, ptr::null_mut(), 0, f.cast()) };
            assert_eq!(r, 0, "send go");
        }
    } else if s.received.is_multiple_of(s.ack_every) {
        let mut n = s.received.to_ne_bytes();
        // SAFETY: valid 8-byte buffer; `f` is the sending worker.
        let r =
            unsafe { mln_ipc_master_send_prepare(ev, T_ACK, n.as_mut_ptr().cast(), 8, f.cast()) };
        assert_eq!(r, 0, "send ack");
    }
}

unsafe extern "C" fn m_pong(
    ev: *mut mln_event_t,
    f: *mut c_void,
    buf: *mut c_void,
    len: u32,
    _: *mut *mut c_void,
) {
    // SAFETY: handler arguments.
    let p = unsafe { payload(buf, len) };
    let s = st();
    check(p, s.received);
    s.received += 1;
    if s.received == s.count {
        report(s.t0.expect("started").elapsed().as_nanos(), s.count);
        // SAFETY: handler's loop.
        unsafe { break_loop(ev) };
        return;
    }
    let seq = s.received;
    set_seq(&mut s.msg, seq);
    // SAFETY: valid buffer; `f` is the worker that answered.
    let r = unsafe {
        mln_ipc_master_send_prepare(ev, T_PING, s.msg.as_mut_ptr().cast(), s.size, f.cast())
    };
    assert_eq!(r, 0, "send ping");
}

unsafe extern "C" fn take_child(_: *mut mln_event_t, f: *mut mln_fork_t, _: *mut c_void) -> c_int {
    st().child = f;
    0
}

static mut PINGPONG: bool = false;

unsafe extern "C" fn master_process(ev: *mut mln_event_t) {
    // SAFETY: the master's live loop.
    unsafe { mln_fork_iterate(ev, Some(take_child), ptr::null_mut()) };
    let s = st();
    assert!(!s.child.is_null(), "one worker");
    s.t0 = Some(Instant::now());
    // SAFETY: read once, written before the fork only.
    let (ty, buf, len) = if unsafe { PINGPONG } {
        set_seq(&mut s.msg, 0);
        (T_PING, s.msg.as_mut_ptr(), s.size)
    } else {
        (T_GO, ptr::null_mut(), 0)
    };
    // SAFETY: valid buffer (or none); the live child.
    let r = unsafe { mln_ipc_master_send_prepare(ev, ty, buf.cast(), len, s.child) };
    assert_eq!(r, 0, "first send");
}

unsafe extern "C" fn global_init() -> c_int {
    // SAFETY: plain registrations before the fork.
    unsafe {
        mln_fork_worker_num_set(1);
        let regs = [
            (T_GO, None, Some(w_go as HandlerFn)),
            (T_DATA, Some(m_data as HandlerFn), None),
            (T_ACK, None, Some(w_ack as HandlerFn)),
            (T_PING, None, Some(w_ping as HandlerFn)),
            (T_PONG, Some(m_pong as HandlerFn), None),
        ];
        for (ty, m, w) in regs {
            if mln_ipc_handler_register(ty, m, w, ptr::null_mut(), ptr::null_mut()).is_null() {
                return -1;
            }
        }
    }
    0
}

type HandlerFn =
    unsafe extern "C" fn(*mut mln_event_t, *mut c_void, *mut c_void, u32, *mut *mut c_void);

/// melon-ipc, worker to master (or ping-pong), in this process and its worker.
fn run_melon(pingpong: bool) {
    let s = st();
    // SAFETY: getpid has no preconditions.
    s.master = unsafe { libc::getpid() };
    s.window = ((WINDOW_BYTES / (8 + s.size)) as u64).max(8);
    s.ack_every = s.window / 4;
    // SAFETY: written before the fork, single-threaded.
    unsafe { PINGPONG = pingpong };
    let mut a = mln_framework_attr {
        argc: 0,
        argv: ptr::null_mut(),
        global_init: Some(global_init),
        main_thread: None,
        master_process: Some(master_process),
        worker_process: None,
    };
    // SAFETY: a valid attribute block.
    let r = unsafe { mln_framework_init(&mut a) };
    assert_eq!(r, 0, "mln_framework_init");
    // Master only (a worker never returns: it exits when the master is gone). Stop the
    // worker so the next figure has the machine to itself.
    let child = st().child;
    if !child.is_null() {
        // SAFETY: the record stays valid until the library frees it; we only read the pid.
        let pid = unsafe { (*child).pid };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        for _ in 0..2000 {
            // SAFETY: probing / reaping our own child.
            let gone = unsafe {
                libc::kill(pid, 0) != 0 || libc::waitpid(pid, ptr::null_mut(), libc::WNOHANG) != 0
            };
            if gone {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    }
}

/// Raw limit: blocking std I/O, 64 KiB batched writes and reads, frames parsed in place.
fn run_raw(pingpong: bool) {
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    let s = st();
    let (size, count) = (s.size, s.count);
    let mut msg = s.msg.clone();
    let t0 = Instant::now();
    // Two processes, as the C figure and melon-ipc: the child sends (or echoes).
    // SAFETY: the process is single-threaded here; the child only runs `sender` and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    let mut sender = move || {
        let frame = 8 + size;
        if pingpong {
            let mut f = vec![0u8; frame];
            for _ in 0..count {
                b.read_exact(&mut f).expect("read");
                b.write_all(&f).expect("write");
            }
            return;
        }
        let mut out = Vec::with_capacity(RAW_CHUNK);
        let mut hdr = [0u8; 8];
        hdr[..4].copy_from_slice(&((4 + size) as u32).to_ne_bytes());
        hdr[4..].copy_from_slice(&T_DATA.to_ne_bytes());
        for i in 0..count {
            set_seq(&mut msg, i);
            for part in [&hdr[..], &msg[..]] {
                let mut p = part;
                while !p.is_empty() {
                    let k = (RAW_CHUNK - out.len()).min(p.len());
                    out.extend_from_slice(&p[..k]);
                    p = &p[k..];
                    if out.len() == RAW_CHUNK {
                        b.write_all(&out).expect("write");
                        out.clear();
                    }
                }
            }
        }
        b.write_all(&out).expect("write");
    };
    if pid == 0 {
        drop(a);
        sender();
        // SAFETY: leaving the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(sender);
    if pingpong {
        let mut f = vec![0u8; 8 + size];
        f[..4].copy_from_slice(&((4 + size) as u32).to_ne_bytes());
        f[4..8].copy_from_slice(&T_PING.to_ne_bytes());
        f[8..].copy_from_slice(&s.msg);
        let mut back = f.clone();
        for i in 0..count {
            set_seq(&mut f[8..], i);
            a.write_all(&f).expect("write");
            a.read_exact(&mut back).expect("read");
            s.received = i;
            check(&back[8..], i);
        }
    } else {
        let cap = 2 * (8 + size) + 2 * RAW_CHUNK;
        let mut buf = vec![0u8; cap];
        let (mut start, mut end, mut seq) = (0usize, 0usize, 0u64);
        while seq < count {
            if cap - end < RAW_CHUNK {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            let n = a.read(&mut buf[end..end + RAW_CHUNK]).expect("read");
            assert!(n > 0, "unexpected end of stream");
            end += n;
            while end - start >= 8 {
                let len = u32::from_ne_bytes(buf[start..start + 4].try_into().expect("4")) as usize;
                if end - start < 4 + len {
                    break;
                }
                check(&buf[start + 8..start + 4 + len], seq);
                seq += 1;
                start += 4 + len;
            }
            if start == end {
                start = 0;
                end = 0;
            }
        }
    }
    let ns = t0.elapsed().as_nanos();
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "raw child failed"
    );
    report(ns, count);
}

fn one(kind: &str, size: usize, count: u64, round: u64) {
    let s = st();
    s.size = size;
    s.count = count;
    s.round = round.max(1);
    s.msg = (0..size).map(|i| (i * 7 + 3) as u8).collect();
    match kind {
        "raw" => run_raw(false),
        "rawpp" => run_raw(true),
        "w2m" => run_melon(false),
        "bw2m" => {
            s.burst = true;
            run_melon(false)
        }
        "pp" => run_melon(true),
        _ => panic!("unknown kind {kind}"),
    }
}

/// One measurement: (ns, msgs, sender and receiver peak RSS in KiB; 0 when not reported).
fn measure(kind: &str, size: usize, count: u64, round: u64) -> (f64, f64, f64, f64) {
    let out = Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--bench",
            "one",
            kind,
            &size.to_string(),
            &count.to_string(),
            &round.to_string(),
        ])
        .env(
            "MLN_IPC_LOG",
            std::env::var("MLN_IPC_LOG").unwrap_or("error".into()),
        )
        .output()
        .expect("run a figure");
    assert!(
        out.status.success(),
        "{kind} {size}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("ns=")),
        "{kind} {size}: no result line"
    );
    let mut r = (0f64, 0f64, 0f64, 0f64);
    for kv in text.split_whitespace() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let slot = match k {
            "ns" => &mut r.0,
            "msgs" => &mut r.1,
            "rss_send" => &mut r.2,
            "rss_recv" => &mut r.3,
            _ => continue,
        };
        *slot = v.parse().expect("a number");
    }
    r
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (med, v[0], v[n - 1])
}

/// The sampling rule (the C benchmark's): every sample lasts at least `SAMPLE_MIN` s; the
/// count is calibrated for `SAMPLE_GOAL` s at the fastest pace of `CAL_RUNS` runs of at
/// least `CAL_MIN` s. `BENCH_SCALE` multiplies the durations.
const SAMPLE_MIN: f64 = 0.3;
const SAMPLE_GOAL: f64 = 0.5;
const CAL_MIN: f64 = 0.08;
const CAL_RUNS: usize = 2;
const CAL_TRIES: usize = 8;
/// How many times one sample may be measured again with a raised count.
const RAISE_MAX: usize = 3;

/// The count of every sample of a figure, and its round (bursts: the burst; otherwise the
/// count): from a first run of `first` (bursts: one burst), grown until runs last
/// `CAL_MIN`, the count lasting `SAMPLE_GOAL` at the fastest pace seen (whole bursts).
fn calibrate(kind: &str, size: usize, first: u64, scale: f64) -> (u64, u64) {
    let burst = kind.starts_with('b');
    let unit = if burst {
        ((first as f64 * scale) as u64).max(8)
    } else {
        1
    };
    let round_up = |n: f64| ((n / unit as f64).ceil() as u64).max(1) * unit;
    let mut c = if burst {
        unit
    } else {
        round_up(first as f64 * scale)
    };
    let (mut pace, mut good) = (f64::INFINITY, 0);
    for _ in 0..CAL_TRIES {
        if good == CAL_RUNS {
            break;
        }
        let d = measure(kind, size, c, if burst { unit } else { c }).0 / 1e9;
        if d > 0.0 {
            pace = pace.min(d / c as f64);
        }
        if d >= CAL_MIN * scale {
            good += 1;
        } else {
            let g = if d > 0.0 {
                1.5 * CAL_MIN * scale / d
            } else {
                64.0
            };
            c = round_up(c as f64 * g.clamp(2.0, 64.0));
        }
    }
    let n = round_up(SAMPLE_GOAL * scale / pace.max(1e-12));
    (n, if burst { unit } else { n })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("ipc bench: skipped (run it with `cargo bench --bench ipc` or `make bench`)");
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "one") {
        let kind = &args[i + 1];
        let size = args[i + 2].parse().expect("size");
        let count = args[i + 3].parse().expect("count");
        let round = args.get(i + 4).map_or(count, |r| r.parse().expect("round"));
        one(kind, size, count, round);
        return;
    }
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| *v > 0.0)
        .unwrap_or(1.0);
    // (name, kind, size, first calibration count (bursts: the burst), raw figure)
    let figs: [(&str, &str, usize, u64, Option<usize>); 7] = [
        ("raw64", "raw", 64, 3_000_000, None),
        ("raw16k", "raw", 16384, 40_000, None),
        ("rawpp", "rawpp", 16, 10_000, None),
        ("w2m64", "w2m", 64, 2_000_000, Some(0)),
        ("w2m16k", "w2m", 16384, 25_000, Some(1)),
        ("pp", "pp", 16, 10_000, Some(2)),
        // Rounds of 20,000 x 16 KiB queued from one handler call, no window.
        ("bw2m16k", "bw2m", 16384, 20_000, Some(1)),
    ];
    // Calibration: the count of every sample of each figure (see the module docs).
    let mut counts: Vec<(u64, u64)> = figs
        .iter()
        .map(|f| calibrate(f.1, f.2, f.3, scale))
        .collect();
    let mut raised = vec![0u32; figs.len()];
    let mut res: Vec<Vec<(f64, f64, f64, f64)>> = vec![Vec::new(); figs.len()];
    for _ in 0..reps {
        for (i, f) in figs.iter().enumerate() {
            // A sample shorter than SAMPLE_MIN is measured again with the count raised for
            // SAMPLE_GOAL at its pace (kept for the following samples), up to RAISE_MAX times.
            for k in 0..=RAISE_MAX {
                let (n, round) = counts[i];
                let r = measure(f.1, f.2, n, round);
                let d = r.0 / 1e9;
                if d >= SAMPLE_MIN * scale || k == RAISE_MAX {
                    res[i].push(r);
                    break;
                }
                let unit = if f.1.starts_with('b') { round } else { 1 };
                let c = ((n as f64 * SAMPLE_GOAL * scale / d.max(1e-9) / unit as f64).ceil()
                    as u64)
                    .max(n / unit + 1)
                    * unit;
                counts[i] = (c, if unit == 1 { c } else { round });
                raised[i] += 1;
            }
        }
    }
    println!(
        "\nRust driver (crate extern fns), {reps} interleaved repetitions: median [min .. max]; \
         ratio [min .. max] per repetition; count per sample (+: raised after a short one); \
         shortest sample (s, ! under {:.2})",
        SAMPLE_MIN * scale
    );
    let mut kv = String::new();
    let value = |i: usize, r: &(f64, f64, f64, f64)| {
        if figs[i].1.ends_with("pp") {
            r.0 / 1e3 / r.1
        } else {
            r.1 / (r.0 / 1e9)
        }
    };
    for (i, f) in figs.iter().enumerate() {
        let pp = f.1.ends_with("pp");
        let (med, lo, hi) = stats(res[i].iter().map(|r| value(i, r)).collect());
        let shortest = res[i]
            .iter()
            .map(|r| r.0 / 1e9)
            .fold(f64::INFINITY, f64::min);
        let mark = if shortest < SAMPLE_MIN * scale {
            "!"
        } else {
            ""
        };
        let ratio = f.4.map(|r| {
            let (rmed, _, _) = stats(res[r].iter().map(|x| value(r, x)).collect());
            let per_rep = res[i]
                .iter()
                .zip(&res[r])
                .map(|(a, b)| value(i, a) / value(r, b))
                .collect();
            let (_, qlo, qhi) = stats(per_rep);
            (med / rmed, qlo, qhi, figs[r].0)
        });
        let ratio_s = match ratio {
            Some((x, a, b, n)) if pp => format!("{x:.2}x [{a:.2} .. {b:.2}] {n}"),
            Some((x, a, b, n)) => format!(
                "{:.1}% [{:.1} .. {:.1}] {n}",
                100.0 * x,
                100.0 * a,
                100.0 * b
            ),
            None => String::new(),
        };
        let plus = if raised[i] > 0 { "+" } else { "" };
        let tail = format!(
            "  count {}{plus}  shortest {shortest:.2}{mark}",
            counts[i].0
        );
        if pp {
            println!(
                "  {:<8} {med:>9.2} us/rt  [{lo:.2} .. {hi:.2}]  {ratio_s}{tail}",
                f.0
            );
            kv += &format!("rs_{}_rtt_us={med:.2} ", f.0);
        } else {
            let mbs = med * f.2 as f64 / 1e6;
            // Peak RSS (largest of the repetitions), where the figure reports it.
            let rss_s = res[i].iter().map(|r| r.2).fold(0f64, f64::max) / 1024.0;
            let rss_r = res[i].iter().map(|r| r.3).fold(0f64, f64::max) / 1024.0;
            let rss = if rss_s > 0.0 {
                format!("  peak RSS send/recv {rss_s:.1} / {rss_r:.1} MiB")
            } else {
                String::new()
            };
            println!(
                "  {:<8} {:>9.2} M msgs/s [{:.2} .. {:.2}]  {mbs:>7.0} MB/s  {ratio_s}{tail}{rss}",
                f.0,
                med / 1e6,
                lo / 1e6,
                hi / 1e6
            );
            kv += &format!("rs_{}_msgs={med:.0} ", f.0);
            if rss_s > 0.0 {
                kv += &format!(
                    "rs_{}_rss_send_mib={rss_s:.1} rs_{}_rss_recv_mib={rss_r:.1} ",
                    f.0, f.0
                );
            }
        }
        if let Some((x, a, b, _)) = ratio {
            kv += &format!(
                "rs_{0}_ratio={x:.3} rs_{0}_ratio_min={a:.3} rs_{0}_ratio_max={b:.3} ",
                f.0
            );
        }
        kv += &format!(
            "rs_{0}_count={1} rs_{0}_shortest_s={shortest:.3} ",
            f.0, counts[i].0
        );
    }
    println!("{}", kv.trim_end());
}
