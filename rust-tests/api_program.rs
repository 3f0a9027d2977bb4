//! Programs started with `spawn`, written in Rust with `Program` (the worker's handlers in
//! an exec'd program): a Rust master (`Builder::spawn`), a C master (`mln_fork_spawn`) and
//! a master written by hand on a socketpair each drive the same program, this test binary
//! executed again with `--program <role>`.
//!
//! Checked: the program's own arguments without the descriptor number; ping and pong both
//! ways; 10,000 frames each way, in order; the program's own stop (`Worker::stop`: `run`
//! returns `Ok`, exit status 0 seen in `WorkerEvent::Exited`); a graceful stop by the
//! master (`on_quit`, then `Ok`); a supervised program killed
//! and executed again, which answers again; the master gone (`run` returns `PeerGone`,
//! which the program turns into exit status 42); `from_env`'s refusals
//! (`InvalidArgument`, no panic), the claim of the process (`AlreadyStarted`), a thread of
//! the program's own allowed. The C-master scenario is the one `unsafe` part (the C API).

mod common;

use core::ffi::c_void;
use mln_ipc::abi::{mln_event_t, mln_fork_t, mln_ipc_child_event_t, mln_u32_t};
use mln_ipc::api::{Builder, End, Error, Master, Program, Worker, WorkerEvent, WorkerId};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

const HELLO: u32 = 2601; // program -> master: its own arguments, joined by NUL
const PING: u32 = 2602; // master -> program
const PONG: u32 = 2603; // program -> master: PING's payload
const COUNT: u32 = 2604; // master -> program: u32 sequence number
const COUNT_END: u32 = 2605; // master -> program: answer COUNTED
const COUNTED: u32 = 2606; // program -> master: u32 how many COUNTs came in order
const BURST: u32 = 2607; // master -> program: send u32 n SEQ frames
const SEQ: u32 = 2608; // program -> master: u32 sequence number
const STOP_ME: u32 = 2609; // master -> program: Worker::stop
const BYE: u32 = 2610; // program -> master: from its on_quit
const FRAMES: u32 = 10_000;
/// The program's exit status when `run` returned `PeerGone`.
const GONE_STATUS: i32 = 42;
/// Set (by a scenario) to run this binary as the `check` program.
const ROLE_ENV: &str = "MLN_TEST_PROGRAM";

// ---------------------------------------------------------------------------------------
// The program (this binary with `--program <role> ...`)
// ---------------------------------------------------------------------------------------

fn u32_of(b: &[u8]) -> Option<u32> {
    common::u32_at(b, 0)
}

fn exit_code(r: Result<(), Error>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::PeerGone) => ExitCode::from(GONE_STATUS as u8),
        Err(e) => {
            eprintln!("program: run: {e}");
            ExitCode::from(1)
        }
    }
}

/// Answers PING, counts COUNTs, sends BURSTs of SEQ, stops on STOP_ME.
fn pong() -> ExitCode {
    let program = match Program::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("program: {e}");
            return ExitCode::from(2);
        }
    };
    let hello: Vec<u8> = program
        .args()
        .iter()
        .map(|a| a.to_str().expect("UTF-8 argument"))
        .collect::<Vec<_>>()
        .join("\0")
        .into_bytes();
    let in_order = Rc::new(Cell::new(0u32));
    let seen = in_order.clone();
    let r = program
        .on_start(move |w: &mut Worker| w.send(HELLO, hello).expect("hello"))
        .on_worker(PING, |w: &mut Worker, b: &[u8]| {
            w.send(PONG, b).expect("pong")
        })
        .on_worker(COUNT, move |_: &mut Worker, b: &[u8]| {
            if u32_of(b) == Some(seen.get()) {
                seen.set(seen.get() + 1);
            }
        })
        .on_worker(COUNT_END, move |w: &mut Worker, _: &[u8]| {
            w.send(COUNTED, in_order.get().to_le_bytes())
                .expect("counted")
        })
        .on_worker(BURST, |w: &mut Worker, b: &[u8]| {
            for i in 0..u32_of(b).expect("burst size") {
                w.send(SEQ, i.to_le_bytes()).expect("seq");
            }
        })
        .on_worker(STOP_ME, |w: &mut Worker, _: &[u8]| w.stop())
        .on_quit(|w: &mut Worker| w.send(BYE, b"bye").expect("bye"))
        .run();
    exit_code(r)
}

/// `from_env` with whatever the scenario put on the command line; then, if it took a
/// channel: a second `from_env`, a `run` that stops at once (with a thread of its own
/// running), and what comes after it. One line each on stdout.
fn check() -> ExitCode {
    let describe = |r: &Result<Program, Error>| match r {
        Ok(_) => "ok".to_string(),
        Err(Error::InvalidArgument(t)) => format!("invalid: {t}"),
        Err(e) => format!("other: {e:?}"),
    };
    let first = Program::from_env();
    println!("first: {}", describe(&first));
    let Ok(program) = first else {
        return ExitCode::SUCCESS;
    };
    println!("second: {}", describe(&Program::from_env()));
    // A thread of the program's own while it runs: allowed (this API never forks here).
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    let r = program.on_start(|w: &mut Worker| w.stop()).run();
    println!("run: {r:?}");
    let (a, _b) = UnixStream::pair().expect("socketpair");
    let again = Program::from_fd(a.into()).map(|p| p.run());
    println!("again: {again:?}");
    println!("builder: {:?}", Builder::new().workers(0).run().err());
    drop(tx);
    t.join().expect("thread");
    ExitCode::SUCCESS
}

fn program_role() -> Option<ExitCode> {
    let role = match std::env::var(ROLE_ENV) {
        Ok(r) => r,
        Err(_) => {
            let mut a = std::env::args().skip(1);
            if a.next().as_deref() != Some("--program") {
                return None;
            }
            a.next().unwrap_or_default()
        }
    };
    // A failed check in a handler must end the program (the API would catch and log it).
    std::panic::set_hook(Box::new(|info| {
        eprintln!("program failed: {info}");
        std::process::abort();
    }));
    Some(match role.as_str() {
        "pong" => pong(),
        "check" => check(),
        _ => ExitCode::from(3),
    })
}

// ---------------------------------------------------------------------------------------
// Masters
// ---------------------------------------------------------------------------------------

fn exe() -> std::path::PathBuf {
    std::env::current_exe().expect("current_exe")
}

/// The master's side of one program's conversation.
#[derive(Default)]
struct Talk {
    hello: Option<WorkerId>,
    pongs: u32,
    next_seq: u32,
}

/// A Rust master: the program's arguments, a ping, 10,000 frames each way in order, then
/// the program stops itself: `Exited` with status 0, not restarted.
fn rust_master() {
    let talk = Rc::new(RefCell::new(Talk::default()));
    let (t1, t2, t3, t4) = (talk.clone(), talk.clone(), talk.clone(), talk.clone());
    let exited = Rc::new(Cell::new(false));
    let ex = exited.clone();
    let summary = Builder::new()
        .workers(0)
        .spawn(exe(), ["--program", "pong", "two words"], false)
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            assert_eq!(b, b"--program\0pong\0two words");
            assert_eq!(from.index(), 0);
            t1.borrow_mut().hello = Some(from);
            m.send_to(from, PING, b"ping").expect("ping");
        })
        .on_master(PONG, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            assert_eq!(b, b"ping");
            t2.borrow_mut().pongs += 1;
            for i in 0..FRAMES {
                m.send_to(from, COUNT, i.to_le_bytes()).expect("count");
            }
            m.send_to(from, COUNT_END, []).expect("count end");
        })
        .on_master(COUNTED, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            assert_eq!(u32_of(b), Some(FRAMES), "COUNTs in order");
            m.send_to(from, BURST, FRAMES.to_le_bytes()).expect("burst");
        })
        .on_master(SEQ, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            let mut t = t3.borrow_mut();
            assert_eq!(u32_of(b), Some(t.next_seq), "SEQ in order");
            t.next_seq += 1;
            if t.next_seq == FRAMES {
                let st = m.stats(from).expect("stats");
                assert!(st.frames_received >= u64::from(FRAMES) + 3, "{st:?}");
                m.send_to(from, STOP_ME, []).expect("stop me");
            }
        })
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            if let WorkerEvent::Exited {
                id,
                status,
                restart_in,
                ..
            } = e
            {
                let t = t4.borrow();
                assert_eq!(Some(*id), t.hello);
                assert_eq!(t.next_seq, FRAMES, "exited before its burst arrived");
                assert_eq!(status.and_then(|s| s.code()), Some(0), "{e:?}");
                assert_eq!(*restart_in, None);
                ex.set(true);
                m.stop();
            }
        })
        .run()
        .expect("run");
    assert!(exited.get());
    assert_eq!(talk.borrow().pongs, 1);
    assert!(summary.is_clean(), "{summary:?}");
}

/// A supervised program killed with SIGKILL is executed again (same index, new pid) and
/// answers; at the master's stop the program sees its master gone: `run` returns
/// `PeerGone` (exit status 42, the program's choice), and it exits by itself.
fn supervised_restart() {
    let pids = Rc::new(RefCell::new(Vec::<u32>::new()));
    let (p1, p2) = (pids.clone(), pids.clone());
    let exits = Rc::new(RefCell::new(Vec::<WorkerEvent>::new()));
    let ex = exits.clone();
    let summary = Builder::new()
        .workers(0)
        .spawn(exe(), ["--program", "pong"], true)
        .on_master(HELLO, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            assert_eq!(b, b"--program\0pong");
            assert_eq!(from.index(), 0);
            p1.borrow_mut().push(from.pid());
            m.send_to(from, PING, b"again").expect("ping");
        })
        .on_master(PONG, move |m: &mut Master, from: WorkerId, b: &[u8]| {
            assert_eq!(b, b"again");
            let n = p2.borrow().len();
            if n == 1 {
                let st = Command::new("kill")
                    .args(["-KILL", &from.pid().to_string()])
                    .status()
                    .expect("kill");
                assert!(st.success());
            } else {
                assert_eq!(m.stats(from).expect("stats").restarts, 1);
                m.stop();
            }
        })
        .on_worker_event(move |_: &mut Master, e: &WorkerEvent| {
            if let WorkerEvent::Exited { .. } = e {
                ex.borrow_mut().push(e.clone());
            }
        })
        .run()
        .expect("run");
    let pids = pids.borrow();
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert_ne!(pids[0], pids[1]);
    let exits = exits.borrow();
    assert_eq!(exits.len(), 1, "{exits:?}");
    match &exits[0] {
        WorkerEvent::Exited {
            pid,
            status,
            restart_in,
            ..
        } => {
            assert_eq!(*pid, pids[0]);
            assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGKILL));
            assert!(restart_in.is_some());
        }
        e => panic!("{e:?}"),
    }
    let last = summary.ends.last().expect("the last end");
    assert_eq!(last.id.pid(), pids[1], "{summary:?}");
    assert_eq!(last.how, End::Stopped, "{summary:?}");
    assert_eq!(
        last.status.and_then(|s| s.code()),
        Some(GONE_STATUS),
        "{summary:?}"
    );
    assert!(summary.killed.is_empty(), "{summary:?}");
}

/// `Master::stop_worker` on a program: its `on_quit` runs (its frame arrives), `run`
/// returns `Ok`, it exits with status 0 before the deadline and is not restarted.
fn graceful_stop() {
    let byes = Rc::new(Cell::new(0));
    let b1 = byes.clone();
    let ended = Rc::new(Cell::new(false));
    let e1 = ended.clone();
    Builder::new()
        .workers(0)
        .spawn(exe(), ["--program", "pong"], true)
        .on_master(HELLO, |m: &mut Master, from: WorkerId, _: &[u8]| {
            m.stop_worker(from, Duration::from_secs(30))
                .expect("stop_worker")
        })
        .on_master(BYE, move |_: &mut Master, _: WorkerId, b: &[u8]| {
            assert_eq!(b, b"bye");
            b1.set(b1.get() + 1);
        })
        .on_worker_event(move |m: &mut Master, e: &WorkerEvent| {
            if let WorkerEvent::Exited {
                how,
                status,
                restart_in,
                ..
            } = e
            {
                assert_eq!(*how, End::Stopped, "{e:?}");
                assert_eq!(status.and_then(|s| s.code()), Some(0), "{e:?}");
                assert_eq!(*restart_in, None);
                e1.set(true);
                m.stop();
            }
        })
        .run()
        .expect("run");
    assert_eq!(byes.get(), 1);
    assert!(ended.get());
}

/// A descriptor a program started by `Command` inherits (std makes its sockets
/// close-on-exec).
fn inheritable(fd: impl AsFd) {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear FD_CLOEXEC");
}

fn write_frame(s: &mut UnixStream, ty: u32, payload: &[u8]) {
    let mut f = (4 + payload.len() as u32).to_ne_bytes().to_vec();
    f.extend(ty.to_ne_bytes());
    f.extend(payload);
    s.write_all(&f).expect("write a frame");
}

fn read_frame(s: &mut UnixStream) -> (u32, Vec<u8>) {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).expect("read a header");
    let len = u32::from_ne_bytes(h[..4].try_into().unwrap());
    let ty = u32::from_ne_bytes(h[4..].try_into().unwrap());
    let mut payload = vec![0u8; len as usize - 4];
    s.read_exact(&mut payload).expect("read a payload");
    (ty, payload)
}

/// A master written by hand: the program started by `Command` with a socketpair end as
/// its last argument speaks the wire format at once (it owes no handshake byte); once the
/// master's end closes, `run` returns `PeerGone`.
fn master_gone() {
    let (mut mine, theirs) = UnixStream::pair().expect("socketpair");
    inheritable(&theirs);
    let mut child = Command::new(exe())
        .args(["--program", "pong", "solo"])
        .arg(theirs.as_raw_fd().to_string())
        .spawn()
        .expect("start the program");
    drop(theirs);
    assert_eq!(
        read_frame(&mut mine),
        (HELLO, b"--program\0pong\0solo".to_vec())
    );
    write_frame(&mut mine, PING, b"by hand");
    assert_eq!(read_frame(&mut mine), (PONG, b"by hand".to_vec()));
    drop(mine);
    let st = child.wait().expect("wait");
    assert_eq!(st.code(), Some(GONE_STATUS), "{st}");
}

/// `from_env` and `from_fd` refuse what is not a channel with `InvalidArgument` and a text
/// saying why; a channel is taken once; `run` claims the process.
fn refusals() {
    // This scenario process has no argument at all.
    match Program::from_env() {
        Err(Error::InvalidArgument(t)) => assert!(t.contains("no argument"), "{t}"),
        r => panic!("{r:?}"),
    }
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    match Program::from_fd(OwnedFd::from(null)) {
        Err(Error::InvalidArgument(t)) => assert!(t.contains("not a stream Unix socket")),
        r => panic!("{r:?}"),
    }
    let (dgram, _other) = UnixDatagram::pair().expect("datagram pair");
    inheritable(&dgram);
    let dgram_fd = dgram.as_raw_fd().to_string();
    let run_check = |arg: &str| -> String {
        let out = Command::new(exe())
            .env(ROLE_ENV, "check")
            .arg(arg)
            .output()
            .expect("run the check program");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{arg}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    for (arg, why) in [
        ("abc", "is not a descriptor number"),
        ("-3", "is not a descriptor number"),
        ("+3", "is not a descriptor number"),
        ("", "is not a descriptor number"),
        ("99999999999", "is not a descriptor number"),
        ("999999", "is not open"),
        // Its stdout, a pipe here.
        ("1", "not a stream Unix socket"),
        (dgram_fd.as_str(), "not a stream Unix socket"),
    ] {
        let out = run_check(arg);
        assert!(
            out.starts_with("first: invalid: Program::from_env: ") && out.contains(why),
            "{arg:?}: {out}"
        );
        assert_eq!(out.lines().count(), 1, "{out}");
    }
    let (chan, _master) = UnixStream::pair().expect("socketpair");
    inheritable(&chan);
    let out = run_check(&chan.as_raw_fd().to_string());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[0], "first: ok");
    assert!(
        lines[1].starts_with("second: invalid:") && lines[1].contains("already taken"),
        "{out}"
    );
    assert_eq!(lines[2], "run: Ok(())");
    assert_eq!(lines[3], "again: Ok(Err(AlreadyStarted))");
    assert_eq!(lines[4], "builder: Some(AlreadyStarted)");
}

// ---------------------------------------------------------------------------------------
// A C master (the C API, called from Rust as a C program would)
// ---------------------------------------------------------------------------------------

static C_PONGS: AtomicU32 = AtomicU32::new(0);
/// `exited` and `status` of the program's EXITED event (-2: none yet).
static C_EXITED: AtomicI32 = AtomicI32::new(-2);
static C_STATUS: AtomicI32 = AtomicI32::new(-2);

unsafe extern "C" fn c_hello(
    ev: *mut mln_event_t,
    f_ptr: *mut c_void,
    buf: *mut c_void,
    len: mln_u32_t,
    _udata: *mut *mut c_void,
) {
    // SAFETY: `buf` holds `len` bytes during the call.
    let b = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) };
    assert_eq!(b, b"--program\0pong\0from C");
    let mut msg = *b"c";
    // SAFETY: the loop and the sender as given to this master handler; 1 readable byte.
    let r = unsafe {
        mln_ipc::capi::fork::mln_ipc_master_send_prepare(
            ev,
            PING,
            msg.as_mut_ptr().cast(),
            1,
            f_ptr.cast::<mln_fork_t>(),
        )
    };
    assert_eq!(r, 0);
}

unsafe extern "C" fn c_pong(
    ev: *mut mln_event_t,
    f_ptr: *mut c_void,
    buf: *mut c_void,
    len: mln_u32_t,
    _udata: *mut *mut c_void,
) {
    // SAFETY: as in `c_hello`.
    let b = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) };
    assert_eq!(b, b"c");
    C_PONGS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: as in `c_hello`; no payload.
    let r = unsafe {
        mln_ipc::capi::fork::mln_ipc_master_send_prepare(
            ev,
            STOP_ME,
            core::ptr::null_mut(),
            0,
            f_ptr.cast::<mln_fork_t>(),
        )
    };
    assert_eq!(r, 0);
}

unsafe extern "C" fn c_event(
    ev: *mut mln_event_t,
    _f: *mut mln_fork_t,
    e: *const mln_ipc_child_event_t,
    _data: *mut c_void,
) {
    // SAFETY: the core passes an event valid during the call.
    let e = unsafe { *e };
    if e.r#type == mln_ipc::abi::M_IPC_CHILD_EXITED {
        C_EXITED.store(e.exited, Ordering::SeqCst);
        C_STATUS.store(e.status, Ordering::SeqCst);
        // SAFETY: the live loop running this callback.
        unsafe { mln_ipc::reactor::break_set(ev) };
    }
}

/// `mln_fork_spawn` from a C master: the Rust program answers as it does a Rust master,
/// stops itself, and its exit status 0 reaches the child event.
fn c_master() {
    use mln_ipc::capi::{event, fork, lifecycle};
    // SAFETY: the C API used as its documentation says, on this thread only: handlers are
    // valid functions, the argument strings outlive the spawn (which copies them), the
    // loop is dispatched here and freed after.
    unsafe {
        assert_eq!(fork::mln_fork_prepare(), 0);
        // The program's exit status is known only where SIGCHLD is not ignored.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        let none = core::ptr::null_mut();
        assert_eq!(
            fork::mln_fork_master_ipc_handler_set(HELLO, Some(c_hello), none),
            0
        );
        assert_eq!(
            fork::mln_fork_master_ipc_handler_set(PONG, Some(c_pong), none),
            0
        );
        lifecycle::mln_ipc_child_event_handler_set(Some(c_event), none);
        let ev = event::mln_event_new();
        assert!(!ev.is_null());
        let args: Vec<CString> = [
            exe().to_str().expect("UTF-8 path"),
            "--program",
            "pong",
            "from C",
        ]
        .iter()
        .map(|s| CString::new(*s).expect("no NUL"))
        .collect();
        let mut ptrs: Vec<*mut core::ffi::c_char> =
            args.iter().map(|s| s.as_ptr().cast_mut()).collect();
        let r = fork::mln_fork_spawn(
            mln_ipc::abi::M_PST_DFL,
            ptrs.as_mut_ptr(),
            ptrs.len() as mln_u32_t,
            ev,
        );
        assert_eq!(r, 0);
        event::mln_event_dispatch(ev);
        event::mln_event_free(ev);
    }
    assert_eq!(C_PONGS.load(Ordering::SeqCst), 1);
    assert_eq!(C_EXITED.load(Ordering::SeqCst), 1, "exited normally");
    assert_eq!(C_STATUS.load(Ordering::SeqCst), 0);
}

/// Writes a byte to its socket when dropped.
struct Witness(UnixStream);

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.0.write_all(b"d");
    }
}

/// The Rust API's rules hold in a program too: a handler for a reserved type is refused;
/// a start hook that panics ends `run` with `Error::Panicked`; the closures are dropped
/// when `run` returns.
fn program_rules() {
    std::panic::set_hook(Box::new(|info| {
        let expected = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|s| s.contains("expected by the test"));
        if !expected {
            eprintln!("scenario failed: {info}");
            std::process::abort();
        }
    }));
    let (_master, ours) = UnixStream::pair().expect("socketpair");
    let r = Program::from_fd(OwnedFd::from(ours))
        .expect("from_fd")
        .on_worker(1, |_: &mut Worker, _: &[u8]| {})
        .run();
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let (mut master, ours) = UnixStream::pair().expect("socketpair");
    let (mut probe, witness) = UnixStream::pair().expect("socketpair");
    let w = Witness(witness);
    let r = Program::from_fd(OwnedFd::from(ours))
        .expect("from_fd")
        .on_worker(PING, move |_: &mut Worker, _: &[u8]| {
            let _ = &w;
        })
        .on_start(|w: &mut Worker| {
            w.send(PING, b"before the panic").expect("send");
            panic!("start failed (expected by the test)")
        })
        .run();
    match r {
        Err(Error::Panicked { hook, message }) => {
            assert_eq!(hook, "on_start");
            assert!(message.contains("start failed"), "{message}");
        }
        other => panic!("run gave {other:?}"),
    }
    let mut b = [0u8; 1];
    probe
        .read_exact(&mut b)
        .expect("the handler closure was dropped");
    // What the start hook queued was written before `run` returned.
    let mut head = [0u8; 8];
    master.read_exact(&mut head).expect("frame");
    assert_eq!(u32::from_ne_bytes(head[4..].try_into().unwrap()), PING);
}

fn main() -> ExitCode {
    if let Some(code) = program_role() {
        return code;
    }
    common::main(&[
        ("rust_master", rust_master),
        ("supervised_restart", supervised_restart),
        ("graceful_stop", graceful_stop),
        ("master_gone", master_gone),
        ("refusals", refusals),
        ("c_master", c_master),
        ("program_rules", program_rules),
    ])
}
