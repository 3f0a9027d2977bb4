//! What `Builder::run` does to the process around it: SIGCHLD keeps its disposition (so
//! `std::process::Command` works in the master, during and after `run`) and no child is
//! left a zombie; stdio buffered before a fork is printed once; a program that `execv`
//! refuses is reported by `run`. Safe API only.

mod common;

use mln_ipc::api::{Builder, Error, Master, Worker, WorkerId};
use std::process::{Command, ExitCode};

const HELLO: u32 = 4801;
const QUIT: u32 = 4802;

/// `true` runs and is waited for: SIGCHLD is not ignored in this process.
fn command_works(when: &str) {
    match Command::new("true").status() {
        Ok(st) => assert!(st.success(), "{when}: true: {st}"),
        Err(e) => panic!("{when}: std::process::Command: {e}"),
    }
}

/// SIGCHLD is left as it was: `Command` works in a master handler (before and after a
/// worker restart) and after `run`; the dead worker and the stopped ones are reaped.
fn sigchld_left_alone() {
    assert!(!common::sigchld_ignored());
    let summary = Builder::new()
        .workers(2)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(QUIT, |w: &mut Worker, _: &[u8]| w.stop())
        .on_master(HELLO, {
            let mut hellos = 0;
            move |m: &mut Master, from: WorkerId, _: &[u8]| {
                hellos += 1;
                assert!(!common::sigchld_ignored(), "SIGCHLD ignored during run");
                command_works("in a master handler");
                match hellos {
                    1 => {}
                    2 => m.send_to(from, QUIT, []).expect("quit"),
                    _ => {
                        // The replacement: the worker it replaces is gone and reaped.
                        assert_eq!(common::zombies(), Vec::<u32>::new(), "zombie after restart");
                        m.stop();
                    }
                }
            }
        })
        .run()
        .expect("run");
    assert_eq!(summary.killed, vec![]);
    assert!(!common::sigchld_ignored(), "SIGCHLD ignored after run");
    command_works("after run");
    assert_eq!(common::children(), vec![], "children left after run");
}

/// Helper of `printed_once`: the master prints without a newline, then a worker restart
/// forks a replacement inside the master's loop.
fn sub_print_then_restart() {
    Builder::new()
        .workers(1)
        .on_worker_start(|w: &mut Worker| w.send(HELLO, []).expect("hello"))
        .on_worker(QUIT, |w: &mut Worker, _: &[u8]| w.stop())
        .on_master(HELLO, {
            let mut first = true;
            move |m: &mut Master, from: WorkerId, _: &[u8]| {
                if first {
                    first = false;
                    print!("<unflushed>");
                    m.send_to(from, QUIT, []).expect("quit");
                } else {
                    m.stop();
                }
            }
        })
        .run()
        .expect("run");
    println!();
}

/// What the master printed (and had not flushed) before a worker restart appears once.
fn printed_once() {
    let out = common::output_of("sub_print_then_restart", &[]);
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s.matches("<unflushed>").count(), 1, "stdout: {s:?}");
}

/// A file with the x bit that `execv` refuses (ENOEXEC): `run` says so, and leaves no
/// child behind (the worker started before it is stopped again).
fn exec_failure_is_an_error() {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("mln_ipc_noexec_{}", std::process::id()));
    std::fs::write(&path, b"\x01\x02 not a program\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let r = Builder::new()
        .workers(1)
        .spawn(&path, ["arg"], true)
        .on_master_start(|m: &mut Master| m.stop())
        .run();
    let _ = std::fs::remove_file(&path);
    match r {
        Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOEXEC), "{e}"),
        other => panic!("spawn of a non-executable file: {other:?}"),
    }
    assert_eq!(common::children(), vec![], "children left");
}

fn main() -> ExitCode {
    common::main(&[
        ("sigchld_left_alone", sigchld_left_alone),
        ("sub_print_then_restart", sub_print_then_restart),
        ("printed_once", printed_once),
        ("exec_failure_is_an_error", exec_failure_is_an_error),
    ])
}
