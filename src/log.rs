//! Logging. Standalone build: one line per event on stderr; the level comes from
//! `MLN_IPC_LOG` = none|error|warn|info|debug, read once per process. The default, warn,
//! reports what a user must know about: each child's death and restart (one line: pid,
//! exit status or signal, reason, frames lost, what happens next) and protocol errors;
//! `MLN_IPC_LOG=error` is quiet. Case does not matter; empty is the same as unset; an
//! unknown value is reported once and the default used. Melon build: every call goes to
//! Melon's `_mln_sys_log` (info as `report`), pre-formatted, and Melon's `log_level`
//! decides what is written.

use std::fmt::Arguments;
#[cfg(feature = "standalone")]
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub enum Level {
    None = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

const UNSET: u8 = u8::MAX;
/// The level when `MLN_IPC_LOG` is not set (or not a level).
pub const DEFAULT: Level = Level::Warn;
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);

/// Parses a `MLN_IPC_LOG` value; unknown words give `None` so a typo is not silently loud.
pub fn parse_level(s: &str) -> Option<Level> {
    match s.trim().to_ascii_lowercase().as_str() {
        "none" | "off" => Some(Level::None),
        "error" => Some(Level::Error),
        "warn" | "warning" => Some(Level::Warn),
        "info" => Some(Level::Info),
        "debug" => Some(Level::Debug),
        _ => None,
    }
}

pub fn level() -> Level {
    let v = LEVEL.load(Ordering::Relaxed);
    let v = if v == UNSET {
        // Set but empty counts as not set, as for most tools.
        let raw = std::env::var("MLN_IPC_LOG")
            .ok()
            .filter(|s| !s.trim().is_empty());
        let l = match raw.as_deref().map(|s| (s, parse_level(s))) {
            None => DEFAULT,
            Some((_, Some(l))) => l,
            Some((s, None)) => {
                #[cfg(feature = "standalone")]
                {
                    let line = format!(
                        "mln_ipc[{}] warn: MLN_IPC_LOG={s:?} is not a level \
                         (none|error|warn|info|debug); using warn\n",
                        std::process::id()
                    );
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
                #[cfg(not(feature = "standalone"))]
                let _ = s;
                DEFAULT
            }
        };
        LEVEL.store(l as u8, Ordering::Relaxed);
        l as u8
    } else {
        v
    };
    match v {
        0 => Level::None,
        1 => Level::Error,
        2 => Level::Warn,
        3 => Level::Info,
        _ => Level::Debug,
    }
}

pub fn enabled(l: Level) -> bool {
    l != Level::None && l <= level()
}

/// Melon build: one line to Melon's log (`_mln_sys_log`) at the matching level: error,
/// warn, report (our info), debug. Melon filters by its configured `log_level`.
#[cfg(not(feature = "standalone"))]
fn emit(l: Level, args: Arguments<'_>) {
    use crate::melon::sys;
    let level = match l {
        Level::None => return,
        Level::Error => sys::LOG_ERROR,
        Level::Warn => sys::LOG_WARN,
        Level::Info => sys::LOG_REPORT,
        Level::Debug => sys::LOG_DEBUG,
    };
    let mut line = args.to_string().replace('\0', " ");
    line.push('\n');
    let Ok(line) = std::ffi::CString::new(line) else {
        return;
    };
    // SAFETY: Melon's variadic logger with a "%s" format and one C string argument.
    unsafe {
        sys::_mln_sys_log(
            level,
            c"melon-ipc".as_ptr(),
            c"mln_ipc".as_ptr(),
            0,
            c"%s".as_ptr(),
            line.as_ptr(),
        )
    };
}

#[cfg(feature = "standalone")]
fn emit(l: Level, args: Arguments<'_>) {
    if !enabled(l) {
        return;
    }
    let tag = match l {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        _ => "debug",
    };
    // One write per line so that lines of several processes do not interleave.
    let line = format!("mln_ipc[{}] {tag}: {args}\n", std::process::id());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

pub fn error(args: Arguments<'_>) {
    emit(Level::Error, args)
}
pub fn warn(args: Arguments<'_>) {
    emit(Level::Warn, args)
}
pub fn info(args: Arguments<'_>) {
    emit(Level::Info, args)
}
pub fn debug(args: Arguments<'_>) {
    emit(Level::Debug, args)
}
