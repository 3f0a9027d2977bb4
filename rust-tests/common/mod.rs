//! Runner for the Rust API tests (`harness = false`).
//!
//! The API forks, and its state is per process; cargo's usual harness runs tests on threads
//! of one process, where forking is hazardous (and `Builder::run` refuses). So `main` runs
//! each scenario in a fresh process: it re-executes this test binary with
//! `MLN_API_SCENARIO=<name>`; that process runs the scenario alone (single-threaded) and
//! exits 0 on success; a failed assertion (a panic, in the master or in a worker) aborts
//! that process at once. A watchdog kills a scenario
//! that does not finish in time and counts it as failed. Each scenario runs in a process
//! group of its own: a process of it still there once it ended (a worker `run` did not
//! stop) fails it, and is killed. It prints one line per scenario and exits non-zero when
//! one failed; no summary line (cargo reports the binary's exit status, and a hand-written
//! line imitating libtest's would be read as libtest's). No unsafe code here.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const ENV: &str = "MLN_API_SCENARIO";
const WATCHDOG: Duration = Duration::from_secs(60);

pub type Scenario = (&'static str, fn());

/// The `main` of a test binary: runs `scenarios` (those whose name contains one of the
/// non-flag command-line arguments, if any are given), each in its own process.
pub fn main(scenarios: &[Scenario]) -> ExitCode {
    if let Ok(name) = std::env::var(ENV) {
        let Some((_, f)) = scenarios.iter().find(|(n, _)| *n == name) else {
            eprintln!("unknown scenario {name}");
            return ExitCode::from(2);
        };
        // A failed assertion inside a handler would be caught at the API's panic boundary
        // and logged; make it end the scenario at once instead. A scenario that tests that
        // boundary exempts its deliberate panics (`expect_panics`).
        std::panic::set_hook(Box::new(|info| {
            eprintln!("scenario failed: {info}");
            std::process::abort();
        }));
        f();
        return ExitCode::SUCCESS;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let exe = std::env::current_exe().expect("current_exe");
    let mut failed = 0;
    for (name, _) in scenarios {
        if !selected(name, &filters) {
            continue;
        }
        let started = Instant::now();
        let mut cmd = Command::new(&exe);
        cmd.env(ENV, name).process_group(0);
        // The scenarios kill, crash and stop workers on purpose, which the library reports
        // at warn: quiet unless the caller chose a level (a failure is reported here).
        if std::env::var_os("MLN_IPC_LOG").is_none() {
            cmd.env("MLN_IPC_LOG", "none");
        }
        let mut child = cmd.spawn().expect("re-execute the test binary");
        let group = child.id();
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break Some(st);
            }
            if started.elapsed() > WATCHDOG {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            // Watchdog polling only; the scenarios themselves synchronise by messages.
            std::thread::sleep(Duration::from_millis(10));
        };
        let left = reap_group(group);
        match status {
            Some(st) if st.success() && !left.is_empty() => {
                failed += 1;
                println!("test {name} ... FAILED (processes left behind: {left:?})");
            }
            Some(st) if st.success() => {
                println!("test {name} ... ok ({:.2?})", started.elapsed());
            }
            Some(st) => {
                failed += 1;
                println!("test {name} ... FAILED ({st})");
            }
            None => {
                failed += 1;
                println!("test {name} ... FAILED (watchdog: killed after {WATCHDOG:?})");
            }
        }
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// For a scenario that panics on purpose (to test the API's panic boundary): a panic whose
/// message contains `marker` unwinds silently (no message, no backtrace even with
/// RUST_BACKTRACE set), so the test's output stays quiet; any other panic still fails the
/// scenario at once through the hook `main` installed.
pub fn expect_panics(marker: &'static str) {
    let fail = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        if !msg.is_some_and(|m| m.contains(marker)) {
            fail(info);
        }
    }));
}

/// Waits (up to 3 s) for the processes of group `pgid` to be gone; kills and returns
/// those still there.
fn reap_group(pgid: u32) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let left = group_members(pgid);
        if left.is_empty() {
            return left;
        }
        if started.elapsed() > Duration::from_secs(3) {
            for pid in &left {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            return left;
        }
        // Polling for the end of processes we have no handle on.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The live (not zombie) processes of group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(i) = s.rfind(')') else { return false };
            let f: Vec<&str> = s[i + 1..].split_whitespace().collect();
            f.len() > 3 && f[0] != "Z" && f[2] == pgid.to_string()
        })
        .collect()
}

/// Whether scenario `name` runs: helpers (`sub_*`, run by [`output_of`]) never do from
/// the list; benchmarks (`bench_*`) only when a filter names them; the rest when no filter
/// is given or one matches.
fn selected(name: &str, filters: &[String]) -> bool {
    if name.starts_with("sub_") {
        return false;
    }
    if name.starts_with("bench_") {
        return filters.iter().any(|f| name.contains(f.as_str()));
    }
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// Runs scenario `name` of this test binary in a fresh process with `envs` set, and gives
/// its captured output (for scenarios about what a process prints).
pub fn output_of(name: &str, envs: &[(&str, &str)]) -> std::process::Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.env(ENV, name);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run a sub-scenario")
}

/// This process's children: (pid, state letter from /proc/<pid>/stat).
pub fn children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((state, ppid)) = stat_of(pid) {
            if ppid == me {
                out.push((pid, state));
            }
        }
    }
    out
}

/// The state letter and the parent of `pid`, if it exists.
pub fn stat_of(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = s[s.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// This process's zombie children.
pub fn zombies() -> Vec<u32> {
    children()
        .into_iter()
        .filter(|&(_, s)| s == 'Z')
        .map(|(p, _)| p)
        .collect()
}

/// Whether `pid` is a running process (not gone, not a zombie).
pub fn running(pid: u32) -> bool {
    stat_of(pid).is_some_and(|(s, _)| s != 'Z' && s != 'X')
}

/// Whether this process ignores SIGCHLD (bit 17 of SigIgn in /proc/self/status).
pub fn sigchld_ignored() -> bool {
    let s = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = s
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .expect("SigIgn");
    let mask = u64::from_str_radix(line.trim(), 16).expect("hex");
    mask & (1 << (17 - 1)) != 0
}

pub fn u32_at(payload: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        payload.get(i * 4..i * 4 + 4)?.try_into().ok()?,
    ))
}
