//! `mln_fork()` of the melon build: reads Melon's configuration as Melon does (spec §4.8)
//! and starts `worker_proc` supervised workers, then the programs of the `proc_exec`
//! domain (`keepalive` supervised, `default` not).
//!
//! Same checks, messages and outcomes as Melon (`abort()` without a configuration or a
//! `main` domain, `exit(1)` on a malformed `worker_proc` or `proc_exec`), with two
//! deliberate differences: the whole `proc_exec` domain is checked before the first
//! program is started (Melon starts the valid commands that precede a bad one, then
//! exits), and the argument strings are copied (Melon keeps pointers into the
//! configuration, which a reload frees, D11).

use crate::abi::{proc_state_type, M_PST_DFL, M_PST_SUP};
use crate::log;
use crate::melon::sys::{self, mln_conf_cmd_t, mln_conf_t, CONF_INT, CONF_STR};
use core::ffi::{c_char, c_int, CStr};
use core::ptr::null_mut;
use std::ffi::CString;

/// Returns 1 in the master, 0 in a worker, -1 when memory for the command vector is
/// missing. Exec'd children never return.
pub(crate) fn fork_from_conf() -> c_int {
    // SAFETY: libmelon's accessor; NULL when no configuration is loaded.
    let cf = unsafe { sys::mln_conf() };
    if cf.is_null() {
        fatal_abort("configuration crashed.");
    }
    // SAFETY: `cf` is Melon's live configuration; `search` is its domain lookup.
    let cd = unsafe { search_domain(cf, c"main") };
    if cd.is_null() {
        fatal_abort("Domain 'main' NOT existed.");
    }
    let workers = worker_proc(cd);
    for _ in 0..workers {
        // Melon: a failed fork is skipped.
        if let Ok(super::Forked::Child) = super::restart(null_mut()) {
            return 0;
        }
    }
    let Some(programs) = proc_exec(cf) else {
        return -1;
    };
    for (stype, args) in programs {
        // Spawn results are ignored, as in Melon; a failure was logged.
        let _ = super::spawn(stype, args, null_mut());
    }
    1
}

/// `worker_proc` of domain `main`: absent → 0.
fn worker_proc(cd: *mut sys::mln_conf_domain_t) -> i64 {
    // SAFETY: `cd` is a live domain of the configuration.
    let cmd = unsafe { search_cmd(cd, c"worker_proc") };
    if cmd.is_null() {
        return 0;
    }
    // SAFETY: `cmd` is a live command.
    unsafe {
        if sys::mln_conf_arg_num(cmd) > 1 {
            fatal_exit("Too many arguments follow 'worker_proc'.");
        }
        let ci = item(cmd, 1);
        if ci.is_null() || (*ci).r#type != CONF_INT {
            fatal_exit("'worker_proc' need an integer argument.");
        }
        let n = (*ci).int();
        if n < 0 {
            fatal_exit("Invalid value to 'worker_process'.");
        }
        n
    }
}

/// The programs of the top-level `proc_exec` domain, all checked. `None`: no memory.
fn proc_exec(cf: *mut mln_conf_t) -> Option<Vec<(proc_state_type, Vec<CString>)>> {
    let domain = c"proc_exec".as_ptr().cast_mut();
    // SAFETY: live configuration; Melon does not write through the name.
    let n = unsafe { sys::mln_conf_cmd_num(cf, domain) } as usize;
    if n == 0 {
        return Some(Vec::new());
    }
    let mut v: Vec<*mut mln_conf_cmd_t> = Vec::new();
    if v.try_reserve_exact(n + 1).is_err() {
        log::error(format_args!("No memory."));
        return None;
    }
    v.resize(n + 1, null_mut());
    // SAFETY: `v` has room for the `n` commands Melon writes.
    unsafe { sys::mln_conf_cmds(cf, domain, v.as_mut_ptr()) };
    let mut out = Vec::with_capacity(n);
    for &cc in v.iter().take_while(|c| !c.is_null()) {
        // SAFETY: `cc` is a live command of the domain; items and strings belong to the
        // configuration and are NUL-terminated (Melon hands them to execv).
        unsafe {
            let n_args = sys::mln_conf_arg_num(cc);
            if n_args == 0 {
                fatal_exit("Demand arguments in 'proc_exec'.");
            }
            let mut args = Vec::with_capacity(n_args as usize);
            for i in 1..=n_args {
                let ci = item(cc, i);
                if ci.is_null() || (*ci).r#type != CONF_STR || (*ci).string().is_null() {
                    fatal_exit("Demand string arguments in 'proc_exec'.");
                }
                let s = (*ci).string();
                args.push(CString::from(CStr::from_ptr((*s).data.cast::<c_char>())));
            }
            let name = (*cc).cmd_name;
            let stype = if is(name, c"keepalive") {
                M_PST_SUP
            } else if is(name, c"default") {
                M_PST_DFL
            } else {
                let shown = if name.is_null() || (*name).data.is_null() {
                    String::new()
                } else {
                    let bytes = core::slice::from_raw_parts((*name).data, (*name).len as usize);
                    String::from_utf8_lossy(bytes).into_owned()
                };
                fatal_exit(&format!("Invalid command '{shown}' in 'proc_exec'."));
            };
            out.push((stype, args));
        }
    }
    Some(out)
}

unsafe fn search_domain(cf: *mut mln_conf_t, name: &CStr) -> *mut sys::mln_conf_domain_t {
    // SAFETY: caller's contract: live configuration.
    match unsafe { (*cf).search } {
        // SAFETY: Melon's own lookup; it does not write through the name.
        Some(f) => unsafe { f(cf, name.as_ptr().cast_mut()) },
        None => null_mut(),
    }
}

unsafe fn search_cmd(cd: *mut sys::mln_conf_domain_t, name: &CStr) -> *mut mln_conf_cmd_t {
    // SAFETY: caller's contract: live domain.
    match unsafe { (*cd).search } {
        // SAFETY: as above.
        Some(f) => unsafe { f(cd, name.as_ptr().cast_mut()) },
        None => null_mut(),
    }
}

/// Item `i` (1-based) of a command, NULL when absent.
unsafe fn item(cmd: *mut mln_conf_cmd_t, i: u32) -> *mut sys::mln_conf_item_t {
    // SAFETY: caller's contract: live command.
    match unsafe { (*cmd).search } {
        // SAFETY: Melon's own accessor.
        Some(f) => unsafe { f(cmd, i) },
        None => null_mut(),
    }
}

unsafe fn is(name: *mut sys::mln_string_t, word: &CStr) -> bool {
    // SAFETY: caller's contract: `name` is a live conf string or NULL.
    !name.is_null() && unsafe { sys::mln_string_const_strcmp(name, word.as_ptr().cast_mut()) } == 0
}

fn fatal_abort(msg: &str) -> ! {
    log::error(format_args!("{msg}"));
    std::process::abort()
}

fn fatal_exit(msg: &str) -> ! {
    log::error(format_args!("{msg}"));
    std::process::exit(1)
}
