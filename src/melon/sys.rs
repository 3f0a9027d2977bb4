//! Every declaration the melon build imports from libmelon, in one place (spec §1.12, §6,
//! §7): the event loop, the configuration, the log and the connection helpers, plus the
//! configuration structures `mln_fork()` walks. Nothing here is part of our header (each
//! `extern` block is `cbindgen:ignore`, and no exported function mentions these structs).
//!
//! The symbols come from `-lmelon` (or `libmelon_static.a`) at link time; our archive is
//! linked before it. Prototypes are those of Melon HEAD 270f2c80.
#![allow(non_camel_case_types)]

use crate::abi::{
    ev_fd_handler, ev_tm_handler, mln_event_t, mln_event_timer_t, mln_sauto_t, mln_tcp_conn_t,
    mln_u32_t, mln_u64_t, mln_u8ptr_t,
};
use core::ffi::{c_char, c_int, c_void};
use core::mem::{offset_of, size_of};

// ---------------------------------------------------------------------------------------
// Configuration structures (spec §1.12). Only the fields melon-ipc reads are typed; the
// rest are opaque pointers at their offsets.
// ---------------------------------------------------------------------------------------

/// `mln_string_t` (24 bytes). Conf strings are NUL-terminated.
#[repr(C)]
pub(crate) struct mln_string_t {
    pub data: mln_u8ptr_t,
    pub len: mln_u64_t,
    pub _bits: u64,
}

/// `mln_conf_item_t` (16 bytes): `type` then the union `val` at 8.
#[repr(C)]
pub(crate) struct mln_conf_item_t {
    pub r#type: c_int,
    /// The union: `s` (`mln_string_t *`) for CONF_STR, `i` (`mln_sauto_t`) for CONF_INT.
    pub val: u64,
}

pub(crate) const CONF_STR: c_int = 1;
pub(crate) const CONF_INT: c_int = 4;

impl mln_conf_item_t {
    /// `val.i`.
    pub(crate) fn int(&self) -> mln_sauto_t {
        self.val as mln_sauto_t
    }
    /// `val.s`.
    pub(crate) fn string(&self) -> *mut mln_string_t {
        self.val as usize as *mut mln_string_t
    }
}

/// `mln_conf_cmd_t` (40 bytes).
#[repr(C)]
pub(crate) struct mln_conf_cmd_t {
    pub cmd_name: *mut mln_string_t,
    /// Item `index` (1-based), NULL when out of range.
    pub search: Option<
        unsafe extern "C" fn(cmd: *mut mln_conf_cmd_t, index: mln_u32_t) -> *mut mln_conf_item_t,
    >,
    pub update: *mut c_void,
    pub arg_tbl: *mut mln_conf_item_t,
    pub n_args: mln_u32_t,
}

/// `mln_conf_domain_t` (40 bytes).
#[repr(C)]
pub(crate) struct mln_conf_domain_t {
    /// Command lookup by name, NULL when absent.
    pub search: Option<
        unsafe extern "C" fn(cd: *mut mln_conf_domain_t, name: *mut c_char) -> *mut mln_conf_cmd_t,
    >,
    pub insert: *mut c_void,
    pub remove: *mut c_void,
    pub domain_name: *mut mln_string_t,
    pub cmd: *mut c_void,
}

/// `mln_conf_t` (48 bytes).
#[repr(C)]
pub(crate) struct mln_conf_t {
    pub lex: *mut c_void,
    pub domain: *mut c_void,
    /// Domain lookup by name, NULL when absent.
    pub search: Option<
        unsafe extern "C" fn(cf: *mut mln_conf_t, name: *mut c_char) -> *mut mln_conf_domain_t,
    >,
    pub insert: *mut c_void,
    pub remove: *mut c_void,
    pub cb: *mut c_void,
}

const _: () = assert!(size_of::<mln_string_t>() == 24 && offset_of!(mln_string_t, len) == 8);
const _: () = assert!(size_of::<mln_conf_item_t>() == 16 && offset_of!(mln_conf_item_t, val) == 8);
const _: () = assert!(size_of::<mln_conf_cmd_t>() == 40);
const _: () = assert!(offset_of!(mln_conf_cmd_t, search) == 8);
const _: () = assert!(offset_of!(mln_conf_cmd_t, n_args) == 32);
const _: () = assert!(size_of::<mln_conf_domain_t>() == 40);
const _: () = assert!(offset_of!(mln_conf_domain_t, search) == 0);
const _: () = assert!(size_of::<mln_conf_t>() == 48 && offset_of!(mln_conf_t, search) == 16);

/// `mln_log_level_t` (spec §1.2).
pub(crate) type mln_log_level_t = c_int;
pub(crate) const LOG_REPORT: mln_log_level_t = 1;
pub(crate) const LOG_DEBUG: mln_log_level_t = 2;
pub(crate) const LOG_WARN: mln_log_level_t = 3;
pub(crate) const LOG_ERROR: mln_log_level_t = 4;

// libmelon's own functions: not part of our header (cbindgen would declare them).
#[allow(unused_doc_comments)]
/// cbindgen:ignore
extern "C" {
    // mln_event.h (spec §6)
    pub(crate) fn mln_event_fd_set(
        event: *mut mln_event_t,
        fd: c_int,
        flag: mln_u32_t,
        timeout_ms: c_int,
        data: *mut c_void,
        fd_handler: ev_fd_handler,
    ) -> c_int;
    pub(crate) fn mln_event_timer_set(
        event: *mut mln_event_t,
        msec: mln_u32_t,
        data: *mut c_void,
        tm_handler: ev_tm_handler,
    ) -> *mut mln_event_timer_t;
    pub(crate) fn mln_event_timer_cancel(event: *mut mln_event_t, timer: *mut mln_event_timer_t);

    // mln_conf.h / mln_string.h (spec §1.12, §4.8)
    pub(crate) fn mln_conf() -> *mut mln_conf_t;
    pub(crate) fn mln_conf_cmd_num(cf: *mut mln_conf_t, domain: *mut c_char) -> mln_u32_t;
    pub(crate) fn mln_conf_cmds(
        cf: *mut mln_conf_t,
        domain: *mut c_char,
        vector: *mut *mut mln_conf_cmd_t,
    );
    pub(crate) fn mln_conf_arg_num(cc: *mut mln_conf_cmd_t) -> mln_u32_t;
    pub(crate) fn mln_string_const_strcmp(s1: *mut mln_string_t, s2: *mut c_char) -> c_int;

    // mln_log.h (spec §7): `msg` is a Melon format (its own specifiers); we always pass
    // "%s" and pre-formatted text.
    pub(crate) fn _mln_sys_log(
        level: mln_log_level_t,
        file: *const c_char,
        func: *const c_char,
        line: c_int,
        msg: *const c_char,
        ...
    );
    pub(crate) fn mln_log_destroy();

    // mln_connection.h (spec §7)
    pub(crate) fn mln_tcp_conn_init(tc: *mut mln_tcp_conn_t, sockfd: c_int) -> c_int;
    pub(crate) fn mln_tcp_conn_destroy(tc: *mut mln_tcp_conn_t);
    pub(crate) fn mln_tcp_conn_fd_set(tc: *mut mln_tcp_conn_t, fd: c_int);
}
