//! `cargo run --release --example accept_handoff [-- PORT | -- --self-test]`: handing
//! accepted connections to workers (descriptor passing), the Rust twin of
//! `examples/accept_handoff.c`.
//!
//! The master listens on 127.0.0.1:PORT (0 or none: a free port, printed), accepts
//! connections and hands each socket to one of its workers in turn (round-robin) with
//! [`Master::send_with_fds`], which moves it: the master's copy is closed once it is sent.
//! A worker takes it with [`Worker::take_fds`] and serves it on a thread of its own
//! (blocking std I/O, so the worker's loop goes on taking connections): it reads one line,
//! answers `worker <pid>: <line>` and closes it. SIGTERM or SIGINT stops the workers
//! gracefully: each finishes the connections it has before it exits.
//!
//! The listening socket is opened after the workers are forked, so they never see it; a
//! replacement forked later drops its copy first thing. The safe API has no way to watch a
//! descriptor on the master's loop, so the master looks for new connections every
//! `POLL` (a non-blocking `accept` until it would block).
//!
//! `--self-test` runs this program again as a client (`--client PORT`) that opens
//! `CLIENTS` connections at once and prints what it got; the master checks every answer,
//! that they came from its workers and from more than one of them, then stops the workers
//! gracefully and exits 0 if all went as it should (`make test` runs it).

use mln_ipc::api::{Builder, End, Error, Master, Worker, WorkerEvent};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitCode, Stdio};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Master to worker: a connection (its number, u32 little-endian, and one descriptor).
const CONN: u32 = 7100;
const WORKERS: u32 = 3;
/// Self-test: connections opened at once.
const CLIENTS: usize = 24;
const POLL: Duration = Duration::from_millis(2);
/// A connection silent for that long is dropped (also bounds a graceful stop).
const IDLE: Duration = Duration::from_secs(5);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
const TEST_LIMIT: Duration = Duration::from_secs(60);
const LINE_MAX: u64 = 256;

/// The master's state (each worker has a copy, taken at its fork, that it does not use).
#[derive(Default)]
struct Server {
    listener: Option<TcpListener>,
    port: u16,
    next: usize,
    handed: u32,
    live: u32,
    stopping: bool,
    stopped_ok: u32,
    ended_otherwise: u32,
    // Self-test.
    self_test: bool,
    client: Option<Child>,
    failures: Vec<String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (port, self_test) = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--client", port] => return client(port.parse().unwrap_or(0)),
        ["--self-test"] => (0, true),
        [port] if port.parse::<u16>().is_ok() => (port.parse().unwrap_or(0), false),
        [] => (0, false),
        _ => {
            eprintln!("usage: accept_handoff [PORT | --self-test]");
            return ExitCode::from(2);
        }
    };
    let server = Rc::new(RefCell::new(Server {
        port,
        self_test,
        ..Server::default()
    }));
    // A worker's serving threads (its own list, from its fork on).
    let threads: Rc<RefCell<Vec<JoinHandle<()>>>> = Rc::default();

    let run = Builder::new()
        .workers(WORKERS)
        .stop_on_signals(STOP_DEADLINE)
        .on_master_start({
            let server = server.clone();
            move |m: &mut Master| start(m, &server)
        })
        .on_worker_start({
            let server = server.clone();
            move |w: &mut Worker| {
                // A replacement forked after the listener was opened (or the client
                // started) has copies: not its business.
                *server.borrow_mut() = Server::default();
                println!("worker {}: ready", w.pid());
            }
        })
        .on_worker(CONN, {
            let threads = threads.clone();
            move |w: &mut Worker, payload: &[u8]| {
                let no = u32::from_le_bytes(payload.try_into().unwrap_or_default());
                let fds = w.take_fds(); // ours now; dropped (closed) if not used
                let Some(fd) = fds.into_iter().next() else {
                    // Only when this process was at its descriptor limit.
                    eprintln!(
                        "worker {}: connection #{no} without its descriptor (truncated: {})",
                        w.pid(),
                        w.fds_truncated()
                    );
                    return;
                };
                let pid = w.pid();
                let mut threads = threads.borrow_mut();
                threads.retain(|t| !t.is_finished());
                threads.push(std::thread::spawn(move || {
                    serve(TcpStream::from(fd), no, pid)
                }));
            }
        })
        .on_quit({
            let threads = threads.clone();
            move |w: &mut Worker| {
                let open: Vec<_> = threads.borrow_mut().drain(..).collect();
                println!(
                    "worker {}: asked to stop; finishing {} connection(s)",
                    w.pid(),
                    open.iter().filter(|t| !t.is_finished()).count()
                );
                for t in open {
                    let _ = t.join(); // bounded by IDLE
                }
            }
        })
        .on_worker_event({
            let server = server.clone();
            move |m: &mut Master, e: &WorkerEvent| worker_event(m, &server, e)
        })
        .run();

    let s = server.borrow();
    match run {
        Ok(summary) => println!(
            "master: {} connection(s) handed over; every worker has ended ({} clean); bye",
            s.handed,
            if summary.is_clean() { "all" } else { "not all" }
        ),
        Err(e) => {
            eprintln!("master: {e}");
            return ExitCode::FAILURE;
        }
    }
    if !s.self_test {
        return ExitCode::SUCCESS;
    }
    let mut failures = s.failures.clone();
    if s.stopped_ok != WORKERS || s.ended_otherwise != 0 {
        failures.push(format!(
            "{} workers stopped gracefully, {} ended otherwise",
            s.stopped_ok, s.ended_otherwise
        ));
    }
    if s.handed != CLIENTS as u32 {
        failures.push(format!("{} of {CLIENTS} connections handed over", s.handed));
    }
    for f in &failures {
        eprintln!("self-test: {f}");
    }
    println!(
        "self-test: {} ({} connections, {} workers stopped gracefully)",
        if failures.is_empty() { "ok" } else { "FAILED" },
        s.handed,
        s.stopped_ok
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// In the master, once the workers are forked: open the listening socket, start accepting
/// (and, for the self-test, the client).
fn start(m: &mut Master, server: &Rc<RefCell<Server>>) {
    let mut s = server.borrow_mut();
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, s.port)) {
        Ok(l) => l,
        Err(e) => return fail_now(m, &mut s, format!("listening socket: {e}")),
    };
    if let Err(e) = listener.set_nonblocking(true) {
        return fail_now(m, &mut s, format!("listening socket: {e}"));
    }
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    println!(
        "master: pid {}, {WORKERS} workers, listening on 127.0.0.1:{port}",
        std::process::id()
    );
    s.listener = Some(listener);
    if s.self_test {
        let exe = std::env::current_exe().expect("this program's path");
        match Command::new(exe)
            .args(["--client", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(c) => s.client = Some(c),
            Err(e) => return fail_now(m, &mut s, format!("starting the client: {e}")),
        }
        let server = server.clone();
        let _ = m.after(TEST_LIMIT, move |m| {
            let mut s = server.borrow_mut();
            s.failures.push(format!("not done within {TEST_LIMIT:?}"));
            if let Some(mut c) = s.client.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            m.stop();
        });
    }
    drop(s);
    tick(m, server);
}

/// Takes the pending connections, hands them over, and comes back in `POLL`.
fn tick(m: &mut Master, server: &Rc<RefCell<Server>>) {
    let mut s = server.borrow_mut();
    if s.stopping {
        return;
    }
    while let Some(listener) = &s.listener {
        match listener.accept() {
            Ok((stream, _)) => hand_off(m, &mut s, stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and the like: try again at the next tick.
                eprintln!("master: accept: {e}");
                break;
            }
        }
    }
    if s.self_test {
        check_client(m, &mut s);
    }
    if !s.stopping {
        let server = server.clone();
        let _ = m.after(POLL, move |m| tick(m, &server));
    }
}

/// Sends `stream` to the next worker in turn; one whose queue is full (it does not keep
/// up) is skipped. A refused send closes the descriptors it was given, so each try gets a
/// duplicate; ours closes when `stream` goes.
fn hand_off(m: &mut Master, s: &mut Server, stream: TcpStream) {
    let workers = m.workers(); // those being stopped are not listed
    let fd = OwnedFd::from(stream);
    let no = s.handed + 1;
    for i in 0..workers.len() {
        let to = workers[(s.next + i) % workers.len()];
        let Ok(dup) = fd.try_clone() else { break };
        match m.send_with_fds(to, CONN, no.to_le_bytes(), vec![dup]) {
            Ok(()) => {
                s.next = (s.next + i + 1) % workers.len();
                s.handed = no;
                println!("master: connection #{no} to worker {}", to.pid());
                return;
            }
            Err(Error::QueueFull | Error::PeerGone) => continue,
            Err(e) => eprintln!("master: send to {}: {e}", to.pid()),
        }
    }
    eprintln!("master: no worker takes a connection now; dropped");
}

fn worker_event(m: &mut Master, server: &Rc<RefCell<Server>>, e: &WorkerEvent) {
    let mut s = server.borrow_mut();
    match e {
        WorkerEvent::Started { .. } => s.live += 1,
        WorkerEvent::Exited {
            pid, how, status, ..
        } => {
            s.live -= 1;
            let clean = *how == End::Stopped && status.and_then(|st| st.code()) == Some(0);
            let status = status.map_or("status unknown".to_string(), |st| st.to_string());
            println!("master: worker {pid} ended ({how:?}, {status})");
            if clean {
                s.stopped_ok += 1;
            } else {
                s.ended_otherwise += 1;
            }
            if s.stopping && s.live == 0 {
                m.stop();
            }
        }
        _ => {}
    }
}

/// Self-test: once the client has exited, check what it printed, then stop every worker
/// gracefully (their ends come as `WorkerEvent::Exited`; the last one stops the master).
fn check_client(m: &mut Master, s: &mut Server) {
    let Some(client) = &mut s.client else { return };
    match client.try_wait() {
        Ok(None) => return,
        Ok(Some(st)) if !st.success() => s.failures.push(format!("the client: {st}")),
        Ok(Some(_)) => {}
        Err(e) => s.failures.push(format!("the client: {e}")),
    }
    let mut out = String::new();
    if let Some(mut o) = client.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    s.client = None;
    for line in out.lines() {
        println!("client: {line}");
    }
    let workers: Vec<u32> = m.workers().iter().map(|w| w.pid()).collect();
    let mut answered = 0;
    let mut pids = Vec::new();
    for line in out.lines() {
        let Some((i, pid)) = line.strip_prefix("answer ").and_then(|l| l.split_once(' ')) else {
            continue;
        };
        let pid: u32 = pid.parse().unwrap_or(0);
        if !workers.contains(&pid) {
            s.failures
                .push(format!("answer {i} from {pid}, which is not a worker"));
        }
        answered += 1;
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    if answered != CLIENTS {
        s.failures
            .push(format!("{answered} of {CLIENTS} connections answered"));
    }
    if pids.len() < 2 {
        s.failures
            .push("the answers did not come from more than one worker".into());
    }
    stop_all(m, s);
}

fn stop_all(m: &mut Master, s: &mut Server) {
    println!("master: stopping the workers");
    s.stopping = true;
    s.listener = None;
    for w in m.workers() {
        let _ = m.stop_worker(w, STOP_DEADLINE);
    }
    if s.live == 0 {
        m.stop();
    }
}

fn fail_now(m: &mut Master, s: &mut Server, why: String) {
    eprintln!("master: {why}");
    s.failures.push(why);
    s.self_test = true; // so that `main` reports the failure
    stop_all(m, s);
}

/// In a worker's thread: one line in, one answer out.
fn serve(stream: TcpStream, no: u32, pid: u32) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let _ = stream.set_write_timeout(Some(IDLE));
    let mut line = String::new();
    if BufReader::new((&stream).take(LINE_MAX))
        .read_line(&mut line)
        .is_err()
        || line.is_empty()
    {
        return;
    }
    let line = line.trim_end_matches(['\r', '\n']);
    println!("worker {pid}: connection #{no}: {line:?}");
    let _ = (&stream).write_all(format!("worker {pid}: {line}\n").as_bytes());
}

/// `--client PORT` (the self-test's client): opens `CLIENTS` connections at once, sends a
/// line on each, and prints `answer <i> <pid>` for each correct answer.
fn client(port: u16) -> ExitCode {
    let mut conns = Vec::new();
    for i in 0..CLIENTS {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(c) => conns.push((i, c)),
            Err(e) => eprintln!("client: connect {i}: {e}"),
        }
    }
    for (i, c) in &mut conns {
        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = writeln!(c, "hello {i}");
    }
    for (i, mut c) in conns {
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer); // the worker closes after its answer
        let pid = answer
            .strip_prefix("worker ")
            .and_then(|a| a.split_once(": "))
            .filter(|(_, rest)| *rest == format!("hello {i}\n"))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        match pid {
            Some(pid) => println!("answer {i} {pid}"),
            None => eprintln!("client: for \"hello {i}\" got {answer:?}"),
        }
    }
    ExitCode::SUCCESS
}
