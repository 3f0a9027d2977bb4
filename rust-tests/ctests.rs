//! `cargo test` runs the C tests too: each `ctests/*.c` (or those whose name contains one of
//! the non-flag arguments) is compiled against the static library of this very build and
//! run, as `ctests/run.sh` does for `make ctest`, with the same rules:
//!
//! * compiled with `-std=gnu11 -Wall -Wextra -Werror -Iinclude`, the archive, then the
//!   pinned `LIBS` of the Makefile (or `$LIBS`); the compiler is the one the `cc` crate
//!   finds (`$CC`, `$CC_<target>`, `$TARGET_CC`, else the platform's default; `$CFLAGS` is
//!   appended);
//! * run from the package root, one at a time, in a process group of its own, with
//!   `MLN_IPC_LOG=error` unless set, and killed (the whole group: TERM, then KILL 5 s later)
//!   after `CTEST_TIMEOUT` seconds (default 60);
//! * passing by exit status 0; a test marked `CTEST_XFAIL: <reason>` is a known failure: a
//!   failure prints XFAIL and does not count, a pass (XPASS) fails: remove the marker.
//!
//! Output: one line per C test (`PASS name`, `FAIL name (...)` with the end of its log,
//! `XFAIL name (...)`), binaries and logs in `target/<profile>/ctests/`; the exit status is
//! non-zero when one failed. No summary line (cargo reports the exit status).
//!
//! Which archive: cargo builds the library's crate types (rlib, staticlib, cdylib) in one
//! rustc run, also when it builds the library for the tests; but it copies them up to
//! `target/<profile>/` only for `cargo build`, never for `cargo test`. So the archive of
//! this build is `libmln_ipc.a` in the directory of this test's own executable
//! (`target/<profile>/deps/`), and `target/<profile>/libmln_ipc.a` is either missing or
//! left by an earlier `cargo build` (stale after a source change); it is never used here.
//!
//! Skipped (exit 0, saying so): in the melon build (the archive needs libmelon), and when
//! `MLN_IPC_CTESTS_SEPARATE` is set: `make test` sets it because it runs the C tests in a
//! stage of their own (`make ctest`), which would otherwise run them twice.
#![cfg_attr(not(feature = "standalone"), allow(dead_code, unused_imports))]

use std::fs::{self, File};
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

const SEPARATE: &str = "MLN_IPC_CTESTS_SEPARATE";
const MARKER: &str = "CTEST_XFAIL:";
/// How long a test may take to leave after the TERM of the timeout (`timeout -k 5`).
const KILL_AFTER: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    if !cfg!(feature = "standalone") {
        println!("ctests: skipped (the melon build's archive needs libmelon)");
        return ExitCode::SUCCESS;
    }
    if std::env::var_os(SEPARATE).is_some_and(|v| !v.is_empty()) {
        println!("ctests: skipped ({SEPARATE} is set: the C tests run in a stage of their own)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            println!("ctests: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the selected C tests; `Ok(false)` when one failed.
fn run() -> io::Result<bool> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe()?;
    let deps = exe.parent().expect("the test executable is in a directory");
    let lib = deps.join("libmln_ipc.a");
    if !lib.is_file() {
        return Err(io::Error::other(format!(
            "{} not found: cargo no longer puts the library's archive beside the test \
             executables (see the comment at the top of rust-tests/ctests.rs)",
            lib.display()
        )));
    }
    let out = deps.parent().unwrap_or(deps).join("ctests");
    fs::create_dir_all(&out)?;
    let libs = pinned_libs(root)?;
    let timeout = Duration::from_secs(
        std::env::var("CTEST_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let compiler = compiler(root, &out);

    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut srcs: Vec<PathBuf> = fs::read_dir(root.join("ctests"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    srcs.retain(|p| p.extension().is_some_and(|x| x == "c"));
    srcs.sort();

    let mut failed = Vec::new();
    let mut ran = 0;
    for src in &srcs {
        let name = src.file_stem().unwrap().to_string_lossy().into_owned();
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let bin = out.join(&name);
        let log = out.join(format!("{name}.log"));
        let xfail = xfail_reason(&fs::read_to_string(src)?);

        let mut cc = compiler.to_command();
        cc.arg(src).arg(&lib).args(&libs).arg("-o").arg(&bin);
        let (o, e) = log_file(&log)?;
        if !cc.current_dir(root).stdout(o).stderr(e).status()?.success() {
            let line: Vec<_> = std::iter::once(cc.get_program())
                .chain(cc.get_args())
                .map(|a| a.to_string_lossy())
                .collect();
            println!("FAIL {name} (compile: {})", line.join(" "));
            print_log(&log, 40, false);
            if fs::read_to_string(&log)?.contains("undefined reference to `mln_event_") {
                println!(
                    "    ({} lacks the event loop: is it the melon build's? `cargo clean` \
                     and test again)",
                    lib.display()
                );
            }
            failed.push(name);
            continue;
        }

        let (o, e) = log_file(&log)?;
        let mut test = Command::new(&bin);
        test.current_dir(root)
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e);
        if std::env::var_os("MLN_IPC_LOG").is_none() {
            test.env("MLN_IPC_LOG", "error");
        }
        let (status, timed_out) = run_with_timeout(&mut test, timeout)?;
        let how = if timed_out {
            format!("{}, timeout after {}s", describe(status), timeout.as_secs())
        } else {
            describe(status)
        };
        match (status.success() && !timed_out, xfail) {
            (true, None) => println!("PASS {name}"),
            (false, None) => {
                println!("FAIL {name} ({how})");
                print_log(&log, 40, true);
                failed.push(name);
            }
            (false, Some(why)) => {
                println!("XFAIL {name} ({how}; known failure: {why})");
                print_log(&log, 5, true);
            }
            (true, Some(why)) => {
                println!(
                    "FAIL {name} (XPASS: passes although marked as a known failure: {why}; \
                     remove the CTEST_XFAIL marker from ctests/{name}.c)"
                );
                failed.push(name);
            }
        }
    }
    if ran == 0 && filters.is_empty() {
        return Err(io::Error::other("no C tests found in ctests/"));
    }
    if !failed.is_empty() {
        println!("ctests: failed: {}", failed.join(" "));
    }
    Ok(failed.is_empty())
}

/// The compiler as the `cc` crate detects it, with run.sh's flags. `cc` is made for build
/// scripts and reads cargo's TARGET/HOST/OPT_LEVEL/OUT_DIR there; build.rs passes the
/// triples on, and the rest is set here. No default flags of `cc` (optimisation, -fPIC,
/// debug info, ...): the command is the compiler, the flags below and `$CFLAGS`.
fn compiler(root: &Path, out: &Path) -> cc::Tool {
    cc::Build::new()
        .target(env!("MLN_IPC_BUILD_TARGET"))
        .host(env!("MLN_IPC_BUILD_HOST"))
        .opt_level(0)
        .debug(false)
        .out_dir(out)
        .cargo_metadata(false)
        .no_default_flags(true)
        .std("gnu11")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .include(root.join("include"))
        .get_compiler()
}

/// `$LIBS`, else the pinned `LIBS = ...` of the Makefile (as run.sh reads it).
fn pinned_libs(root: &Path) -> io::Result<Vec<String>> {
    let line = match std::env::var("LIBS") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => fs::read_to_string(root.join("Makefile"))?
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix("LIBS")?.trim_start();
                Some(rest.strip_prefix('=')?.trim().to_string())
            })
            .ok_or_else(|| io::Error::other("no `LIBS = ...` line in the Makefile"))?,
    };
    Ok(line.split_whitespace().map(str::to_string).collect())
}

/// The reason after the first `CTEST_XFAIL:` marker of a source, if it has one.
fn xfail_reason(src: &str) -> Option<String> {
    let line = src.lines().find(|l| l.contains(MARKER))?;
    let why = &line[line.find(MARKER)? + MARKER.len()..];
    Some(why.trim().trim_end_matches("*/").trim_end().to_string())
}

/// Runs `cmd` in a process group of its own; after `timeout`, TERM to the whole group
/// (the test's workers included), KILL `KILL_AFTER` later. Returns its status and whether
/// the timeout struck.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> io::Result<(ExitStatus, bool)> {
    let mut child = cmd.process_group(0).spawn()?;
    let group = child.id() as libc::pid_t;
    let (done, wait) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(timeout) != Err(RecvTimeoutError::Timeout) {
            return false;
        }
        kill_group(group, libc::SIGTERM);
        if wait.recv_timeout(KILL_AFTER) == Err(RecvTimeoutError::Timeout) {
            kill_group(group, libc::SIGKILL);
        }
        true
    });
    let status = child.wait()?;
    let _ = done.send(());
    Ok((status, watchdog.join().expect("watchdog thread")))
}

fn kill_group(group: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) takes no pointers; a negative pid names the test's process group,
    // which exists while any of its processes does (ESRCH otherwise, ignored).
    unsafe { libc::kill(-group, sig) };
}

fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{st}"),
    }
}

/// A fresh log file, as the standard output and error of a command (one file, one offset).
fn log_file(path: &Path) -> io::Result<(File, File)> {
    let f = File::create(path)?;
    let g = f.try_clone()?;
    Ok((f, g))
}

/// Prints a log indented: its first or last `n` lines.
fn print_log(log: &Path, n: usize, tail: bool) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let n = n.min(lines.len());
    let shown = if tail {
        &lines[lines.len() - n..]
    } else {
        &lines[..n]
    };
    for l in shown {
        println!("    {l}");
    }
}
