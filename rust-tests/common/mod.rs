//! Runner for the Rust API tests (`harness = false`).
//!
//! The API forks, and its state is per process; cargo's usual harness runs tests on threads
//! of one process, where forking is hazardous (and `Builder::run` refuses). So `main` runs
//! each scenario in a fresh process: it re-executes this test binary with
//! `MLN_API_SCENARIO=<name>`; that process runs the scenario alone (single-threaded) and
//! exits 0 on success; a failed assertion (a panic, in the master or in a worker) aborts
//! that process at once. A watchdog kills a scenario
//! that does not finish in time and counts it as failed. It prints one line per scenario
//! and exits non-zero when one failed; no summary line (cargo reports the binary's exit
//! status, and a hand-written line imitating libtest's would be read as libtest's).
//! No unsafe code here.
#![allow(dead_code)]

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
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        let mut child = Command::new(&exe)
            .env(ENV, name)
            .spawn()
            .expect("re-execute the test binary");
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
        match status {
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

pub fn u32_at(payload: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        payload.get(i * 4..i * 4 + 4)?.try_into().ok()?,
    ))
}
